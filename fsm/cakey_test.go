package fsm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

// signedShare is a ca.key payload signed by key, whose pin it carries.
func signedShare(t *testing.T, key *ecdsa.PrivateKey, dataKey string, sealed []byte) CAKey {
	t.Helper()
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(spki)
	pin := "sha256:" + hex.EncodeToString(sum[:])
	sig, err := ecdsa.SignASN1(rand.Reader, key, CAKeyDigest(pin, dataKey, sealed))
	if err != nil {
		t.Fatal(err)
	}
	return CAKey{Pin: pin, DataKey: dataKey, Sealed: sealed, CAPublicKey: spki, Signature: sig}
}

func newCAKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestCAKeyIsSharedOnce(t *testing.T) {
	a := newApplier(t)
	fp := strings.Repeat("ab", 32)
	caKey := newCAKey(t)
	share := signedShare(t, caKey, fp, []byte("sealed key"))
	pin := share.Pin

	// Not before the data key is registered.
	if r := a.apply(TypeCAKey, t0, share); !errors.Is(r.Err, ErrNoDataKey) {
		t.Fatalf("ca.key before datakey.register: %v", r.Err)
	}
	if r := a.apply(TypeDataKeyRegister, t0, DataKeyRegister{Fingerprint: fp}); r.Err != nil {
		t.Fatal(r.Err)
	}
	tampered := share
	tampered.Sealed = []byte("another blob")
	otherSigner := signedShare(t, newCAKey(t), fp, share.Sealed)
	otherSigner.Pin = pin // another key's signature under this CA's pin
	withSharedAt := share
	withSharedAt.SharedAt = t0
	for name, bad := range map[string]CAKey{
		"pin without prefix":      {Pin: strings.Repeat("cd", 32), DataKey: fp, Sealed: []byte("x")},
		"short pin":               {Pin: "sha256:abcd", DataKey: fp, Sealed: []byte("x")},
		"empty":                   {Pin: pin, DataKey: fp},
		"too large":               {Pin: pin, DataKey: fp, Sealed: make([]byte, maxSealedCAKey+1)},
		"other data key":          signedShare(t, caKey, strings.Repeat("ef", 32), []byte("x")),
		"shared_at given":         withSharedAt,
		"unsigned":                {Pin: pin, DataKey: fp, Sealed: []byte("x")},
		"blob not the signed one": tampered,
		"signed by another key":   otherSigner,
	} {
		if r := a.apply(TypeCAKey, t0, bad); !errors.Is(r.Err, ErrInvalidCommand) {
			t.Fatalf("%s: %v, want ErrInvalidCommand", name, r.Err)
		}
	}
	a.s.View(func(r Reader) error {
		if _, err := r.CAKey(); !errors.Is(err, ErrNoCAKey) {
			t.Fatalf("refused shares stored something: %v", err)
		}
		return nil
	})

	at := t0.Add(time.Minute)
	r := a.apply(TypeCAKey, at, share)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if k := r.Value.(*CAKey); k.Pin != pin || !k.SharedAt.Equal(at) || !bytes.Equal(k.Sealed, share.Sealed) {
		t.Fatalf("shared %+v", k)
	}
	// The same CA again keeps the first record; another CA is refused.
	again := signedShare(t, caKey, fp, []byte("sealed again"))
	if r := a.apply(TypeCAKey, at.Add(time.Hour), again); r.Err != nil || !r.Value.(*CAKey).SharedAt.Equal(at) {
		t.Fatalf("the same CA again: %+v", r)
	}
	if r := a.apply(TypeCAKey, at, signedShare(t, newCAKey(t), fp, []byte("x"))); !errors.Is(r.Err, ErrInvalidCommand) {
		t.Fatalf("another CA: %v", r.Err)
	}
	a.s.View(func(r Reader) error {
		k, err := r.CAKey()
		if err != nil || !bytes.Equal(k.Sealed, share.Sealed) {
			t.Fatalf("stored %+v, %v", k, err)
		}
		return nil
	})
}

// TestDropCAKey: a restore drops the backed-up cluster's CA key record, the
// applied index stays, and a new CA's key can then be shared.
func TestDropCAKey(t *testing.T) {
	a := newApplier(t)
	if k, err := a.s.DropCAKey(); k != nil || err != nil {
		t.Fatalf("DropCAKey with no record: %+v, %v", k, err)
	}
	fp := strings.Repeat("ab", 32)
	if r := a.apply(TypeDataKeyRegister, t0, DataKeyRegister{Fingerprint: fp}); r.Err != nil {
		t.Fatal(r.Err)
	}
	old := signedShare(t, newCAKey(t), fp, []byte("old CA key"))
	if r := a.apply(TypeCAKey, t0, old); r.Err != nil {
		t.Fatal(r.Err)
	}
	index, term, _ := a.s.Applied()

	k, err := a.s.DropCAKey()
	if err != nil || k == nil || k.Pin != old.Pin {
		t.Fatalf("DropCAKey: %+v, %v; want the record of %s", k, err, old.Pin)
	}
	if i, tm, _ := a.s.Applied(); i != index || tm != term {
		t.Fatalf("DropCAKey moved the applied index from %d/%d to %d/%d", index, term, i, tm)
	}
	a.s.View(func(r Reader) error {
		if _, err := r.CAKey(); !errors.Is(err, ErrNoCAKey) {
			t.Fatalf("after DropCAKey the state still has a CA key: %v", err)
		}
		return nil
	})
	fresh := signedShare(t, newCAKey(t), fp, []byte("new CA key"))
	if r := a.apply(TypeCAKey, t0.Add(time.Hour), fresh); r.Err != nil || r.Value.(*CAKey).Pin != fresh.Pin {
		t.Fatalf("sharing a new CA after the drop: %+v", r)
	}
}

// DropMemberKeys forgets every member's recorded key, and only those.
func TestDropMemberKeys(t *testing.T) {
	a := newApplier(t)
	for _, n := range []string{"node1", "node2"} {
		if r := a.applyVersion(TypeMemberKey, 1, t0, MemberKey{Node: n, SPKI: strings.Repeat(n[4:], 64)}); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if r := a.apply(TypeUserCreate, t0, UserCreate{ID: "u1", Username: "alice", PasswordHash: "h"}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if n, err := a.s.DropMemberKeys(); n != 2 || err != nil {
		t.Fatalf("DropMemberKeys: %d, %v; want 2", n, err)
	}
	a.s.View(func(r Reader) error {
		if _, ok := r.MemberKey("node1"); ok {
			t.Error("node1's key survived DropMemberKeys")
		}
		if _, err := r.UserByName("alice"); err != nil {
			t.Errorf("DropMemberKeys took more than member keys: %v", err)
		}
		return nil
	})
}
