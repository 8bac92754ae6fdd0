package fsm

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"
)

// applier feeds commands to a store one entry at a time with rising
// indexes, the way Raft does.
type applier struct {
	t     *testing.T
	s     *Store
	index uint64
}

func newApplier(t *testing.T) *applier {
	t.Helper()
	return &applier{t: t, s: openTestStore(t)}
}

func (a *applier) apply(typ Type, at time.Time, payload any) Result {
	a.t.Helper()
	a.index++
	return a.s.ApplyBatch([]Entry{{Index: a.index, Term: 1, Command: true, Data: mustEncode(a.t, typ, at, payload)}})[0]
}

func hashOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

const window = int64(15 * time.Minute)

func attempt(a *applier, at time.Time, name string) AttemptResult {
	a.t.Helper()
	r := a.apply(TypeLoginAttempt, at, LoginAttempt{Username: name, MaxAttempts: 5, Window: window})
	if r.Err != nil {
		a.t.Fatal(r.Err)
	}
	return r.Value.(AttemptResult)
}

func TestLockoutGrantsExactlyMaxAttemptsPerWindow(t *testing.T) {
	a := newApplier(t)
	granted := 0
	for i := 0; i < 20; i++ {
		if attempt(a, t0.Add(time.Duration(i)*time.Second), "mallory").Granted {
			granted++
		}
	}
	if granted != 5 {
		t.Fatalf("%d attempts granted, want 5", granted)
	}
	// Still locked just before the lock ends, with the right Retry-After.
	r := attempt(a, t0.Add(4*time.Second+time.Duration(window)-time.Second), "mallory")
	if r.Granted || !r.Locked || r.RetryAfter != time.Second {
		t.Fatalf("near the end of the lock: %+v", r)
	}
	// The 5th attempt (at t0+4s) locked the name for a whole window.
	if r := attempt(a, t0.Add(4*time.Second+time.Duration(window)), "mallory"); !r.Granted {
		t.Fatalf("after the lock: %+v", r)
	}
	// Other names are untouched.
	if r := attempt(a, t0, "alice"); !r.Granted {
		t.Fatal("another name was locked")
	}
}

func TestLockoutWindowResetsAndSuccessClears(t *testing.T) {
	a := newApplier(t)
	for i := 0; i < 4; i++ {
		attempt(a, t0, "bob")
	}
	// A new window starts after lockout_duration without a lock.
	if r := attempt(a, t0.Add(time.Duration(window)), "bob"); !r.Granted || r.Locked {
		t.Fatalf("new window: %+v", r)
	}
	for i := 0; i < 4; i++ {
		attempt(a, t0.Add(time.Duration(window)), "bob")
	}
	if r := attempt(a, t0.Add(time.Duration(window)), "bob"); r.Granted {
		t.Fatal("sixth attempt of the window granted")
	}
	if r := a.apply(TypeLockoutReset, t0, LockoutReset{Username: "bob", Actor: "admin"}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := attempt(a, t0.Add(time.Duration(window)), "bob"); !r.Granted {
		t.Fatal("unlock did not clear the lock")
	}
}

func createSession(a *applier, at time.Time, uid, sid, refresh string, max int, onLimit string) Result {
	a.t.Helper()
	return a.apply(TypeSessionCreate, at, SessionCreate{ID: sid, UserID: uid, RefreshHash: hashOf(refresh),
		Lifetime: int64(7 * 24 * time.Hour), IdleTimeout: int64(24 * time.Hour), MaxPerUser: max, OnLimit: onLimit,
		AMR: []string{"pwd"}, ResetLockout: "alice"})
}

func setupUser(t *testing.T) *applier {
	t.Helper()
	a := newApplier(t)
	if r := a.apply(TypeUserCreate, t0, UserCreate{ID: "u1", Username: "alice", PasswordHash: "h"}); r.Err != nil {
		t.Fatal(r.Err)
	}
	return a
}

func refresh(a *applier, at time.Time, old, new string) Result {
	a.t.Helper()
	return a.apply(TypeSessionRefresh, at, SessionRefresh{OldHash: hashOf(old), NewHash: hashOf(new)})
}

func TestRefreshRotationAndReuseDetection(t *testing.T) {
	a := setupUser(t)
	attempt(a, t0, "alice")
	if r := createSession(a, t0, "u1", "s1", "r1", 10, "evict_oldest"); r.Err != nil {
		t.Fatal(r.Err)
	}
	a.s.View(func(r Reader) error {
		if l, _ := r.Lockout("alice"); l.Attempts != 0 {
			t.Errorf("login did not reset the counter: %+v", l)
		}
		return nil
	})
	r := refresh(a, t0.Add(time.Hour), "r1", "r2")
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	rr := r.Value.(RefreshResult)
	if rr.Reused || rr.User.ID != "u1" || !rr.Session.LastSeenAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("rotation: %+v", rr)
	}
	// The new token works once more.
	if r := refresh(a, t0.Add(2*time.Hour), "r2", "r3"); r.Err != nil {
		t.Fatal(r.Err)
	}
	// r1 is dead: presenting it again revokes the whole session, so the
	// live r3 dies with it.
	r = refresh(a, t0.Add(3*time.Hour), "r1", "r4")
	if r.Err != nil || !r.Value.(RefreshResult).Reused {
		t.Fatalf("reuse: %+v", r)
	}
	if r := refresh(a, t0.Add(3*time.Hour), "r3", "r5"); !errors.Is(r.Err, ErrInvalidGrant) {
		t.Fatalf("live token after reuse: %v, want ErrInvalidGrant", r.Err)
	}
	a.s.View(func(r Reader) error {
		if _, err := r.Session("s1"); !errors.Is(err, ErrSessionNotFound) {
			t.Errorf("session survived reuse: %v", err)
		}
		return nil
	})
	if r := refresh(a, t0, "never-issued", "x"); !errors.Is(r.Err, ErrInvalidGrant) {
		t.Fatalf("unknown token: %v", r.Err)
	}
}

