package fsm

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCAKeyIsSharedOnce(t *testing.T) {
	a := newApplier(t)
	fp := strings.Repeat("ab", 32)
	pin := "sha256:" + strings.Repeat("cd", 32)
	share := CAKey{Pin: pin, DataKey: fp, Sealed: []byte("sealed key")}

	// Not before the data key is registered.
	if r := a.apply(TypeCAKey, t0, share); !errors.Is(r.Err, ErrNoDataKey) {
		t.Fatalf("ca.key before datakey.register: %v", r.Err)
	}
	if r := a.apply(TypeDataKeyRegister, t0, DataKeyRegister{Fingerprint: fp}); r.Err != nil {
		t.Fatal(r.Err)
	}
	for name, bad := range map[string]CAKey{
		"pin without prefix": {Pin: strings.Repeat("cd", 32), DataKey: fp, Sealed: []byte("x")},
		"short pin":          {Pin: "sha256:abcd", DataKey: fp, Sealed: []byte("x")},
		"empty":              {Pin: pin, DataKey: fp},
		"too large":          {Pin: pin, DataKey: fp, Sealed: make([]byte, maxSealedCAKey+1)},
		"other data key":     {Pin: pin, DataKey: strings.Repeat("ef", 32), Sealed: []byte("x")},
		"shared_at given":    {Pin: pin, DataKey: fp, Sealed: []byte("x"), SharedAt: t0},
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
	again := share
	again.Sealed = []byte("sealed again")
	if r := a.apply(TypeCAKey, at.Add(time.Hour), again); r.Err != nil || !r.Value.(*CAKey).SharedAt.Equal(at) {
		t.Fatalf("the same CA again: %+v", r)
	}
	other := share
	other.Pin = "sha256:" + strings.Repeat("01", 32)
	if r := a.apply(TypeCAKey, at, other); !errors.Is(r.Err, ErrInvalidCommand) {
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
