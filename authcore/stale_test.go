package authcore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
)

// newHookedService is newAuthService (level fsm.MaxLevel, user alice)
// on a follower, whose store the test hooks.
func newHookedService(t *testing.T, cfg Config) (*Service, *localStore) {
	t.Helper()
	s, _ := newAuthService(t, cfg)
	st := s.store.(*localStore)
	st.follower = true
	return s, st
}

func lockoutOf(t *testing.T, s *Service, name string) fsm.Lockout {
	t.Helper()
	var l fsm.Lockout
	if err := s.store.View(func(r fsm.Reader) error {
		var err error
		l, err = r.Lockout(name)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return l
}

// A client that goes away once its attempt is granted (it closes its
// connection while the password is checked) still has the failure
// counted and audited: the request's cancellation does not reach the
// write that records it.
func TestFailureCountedWhenClientLeaves(t *testing.T) {
	s, hs := newHookedService(t, Config{})
	for _, name := range []string{"alice", "nobody"} {
		ctx, cancel := context.WithCancel(context.Background())
		hs.after = func(cmd fsm.Command) {
			if cmd.Type == fsm.TypeLoginAttempt {
				cancel() // the client leaves as its slot is granted
			}
		}
		if _, err := s.Login(ctx, name, "wrong password here"); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("%s: %v, want invalid credentials", name, err)
		}
		hs.after = nil
		if l := lockoutOf(t, s, name); l.Failures != 1 || len(l.Pending) != 0 {
			t.Fatalf("%s: after a wrong password whose client left: %+v, want 1 failure and no pending slot", name, l)
		}
	}
	// The failures are in the trail too.
	n := 0
	s.store.View(func(r fsm.Reader) error {
		return r.AuditAfter(0, 0, func(e *fsm.AuditEntry) bool {
			if e.Type == "login.failure" {
				n++
			}
			return true
		})
	})
	if n != 2 {
		t.Fatalf("%d login.failure audit entries, want 2", n)
	}
}

// A session is created only from the password that is still the user's: a
// login whose check passed before a password change committed, and whose
// session is proposed after it, gets no session.
func TestSessionFromReplacedPasswordRefused(t *testing.T) {
	s, hs := newHookedService(t, Config{})
	owner := login(t, s)
	p, err := s.Authenticate(context.Background(), owner.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	const next = "a brand new passphrase"
	changed := false
	hs.before = func(ctx context.Context, cmd fsm.Command) {
		if cmd.Type == fsm.TypeSessionCreate && !changed {
			changed = true
			// The owner's change commits between the attacker's check
			// and its session.
			hs.before = nil
			if _, err := s.ChangePassword(context.Background(), p, pw, next); err != nil {
				t.Errorf("change password: %v", err)
			}
		}
	}
	if tok, err := s.Login(context.Background(), "alice", pw); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("login with the replaced password: %+v, %v; want invalid credentials", tok, err)
	}
	if !changed {
		t.Fatal("the hook never ran")
	}
	// The new password works; the old one is refused as usual.
	if _, err := s.Login(context.Background(), "alice", next); err != nil {
		t.Fatalf("the new password: %v", err)
	}
	if _, err := s.Login(context.Background(), "alice", pw); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("the old password: %v", err)
	}
}

// Of two password changes that checked the same current password (sent
// twice from one session), the second to commit is refused: it was
// decided on a stale read.
func TestConcurrentPasswordChangeRefused(t *testing.T) {
	s, hs := newHookedService(t, Config{})
	p1, _ := s.Authenticate(context.Background(), login(t, s).AccessToken)
	p2 := p1
	fired := false
	hs.before = func(ctx context.Context, cmd fsm.Command) {
		if cmd.Type == fsm.TypeUserPassword && !fired {
			fired = true
			hs.before = nil
			if _, err := s.ChangePassword(context.Background(), p2, pw, "second new passphrase"); err != nil {
				t.Errorf("the other change: %v", err)
			}
		}
	}
	if _, err := s.ChangePassword(context.Background(), p1, pw, "first new passphrase"); err == nil {
		t.Fatal("a change decided on the replaced password was applied")
	}
	if _, err := s.Login(context.Background(), "alice", "second new passphrase"); err != nil {
		t.Fatalf("the committed change's password: %v", err)
	}
}