func TestSessionExpiry(t *testing.T) {
	a := setupUser(t)
	createSession(a, t0, "u1", "s1", "r1", 10, "evict_oldest")
	// Idle for 24 h: dead.
	if r := refresh(a, t0.Add(24*time.Hour), "r1", "r2"); !errors.Is(r.Err, ErrInvalidGrant) {
		t.Fatalf("idle session refreshed: %v", r.Err)
	}
	// Kept alive by refreshing, it still ends at its absolute lifetime.
	createSession(a, t0, "u1", "s2", "q0", 10, "evict_oldest")
	at := t0
	for i := 0; i < 6; i++ {
		at = at.Add(23 * time.Hour)
		if r := refresh(a, at, fmt.Sprintf("q%d", i), fmt.Sprintf("q%d", i+1)); r.Err != nil {
			t.Fatalf("refresh %d at %v: %v", i, at.Sub(t0), r.Err)
		}
	}
	at = t0.Add(7 * 24 * time.Hour)
	if r := refresh(a, at, "q6", "q7"); !errors.Is(r.Err, ErrInvalidGrant) {
		t.Fatalf("refresh past the absolute lifetime: %v", r.Err)
	}
}

func TestSessionLimit(t *testing.T) {
	for _, policy := range []string{"evict_oldest", "deny"} {
		t.Run(policy, func(t *testing.T) {
			a := setupUser(t)
			for i := 0; i < 3; i++ {
				if r := createSession(a, t0.Add(time.Duration(i)*time.Minute), "u1", fmt.Sprint("s", i), fmt.Sprint("r", i), 3, policy); r.Err != nil {
					t.Fatal(r.Err)
				}
			}
			r := createSession(a, t0.Add(time.Hour), "u1", "s3", "r3", 3, policy)
			var ids []string
			a.s.View(func(rd Reader) error {
				ss, _ := rd.UserSessions("u1")
				for _, s := range ss {
					ids = append(ids, s.ID)
				}
				return nil
			})
			switch policy {
			case "deny":
				if !errors.Is(r.Err, ErrSessionLimit) || fmt.Sprint(ids) != "[s0 s1 s2]" {
					t.Fatalf("deny: %v, sessions %v", r.Err, ids)
				}
			case "evict_oldest":
				if r.Err != nil || fmt.Sprint(ids) != "[s1 s2 s3]" {
					t.Fatalf("evict: %v, sessions %v", r.Err, ids)
				}
				if r := refresh(a, t0.Add(time.Hour), "r0", "x"); !errors.Is(r.Err, ErrInvalidGrant) {
					t.Fatal("evicted session's refresh token still works")
				}
			}
		})
	}
}

func TestPasswordChangeAndDisableEndSessions(t *testing.T) {
	a := setupUser(t)
	createSession(a, t0, "u1", "s1", "r1", 10, "evict_oldest")
	createSession(a, t0, "u1", "s2", "r2", 10, "evict_oldest")
	r := a.apply(TypeUserPassword, t0.Add(time.Minute), UserSetPassword{UserID: "u1", PasswordHash: "h2", SessionID: "s1", NewHash: hashOf("r1b")})
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := refresh(a, t0.Add(2*time.Minute), "r2", "x"); !errors.Is(r.Err, ErrInvalidGrant) {
		t.Fatal("other session survived the password change")
	}
	if r := refresh(a, t0.Add(2*time.Minute), "r1", "x"); r.Err != nil || !r.Value.(RefreshResult).Reused {
		t.Fatal("the current session's old refresh token was not retired")
	}
	// That reuse revoked s1 too; start again and disable.
	createSession(a, t0, "u1", "s3", "r3", 10, "evict_oldest")
	if r := a.apply(TypeUserSetDisabled, t0, UserSetDisabled{ID: "u1", Disabled: true}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := refresh(a, t0, "r3", "x"); !errors.Is(r.Err, ErrInvalidGrant) {
		t.Fatal("a disabled user's session refreshed")
	}
	if r := createSession(a, t0, "u1", "s4", "r4", 10, "evict_oldest"); !errors.Is(r.Err, ErrUserDisabled) {
		t.Fatalf("session for a disabled user: %v", r.Err)
	}
}

func TestSweep(t *testing.T) {
	a := setupUser(t)
	createSession(a, t0, "u1", "s1", "r1", 10, "evict_oldest")
	createSession(a, t0.Add(23*time.Hour), "u1", "s2", "r2", 10, "evict_oldest")
	attempt(a, t0, "ghost")
	r := a.apply(TypeSweep, t0.Add(25*time.Hour), Sweep{})
	if res := r.Value.(SweepResult); r.Err != nil || res.Sessions != 1 || res.Lockouts != 1 {
		t.Fatalf("sweep: %+v %v", r.Value, r.Err)
	}
	a.s.View(func(rd Reader) error {
		if _, err := rd.Session("s2"); err != nil {
			t.Error("live session swept")
		}
		if n := rd.tx.Bucket(bucketRefresh).Stats().KeyN; n != 1 {
			t.Errorf("%d refresh records after sweep, want 1", n)
		}
		return nil
	})
}
