package fsm

import (
	"testing"
	"time"
)

// login.attempt v3: after ChallengeAfter failures of the name or from the
// address, an attempt needs a solved challenge, good once.
func TestChallengeGate(t *testing.T) {
	a := newApplier(t)
	v2 := func(name, ip string) LoginAttemptV2 {
		return LoginAttemptV2{Username: name, MaxAttempts: 10, Window: window, PendingTTL: ttl, MaxNamesPerAddress: 100, IP: ip}
	}
	try := func(at time.Time, name, ip, solution string) AttemptResult {
		t.Helper()
		r := a.applyVersion(TypeLoginAttempt, 3, at, LoginAttemptV3{LoginAttemptV2: v2(name, ip), ChallengeAfter: 3,
			Solution: solution, SolutionExpires: at.Add(time.Minute).UnixNano()})
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		return r.Value.(AttemptResult)
	}
	fail := func(at time.Time, name, ip string, slot int64) {
		t.Helper()
		p := v2(name, ip)
		if r := a.applyVersion(TypeLoginFailure, 2, at, LoginFailureV2{Username: name, Slot: slot, MaxAttempts: p.MaxAttempts,
			Window: p.Window, PendingTTL: p.PendingTTL, MaxNamesPerAddress: p.MaxNamesPerAddress, IP: ip}); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	at := t0
	// Three failures of alice, each from its own address, and three
	// names failed from one address.
	for i, ip := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"} {
		r := try(at, "alice", ip, "")
		if !r.Granted {
			t.Fatalf("attempt %d before the threshold: %+v", i+1, r)
		}
		fail(at, "alice", ip, r.Slot)
		name := []string{"x1", "x2", "x3"}[i]
		r = try(at, name, "203.0.113.5", "")
		if !r.Granted {
			t.Fatalf("%s before the threshold: %+v", name, r)
		}
		fail(at, name, "203.0.113.5", r.Slot)
		at = at.Add(time.Second)
	}
	if r := try(at, "alice", "198.51.100.9", ""); !r.ChallengeRequired || r.Suspicion != 3 || r.Granted {
		t.Fatalf("a fourth attempt at the name, from elsewhere, without a solution: %+v", r)
	}
	if r := try(at, "bob", "203.0.113.5", ""); !r.ChallengeRequired || r.Suspicion != 3 {
		t.Fatalf("another name from the address three names failed from: %+v", r)
	}
	if r := try(at, "bob", "192.0.2.1", ""); !r.Granted {
		t.Fatalf("another name from an address with one failure: %+v", r)
	}
	sol := hashOf("challenge 1")
	if r := try(at, "alice", "198.51.100.9", sol); !r.Granted {
		t.Fatalf("with a solution: %+v", r)
	}
	if r := try(at, "alice", "198.51.100.9", sol); !r.ChallengeRequired || !r.Replayed {
		t.Fatalf("the same solution again: %+v", r)
	}
	// Exempt (ChallengeAfter 0): no gate.
	r := a.applyVersion(TypeLoginAttempt, 3, at, LoginAttemptV3{LoginAttemptV2: v2("alice", "10.0.0.1")})
	if res := r.Value.(AttemptResult); r.Err != nil || !res.Granted {
		t.Fatalf("an exempt client: %+v %v", res, r.Err)
	}
	// The window over, no challenge.
	if r := try(at.Add(time.Duration(window)), "alice", "198.51.100.9", ""); !r.Granted {
		t.Fatalf("after the window: %+v", r)
	}
}
