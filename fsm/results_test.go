package fsm

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"
)

// TestResultsCrossTheWire: every result a handler returns decodes, on
// another node, into the same Go value, and domain errors keep matching
// their sentinels.
func TestResultsCrossTheWire(t *testing.T) {
	at := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	cases := []struct {
		typ Type
		r   Result
	}{
		{TypeUserCreate, Result{Value: &User{ID: "u1", Username: "alice", Roles: []string{"admin"}, CreatedAt: at, UpdatedAt: at}}},
		{TypeLoginAttempt, Result{Value: AttemptResult{Granted: true, Slot: 42}}},
		{TypeLoginAttempt, Result{Value: AttemptResult{Locked: true, RetryAfter: time.Minute}}},
		{TypeLoginFailure, Result{Value: FailureResult{Locked: true}}},
		{TypeSessionCreate, Result{Value: &Session{ID: "s1", UserID: "u1", CreatedAt: at, LastSeenAt: at, AuthTime: at, ExpiresAt: at, AMR: []string{"pwd"}}}},
		{TypeSessionRefresh, Result{Value: RefreshResult{Session: &Session{ID: "s1", CreatedAt: at}, User: &User{ID: "u1", CreatedAt: at}}}},
		{TypeSessionRefresh, Result{Value: RefreshResult{Session: &Session{ID: "s1"}, Reused: true}}},
		{TypeUserRevoke, Result{Value: 3}},
		{TypeSweep, Result{Value: SweepResult{Sessions: 2, Lockouts: 1}}},
		{TypeUserDelete, Result{}},
		{TypeAuditAppend, Result{Value: &AuditEntry{Seq: 7, Time: at, Type: "x", Hash: "h"}}},
		{TypeKeyPublish, Result{Value: &PublicKey{Kid: "k", JWK: json.RawMessage(`{"kty":"EC"}`), PublishedAt: at}}},
	}
	for _, c := range cases {
		b, err := EncodeResult(c.typ, c.r)
		if err != nil {
			t.Fatalf("%s: %v", c.typ, err)
		}
		got, err := DecodeResult(c.typ, b)
		if err != nil {
			t.Fatalf("%s: %v", c.typ, err)
		}
		if !reflect.DeepEqual(got.Value, c.r.Value) {
			t.Errorf("%s: %#v came back as %#v", c.typ, c.r.Value, got.Value)
		}
	}
	for _, sentinel := range resultErrors {
		b, err := EncodeResult(TypeSessionCreate, Result{Err: errors.Join(sentinel)})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := DecodeResult(TypeSessionCreate, b)
		if !errors.Is(got.Err, sentinel) || got.Err.Error() != sentinel.Error() {
			t.Errorf("%v came back as %v", sentinel, got.Err)
		}
	}
}
