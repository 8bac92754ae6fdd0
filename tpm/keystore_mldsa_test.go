package tpm

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"errors"
	"path/filepath"
	"testing"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
)

func TestKeystoreMLDSA65RoundTrip(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	s := newTestSoftwareSealer(t)
	_, generated, err := mldsa65.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var seed [mldsa65.SeedSize]byte
	for i := range seed {
		seed[i] = byte(i)
	}
	_, fromSeed := mldsa65.NewKeyFromSeed(&seed)
	keys := map[string]*mldsa65.PrivateKey{"signing/ML-DSA-65": generated, "signing/ml-2": fromSeed}

	ks := openTestKeystore(t, dataDir, s)
	for name, k := range keys {
		if err := ks.Put(name, k); err != nil {
			t.Fatalf("Put(%q): %v", name, err)
		}
	}
	if err := ks.Put("ca", newTestKeys(t).ecdsa); err != nil {
		t.Fatal(err)
	}
	for _, reopened := range []*Keystore{ks, openTestKeystore(t, dataDir, s)} {
		for name, k := range keys {
			got, ok := reopened.PrivateKey(name)
			if !ok {
				t.Fatalf("PrivateKey(%q) missing", name)
			}
			ml, ok := got.(*mldsa65.PrivateKey)
			if !ok || !ml.Equal(k) || !bytes.Equal(ml.Seed(), k.Seed()) {
				t.Fatalf("PrivateKey(%q) = %T, differs from the key put", name, got)
			}
			msg := []byte("bulwark keystore")
			sig, err := got.Sign(rand.Reader, msg, crypto.Hash(0))
			if err != nil {
				t.Fatal(err)
			}
			if !mldsa65.Verify(k.Public().(*mldsa65.PublicKey), msg, nil, sig) {
				t.Fatalf("%s: reopened key's signature does not verify", name)
			}
		}
		if _, ok := reopened.PrivateKey("ca"); !ok {
			t.Fatal("PKCS#8 key lost beside ML-DSA-65 keys")
		}
	}

	// Stored as the seed alone.
	e, err := marshalKey(fromSeed)
	if err != nil {
		t.Fatal(err)
	}
	if e.Type != entryMLDSA65Seed || !bytes.Equal(e.Data, seed[:]) {
		t.Fatalf("entry = %s %x, want %s %x", e.Type, e.Data, entryMLDSA65Seed, seed)
	}
}

func TestKeystoreMLDSA65Refusals(t *testing.T) {
	// A key unpacked from its expanded form has no seed to store.
	_, k, err := mldsa65.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var seedless mldsa65.PrivateKey
	if err := seedless.UnmarshalBinary(k.Bytes()); err != nil {
		t.Fatal(err)
	}
	ks := openTestKeystore(t, t.TempDir(), newTestSoftwareSealer(t))
	if err := ks.Put("signing/x", &seedless); !errors.Is(err, ErrUnsupportedKey) {
		t.Fatalf("Put(seedless key) = %v, want ErrUnsupportedKey", err)
	}
	if n := ks.Names(); len(n) != 0 {
		t.Fatalf("Names() after a refused Put = %v", n)
	}
	for _, n := range []int{0, mldsa65.SeedSize - 1, mldsa65.SeedSize + 1, mldsa65.PrivateKeySize} {
		if _, err := parseKey(entry{Type: entryMLDSA65Seed, Data: make([]byte, n)}); !errors.Is(err, ErrCorrupt) {
			t.Errorf("parseKey(seed of %d bytes) = %v, want ErrCorrupt", n, err)
		}
	}
}
