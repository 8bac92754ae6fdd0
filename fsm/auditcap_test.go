package fsm

import (
	"fmt"
	"strconv"
	"testing"
	"time"
)

// failV4 reports a failed check of name from ip at at, with an unknown
// name's cap (zero: none). The lockout's per-address cap is off, so every
// name may fail.
func failV4(a *applier, at time.Time, name, ip string, c AuditCap) FailureResult {
	a.t.Helper()
	r := a.applyVersion(TypeLoginAttempt, 2, at, LoginAttemptV2{Username: name, MaxAttempts: 2, Window: window, PendingTTL: ttl, IP: ip})
	if r.Err != nil || !r.Value.(AttemptResult).Granted {
		a.t.Fatalf("attempt: %+v", r)
	}
	slot := r.Value.(AttemptResult).Slot
	p := LoginFailureV4{LoginFailureV3: LoginFailureV3{LoginFailureV2: LoginFailureV2{Username: name, Slot: slot, MaxAttempts: 2,
		Window: window, PendingTTL: ttl, IP: ip}},
		Event: AuditAppend{Type: "login.failure", Severity: AuditWarning, IP: ip,
			Details: map[string]string{"username": name, "reason": "unknown_user"}},
		Cap: c}
	r = a.applyVersion(TypeLoginFailure, 4, at, p)
	if r.Err != nil {
		a.t.Fatal(r.Err)
	}
	return r.Value.(FailureResult)
}

// auditTally counts the trail's entries by type and the failures its
// summaries count.
func auditTally(t testing.TB, s *Store) (byType map[string]int, summed int) {
	byType = map[string]int{}
	for _, e := range allAudit(t, s) {
		byType[e.Type]++
		if e.Type == AuditSummaryType {
			n, _ := strconv.Atoi(e.Details["failures"])
			m, _ := strconv.Atoi(e.Details["lockouts"])
			summed += n + m
		}
	}
	return byType, summed
}

// TestLoginFailureCap: per address and window, the first Entries
// unknown-name failures and lockouts get their entries, the rest are
// counted into one summary written when the window closes (by the next
// failure, or by the sweep), and the counts add up exactly.
func TestLoginFailureCap(t *testing.T) {
	a := &applier{t: t, s: openTestStore(t)}
	a.apply(TypeClusterLevel, t0, ClusterLevel{Level: 5})
	c := AuditCap{Entries: 3, Window: int64(10 * time.Minute)}
	at := t0
	// Window 1: 10 failures, each name twice (the second locks it): 10
	// failures and 5 lockouts; 3 entries, 12 counted.
	for i := range 10 {
		failV4(a, at, fmt.Sprintf("ghost%d", i/2), "192.0.2.7", c)
		at = at.Add(time.Second)
	}
	// Another address has a window of its own.
	failV4(a, at, "other", "198.51.100.1", c)
	by, summed := auditTally(t, a.s)
	if by["login.failure"]+by["lockout"] != 4 || by[AuditSummaryType] != 0 {
		t.Fatalf("window 1: %v", by)
	}
	// Window 2 opens with a failure after the first's end: its summary
	// first.
	at = t0.Add(10 * time.Minute)
	failV4(a, at, "late", "192.0.2.7", c)
	by, summed = auditTally(t, a.s)
	if by[AuditSummaryType] != 1 || summed != 12 || by["login.failure"]+by["lockout"] != 5 {
		t.Fatalf("after window 1: %v, %d summed", by, summed)
	}
	// Window 2 goes over its cap; the sweep closes it at its end.
	for i := range 5 {
		failV4(a, at.Add(time.Duration(i)*time.Second), fmt.Sprintf("late%d", i), "192.0.2.7", c)
	}
	r := a.applyVersion(TypeSweep, 2, at.Add(10*time.Minute), SweepV2{Limit: 100})
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	by, summed = auditTally(t, a.s)
	if by[AuditSummaryType] != 2 || summed != 12+3 || by["login.failure"]+by["lockout"] != 7 {
		t.Fatalf("after window 2: %v, %d summed", by, summed)
	}
	var left int
	a.s.View(func(r Reader) error { left = r.tx.Bucket(bucketAuditCaps).Stats().KeyN; return nil })
	if left != 0 { // both addresses' windows are over and swept
		t.Fatalf("%d cap records left after the sweep", left)
	}
	if n, err := verifyStored(t, a.s); err != nil || n != uint64(len(allAudit(t, a.s))) {
		t.Fatalf("trail: %d, %v", n, err)
	}

	// No cap (a known name's failure): every entry, as v3.
	before := len(allAudit(t, a.s))
	for i := range 4 {
		failV4(a, at.Add(time.Hour+time.Duration(i)*time.Second), fmt.Sprintf("known%d", i/2), "192.0.2.7", AuditCap{})
	}
	if got := len(allAudit(t, a.s)) - before; got != 4+2 { // 4 failures, 2 lockouts
		t.Fatalf("uncapped: %d entries, want 6", got)
	}
}
