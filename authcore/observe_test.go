package authcore

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
)

// events records what a service reports to its security observer.
type events struct {
	mu  sync.Mutex
	got []SecurityEvent
}

func (e *events) observe(ev SecurityEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, ev)
}

// take returns the types reported since the last take, with the reason
// of each login.failure appended ("login.failure/wrong_password").
func (e *events) take() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, ev := range e.got {
		if r := ev.Details["reason"]; ev.Type == "login.failure" {
			out = append(out, ev.Type+"/"+r)
		} else {
			out = append(out, ev.Type)
		}
	}
	e.got = nil
	return out
}

// TestSecurityEvents: each security event is reported once, after it is
// committed; a refusal of a locked name is reported though not audited;
// an entry that does not commit is not reported.
func TestSecurityEvents(t *testing.T) {
	s, _ := newAuthService(t, Config{MaxFailedAttempts: 3})
	ev := &events{}
	s.observe = ev.observe
	ctx := context.Background()

	t1 := login(t, s)
	if got := ev.take(); !slices.Equal(got, []string{"login.success"}) {
		t.Fatalf("a login reported %v", got)
	}
	for range 3 {
		if _, err := s.Login(ctx, "alice", "wrong password!"); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatal(err)
		}
	}
	if _, err := s.Login(ctx, "alice", "wrong password!"); !errors.Is(err, ErrTooManyAttempts) {
		t.Fatalf("fourth wrong password: %v", err)
	}
	if _, err := s.Login(ctx, "nobody", "wrong password!"); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatal(err)
	}
	want := []string{"login.failure/wrong_password", "login.failure/wrong_password", "lockout",
		"login.failure/wrong_password", EventLoginLocked, "login.failure/unknown_user"}
	if got := ev.take(); !slices.Equal(got, want) {
		t.Fatalf("three wrong passwords, a locked attempt, an unknown name reported\n%v\nwant\n%v", got, want)
	}

	// A refresh token used twice: the reuse.
	t2, err := s.Refresh(ctx, t1.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Refresh(ctx, t1.RefreshToken); !errors.Is(err, ErrInvalidGrant) {
		t.Fatal(err)
	}
	_ = t2
	if got := ev.take(); !slices.Equal(got, []string{"refresh.reuse"}) {
		t.Fatalf("a refresh and a reuse reported %v", got)
	}

	// An entry the state machine refuses is not reported.
	s.audit(ctx, fsm.AuditAppend{Type: "Not A Type", Severity: fsm.AuditWarning})
	if got := ev.take(); len(got) != 0 {
		t.Fatalf("a refused entry reported %v", got)
	}
}

// TestMetricsReads: the figures the metrics read from the state.
func TestMetricsReads(t *testing.T) {
	s, clk := newAuthService(t, Config{})
	if n, err := s.SessionCount(); n != 0 || err != nil {
		t.Fatalf("no login yet: %d sessions, %v", n, err)
	}
	login(t, s)
	tok := login(t, s)
	if n, err := s.SessionCount(); n != 2 || err != nil {
		t.Fatalf("two logins: %d sessions, %v", n, err)
	}
	p, err := s.Authenticate(context.Background(), tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Logout(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if n, err := s.SessionCount(); n != 1 || err != nil {
		t.Fatalf("after a logout: %d sessions, %v", n, err)
	}
	if n, err := s.BlockedAddresses(); n != 0 || err != nil {
		t.Fatalf("blocked addresses: %d, %v", n, err)
	}
	age, err := s.SigningKeyAge()
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(90 * time.Minute)
	if later, err := s.SigningKeyAge(); err != nil || later-age != 90*time.Minute {
		t.Fatalf("key age %v, then %v 90 minutes later (%v)", age, later, err)
	}
}

// TestSigningKeyAgeUnpublished: a key not in the replicated state has
// no age to report.
func TestSigningKeyAgeUnpublished(t *testing.T) {
	s, _ := newTestService(t, WithSigner(testSigner(t, AlgES256)))
	if _, err := s.SigningKeyAge(); err == nil {
		t.Fatal("an unpublished key has an age")
	}
}
