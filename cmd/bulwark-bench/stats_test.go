package main

import (
	"context"
	"errors"
	"math"
	"os"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	cases := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one value", ms(7), 99, 7 * time.Millisecond},
		{"p50 of odd count", ms(1, 2, 3, 4, 5), 50, 3 * time.Millisecond},
		{"p50 of even count is the lower middle", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p99 of 100", hundred, 99, 99 * time.Millisecond},
		{"p50 of 100", hundred, 50, 50 * time.Millisecond},
		{"p100 is the maximum", hundred, 100, 100 * time.Millisecond},
		{"tiny p is the minimum", hundred, 0.001, 1 * time.Millisecond},
		{"p99 of 10 is the maximum", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
	}
	for _, c := range cases {
		if got := percentile(c.sorted, c.p); got != c.want {
			t.Errorf("%s: percentile(p=%v) = %v, want %v", c.name, c.p, got, c.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	// Unsorted input, 99 successes and 1 error over 2 s.
	var lats []time.Duration
	for i := 99; i >= 1; i-- {
		lats = append(lats, time.Duration(i)*time.Millisecond)
	}
	r := summarize("login", 16, lats, 1, 2*time.Second)
	if r.Ops != 99 || r.Errors != 1 || r.Concurrency != 16 || r.Phase != "login" {
		t.Fatalf("counts: %+v", r)
	}
	if math.Abs(r.OpsPerSec-49.5) > 1e-9 {
		t.Errorf("ops/s = %v, want 49.5", r.OpsPerSec)
	}
	if r.P50Ms != 50 || r.P99Ms != 99 {
		t.Errorf("p50, p99 = %v, %v ms; want 50, 99", r.P50Ms, r.P99Ms)
	}
	if r.ErrorRate != 0.01 || r.Flagged {
		t.Errorf("1%% errors: rate %v, flagged %v; want 0.01 and not flagged (flag is above 1%%)", r.ErrorRate, r.Flagged)
	}

	r = summarize("me", 64, lats[:90], 10, time.Second)
	if !r.Flagged || r.failed() {
		t.Errorf("10%% errors: flagged %v, failed %v; want flagged, not failed", r.Flagged, r.failed())
	}
	r = summarize("me", 64, lats[:10], 11, time.Second)
	if !r.failed() {
		t.Errorf("52%% errors: not failed")
	}
	r = summarize("me", 64, nil, 0, 0)
	if r.OpsPerSec != 0 || r.ErrorRate != 0 || r.failed() {
		t.Errorf("nothing measured: %+v", r)
	}
}

func TestRunPhaseStopsByCountAndTime(t *testing.T) {
	noop := func(context.Context, int) (op, error) {
		return func(context.Context) error { return nil }, nil
	}
	// Bounded by count: the clock would allow far more.
	r := runPhase(context.Background(), "noop", 4, phaseLimits{duration: time.Minute, maxOps: 1000}, noop)
	if r.Ops != 1000 || !r.HitCap {
		t.Errorf("count-bounded: %d ops, hit cap %v; want 1000, true", r.Ops, r.HitCap)
	}
	// Bounded by time, every operation failing.
	failing := func(context.Context, int) (op, error) {
		return func(context.Context) error { time.Sleep(time.Millisecond); return errors.New("503") }, nil
	}
	r = runPhase(context.Background(), "fail", 2, phaseLimits{duration: 50 * time.Millisecond, maxOps: 1e9}, failing)
	if r.Ops != 0 || r.Errors == 0 || !r.failed() || r.FirstError != "503" || r.HitCap {
		t.Errorf("time-bounded failing phase: %+v", r)
	}
	if r.Seconds < 0.05 || r.Seconds > 5 {
		t.Errorf("elapsed %v s, want about 0.05", r.Seconds)
	}
	// A worker that cannot be set up fails the phase.
	broken := func(context.Context, int) (op, error) { return nil, errors.New("login refused") }
	if r := runPhase(context.Background(), "broken", 3, phaseLimits{duration: time.Second, maxOps: 10}, broken); !r.SetupFailed || !r.failed() {
		t.Errorf("setup failure: %+v", r)
	}
}

func TestEvaluateTargets(t *testing.T) {
	r := &report{Phases: []PhaseResult{
		{Phase: phaseArgon2, Concurrency: 2, Ops: 400, OpsPerSec: 50},
		{Phase: phaseLogin, Concurrency: 16, Ops: 360, OpsPerSec: 45},
		{Phase: phaseRefresh, Concurrency: 16, Ops: 20000, OpsPerSec: 2500, PeakRSSMiB: 150},
		{Phase: phaseRefresh, Concurrency: 64, Ops: 24800, OpsPerSec: 5100, Client: clientHTTP1, PeakRSSMiB: 190},
		{Phase: phaseRefresh, Concurrency: 64, Ops: 24800, OpsPerSec: 3300, Client: clientHTTP2},
		// more than half failed: not a measurement, however fast
		{Phase: phaseMe, Concurrency: 16, Ops: 66, Errors: 100, OpsPerSec: 20000, ErrorRate: 0.6},
		{Phase: phaseMe, Concurrency: 64, Ops: 99000, OpsPerSec: 16000, Client: clientHTTP2},
	}, Node: nodeInfo{PeakRSSMiB: 210}}
	r.evaluate()
	want := []struct {
		value    float64
		pass     bool
		measured bool
	}{
		{90, true, true},    // logins
		{5100, true, true},  // refresh over http1 (no client: http1)
		{0, false, false},   // /v1/me over http1
		{3300, false, true}, // refresh over http2
		{16000, true, true}, // /v1/me over http2
		{210, false, true},  // peak RSS above its ceiling
	}
	if len(r.Targets) != len(want) {
		t.Fatalf("%d targets, want %d: %+v", len(r.Targets), len(want), r.Targets)
	}
	for i, w := range want {
		got := r.Targets[i]
		if math.Abs(got.Value-w.value) > 1e-9 || got.Pass != w.pass || got.Measured != w.measured {
			t.Errorf("target %q = %+v, want value %v pass %v measured %v", got.Name, got, w.value, w.pass, w.measured)
		}
	}
}

func TestProcCPU(t *testing.T) {
	for start := time.Now(); time.Since(start) < 30*time.Millisecond; {
	}
	d, err := procCPU(os.Getpid())
	if err != nil || d <= 0 || d > time.Hour {
		t.Errorf("procCPU(self) = %v, %v", d, err)
	}
}
