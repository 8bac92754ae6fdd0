package fsm

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestKeyPublishIssuer(t *testing.T) {
	a := newApplier(t)
	p := KeyPublish{Kid: testKid, Node: "node1", Alg: "ES256", JWK: testJWK(testKid, "ES256")}
	with := func(iss string) KeyPublish { q := p; q.Issuer = iss; return q }
	for _, bad := range []struct {
		v   uint16
		iss string
	}{{1, "https://a.example"}, {2, ""}, {2, "http://a.example"}, {2, "https://"}, {2, "https://a example"},
		{2, "https://" + string(bytes.Repeat([]byte("a"), MaxIssuerBytes))}} {
		if r := a.applyVersion(TypeKeyPublish, bad.v, t0, with(bad.iss)); !errors.Is(r.Err, ErrInvalidCommand) {
			t.Fatalf("v%d with issuer %.40q: %v, want ErrInvalidCommand", bad.v, bad.iss, r.Err)
		}
	}
	issuer := func() string {
		var k *PublicKey
		a.s.View(func(r Reader) (err error) { k, err = r.PublicKey(testKid); return err })
		if k == nil {
			t.Fatal("no key")
		}
		return k.Issuer
	}
	if r := a.applyVersion(TypeKeyPublish, 2, t0, with("https://node1.example:8443")); r.Err != nil {
		t.Fatal(r.Err)
	}
	if got := issuer(); got != "https://node1.example:8443" {
		t.Fatalf("issuer %q after v2", got)
	}
	// A v2 republish moves the key's node to a new URL; a v1 republish
	// (an older member retiring it) keeps the one recorded.
	if r := a.applyVersion(TypeKeyPublish, 2, t0, with("https://node1.example:9443")); r.Err != nil || issuer() != "https://node1.example:9443" {
		t.Fatalf("v2 republish: %v, issuer %q", r.Err, issuer())
	}
	retired := p
	retired.NotAfter, retired.Retire = t0.UnixNano(), t0.Add(time.Hour).UnixNano()
	if r := a.apply(TypeKeyPublish, t0, retired); r.Err != nil || issuer() != "https://node1.example:9443" {
		t.Fatalf("v1 retire: %v, issuer %q", r.Err, issuer())
	}
}

func TestTokensIssuer(t *testing.T) {
	a := newApplier(t)
	recorded := func() (string, bool) {
		var iss string
		var ok bool
		a.s.View(func(r Reader) error { iss, ok = r.TokensIssuer(); return nil })
		return iss, ok
	}
	if _, ok := recorded(); ok {
		t.Fatal("a new state has a tokens issuer")
	}
	for _, bad := range []string{"", "http://auth.example", "https://auth example"} {
		if r := a.apply(TypeTokensIssuer, t0, TokensIssuer{Issuer: bad}); !errors.Is(r.Err, ErrInvalidCommand) {
			t.Fatalf("%q: %v", bad, r.Err)
		}
	}
	const iss = "https://auth.example"
	for range 2 { // recorded, then the same again: no change
		if r := a.apply(TypeTokensIssuer, t0, TokensIssuer{Issuer: iss}); r.Err != nil {
			t.Fatal(r.Err)
		}
		if got, ok := recorded(); !ok || got != iss {
			t.Fatalf("recorded %q %v", got, ok)
		}
	}
	r := a.apply(TypeTokensIssuer, t0, TokensIssuer{Issuer: "https://other.example"})
	if !errors.Is(r.Err, ErrIssuerConflict) {
		t.Fatalf("another issuer: %v, want ErrIssuerConflict", r.Err)
	}
	// A forwarded result matches the same sentinel and keeps the message.
	b, err := EncodeResult(TypeTokensIssuer, 1, r)
	if err != nil {
		t.Fatal(err)
	}
	if fr, err := DecodeResult(TypeTokensIssuer, 1, b); err != nil || !errors.Is(fr.Err, ErrIssuerConflict) || fr.Err.Error() != r.Err.Error() {
		t.Fatalf("forwarded: %v, %v", fr.Err, err)
	}
	if got, _ := recorded(); got != iss {
		t.Fatalf("a refused issuer replaced the recorded one: %q", got)
	}
}

// KeysGeneration moves with every change of the keys or the tokens issuer,
// and with nothing else, so a cache derived from them can trust it.
func TestKeysGeneration(t *testing.T) {
	a := newApplier(t)
	gen := func() (g uint64) { a.s.View(func(r Reader) error { g = r.KeysGeneration(); return nil }); return g }
	steps := []struct {
		name    string
		apply   func() Result
		changes bool
	}{
		{"a user", func() Result {
			return a.apply(TypeUserCreate, t0, UserCreate{ID: "u1", Username: "alice", PasswordHash: "h"})
		}, false},
		{"a key", func() Result {
			return a.apply(TypeKeyPublish, t0, KeyPublish{Kid: testKid, Node: "node1", Alg: "ES256", JWK: testJWK(testKid, "ES256")})
		}, true},
		{"a refused key", func() Result {
			return a.apply(TypeKeyPublish, t0, KeyPublish{Kid: testKid, Node: "node2", Alg: "ES256", JWK: testJWK(testKid, "ES256")})
		}, false},
		{"the issuer", func() Result { return a.apply(TypeTokensIssuer, t0, TokensIssuer{Issuer: "https://a.example"}) }, true},
		{"a refused issuer", func() Result { return a.apply(TypeTokensIssuer, t0, TokensIssuer{Issuer: "https://b.example"}) }, false},
	}
	for _, s := range steps {
		before := gen()
		s.apply()
		if changed := gen() != before; changed != s.changes {
			t.Errorf("%s: generation changed %v, want %v", s.name, changed, s.changes)
		}
	}
	var buf bytes.Buffer
	snap, err := a.s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	snap.WriteTo(&buf)
	snap.Release()
	before := gen()
	if err := a.s.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if gen() == before {
		t.Error("a restore left the generation as it was")
	}
}
