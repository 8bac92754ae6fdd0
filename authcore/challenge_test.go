package authcore

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/bulwark-auth/bulwark/authcore/altcha"
)

// The proof-of-work gate: a challenge after ChallengeAfter failures,
// larger with each failure after; an expired solution gets a new
// challenge; an exempt client is never challenged.
func TestChallengeGrowsAndExpires(t *testing.T) {
	s, clk := newAuthService(t, Config{ChallengeAfter: 2, MaxFailedAttempts: 10})
	ctx := WithRequestInfo(context.Background(), RequestInfo{IP: "192.0.2.9"})
	var sizes []int64
	for i := range 5 {
		_, err := s.LoginWith(ctx, LoginRequest{Username: "alice", Password: "wrong password here"})
		var ce *ChallengeError
		switch {
		case i < 2 && !errors.Is(err, ErrInvalidCredentials):
			t.Fatalf("failure %d: %v", i+1, err)
		case i >= 2 && !errors.As(err, &ce):
			t.Fatalf("attempt %d: %v, want a challenge", i+1, err)
		case i >= 2:
			sol, serr := altcha.Solve(context.Background(), ce.Challenge)
			if serr != nil {
				t.Fatal(serr)
			}
			sizes = append(sizes, ce.Challenge.MaxNumber)
			if _, err := s.LoginWith(ctx, LoginRequest{Username: "alice", Password: "wrong password here", Altcha: sol}); !errors.Is(err, ErrInvalidCredentials) {
				t.Fatalf("with the solution: %v", err)
			}
		}
	}
	if len(sizes) != 3 || !(sizes[0] < sizes[1] && sizes[1] < sizes[2]) {
		t.Fatalf("challenge sizes %v, want growing", sizes)
	}
	_, err := s.LoginWith(ctx, LoginRequest{Username: "alice", Password: pw})
	var ce *ChallengeError
	if !errors.As(err, &ce) {
		t.Fatal(err)
	}
	sol, _ := altcha.Solve(context.Background(), ce.Challenge)
	clk.Advance(challengeTTL)
	if _, err := s.LoginWith(ctx, LoginRequest{Username: "alice", Password: pw, Altcha: sol}); !errors.As(err, &ce) {
		t.Fatalf("an expired solution: %v", err)
	}
	s.cfg.IncidentExempt = mustPrefixes("192.0.2.0/24")
	if _, err := s.LoginWith(ctx, LoginRequest{Username: "alice", Password: pw}); err != nil {
		t.Fatalf("an exempt client: %v", err)
	}
}

func mustPrefixes(cidrs ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, c := range cidrs {
		out = append(out, netip.MustParsePrefix(c))
	}
	return out
}
