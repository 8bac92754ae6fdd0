package main

import (
	"crypto"
	"crypto/ecdsa"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/bulwark-auth/bulwark/authcore"
	"github.com/bulwark-auth/bulwark/tpm"
)

func TestTPMVault(t *testing.T) {
	sim, err := simulator.GetWithFixedSeedInsecure(1)
	if err != nil {
		t.Fatal(err)
	}
	s, err := tpm.NewTPMSealer("", nil, tpm.WithTPMTransport(transport.FromReadWriteCloser(sim)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dir := t.TempDir()
	ks, err := tpm.OpenKeystore(dir, s)
	if err != nil {
		t.Fatal(err)
	}
	// keystore-mode generation 1, then switch.
	soft, _ := authcore.GenerateSigningKey("ES256")
	ks.Put("signing/1", soft)
	ks.PutSecret("signing/current", []byte("1"))
	v, err := newTPMVault(ks, s, dir, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if b, _ := ks.Secret("signing/current"); string(b) != "2" {
		t.Fatalf("current = %s", b)
	}
	k, ok := v.PrivateKey("signing/2")
	if !ok {
		t.Fatal("no gen 2")
	}
	if _, ok := k.(*tpm.TPMKey); !ok {
		t.Fatalf("%T", k)
	}
	sig, err := authcore.NewSigner(k, "ES256")
	if err != nil {
		t.Fatal(err)
	}
	_ = sig
	var _ crypto.Signer = k
	_ = k.Public().(*ecdsa.PublicKey)
	if _, err := filepath.Glob(filepath.Join(dir, "tpm", "signing-2.key")); err != nil {
		t.Fatal(err)
	}
	g3, err := v.GenerateKey("signing/3", "ES256")
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	v2, err := newTPMVault(ks, s, dir, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	k3, ok := v2.PrivateKey("signing/3")
	if !ok || !k3.Public().(*ecdsa.PublicKey).Equal(g3.Public()) {
		t.Fatal("gen 3 reload")
	}
}
