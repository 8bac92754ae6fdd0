package authcore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
)

// A device token from an earlier login lets its owner in while the name
// is locked by failures from elsewhere, on a budget of its own; spending
// that budget spends the token; another name's token does not help.
func TestDeviceTokenOwnBudget(t *testing.T) {
	s, _ := newAuthService(t, Config{MaxFailedAttempts: 3})
	home := WithRequestInfo(context.Background(), RequestInfo{IP: "192.0.2.10"})
	tok, err := s.LoginWith(home, LoginRequest{Username: "alice", Password: pw})
	if err != nil || tok.DeviceToken == "" {
		t.Fatalf("login: %v, device token %q", err, tok.DeviceToken)
	}
	if _, err := s.CreateUser(home, NewUser{Username: "bob", Password: pw}); err != nil {
		t.Fatal(err)
	}
	bobs, err := s.LoginWith(home, LoginRequest{Username: "bob", Password: pw})
	if err != nil {
		t.Fatal(err)
	}
	attacker := WithRequestInfo(context.Background(), RequestInfo{IP: "203.0.113.66"})
	for range 3 {
		s.LoginWith(attacker, LoginRequest{Username: "alice", Password: "guessing wrongly"})
	}
	var le *LockedError
	if _, err := s.LoginWith(home, LoginRequest{Username: "alice", Password: pw}); !errors.As(err, &le) {
		t.Fatalf("the owner without a device token: %v, want locked", err)
	}
	if _, err := s.LoginWith(home, LoginRequest{Username: "alice", Password: pw, DeviceToken: bobs.DeviceToken}); !errors.As(err, &le) {
		t.Fatalf("with another name's device token: %v, want locked", err)
	}
	if _, err := s.LoginWith(home, LoginRequest{Username: "alice", Password: pw, DeviceToken: tok.DeviceToken}); err != nil {
		t.Fatalf("the owner's device during the lock: %v", err)
	}
	// The device's own budget: three wrong passwords spend the token.
	for range 3 {
		if _, err := s.LoginWith(home, LoginRequest{Username: "alice", Password: "my own typo here", DeviceToken: tok.DeviceToken}); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("a typo from the device: %v", err)
		}
	}
	if _, err := s.LoginWith(home, LoginRequest{Username: "alice", Password: pw, DeviceToken: tok.DeviceToken}); !errors.As(err, &le) {
		t.Fatalf("a spent device token: %v, want locked", err)
	}
	if err := s.Unlock(home, "alice"); err != nil {
		t.Fatal(err)
	}
	// Spent for good: unlocking the name unlocks the name, not the token.
	if _, err := s.LoginWith(home, LoginRequest{Username: "alice", Password: pw}); err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	for range 3 {
		s.LoginWith(attacker, LoginRequest{Username: "alice", Password: "guessing wrongly"})
	}
	if _, err := s.LoginWith(home, LoginRequest{Username: "alice", Password: pw, DeviceToken: tok.DeviceToken}); !errors.As(err, &le) {
		t.Fatalf("the spent token in the next lock: %v, want locked", err)
	}
}

// A device token's failures count against the address and the detection
// rules like any other: a stolen token used from elsewhere gets its
// address blocked, not a budget the rules never see.
func TestDeviceFailuresCountTowardBlocks(t *testing.T) {
	s, _ := newAuthService(t, Config{MaxFailedAttempts: 3, Incident: IncidentConfig{BlockAfterFailures: 3, BlockAfterUsernames: -1,
		BlockFor: 10 * time.Minute}})
	tok, err := s.LoginWith(ctxFrom("192.0.2.10"), LoginRequest{Username: "alice", Password: pw})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 { // alice locked from one address (which is blocked too)
		s.LoginWith(ctxFrom("203.0.113.66"), LoginRequest{Username: "alice", Password: "guessing wrongly"})
	}
	thief := ctxFrom("198.51.100.20")
	for i := range 3 {
		if _, ok := blocked(s, "198.51.100.20"); ok {
			t.Fatalf("blocked after %d failures", i)
		}
		if _, err := s.LoginWith(thief, LoginRequest{Username: "alice", Password: "guessing wrongly", DeviceToken: tok.DeviceToken}); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("a wrong password with the device token: %v", err)
		}
	}
	if _, ok := blocked(s, "198.51.100.20"); !ok {
		t.Fatal("three failed logins through a device token did not block their address")
	}
}

// Unsolved challenges count toward blocks (login.attempt v4, level 5):
// a client that never solves is blocked like one that guesses.
func TestUnsolvedChallengesBlockAddress(t *testing.T) {
	s, _ := newAuthService(t, Config{ChallengeAfter: 1, MaxFailedAttempts: 10, Incident: IncidentConfig{BlockAfterFailures: 4,
		BlockAfterUsernames: -1, BlockFor: 10 * time.Minute}})
	st := s.store.(*localStore)
	s.LoginWith(ctxFrom("192.0.2.10"), LoginRequest{Username: "alice", Password: "a wrong password!"})
	var ce *ChallengeError
	for i := range 4 {
		if _, ok := blocked(s, "203.0.113.9"); ok {
			t.Fatalf("blocked after %d unsolved attempts", i)
		}
		if _, err := s.LoginWith(ctxFrom("203.0.113.9"), LoginRequest{Username: "alice", Password: pw}); !errors.As(err, &ce) {
			t.Fatalf("attempt %d without a solution: %v, want a challenge", i+1, err)
		}
	}
	if st.versions[fsm.TypeLoginAttempt] != 4 {
		t.Fatalf("login.attempt v%d at level %d", st.versions[fsm.TypeLoginAttempt], fsm.MaxLevel)
	}
	if _, ok := blocked(s, "203.0.113.9"); !ok {
		t.Fatal("four unsolved challenges did not block the address")
	}
}
