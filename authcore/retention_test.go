package authcore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
)

// auditSize is the trail's entry count and the bytes of their JSON (as
// stored), with the failures its login.failure entries and its summaries
// count.
func auditSize(t *testing.T, s *Service) (entries, bytes, logged, summed int) {
	t.Helper()
	if err := s.store.View(func(r fsm.Reader) error {
		return r.AuditAfter(0, 0, func(e *fsm.AuditEntry) bool {
			entries++
			b, _ := json.Marshal(e)
			bytes += len(b)
			if e.Type == "login.failure" {
				logged++
			}
			if e.Type == fsm.AuditSummaryType {
				n, _ := strconv.Atoi(e.Details["failures"])
				m, _ := strconv.Atoi(e.Details["lockouts"])
				summed += n + m
			}
			return true
		})
	}); err != nil {
		t.Fatal(err)
	}
	return entries, bytes, logged, summed
}

// TestUnknownNameFailuresBounded: an hour of failed logins for made-up
// names from one address, one every 10 s by a fake clock (360, under the
// lockout's 100 names per address per 15 minutes, so every one is a
// failure), grows the audit trail by a bounded amount: with the cap of 10
// entries per address per 15-minute window, at most 4 windows × (10
// entries + 1 summary) = 44 entries and 44 KiB (an entry here is about
// 450 bytes; 1 KiB each leaves room). Without the cap it is one entry per
// failure: 360 entries, about 160 KB. The metrics still count all 360,
// and the trail's entries plus its summaries' counts add up to them.
// Detection is off: see below.
func TestUnknownNameFailuresBounded(t *testing.T) {
	const (
		step      = 10 * time.Second
		failures  = int(time.Hour / step)
		capped    = 10
		window    = 15 * time.Minute
		maxWin    = int(time.Hour / window)
		maxEntry  = 1024
		maxGrowth = maxWin * (capped + 1)
	)
	var mu sync.Mutex
	observed := 0
	// Detection off (as for a site that turned it off, or an exempt
	// address): its blocks would otherwise stop the address at the API,
	// and each adds an entry of its own, which is not capped.
	cfg := Config{Retention: RetentionConfig{UnknownNameEntries: capped, UnknownNameWindow: window},
		Incident: IncidentConfig{BlockAfterFailures: -1, BlockAfterUsernames: -1}}
	s, clk := newAuthServiceAt(t, cfg, fsm.MaxLevel)
	s.observe = func(e SecurityEvent) {
		if e.Type == "login.failure" && e.Details["reason"] == "unknown_user" {
			mu.Lock()
			observed++
			mu.Unlock()
		}
	}
	ctx := WithRequestInfo(context.Background(), RequestInfo{IP: "203.0.113.9",
		UserAgent: "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"})
	startEntries, startBytes, _, _ := auditSize(t, s)
	for i := range failures {
		if _, err := s.Login(ctx, fmt.Sprintf("ghost-%04d", i), "not the password at all"); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("login %d: %v, want ErrInvalidCredentials", i, err)
		}
		clk.Advance(step)
		if i%6 == 5 { // the sweep, every minute as RunSweeper does
			if _, err := s.Sweep(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	clk.Advance(window) // the last window is over, and swept
	if _, err := s.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	entries, bytes, logged, summed := auditSize(t, s)
	grew, grewBytes := entries-startEntries, bytes-startBytes
	t.Logf("%d failures in an hour from one address: the trail grew by %d entries, %d bytes", failures, grew, grewBytes)
	if grew > maxGrowth || grewBytes > maxGrowth*maxEntry {
		t.Errorf("the trail grew by %d entries, %d bytes; the bound is %d entries, %d bytes", grew, grewBytes, maxGrowth, maxGrowth*maxEntry)
	}
	if mu.Lock(); observed != failures {
		t.Errorf("the metrics counted %d failures, want %d", observed, failures)
	}
	mu.Unlock()
	if logged+summed != failures {
		t.Errorf("%d entries and %d counted in summaries, want %d failures in all", logged, summed, failures)
	}
	if n, err := s.VerifyAudit(context.Background()); err != nil || n != uint64(entries) {
		t.Fatalf("VerifyAudit: %d, %v", n, err)
	}
}

// newRetentionService is newCheckpointService with [retention]'s audit
// retention, leading or not.
func newRetentionService(t *testing.T, level int, keep time.Duration, leads bool) (*Service, *localStore) {
	t.Helper()
	st := newLocalStore(t)
	raise, _ := fsm.NewCommand(fsm.TypeClusterLevel, 1, 1, fsm.ClusterLevel{Level: level})
	if _, err := st.Apply(context.Background(), raise); err != nil {
		t.Fatal(err)
	}
	s, err := New(st, Config{Hash: testHash, Policy: PasswordPolicy{MinLength: 12, MaxLength: 128},
		Issuer: "https://bulwark.test:8443", NodeID: "n1", Retention: RetentionConfig{Audit: keep}},
		WithClock(newClock()), WithKeyVault(newMemVault()), WithLeader(func() bool { return leads }))
	if err != nil {
		t.Fatal(err)
	}
	return s, st
}

// TestPruneAudit: the leader prunes entries older than retention.audit up
// to the newest checkpoint that old, and every verifier of the daemon
// (VerifyAudit, the background check behind the metrics, fresh or
// already under way) starts from that checkpoint afterwards.
func TestPruneAudit(t *testing.T) {
	ctx := context.Background()
	const keep = 48 * time.Hour
	s, _ := newRetentionService(t, fsm.MaxLevel, keep, true)
	clk := s.clock.(interface{ Advance(time.Duration) })
	appendEvents(t, s, 20)
	old, err := s.CheckpointAudit(ctx)
	if err != nil || old == nil {
		t.Fatalf("checkpoint: %+v, %v", old, err)
	}
	clk.Advance(24 * time.Hour)
	appendEvents(t, s, 20)
	if _, err := s.CheckpointAudit(ctx); err != nil {
		t.Fatal(err)
	}
	appendEvents(t, s, 3)
	if err := s.CheckAuditChain(ctx); err != nil { // under way before the prune
		t.Fatal(err)
	}
	// Not yet old enough: nothing.
	if n, err := s.PruneAudit(ctx); n != 0 || err != nil {
		t.Fatalf("prune before the retention is over: %d, %v", n, err)
	}
	clk.Advance(30 * time.Hour) // the first checkpoint is 54 h old, the second 30 h
	n, err := s.PruneAudit(ctx)
	if err != nil || n != int(old.Seq) {
		t.Fatalf("prune: %d, %v; want the %d entries up to the first checkpoint", n, err, old.Seq)
	}
	_, _, rep, verr := trailOf(t, s)
	if verr != nil || rep.FirstSeq != old.Seq+1 || rep.LastCheckpoint == old.Seq {
		t.Fatalf("after the prune: %+v, %v", rep, verr)
	}
	if got, err := s.VerifyAudit(ctx); err != nil || got != rep.Entries {
		t.Fatalf("VerifyAudit after the prune: %d, %v", got, err)
	}
	if err := s.CheckAuditChain(ctx); err != nil || s.AuditVerification().Verified != rep.LastSeq || s.AuditVerification().BrokenAt != 0 {
		t.Fatalf("the background check under way: %+v, %v", s.AuditVerification(), err)
	}
	fresh, err := New(s.store, Config{Hash: testHash, Policy: PasswordPolicy{MinLength: 12, MaxLength: 128}}, WithClock(newClock()))
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.CheckAuditChain(ctx); err != nil || fresh.AuditVerification().Verified != rep.LastSeq {
		t.Fatalf("a fresh background check: %+v, %v", fresh.AuditVerification(), err)
	}
	// Again: nothing more is old enough.
	if n, err := s.PruneAudit(ctx); n != 0 || err != nil {
		t.Fatalf("a second prune: %d, %v", n, err)
	}

	// A follower, a cluster below level 5, or no retention: nothing.
	for _, tc := range []struct {
		name  string
		level int
		keep  time.Duration
		leads bool
	}{{"follower", fsm.MaxLevel, keep, false}, {"level 4", 4, keep, true}, {"keep for ever", fsm.MaxLevel, 0, true}} {
		s, _ := newRetentionService(t, tc.level, tc.keep, tc.leads)
		appendEvents(t, s, 5)
		if _, err := s.CheckpointAudit(ctx); err != nil {
			t.Fatal(err)
		}
		appendEvents(t, s, 1)
		s.clock.(interface{ Advance(time.Duration) }).Advance(100 * 24 * time.Hour)
		if n, err := s.PruneAudit(ctx); n != 0 || err != nil {
			t.Errorf("%s: pruned %d, %v", tc.name, n, err)
		}
		if _, _, rep, err := trailOf(t, s); err != nil || rep.FirstSeq != 1 {
			t.Errorf("%s: trail %+v, %v", tc.name, rep, err)
		}
	}
}

func TestRetentionConfig(t *testing.T) {
	for _, c := range []RetentionConfig{{Audit: time.Hour}, {Audit: -1}, {UnknownNameEntries: fsm.MaxAuditCapEntries + 1}} {
		if _, err := New(newLocalStore(t), Config{Hash: testHash, Policy: PasswordPolicy{MinLength: 12, MaxLength: 128}, Retention: c}); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("%+v: %v, want ErrInvalidInput", c, err)
		}
	}
}

// TestPruneSessions: a session dead of idleness goes once it has been
// dead for retention.expired_sessions, though its absolute lifetime runs
// on; a pass at most every sessionPruneEvery.
func TestPruneSessions(t *testing.T) {
	ctx := context.Background()
	cfg := Config{RefreshTTL: 30 * 24 * time.Hour, IdleTimeout: time.Hour, Retention: RetentionConfig{ExpiredSessions: 24 * time.Hour}}
	s, clk := newAuthServiceAt(t, cfg, fsm.MaxLevel)
	count := func() int {
		t.Helper()
		n, err := s.SessionCount()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if _, err := s.Login(ctx, "alice", pw); err != nil { // s1: dead at +1h
		t.Fatal(err)
	}
	clk.Advance(2 * time.Hour)
	if _, err := s.Login(ctx, "alice", pw); err != nil { // s2: dead at +3h
		t.Fatal(err)
	}
	clk.Advance(24*time.Hour + 30*time.Minute) // s1 dead for 25.5 h, s2 for 23.5 h
	if _, err := s.Sweep(ctx); err != nil || count() != 2 {
		t.Fatalf("the sweep alone: %d sessions, %v", count(), err)
	}
	if n, err := s.PruneSessions(ctx); n != 1 || err != nil || count() != 1 {
		t.Fatalf("prune: %d, %v; %d left", n, err, count())
	}
	clk.Advance(30 * time.Minute) // s2 now dead for 24 h, but a pass is not due
	if n, err := s.PruneSessions(ctx); n != 0 || err != nil {
		t.Fatalf("a pass before it is due: %d, %v", n, err)
	}
	clk.Advance(sessionPruneEvery)
	if n, err := s.PruneSessions(ctx); n != 1 || err != nil || count() != 0 {
		t.Fatalf("the next pass: %d, %v; %d left", n, err, count())
	}

	// Below level 5: nothing.
	s4, clk4 := newAuthServiceAt(t, cfg, 4)
	if _, err := s4.Login(ctx, "alice", pw); err != nil {
		t.Fatal(err)
	}
	clk4.Advance(48 * time.Hour)
	if n, err := s4.PruneSessions(ctx); n != 0 || err != nil {
		t.Fatalf("level 4: %d, %v", n, err)
	}
}
