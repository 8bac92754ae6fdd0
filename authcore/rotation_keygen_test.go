package authcore

import (
	"context"
	"crypto"
	"errors"
	"testing"
	"time"
)

// genVault is a memVault that makes its own keys, as a TPM-backed vault
// does; Put is refused.
type genVault struct {
	*memVault
	made []string
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

func TestKeyGeneratorVault(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)}
	v := &genVault{memVault: newMemVault()}
	s := newVaultService(t, newLocalStore(t), v, AlgES256, clock)
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
	// A restart loads the current generation through PrivateKey.
	s2 := newVaultService(t, newLocalStore(t), v, AlgES256, clock)
	if s2.currentSigner().Kid() != rot.NewKid || len(v.made) != 2 {
		t.Fatalf("restart: kid %s, made %v", s2.currentSigner().Kid(), v.made)
	}
}