// After the hash cost changes, a name without a user is checked against a
// dummy of the stored hashes' cost, not the new one; a successful login
// moves its user's hash to the new cost through the log, keeping the
// password's generation.
func TestDummyCostFollowsStoredHashesAndLoginRehashes(t *testing.T) {
	s, _ := newAuthService(t, Config{})
	old := s.cfg.Hash
	s.takeCensus()
	if got := s.dummyParams("ghost"); got != old {
		t.Fatalf("dummy parameters %+v, want the stored hashes' %+v", got, old)
	}
	raised := HashParams{MemoryKiB: old.MemoryKiB * 2, Iterations: old.Iterations + 1, Parallelism: 1}
	s.cfg.Hash = raised
	s.takeCensus()
	for _, name := range []string{"ghost", "nobody", "mallory"} {
		if got := s.dummyParams(name); got != old {
			t.Fatalf("after a cost change, %s is checked under %+v, want the stored %+v", name, got, old)
		}
	}
	before := mustUser(t, s, "alice")
	login(t, s)
	after := mustUser(t, s, "alice")
	if h, err := parsePHC(after.PasswordHash); err != nil || h.params != raised {
		t.Fatalf("alice's hash after login: %q (%v), want the raised parameters", after.PasswordHash, err)
	}
	if after.PasswordGen != before.PasswordGen {
		t.Fatalf("a rehash moved the password generation %d → %d", before.PasswordGen, after.PasswordGen)
	}
	login(t, s) // the new hash verifies
	s.takeCensus()
	if got := s.dummyParams("ghost"); got != raised {
		t.Fatalf("once every hash is rehashed, dummy parameters %+v, want %+v", got, raised)
	}
}

// With stored hashes of two costs, names draw each cost in proportion, and
// a name always draws the same.
func TestDummyCostDrawsInProportion(t *testing.T) {
	s, _ := newAuthService(t, Config{})
	ctx := context.Background()
	a := s.cfg.Hash
	b := HashParams{MemoryKiB: a.MemoryKiB + 8, Iterations: a.Iterations, Parallelism: 1}
	for i := range 3 { // alice and these under a, three under b
		s.cfg.Hash = a
		if i < 2 {
			if _, err := s.CreateUser(ctx, NewUser{Username: "a" + string(rune('0'+i)), Password: pw}); err != nil {
				t.Fatal(err)
			}
		}
		s.cfg.Hash = b
		if _, err := s.CreateUser(ctx, NewUser{Username: "b" + string(rune('0'+i)), Password: pw}); err != nil {
			t.Fatal(err)
		}
	}
	s.takeCensus()
	counts := map[HashParams]int{}
	for i := range 2000 {
		name := "ghost" + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676))
		p := s.dummyParams(name)
		if p != s.dummyParams(name) {
			t.Fatalf("%s drew two costs", name)
		}
		counts[p]++
	}
	if len(counts) != 2 || counts[a] < 800 || counts[b] < 800 {
		t.Fatalf("2000 names drew %v, want about half each of %+v and %+v", counts, a, b)
	}
}

// A password check that never ran (every hash slot stayed busy) gives its
// attempt's slot back: it counts as no failure, and leaves nothing held.
func TestBusyCheckReleasesItsSlot(t *testing.T) {
	s, _ := newAuthService(t, Config{HashWait: 20 * time.Millisecond})
	for range cap(s.hashes) {
		s.hashes <- struct{}{} // every slot taken by a hash that never ends
	}
	for range 3 {
		if _, err := s.Login(context.Background(), "alice", "wrong password here"); !errors.Is(err, ErrBusy) {
			t.Fatalf("a login with every hash slot busy: %v, want ErrBusy", err)
		}
	}
	if l := lockoutOf(t, s, "alice"); l.Failures != 0 || len(l.Pending) != 0 {
		t.Fatalf("after three checks that never ran: %+v, want no failure and no slot held", l)
	}
}
