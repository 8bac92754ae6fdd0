package main

import (
	"math"
	"slices"
	"time"
)

// flagErrorRate is the error share above which a phase is flagged in the
// table; failErrorRate makes the whole run exit non-zero.
const (
	flagErrorRate = 0.01
	failErrorRate = 0.50
)

// PhaseResult is one measured phase at one concurrency.
type PhaseResult struct {
	Phase       string  `json:"phase"`
	Concurrency int     `json:"concurrency"`
	Ops         int64   `json:"ops"`    // successful operations
	Errors      int64   `json:"errors"` // non-2xx answers and transport errors
	ErrorRate   float64 `json:"error_rate"`
	Seconds     float64 `json:"seconds"` // wall time of the measured loop
	OpsPerSec   float64 `json:"ops_per_sec"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	Flagged     bool    `json:"flagged"` // error rate above 1%
	HitCap      bool    `json:"hit_cap"` // stopped by the request cap, not the clock
	FirstError  string  `json:"first_error,omitempty"`
	SetupFailed bool    `json:"setup_failed,omitempty"`
	// Cores busy on average while measuring: the node's process, this
	// one's (they share the machine) and everything else on the machine.
	NodeCores  float64 `json:"node_cores"`
	BenchCores float64 `json:"bench_cores"`
	OtherCores float64 `json:"other_cores"`
}

// percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method: the smallest value with at least p% of the values
// at or below it. An empty slice gives 0.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// summarize turns the raw measurements of a phase into its result.
// latencies are those of the successful operations; it sorts them in place.
func summarize(phase string, conc int, latencies []time.Duration, errs int64, elapsed time.Duration) PhaseResult {
	slices.Sort(latencies)
	r := PhaseResult{
		Phase:       phase,
		Concurrency: conc,
		Ops:         int64(len(latencies)),
		Errors:      errs,
		Seconds:     elapsed.Seconds(),
		P50Ms:       ms(percentile(latencies, 50)),
		P99Ms:       ms(percentile(latencies, 99)),
	}
	if total := r.Ops + r.Errors; total > 0 {
		r.ErrorRate = float64(r.Errors) / float64(total)
	}
	if elapsed > 0 {
		r.OpsPerSec = float64(r.Ops) / elapsed.Seconds()
	}
	r.Flagged = r.ErrorRate > flagErrorRate
	return r
}

// failed reports whether the phase had more than half of its operations
// fail (or could not be set up at all).
func (r PhaseResult) failed() bool {
	return r.SetupFailed || r.ErrorRate > failErrorRate
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
