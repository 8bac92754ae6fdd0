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

// login.attempt v4: an attempt refused for want of a solution counts
// against its address's detection record, so a client that never solves
// is blocked at the threshold, as one that guesses would be; v3 counted
// nothing.
func TestUnsolvedChallengesBlock(t *testing.T) {
	a := newApplier(t)
	d := DetectLimits{Window: int64(time.Minute), BlockAfterFailures: 4, BlockAfterUsernames: 100, BlockFor: int64(time.Hour)}
	v3 := func(ip string) LoginAttemptV3 {
		return LoginAttemptV3{LoginAttemptV2: LoginAttemptV2{Username: "alice", MaxAttempts: 10, Window: window, PendingTTL: ttl,
			MaxNamesPerAddress: 100, IP: ip}, ChallengeAfter: 1}
	}
	at := t0
	r := a.applyVersion(TypeLoginAttempt, 3, at, v3("192.0.2.1"))
	if r.Err != nil || !r.Value.(AttemptResult).Granted {
		t.Fatalf("first attempt: %+v", r)
	}
	if r := a.applyVersion(TypeLoginFailure, 2, at, LoginFailureV2{Username: "alice", Slot: r.Value.(AttemptResult).Slot,
		MaxAttempts: 10, Window: window, PendingTTL: ttl, MaxNamesPerAddress: 100, IP: "192.0.2.1"}); r.Err != nil {
		t.Fatal(r.Err)
	}
	// v3: any number of unsolved attempts, no block.
	for i := range 6 {
		r := a.applyVersion(TypeLoginAttempt, 3, at, v3("198.51.100.7"))
		if res := r.Value.(AttemptResult); r.Err != nil || !res.ChallengeRequired || res.Blocked {
			t.Fatalf("v3 unsolved attempt %d: %+v %v", i+1, res, r.Err)
		}
	}
	if bs := blocksOf(t, a); len(bs) != 0 {
		t.Fatalf("v3 blocked: %+v", bs)
	}
	// v4: the fourth unsolved attempt from an address blocks it (and
	// tells the nodes' block caches).
	gen := a.s.BlocksGeneration()
	for i := 1; i <= 4; i++ {
		at = at.Add(time.Second)
		r := a.applyVersion(TypeLoginAttempt, 4, at, LoginAttemptV4{LoginAttemptV3: v3("203.0.113.5"), Detect: d})
		res := r.Value.(AttemptResult)
		if r.Err != nil || !res.ChallengeRequired || res.Blocked != (i == 4) {
			t.Fatalf("v4 unsolved attempt %d: %+v %v", i, res, r.Err)
		}
	}
	bs := blocksOf(t, a)
	if len(bs) != 1 || bs[0].CIDR != "203.0.113.5/32" || !bs[0].Auto || !bs[0].Live(at.UnixNano()) {
		t.Fatalf("blocks after four unsolved attempts: %+v", bs)
	}
	if a.s.BlocksGeneration() == gen {
		t.Fatal("the block did not change the blocks' generation: the nodes' caches would not see it")
	}
	if n := len(auditOfType(t, a, "address.block")); n != 1 {
		t.Fatalf("%d address.block entries, want 1", n)
	}
	// A solved attempt is not counted; nor is one from an exempt client
	// (no limits).
	r = a.applyVersion(TypeLoginAttempt, 4, at, LoginAttemptV4{LoginAttemptV3: v3("192.0.2.50"), Detect: DetectLimits{}})
	if res := r.Value.(AttemptResult); r.Err != nil || !res.ChallengeRequired || res.Blocked {
		t.Fatalf("without limits: %+v %v", res, r.Err)
	}
	if r := a.applyVersion(TypeLoginAttempt, 4, at, LoginAttemptV4{LoginAttemptV3: v3("192.0.2.60"),
		Detect: DetectLimits{BlockAfterFailures: 1}}); r.Err == nil {
		t.Fatal("a v4 attempt with detection limits out of range was applied")
	}
}
