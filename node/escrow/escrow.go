// Package escrow owns the forms in which the cluster data key leaves every
// node without leaving in the clear, and its recovery from them: the wrap
// to an operator's escrow public key, the k-of-n recovery shares (their
// printed form, bwshare1-…, and the Shamir split behind them, shamir.go),
// and the offline recovery of the key from an escrow private key or K
// shares together with the replicated state's record (fsm.DataKeyState).
//
// It builds no command and proposes nothing: node's data-key service
// records what this package makes, and `bulwark keys recover` reads it
// back. docs/recovery.md is the operator's guide.
//
// Package escrow imports fsm (the record types) and tpm (the KEM and
// secret wraps, the data key's fingerprint) and nothing else of this
// module; node and cmd/bulwark import it (layering_test.go).
package escrow

import (
	"fmt"
	"strings"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/tpm"
)

// Wrap labels: what a wrapped data key is for (tpm.WrapKey's label).
const (
	escrowLabel = "escrow"
	sharesLabel = "recovery-shares"
)

// Errors, matched with errors.Is.
// escrowAAD binds an escrow's wrap to the data key and the escrow key.
func escrowAAD(dataKeyFP, escrowKeyFP string) []byte {
	return []byte("data-key=" + dataKeyFP + ";escrow-key=" + escrowKeyFP)
}

// Wrap wraps the data key (fingerprint dataKeyFP) to the escrow public key
// publicKey (binary, fingerprint escrowKeyFP), bound to both.
func Wrap(publicKey, key []byte, dataKeyFP, escrowKeyFP string) (tpm.WrappedKey, error) {
	return tpm.WrapKey(publicKey, key, escrowLabel, escrowAAD(dataKeyFP, escrowKeyFP))
}

// FromEscrow rebuilds the data key with an escrow private key, and says
// how, for the operator.
func FromEscrow(st *fsm.DataKeyState, privatePEM []byte) ([]byte, string, error) {
	priv, kfp, err := tpm.ParseEscrowPrivateKey(privatePEM)
	if err != nil {
		return nil, "", err
	}
	defer clear(priv)
	e, ok := st.Escrow(kfp)
	if !ok {
		have := make([]string, len(st.Escrows))
		for i, e := range st.Escrows {
			have[i] = e.KeyFingerprint
		}
		if len(have) == 0 {
			return nil, "", fmt.Errorf("the data key was never escrowed (see `bulwark keys escrow-key`); use --share")
		}
		return nil, "", fmt.Errorf("the data key is not escrowed to this private key (%s); it is escrowed to %s", kfp, strings.Join(have, ", "))
	}
	key, err := tpm.UnwrapKey(priv, tpm.WrappedKey{KEMCiphertext: e.KEMCiphertext, Ciphertext: e.Ciphertext},
		escrowLabel, escrowAAD(e.DataKey, kfp))
	if err != nil {
		return nil, "", fmt.Errorf("the escrow to %s does not open with this private key: %w", kfp, err)
	}
	if err := checkRecovered(st, key, e.DataKey); err != nil {
		return nil, "", err
	}
	return key, fmt.Sprintf("the escrow to %s (made %s)", kfp, e.CreatedAt.Format(time.RFC3339)), nil
}

func checkRecovered(st *fsm.DataKeyState, key []byte, recorded string) error {
	fp := tpm.DataKeyFingerprint(key)
	if len(key) != tpm.DataKeySize || fp != st.Fingerprint || recorded != st.Fingerprint {
		clear(key)
		return fmt.Errorf("the recovered key's fingerprint %s does not match the cluster's %s; nothing was written", fp, st.Fingerprint)
	}
	return nil
}
