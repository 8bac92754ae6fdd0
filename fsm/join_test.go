package fsm

import (
	"errors"
	"testing"
	"time"
)

func joinToken(t *testing.T, s *Store, hash string) *JoinToken {
	t.Helper()
	return viewValue(t, s, func(r Reader) (*JoinToken, error) { return r.JoinToken(hash) })
}

func TestJoinTokenConsumeOnce(t *testing.T) {
	a := newApplier(t)
	h := hashOf("secret")
	if r := a.apply(TypeJoinToken, t0, JoinTokenCreate{Hash: h, ExpiresAt: t0.Add(time.Hour).UnixNano(), Issuer: "n1"}); r.Err != nil {
		t.Fatal(r.Err)
	}
	rec := joinToken(t, a.s, h)
	if rec.Issuer != "n1" || !rec.CreatedAt.Equal(t0) || !rec.ExpiresAt.Equal(t0.Add(time.Hour)) || !rec.UsedAt.IsZero() {
		t.Fatalf("stored %+v", rec)
	}
	// Unknown secret.
	if r := a.apply(TypeJoinConsume, t0, JoinConsume{Hash: hashOf("guess"), NodeID: "n2"}); !errors.Is(r.Err, ErrJoinTokenUnknown) {
		t.Fatalf("unknown token: %v", r.Err)
	}
	if r := a.apply(TypeJoinConsume, t0.Add(time.Minute), JoinConsume{Hash: h, NodeID: "n2"}); r.Err != nil {
		t.Fatal(r.Err)
	}
	rec = joinToken(t, a.s, h)
	if rec.NodeID != "n2" || !rec.UsedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("after consume %+v", rec)
	}
	// Used once only, and the record says by whom.
	r := a.apply(TypeJoinConsume, t0.Add(2*time.Minute), JoinConsume{Hash: h, NodeID: "n3"})
	if !errors.Is(r.Err, ErrJoinTokenUsed) || errors.Is(r.Err, ErrJoinTokenExpired) {
		t.Fatalf("second consume: %v", r.Err)
	}
	if rec.Usable(t0.Add(2*time.Minute)) == nil {
		t.Fatal("Usable says a used token is usable")
	}
	if rec := joinToken(t, a.s, h); rec.NodeID != "n2" {
		t.Fatalf("a refused consume changed the record: %+v", rec)
	}
}

func TestJoinTokenExpiresAtCommandTime(t *testing.T) {
	a := newApplier(t)
	h := hashOf("secret")
	exp := t0.Add(time.Hour)
	if r := a.apply(TypeJoinToken, t0, JoinTokenCreate{Hash: h, ExpiresAt: exp.UnixNano(), Issuer: "n1"}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := a.apply(TypeJoinConsume, exp, JoinConsume{Hash: h, NodeID: "n2"}); !errors.Is(r.Err, ErrJoinTokenExpired) {
		t.Fatalf("consume at expiry: %v", r.Err)
	}
	if rec := joinToken(t, a.s, h); !rec.UsedAt.IsZero() {
		t.Fatalf("an expired consume marked the token: %+v", rec)
	}
	if r := a.apply(TypeJoinConsume, exp.Add(-time.Nanosecond), JoinConsume{Hash: h, NodeID: "n2"}); r.Err != nil {
		t.Fatalf("consume just before expiry: %v", r.Err)
	}
}

func TestJoinTokenValidation(t *testing.T) {
	a := newApplier(t)
	h := hashOf("x")
	bad := map[string]JoinTokenCreate{
		"short hash":   {Hash: "abc", ExpiresAt: t0.Add(time.Hour).UnixNano(), Issuer: "n1"},
		"upper hash":   {Hash: "A" + h[1:], ExpiresAt: t0.Add(time.Hour).UnixNano(), Issuer: "n1"},
		"past expiry":  {Hash: h, ExpiresAt: t0.UnixNano(), Issuer: "n1"},
		"too long":     {Hash: h, ExpiresAt: t0.Add(MaxJoinTokenTTL + time.Second).UnixNano(), Issuer: "n1"},
		"no issuer":    {Hash: h, ExpiresAt: t0.Add(time.Hour).UnixNano()},
		"space issuer": {Hash: h, ExpiresAt: t0.Add(time.Hour).UnixNano(), Issuer: "n 1"},
	}
	for name, p := range bad {
		if r := a.apply(TypeJoinToken, t0, p); !errors.Is(r.Err, ErrInvalidCommand) {
			t.Errorf("%s: %v, want ErrInvalidCommand", name, r.Err)
		}
	}
	ok := JoinTokenCreate{Hash: h, ExpiresAt: t0.Add(time.Hour).UnixNano(), Issuer: "n1"}
	if r := a.apply(TypeJoinToken, t0, ok); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := a.apply(TypeJoinToken, t0, ok); !errors.Is(r.Err, ErrInvalidCommand) {
		t.Errorf("the same hash twice: %v", r.Err)
	}
	if r := a.apply(TypeJoinConsume, t0, JoinConsume{Hash: h, NodeID: ""}); !errors.Is(r.Err, ErrInvalidCommand) {
		t.Errorf("consume without node id: %v", r.Err)
	}
}

func TestJoinTokensPruned(t *testing.T) {
	a := newApplier(t)
	old, fresh := hashOf("old"), hashOf("fresh")
	if r := a.apply(TypeJoinToken, t0, JoinTokenCreate{Hash: old, ExpiresAt: t0.Add(time.Hour).UnixNano(), Issuer: "n1"}); r.Err != nil {
		t.Fatal(r.Err)
	}
	later := t0.Add(time.Hour + JoinTokenRetention + time.Second)
	if r := a.apply(TypeJoinToken, later, JoinTokenCreate{Hash: fresh, ExpiresAt: later.Add(time.Hour).UnixNano(), Issuer: "n1"}); r.Err != nil {
		t.Fatal(r.Err)
	}
	var seen []string
	if err := a.s.View(func(r Reader) error {
		return r.JoinTokens(func(j *JoinToken) bool { seen = append(seen, j.Hash); return true })
	}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen[0] != fresh {
		t.Fatalf("records after pruning: %v", seen)
	}
	if r := a.apply(TypeJoinConsume, later, JoinConsume{Hash: old, NodeID: "n2"}); !errors.Is(r.Err, ErrJoinTokenUnknown) {
		t.Fatalf("a pruned token: %v", r.Err)
	}
}

func TestJoinErrorsCrossTheWire(t *testing.T) {
	for _, sentinel := range []error{ErrJoinTokenUnknown, ErrJoinTokenUsed, ErrJoinTokenExpired} {
		b, err := EncodeResult(TypeJoinConsume, 1, Result{Err: errors.Join(sentinel)})
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeResult(TypeJoinConsume, 1, b)
		if err != nil || !errors.Is(got.Err, sentinel) {
			t.Errorf("%v came back as %v (%v)", sentinel, got.Err, err)
		}
	}
}
