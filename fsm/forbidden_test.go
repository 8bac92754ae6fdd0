package fsm

import (
	"errors"
	"testing"
	"time"
)

// The Max-th admin-route refusal within Window revokes the account's
// sessions and flags it; refusals further apart do not add up; the sweep
// drops a count whose window is over.
func TestForbiddenFlagsTheAccount(t *testing.T) {
	a := setupUser(t)
	if r := createSession(a, t0, "u1", "s1", "r1", 10, "evict_oldest"); r.Err != nil {
		t.Fatal(r.Err)
	}
	refuse := func(at time.Time) ForbiddenResult {
		t.Helper()
		r := a.apply(TypeForbidden, at, Forbidden{UserID: "u1", Max: 3, Window: int64(time.Minute), Route: "GET /v1/admin/users"})
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		return r.Value.(ForbiddenResult)
	}
	refuse(t0)
	refuse(t0.Add(10 * time.Second))
	if res := refuse(t0.Add(2 * time.Minute)); res.Flagged { // a new window
		t.Fatal("refusals two minutes apart flagged the account")
	}
	refuse(t0.Add(2*time.Minute + time.Second))
	res := refuse(t0.Add(2*time.Minute + 2*time.Second))
	if !res.Flagged || res.Revoked != 1 {
		t.Fatalf("the third refusal in a minute: %+v", res)
	}
	if u := userOf(t, a, "u1"); !u.Flagged {
		t.Fatal("the account is not flagged")
	}
	if _, err := viewSession(a, "s1"); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("a session outlived the flag: %v", err)
	}
	refuse(t0.Add(10 * time.Minute))
	a.applyVersion(TypeSweep, 2, t0.Add(20*time.Minute), SweepV2{Limit: 100})
	if viewValue(t, a.s, func(r Reader) (bool, error) { return r.tx.Bucket(bucketForbidden).Get([]byte("u1")) != nil, nil }) {
		t.Fatal("the sweep kept a count whose window is over")
	}
	if r := a.apply(TypeForbidden, t0, Forbidden{UserID: "nope", Max: 3, Window: int64(time.Minute)}); !errors.Is(r.Err, ErrUserNotFound) {
		t.Fatalf("an unknown user: %v", r.Err)
	}
}

// user.unflag clears the flag (level 5); an unknown user is refused.
func TestUnflag(t *testing.T) {
	a := setupUser(t)
	for i := range 3 {
		a.apply(TypeForbidden, t0.Add(time.Duration(i)*time.Second), Forbidden{UserID: "u1", Max: 3, Window: int64(time.Minute)})
	}
	if !userOf(t, a, "u1").Flagged {
		t.Fatal("not flagged")
	}
	r := a.apply(TypeUserUnflag, t0.Add(time.Minute), UserUnflag{ID: "u1"})
	if u, ok := r.Value.(*User); r.Err != nil || !ok || u.Flagged || userOf(t, a, "u1").Flagged {
		t.Fatalf("unflag: %+v %v; stored flagged %v", r.Value, r.Err, userOf(t, a, "u1").Flagged)
	}
	if r := a.apply(TypeUserUnflag, t0.Add(time.Minute), UserUnflag{ID: "nope"}); !errors.Is(r.Err, ErrUserNotFound) {
		t.Fatalf("an unknown user: %v", r.Err)
	}
}
