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
	// With three nodes NodeCores is their sum, and PerNode each one's.
	NodeCores  float64     `json:"node_cores"`
	BenchCores float64     `json:"bench_cores"`
	OtherCores float64     `json:"other_cores"`
	PerNode    []NodeCores `json:"per_node_cores,omitempty"`
	// HashSlotsBusy: on a single-node login phase, the node's password
	// hash slots held on average (at most its core count).
	HashSlotsBusy float64 `json:"hash_slots_busy,omitempty"`
	// PeakRSSMiB is the node's peak resident memory (VmHWM) during the
	// phase and its workers' set-up; with three nodes, the largest of
	// theirs. 0: not measured (an in-process phase).
	PeakRSSMiB float64 `json:"node_peak_rss_mib,omitempty"`
	// Client is how the requests reached the node: clientHTTP1 (a pool of
	// HTTP/1.1 keep-alive connections, one per worker) or clientHTTP2
	// (every worker's requests multiplexed on one HTTP/2 connection).
	Client string `json:"client,omitempty"`
	// Setup is where the load went: setupInProcess, setupSingle (empty
	// counts as single), setupLeader or setupFollower.
	Setup string `json:"setup"`
	// Via is the node_name of the cluster node the requests were sent to.
	Via string `json:"via_node,omitempty"`
	// LeaderChanged: the cluster's leader was another node after the
	// phase than before it.
	LeaderChanged bool `json:"leader_changed,omitempty"`
	// Rounds: a phase paired with the argon2id bound (runPaired) lists
	// each round's rates, this phase's as A and the bound's as B.
	Rounds []pairedRound `json:"paired_rounds,omitempty"`
}

// NodeCores is the CPU one node process used during a phase, and its role
// when the phase started ("leader" or "follower").
type NodeCores struct {
	Node  string  `json:"node"`
	Role  string  `json:"role"`
	Cores float64 `json:"cores"`
}

// Setups of a phase.
const (
	setupInProcess = "in-process"
	// setupAfter: in process again, once the single node has stopped.
	setupAfter = "in-process-after"
	// setupBetween: in process, in turns with the single node's logins
	// at the target's concurrency (runPaired).
	setupBetween  = "in-process-between"
	setupSingle   = "single"
	setupLeader   = "cluster-leader"
	setupFollower = "cluster-follower"
)

// client is the phase's client mode; results from before there were
// two had HTTP/1.1 only.
func (r PhaseResult) client() string {
	if r.Client == "" {
		return clientHTTP1
	}
	return r.Client
}

// clustered reports whether the phase ran against the three-node cluster.
func (r PhaseResult) clustered() bool { return r.Setup == setupLeader || r.Setup == setupFollower }

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
