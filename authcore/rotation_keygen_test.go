package authcore

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"testing"
)

// genVault is a memVault that makes its own keys, as a TPM-backed vault
// does; Put is refused, and LoadKey knows only the keys it made.
type genVault struct {
	*memVault
	made    []string
	loadErr error // LoadKey's error for a key it made, when set
}

func (v *genVault) Put(string, crypto.Signer) error { return errors.New("keys are made by the vault") }

func (v *genVault) GenerateKey(name, alg string) (crypto.Signer, error) {
	k, err := GenerateSigningKey(alg)
	if err != nil {
		return nil, err
	}
	v.made = append(v.made, name)
	return k, v.memVault.Put(name, k)
}

func (v *genVault) LoadKey(name string) (crypto.Signer, error) {
	if !slices.Contains(v.made, name) {
		return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
	}
	if v.loadErr != nil {
		return nil, v.loadErr
	}
	k, _ := v.memVault.PrivateKey(name)
	return k, nil
}

func TestKeyGeneratorVault(t *testing.T) {
	clk := newClock()
	v := &genVault{memVault: newMemVault()}
	s := newVaultService(t, newLocalStore(t), v, AlgES256, clk)
	first := s.currentSigner().Kid()
	rot, err := s.RotateSigningKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rot.OldKid != first || rot.NewKid == first {
		t.Fatalf("rotation %+v", rot)
	}
	if len(v.made) != 2 || v.made[0] != "signing/1" || v.made[1] != "signing/2" {
		t.Fatalf("GenerateKey calls %v, want signing/1 and signing/2", v.made)
	}
	// A restart loads the current generation through LoadKey.
	s2 := newVaultService(t, newLocalStore(t), v, AlgES256, clk)
	if s2.currentSigner().Kid() != rot.NewKid || len(v.made) != 2 {
		t.Fatalf("restart: kid %s, made %v", s2.currentSigner().Kid(), v.made)
	}
	// A current key it made but cannot load (another TPM) stops the start.
	v.loadErr = errors.New("the key file is another TPM's")
	if _, err := New(newLocalStore(t), Config{Hash: testHash, Policy: PasswordPolicy{MinLength: 12, MaxLength: 128},
		Issuer: "https://bulwark.test", NodeID: "n1", SigningAlg: AlgES256}, WithKeyVault(v)); !errors.Is(err, v.loadErr) {
		t.Fatalf("New with an unloadable current key: %v", err)
	}
}

// TestKeyGeneratorTakesOver: a vault that makes its keys, started over a
// keystore whose current key it did not make (seal.signing changed from
// "keystore" to "tpm-resident"), makes the next generation and signs
// with it; the old key stays in the keystore for PublishSigningKey to
// retire.
func TestKeyGeneratorTakesOver(t *testing.T) {
	clk := newClock()
	keystore := newMemVault()
	old := newVaultService(t, newLocalStore(t), keystore, AlgES256, clk).currentSigner().Kid()
	v := &genVault{memVault: keystore}
	s := newVaultService(t, newLocalStore(t), v, AlgES256, clk)
	if s.currentSigner().Kid() == old || len(v.made) != 1 || v.made[0] != "signing/2" {
		t.Fatalf("signing with %s (was %s); made %v, want signing/2", s.currentSigner().Kid(), old, v.made)
	}
	if b, _ := keystore.Secret(currentKeyName); string(b) != "2" {
		t.Fatalf("current generation %q, want 2", b)
	}
	if _, ok := keystore.PrivateKey("signing/1"); !ok {
		t.Fatal("the keystore's old key is gone")
	}
}
