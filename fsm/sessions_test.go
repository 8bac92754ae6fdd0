package fsm

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"
)

// viewValue returns what get reads from s's state, failing t on an error.
func viewValue[T any](t testing.TB, s *Store, get func(Reader) (T, error)) T {
	t.Helper()
	var v T
	if err := s.View(func(r Reader) error {
		var err error
		v, err = get(r)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return v
}

// applier feeds commands to a store one entry at a time with rising
// indexes, the way Raft does.
type applier struct {
	t     testing.TB
	s     *Store
	index uint64
}

func newApplier(t *testing.T) *applier {
	t.Helper()
	return &applier{t: t, s: openTestStore(t)}
}

func (a *applier) apply(typ Type, at time.Time, payload any) Result {
	a.t.Helper()
	return a.applyVersion(typ, 1, at, payload)
}

func (a *applier) applyVersion(typ Type, v uint16, at time.Time, payload any) Result {
	a.t.Helper()
	return a.s.ApplyBatch([]Entry{a.entry(typ, v, at, payload)})[0]
}

// entry encodes a command as the next log entry, for applyVersion or for
// a batch of the caller's.
func (a *applier) entry(typ Type, v uint16, at time.Time, payload any) Entry {
	a.t.Helper()
	c, err := NewCommand(typ, v, at.UnixNano(), payload)
	if err != nil {
		a.t.Fatal(err)
	}
	b, err := c.Encode()
	if err != nil {
		a.t.Fatal(err)
	}
	a.index++
	return Entry{Index: a.index, Term: 1, Command: true, Data: b}
}

func hashOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

const (
	window = int64(15 * time.Minute)
	ttl    = int64(30 * time.Second)
)

func attempt(a *applier, at time.Time, name string) AttemptResult {
	a.t.Helper()
	r := a.apply(TypeLoginAttempt, at, LoginAttempt{Username: name, MaxAttempts: 5, Window: window, PendingTTL: ttl})
	if r.Err != nil {
		a.t.Fatal(r.Err)
	}
	return r.Value.(AttemptResult)
}

func fail(a *applier, at time.Time, name string, slot int64) FailureResult {
	a.t.Helper()
	r := a.apply(TypeLoginFailure, at, LoginFailure{Username: name, Slot: slot, MaxAttempts: 5, Window: window})
	if r.Err != nil {
		a.t.Fatal(r.Err)
	}
	return r.Value.(FailureResult)
}

func TestLockoutHoldsAtMostMaxChecks(t *testing.T) {
	a := newApplier(t)
	// Twenty racing attempts: five slots are granted, the rest wait for one.
	var slots []int64
	for i := 0; i < 20; i++ {
		r := attempt(a, t0.Add(time.Duration(i)*time.Millisecond), "mallory")
		if r.Granted {
			slots = append(slots, r.Slot)
		} else if r.Locked || r.RetryAfter <= 0 || r.RetryAfter > time.Duration(ttl) {
			t.Fatalf("attempt %d: %+v, want a short wait", i, r)
		}
	}
	if len(slots) != 5 {
		t.Fatalf("%d checks granted, want 5", len(slots))
	}
	// All five fail: the fifth locks the name for a window.
	for i, s := range slots {
		if r := fail(a, t0.Add(time.Second), "mallory", s); r.Locked != (i == 4) {
			t.Fatalf("failure %d: %+v", i+1, r)
		}
	}
	r := attempt(a, t0.Add(time.Second+time.Duration(window)-time.Second), "mallory")
	if r.Granted || !r.Locked || r.RetryAfter != time.Second {
		t.Fatalf("near the end of the lock: %+v", r)
	}
	if r := attempt(a, t0.Add(time.Second+time.Duration(window)), "mallory"); !r.Granted {
		t.Fatalf("after the lock: %+v", r)
	}
	if r := attempt(a, t0, "alice"); !r.Granted {
		t.Fatal("another name was affected")
	}
}

func TestLockoutPendingExpiresAndWindowResets(t *testing.T) {
	a := newApplier(t)
	for i := 0; i < 5; i++ {
		attempt(a, t0, "bob") // five checks whose node died: never resolved
	}
	if r := attempt(a, t0.Add(time.Duration(ttl)-time.Millisecond), "bob"); r.Granted {
		t.Fatal("granted a sixth check while five are pending")
	}
	if r := attempt(a, t0.Add(time.Duration(ttl)), "bob"); !r.Granted {
		t.Fatal("expired pending checks still hold their slots")
	}
	// Four failures, then a new window: the count starts again.
	b := newApplier(t)
	for i := 0; i < 4; i++ {
		fail(b, t0, "carol", attempt(b, t0, "carol").Slot)
	}
	later := t0.Add(time.Duration(window))
	for i := 0; i < 4; i++ {
		if r := fail(b, later, "carol", attempt(b, later, "carol").Slot); r.Locked {
			t.Fatalf("locked after %d failures of a new window", i+1)
		}
	}
	if r := fail(b, later, "carol", attempt(b, later, "carol").Slot); !r.Locked {
		t.Fatal("fifth failure of the window did not lock")
	}
	if r := b.apply(TypeLockoutReset, later, LockoutReset{Username: "carol", Actor: "admin"}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := attempt(b, later, "carol"); !r.Granted {
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

// refreshVersion is the session.refresh version refresh proposes: v2,
// what authcore proposes, unless a test runs v1 (logs written before it).
var refreshVersion uint16 = 2

func refresh(a *applier, at time.Time, old, new string) Result {
	a.t.Helper()
	return a.applyVersion(TypeSessionRefresh, refreshVersion, at, SessionRefresh{OldHash: hashOf(old), NewHash: hashOf(new)})
}

// Rotation and reuse detection hold the same under session.refresh v1
// (the exchanged token's record is marked used) and v2 (it is dead because
// its session moved on), and across a log that holds both.
func TestRefreshRotationAndReuseDetection(t *testing.T) {
	defer func(v uint16) { refreshVersion = v }(refreshVersion)
	for _, v := range []uint16{1, 2} {
		refreshVersion = v
		t.Run(fmt.Sprintf("v%d", v), testRefreshRotationAndReuseDetection)
	}
	// Mixed: rotated by v1, the dead token presented under v2, and the
	// other way round.
	for _, order := range [][2]uint16{{1, 2}, {2, 1}} {
		a := setupUser(t)
		attempt(a, t0, "alice")
		if r := createSession(a, t0, "u1", "s1", "r1", 10, "evict_oldest"); r.Err != nil {
			t.Fatal(r.Err)
		}
		refreshVersion = order[0]
		if r := refresh(a, t0.Add(time.Hour), "r1", "r2"); r.Err != nil {
			t.Fatal(r.Err)
		}
		refreshVersion = order[1]
		if r := refresh(a, t0.Add(2*time.Hour), "r1", "r3"); r.Err != nil || !r.Value.(RefreshResult).Reused {
			t.Fatalf("reuse across versions %v: %+v", order, r)
		}
	}
}

func testRefreshRotationAndReuseDetection(t *testing.T) {
	a := setupUser(t)
	attempt(a, t0, "alice")
	if r := createSession(a, t0, "u1", "s1", "r1", 10, "evict_oldest"); r.Err != nil {
		t.Fatal(r.Err)
	}
	a.s.View(func(r Reader) error {
		if l, _ := r.Lockout("alice"); len(l.Pending) != 0 || l.Failures != 0 {
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
