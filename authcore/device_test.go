package authcore

import (
	"context"
	"errors"
	"testing"
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
