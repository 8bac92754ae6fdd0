package authcore

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/waitfor"
)

// viewSwitch is a Store whose reads can be pointed at another state: a
// test shows the verifier a trail rewritten under it.
type viewSwitch struct {
	*localStore
	view atomic.Pointer[localStore]
}

func (v *viewSwitch) View(fn func(fsm.Reader) error) error { return v.view.Load().View(fn) }

func appendEntries(t *testing.T, st *localStore, first, n int, subject string) {
	t.Helper()
	for i := range n {
		cmd, err := fsm.NewCommand(fsm.TypeAuditAppend, 1, int64(first+i), fsm.AuditAppend{
			Type: "unlock", Severity: fsm.AuditInfo, Subject: fmt.Sprintf("%s%d", subject, first+i)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.apply(cmd); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAuditVerifier: the background check follows a growing trail, in
// rounds of bounded size, and stops at a break, which it reports.
func TestAuditVerifier(t *testing.T) {
	ctx := context.Background()
	real := newLocalStore(t)
	vs := &viewSwitch{localStore: real}
	vs.view.Store(real)
	s, err := New(vs, Config{Hash: testHash, Policy: PasswordPolicy{MinLength: 12, MaxLength: 128}}, WithClock(newClock()))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CheckAuditChain(ctx); err != nil || s.AuditVerification() != (AuditVerification{}) {
		t.Fatalf("empty trail: %+v, %v", s.AuditVerification(), err)
	}
	appendEntries(t, real, 1, 2*auditVerifyPage+5, "u")
	if err := s.CheckAuditChain(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := s.AuditVerification(), (AuditVerification{Verified: 2*auditVerifyPage + 5, Last: 2*auditVerifyPage + 5}); got != want {
		t.Fatalf("after a round: %+v, want %+v", got, want)
	}
	appendEntries(t, real, 2*auditVerifyPage+6, 3, "u")
	if err := s.CheckAuditChain(ctx); err != nil || s.AuditVerification().Verified != 2*auditVerifyPage+8 {
		t.Fatalf("three more: %+v, %v", s.AuditVerification(), err)
	}

	// The trail rewritten from seq 1 (a state.db swapped for a forged
	// one), longer than what was checked: the entry after the last one
	// checked no longer chains to it.
	forged := newLocalStore(t)
	appendEntries(t, forged, 1, 2*auditVerifyPage+20, "forged")
	vs.view.Store(forged)
	err = s.CheckAuditChain(ctx)
	var ce *fsm.AuditChainError
	if !errors.As(err, &ce) || ce.Seq != 2*auditVerifyPage+9 {
		t.Fatalf("forged trail: %v", err)
	}
	want := AuditVerification{Verified: 2*auditVerifyPage + 8, Last: 2*auditVerifyPage + 20, BrokenAt: 2*auditVerifyPage + 9}
	if got := s.AuditVerification(); got != want {
		t.Fatalf("after the break: %+v, want %+v", got, want)
	}
	// It stays broken, and still follows the newest seq.
	appendEntries(t, forged, 2*auditVerifyPage+21, 1, "forged")
	if err := s.CheckAuditChain(ctx); err != nil {
		t.Fatal(err)
	}
	want.Last++
	if got := s.AuditVerification(); got != want {
		t.Fatalf("a round after the break: %+v, want %+v", got, want)
	}
}

// TestAuditVerifierRuns: RunAuditVerifier checks at once, then every
// interval by the service's clock.
func TestAuditVerifierRuns(t *testing.T) {
	st := newLocalStore(t)
	clk := newClock()
	s, err := New(st, Config{Hash: testHash, Policy: PasswordPolicy{MinLength: 12, MaxLength: 128}}, WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	appendEntries(t, st, 1, 3, "u")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.RunAuditVerifier(ctx, 10*time.Second); close(done) }()
	defer func() { cancel(); <-done }()
	waitVerified := func(seq uint64) {
		t.Helper()
		waitfor.True(t, fmt.Sprintf("the chain verified through %d", seq), 5*time.Second, time.Millisecond,
			func() bool { return s.AuditVerification().Verified == seq })
	}
	waitVerified(3)
	appendEntries(t, st, 4, 2, "u")
	// The ticker is armed once the first check is done.
	waitfor.True(t, "the verifier waiting on the clock", 5*time.Second, time.Millisecond, func() bool { return clk.Waiting() > 0 })
	clk.Advance(10 * time.Second)
	waitVerified(5)
}

// TestAuditVerifierFreesAfterLongWalk: a round that ends a long walk (the
// first pass after a start) gives the heap back once; short walks after
// it do not, however many entries they add up to.
func TestAuditVerifierFreesAfterLongWalk(t *testing.T) {
	ctx := context.Background()
	st := newLocalStore(t)
	s, err := New(st, Config{Hash: testHash, Policy: PasswordPolicy{MinLength: 12, MaxLength: 128}}, WithClock(newClock()))
	if err != nil {
		t.Fatal(err)
	}
	freed := 0
	oldAfter, oldFree := auditFreeAfter, freeMemory
	auditFreeAfter, freeMemory = 2*auditVerifyPage, func() { freed++ }
	t.Cleanup(func() { auditFreeAfter, freeMemory = oldAfter, oldFree })

	appendEntries(t, st, 1, 2*auditVerifyPage+5, "u")
	if err := s.CheckAuditChain(ctx); err != nil || freed != 1 {
		t.Fatalf("after the long first pass: freed %d times, %v; want once", freed, err)
	}
	// Short walks, caught up after each, never add up to a long one.
	next := 2*auditVerifyPage + 6
	for range 3 * auditVerifyPage / 100 {
		appendEntries(t, st, next, 100, "u")
		next += 100
		if err := s.CheckAuditChain(ctx); err != nil || freed != 1 {
			t.Fatalf("at seq %d, after short walks: freed %d times, %v; want still once", next-1, freed, err)
		}
	}
}
