package tpm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"testing"

	"github.com/bulwark-auth/bulwark/authcore"
	"github.com/bulwark-auth/bulwark/fsm"
)

var _ authcore.KeyGenerator = (*ResidentKeys)(nil)

// TestResidentKeys: generations are made in the TPM, found again after a
// restart, and what the vault never made is fs.ErrNotExist.
func TestResidentKeys(t *testing.T) {
	s := openSimSealer(t, 1, nil).TPMSealer
	dir := t.TempDir()
	ks := openTestKeystore(t, dir, s)
	v := NewResidentKeys(ks, s, dir)
	defer v.Close()

	if _, err := v.LoadKey("signing/1"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LoadKey of a key never made: %v, want fs.ErrNotExist", err)
	}
	if _, ok := v.PrivateKey("signing/1"); ok {
		t.Fatal("PrivateKey of a key never made")
	}
	k1, err := v.GenerateKey("signing/1", "ES256")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := k1.(*TPMKey); !ok {
		t.Fatalf("GenerateKey made a %T", k1)
	}
	mustSignVerifies(t, k1, nil, "resident")
	if _, err := os.Stat(SigningKeyPath(dir, 1)); err != nil {
		t.Fatalf("no key file: %v", err)
	}
	for name, err := range map[string]error{
		"EdDSA":    func() error { _, err := v.GenerateKey("signing/2", "EdDSA"); return err }(),
		"bad name": func() error { _, err := v.GenerateKey("tls", "ES256"); return err }(),
		"Put":      v.Put("signing/2", k1),
	} {
		if err == nil {
			t.Errorf("%s accepted", name)
		}
	}

	// A restart finds it; making it again (a crash before it became
	// current) gives the same key.
	v.Close()
	v = NewResidentKeys(ks, s, dir)
	defer v.Close()
	again, err := v.LoadKey("signing/1")
	if err != nil || !again.Public().(*ecdsa.PublicKey).Equal(k1.Public()) {
		t.Fatalf("reload: %v", err)
	}
	remade, err := v.GenerateKey("signing/1", "ES256")
	if err != nil || !remade.Public().(*ecdsa.PublicKey).Equal(k1.Public()) {
		t.Fatalf("made again: %v", err)
	}
}

// TestResidentKeysTakeOverKeystoreKeys: a node whose signing key was kept
// in the keystore and that starts with seal.signing = "tpm-resident" signs
// with a next generation made in the TPM (authcore's policy, through
// LoadKey's fs.ErrNotExist).
func TestResidentKeysTakeOverKeystoreKeys(t *testing.T) {
	s := openSimSealer(t, 1, nil).TPMSealer
	dir := t.TempDir()
	ks := openTestKeystore(t, dir, s)
	soft, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ks.Put("signing/1", soft)
	ks.PutSecret("signing/current", []byte("1"))
	v := NewResidentKeys(ks, s, dir)
	defer v.Close()
	if _, err := authcore.New(noStore{}, authcore.Config{
		Hash:   authcore.HashParams{MemoryKiB: 19456, Iterations: 2, Parallelism: 1},
		Policy: authcore.PasswordPolicy{MinLength: 12, MaxLength: 128}, Issuer: "https://bulwark.test",
		NodeID: "n1", SigningAlg: authcore.AlgES256}, authcore.WithKeyVault(v), authcore.WithLogger(slog.New(slog.DiscardHandler))); err != nil {
		t.Fatal(err)
	}
	if b, _ := ks.Secret("signing/current"); string(b) != "2" {
		t.Fatalf("current = %s", b)
	}
	k, ok := v.PrivateKey("signing/2")
	if !ok {
		t.Fatal("no generation 2")
	}
	if _, ok := k.(*TPMKey); !ok {
		t.Fatalf("generation 2 is a %T", k)
	}
	if _, err := os.Stat(SigningKeyPath(dir, 2)); err != nil {
		t.Fatalf("no key file: %v", err)
	}
}

// noStore is a replicated state that is never reached: loading the signing
// key reads only the vault.
type noStore struct{}

func (noStore) Apply(context.Context, fsm.Command) (any, error) { return nil, errors.New("no store") }
func (noStore) View(func(fsm.Reader) error) error               { return errors.New("no store") }

// TestResidentAuditKeys: the ES256 audit key is made in the TPM like a
// generation; the ML-DSA-65 audit key, which no TPM makes, is kept in the
// keystore, and survives a restart there.
func TestResidentAuditKeys(t *testing.T) {
	s := openSimSealer(t, 1, nil).TPMSealer
	dir := t.TempDir()
	ks := openTestKeystore(t, dir, s)
	v := NewResidentKeys(ks, s, dir)
	defer v.Close()

	if _, err := v.LoadKey(AuditKeyName); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LoadKey of an audit key never made: %v, want fs.ErrNotExist", err)
	}
	ak, err := v.GenerateKey(AuditKeyName, "ES256")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ak.(*TPMKey); !ok {
		t.Fatalf("the audit key is a %T, not a TPM key", ak)
	}
	mustSignVerifies(t, ak, nil, "audit")
	if err := v.Put(AuditKeyName, ak); err == nil {
		t.Error("Put of the TPM-made audit key accepted")
	}
	pq, err := authcore.GenerateSigningKey(authcore.AlgMLDSA65)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Put("audit/ml-dsa-65", pq); err != nil {
		t.Fatalf("Put of the ML-DSA-65 audit key: %v", err)
	}
	v.Close()
	ks2, err := OpenKeystore(dir, s)
	if err != nil {
		t.Fatal(err)
	}
	v = NewResidentKeys(ks2, s, dir)
	defer v.Close()
	got, ok := v.PrivateKey("audit/ml-dsa-65")
	if !ok || !got.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(pq.Public()) {
		t.Fatal("the ML-DSA-65 audit key is not in the keystore after a restart")
	}
	again, err := v.LoadKey(AuditKeyName)
	if err != nil || !again.Public().(*ecdsa.PublicKey).Equal(ak.Public()) {
		t.Fatalf("reload of the audit key: %v", err)
	}
}
