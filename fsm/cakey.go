package fsm

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TypeCAKey shares the cluster CA's private key with every member: sealed
// under the cluster data key, which each member holds sealed by its own
// TPM. Any member can then admit nodes and renew certificates, so losing
// the node that created the cluster costs neither. Set once per CA: the
// same CA again changes nothing, another CA is refused.
const TypeCAKey Type = "ca.key"

// CAKey is the payload of ca.key v1 and the record the state keeps.
type CAKey struct {
	// Pin names the CA certificate: "sha256:" and 64 lowercase hex digits
	// of its SubjectPublicKeyInfo.
	Pin string `json:"pin"`
	// DataKey is the fingerprint of the data key it is sealed under; it
	// must be the registered one.
	DataKey string `json:"data_key"`
	// Sealed is the PKCS#8 private key sealed under the data key
	// (tpm.SealWithSecret, AAD the pin).
	Sealed []byte `json:"sealed"`
	// CAPublicKey is the CA's SubjectPublicKeyInfo (DER), whose SHA-256 is
	// the pin, and Signature the CA key's signature over CAKeyDigest: only
	// a holder of the CA key can share it, so no member can block the
	// sharing with a blob of its own.
	CAPublicKey []byte    `json:"ca_public_key"`
	Signature   []byte    `json:"signature"`
	SharedAt    time.Time `json:"shared_at,omitzero"`
}

// CAKeyDigest is what the CA key signs when it is shared: SHA-256 over a
// domain string, the pin, the data key fingerprint and the sealed blob's
// SHA-256.
func CAKeyDigest(pin, dataKey string, sealed []byte) []byte {
	sb := sha256.Sum256(sealed)
	h := sha256.New()
	h.Write([]byte("bulwark ca.key v1\x00" + pin + "\x00" + dataKey + "\x00"))
	h.Write(sb[:])
	return h.Sum(nil)
}

// verifyCAKey checks that the public key is the pinned one and signed the
// share.
func verifyCAKey(p *CAKey) error {
	sum := sha256.Sum256(p.CAPublicKey)
	if p.Pin != "sha256:"+hex.EncodeToString(sum[:]) {
		return errors.New("ca_public_key does not match the pin")
	}
	pub, err := x509.ParsePKIXPublicKey(p.CAPublicKey)
	if err != nil {
		return fmt.Errorf("ca_public_key: %v", err)
	}
	digest := CAKeyDigest(p.Pin, p.DataKey, p.Sealed)
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, digest, p.Signature) {
			return errors.New("signature does not verify")
		}
	case ed25519.PublicKey:
		if !ed25519.Verify(k, digest, p.Signature) {
			return errors.New("signature does not verify")
		}
	default:
		return fmt.Errorf("a %T CA key is not accepted", pub)
	}
	return nil
}

const maxSealedCAKey = 4 << 10

var keyCAKey = []byte("ca_key")

var caKeyCommands = []CommandSpec{
	{Type: TypeCAKey, Version: 1, Level: 2, Apply: applyCAKey, Result: reflect.TypeFor[*CAKey]()},
}

func applyCAKey(t txn, c Command) (any, error) {
	var p CAKey
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	switch {
	case !strings.HasPrefix(p.Pin, "sha256:") || !isHex(strings.TrimPrefix(p.Pin, "sha256:"), 64):
		return nil, fmt.Errorf("%w: ca.key: pin must be sha256: and 64 lowercase hex digits", ErrInvalidCommand)
	case len(p.Sealed) == 0 || len(p.Sealed) > maxSealedCAKey:
		return nil, fmt.Errorf("%w: ca.key: sealed key of %d bytes (1 to %d)", ErrInvalidCommand, len(p.Sealed), maxSealedCAKey)
	case !p.SharedAt.IsZero():
		return nil, fmt.Errorf("%w: ca.key: shared_at is set by the state", ErrInvalidCommand)
	case len(p.CAPublicKey) > maxSealedCAKey || len(p.Signature) > 1024:
		return nil, fmt.Errorf("%w: ca.key: oversize public key or signature", ErrInvalidCommand)
	}
	if err := verifyCAKey(&p); err != nil {
		return nil, fmt.Errorf("%w: ca.key: %v", ErrInvalidCommand, err)
	}
	if _, err := registered(t.tx, p.DataKey); err != nil {
		return nil, err
	}
	cur, err := getCAKey(t.tx)
	switch {
	case errors.Is(err, ErrNoCAKey):
	case err != nil:
		return nil, err
	case cur.Pin == p.Pin:
		return cur, nil // shared already
	default:
		return nil, fmt.Errorf("%w: ca.key: the cluster's CA is %s; it cannot change to %s", ErrInvalidCommand, cur.Pin, p.Pin)
	}
	p.SharedAt = time.Unix(0, c.Time).UTC()
	b, err := json.Marshal(&p)
	if err != nil {
		return nil, err
	}
	return &p, t.tx.Bucket(bucketMeta).Put(keyCAKey, b)
}

func getCAKey(tx *bolt.Tx) (*CAKey, error) {
	v := tx.Bucket(bucketMeta).Get(keyCAKey)
	if v == nil {
		return nil, ErrNoCAKey
	}
	var k CAKey
	if err := json.Unmarshal(v, &k); err != nil {
		return nil, fmt.Errorf("fsm: stored CA key record: %w", err)
	}
	return &k, nil
}

// CAKey returns the shared CA key record, or ErrNoCAKey.
func (r Reader) CAKey() (*CAKey, error) { return getCAKey(r.tx) }

// DropCAKey removes the shared CA key record outside the log and returns
// it (nil when there was none). It is for an offline restore only
// (node.RestoreBackup), before the restored state becomes the snapshot of
// a new one-node cluster: that cluster makes a CA of its own at its first
// start, and ca.key refuses to replace the backed-up cluster's CA, so the
// old record would keep the new CA's key from ever being shared with the
// members that join. Never call it on a store that Raft applies to: the
// state would no longer be what the log makes it.
func (s *Store) DropCAKey() (*CAKey, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return nil, ErrClosed
	}
	var old *CAKey
	err := s.db.Update(func(tx *bolt.Tx) error {
		k, err := getCAKey(tx)
		switch {
		case errors.Is(err, ErrNoCAKey):
			return nil
		case err != nil:
			return err
		}
		old = k
		return tx.Bucket(bucketMeta).Delete(keyCAKey)
	})
	if err != nil {
		return nil, err
	}
	return old, nil
}
