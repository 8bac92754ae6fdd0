package tpm

import (
	"bytes"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/cloudflare/circl/kem/hybrid"
)

func escrowPair(t *testing.T) (pub, priv []byte) {
	t.Helper()
	pubPEM, privPEM, err := GenerateEscrowKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, err = ParseEscrowPublicKey(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	priv, fp, err := ParseEscrowPrivateKey(privPEM)
	if err != nil {
		t.Fatal(err)
	}
	if fp != EscrowKeyFingerprint(pub) {
		t.Fatalf("private key's public fingerprint %s, want %s", fp, EscrowKeyFingerprint(pub))
	}
	return pub, priv
}

func TestEscrowWrapRoundTrip(t *testing.T) {
	pub, priv := escrowPair(t)
	key := NewDataKey()
	aad := []byte("context")
	w, err := WrapKey(pub, key, "escrow", aad)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(w.Ciphertext, key) || bytes.Contains(w.KEMCiphertext, key) {
		t.Fatal("the wrapped key holds the key in the clear")
	}
	got, err := UnwrapKey(priv, w, "escrow", aad)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, key) {
		t.Fatal("unwrapped key differs")
	}
	// Each wrap is fresh.
	w2, _ := WrapKey(pub, key, "escrow", aad)
	if bytes.Equal(w.KEMCiphertext, w2.KEMCiphertext) || bytes.Equal(w.Ciphertext, w2.Ciphertext) {
		t.Error("two wraps are equal")
	}
}

// TestEscrowKEMIsHybrid: the escrow KEM is circl's X25519 + ML-KEM-768,
// and the key files and wraps have its sizes.
func TestEscrowKEMIsHybrid(t *testing.T) {
	s := hybrid.X25519MLKEM768()
	if escrowScheme().Name() != s.Name() || EscrowKEM != s.Name() {
		t.Fatalf("escrow KEM %q / %q, want %q", escrowScheme().Name(), EscrowKEM, s.Name())
	}
	pub, priv := escrowPair(t)
	if len(pub) != s.PublicKeySize() || len(priv) != s.PrivateKeySize() {
		t.Errorf("key sizes %d/%d, want %d/%d", len(pub), len(priv), s.PublicKeySize(), s.PrivateKeySize())
	}
	// The public key is ML-KEM-768's (1184 bytes) then X25519's (32).
	if len(pub) != 1184+32 {
		t.Errorf("public key of %d bytes, want 1216", len(pub))
	}
	w, err := WrapKey(pub, NewDataKey(), "escrow", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.KEMCiphertext) != s.CiphertextSize() {
		t.Errorf("KEM ciphertext of %d bytes, want %d", len(w.KEMCiphertext), s.CiphertextSize())
	}
	pubPEM, _, _ := GenerateEscrowKey()
	b, _ := pem.Decode(pubPEM)
	if b.Headers["KEM"] != "X25519MLKEM768" || b.Type != "BULWARK ESCROW PUBLIC KEY" {
		t.Errorf("armor %q %v", b.Type, b.Headers)
	}
}

func TestEscrowUnwrapRefusals(t *testing.T) {
	pub, priv := escrowPair(t)
	_, otherPriv := escrowPair(t)
	key := NewDataKey()
	w, err := WrapKey(pub, key, "escrow", []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	flip := func(b []byte, i int) []byte {
		c := bytes.Clone(b)
		c[i] ^= 1
		return c
	}
	cases := map[string]struct {
		priv  []byte
		w     WrappedKey
		label string
		aad   string
	}{
		"wrong private key":       {otherPriv, w, "escrow", "aad"},
		"tampered KEM ciphertext": {priv, WrappedKey{flip(w.KEMCiphertext, 7), w.Ciphertext}, "escrow", "aad"},
		"tampered X25519 part":    {priv, WrappedKey{flip(w.KEMCiphertext, len(w.KEMCiphertext)-1), w.Ciphertext}, "escrow", "aad"},
		"tampered ciphertext":     {priv, WrappedKey{w.KEMCiphertext, flip(w.Ciphertext, len(w.Ciphertext)-3)}, "escrow", "aad"},
		"truncated ciphertext":    {priv, WrappedKey{w.KEMCiphertext, w.Ciphertext[:20]}, "escrow", "aad"},
		"short KEM ciphertext":    {priv, WrappedKey{w.KEMCiphertext[:100], w.Ciphertext}, "escrow", "aad"},
		"other label":             {priv, w, "join", "aad"},
		"other aad":               {priv, w, "escrow", "aae"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := UnwrapKey(c.priv, c.w, c.label, []byte(c.aad))
			if !errors.Is(err, ErrUnseal) {
				t.Fatalf("err = %v, %x; want ErrUnseal", err, got)
			}
		})
	}
}

func TestEscrowKeyFileRefusals(t *testing.T) {
	pubPEM, privPEM, err := GenerateEscrowKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseEscrowPublicKey(privPEM); !errors.Is(err, ErrEscrowKey) {
		t.Errorf("private file as public key: %v", err)
	}
	if _, _, err := ParseEscrowPrivateKey(pubPEM); !errors.Is(err, ErrEscrowKey) {
		t.Errorf("public file as private key: %v", err)
	}
	b, _ := pem.Decode(pubPEM)
	b.Bytes[10] ^= 1 // the fingerprint header no longer matches
	if _, err := ParseEscrowPublicKey(pem.EncodeToMemory(b)); !errors.Is(err, ErrEscrowKey) {
		t.Errorf("damaged public key: %v", err)
	}
	b, _ = pem.Decode(pubPEM)
	b.Headers["KEM"] = "Kyber768-X25519"
	if _, err := ParseEscrowPublicKey(pem.EncodeToMemory(b)); !errors.Is(err, ErrEscrowKey) {
		t.Errorf("other KEM: %v", err)
	}
	b, _ = pem.Decode(pubPEM)
	b.Bytes = b.Bytes[:100]
	delete(b.Headers, "Fingerprint")
	if _, err := ParseEscrowPublicKey(pem.EncodeToMemory(b)); !errors.Is(err, ErrEscrowKey) {
		t.Errorf("short key: %v", err)
	}
	if _, err := ParseEscrowPublicKey(append(bytes.Clone(pubPEM), pubPEM...)); !errors.Is(err, ErrEscrowKey) {
		t.Errorf("two blocks: %v", err)
	}
	if _, err := ParseEscrowPublicKey([]byte("hello")); !errors.Is(err, ErrEscrowKey) {
		t.Errorf("not PEM: %v", err)
	}
}

func TestDataKeyFingerprint(t *testing.T) {
	k := NewDataKey()
	if len(k) != DataKeySize {
		t.Fatalf("data key of %d bytes", len(k))
	}
	fp := DataKeyFingerprint(k)
	if len(fp) != 64 || strings.Trim(fp, "0123456789abcdef") != "" {
		t.Fatalf("fingerprint %q", fp)
	}
	if fp == DataKeyFingerprint(NewDataKey()) || fp == EscrowKeyFingerprint(k) {
		t.Error("fingerprints collide across keys or domains")
	}
	// Golden: the encoding is documented and operators compare it.
	zero := make([]byte, 32)
	if got, want := DataKeyFingerprint(zero), fingerprint("bulwark-cluster-data-key-v1", zero); got != want {
		t.Errorf("DataKeyFingerprint = %s, want %s", got, want)
	}
}

func TestSecretWrap(t *testing.T) {
	secret, key := NewDataKey(), NewDataKey()
	blob, err := SealWithSecret(secret, key, "recovery-shares", []byte("ctx"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenWithSecret(secret, blob, "recovery-shares", []byte("ctx"))
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("open: %v", err)
	}
	if _, err := OpenWithSecret(NewDataKey(), blob, "recovery-shares", []byte("ctx")); !errors.Is(err, ErrUnseal) {
		t.Errorf("wrong secret: %v", err)
	}
	if _, err := OpenWithSecret(secret, blob, "recovery-shares", []byte("cty")); !errors.Is(err, ErrUnseal) {
		t.Errorf("wrong aad: %v", err)
	}
	if _, err := SealWithSecret(secret[:8], key, "x", nil); err == nil {
		t.Error("a short secret is accepted")
	}
}
