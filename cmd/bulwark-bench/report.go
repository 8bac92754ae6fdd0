package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Phase names, as they appear in the table and the JSON.
const (
	phaseArgon2  = "argon2id-bound"
	phaseXCrypto = "argon2-xcrypto" // x/crypto's IDKey, for reference
	phaseLogin   = "login"
	phaseRefresh = "refresh"
	phaseMe      = "me"
)

// Targets the results are judged by.
const (
	targetLoginShare = 0.90 // logins/s at c=16 over argon2id hashes/s (issues 16 and 18)
	targetLoginConc  = 16
	// issue 18: each in both client modes (HTTP/1.1 pool, one HTTP/2
	// connection), and the node's peak memory through the whole run
	targetRefresh    = 5000
	targetMe         = 15000
	targetPeakRSSMiB = 200
	// three nodes sharing the machine, the better of leader and follower
	targetClusterRefresh = 2500
)

// report is everything printed and written as JSON.
type report struct {
	Started   time.Time     `json:"started"`
	Quick     bool          `json:"quick"`
	PhaseTime string        `json:"phase_duration"`
	MaxOps    int64         `json:"max_ops_per_phase"`
	Machine   machine       `json:"machine"`
	Node      nodeInfo      `json:"node"`
	Phases    []PhaseResult `json:"phases"`
	Targets   []target      `json:"targets"`
	NodeError string        `json:"node_error,omitempty"`
	Notes     []string      `json:"notes"`

	// Cluster is the three-node run (nil: not asked for); its phases are
	// in Phases with setup cluster-leader or cluster-follower.
	Cluster *clusterReport `json:"cluster,omitempty"`

	// modes are the client modes asked for (--clients).
	modes []string
}

type machine struct {
	GOMAXPROCS int    `json:"gomaxprocs"`
	NumCPU     int    `json:"num_cpu"`
	CPUModel   string `json:"cpu_model"`
	GoVersion  string `json:"go_version"`
	OS         string `json:"os_arch"`
}

type nodeInfo struct {
	Version         string `json:"version"`
	Argon2MemoryKiB uint32 `json:"argon2_memory_kib"`
	Argon2Iter      uint32 `json:"argon2_iterations"`
	Argon2Lanes     uint8  `json:"argon2_parallelism"`
	RateLimitExempt string `json:"rate_limit_exempt"`
	MaxPerUser      int    `json:"sessions_max_per_user"`
	HTTPProto       string `json:"http_proto"`
	// Clients are the client modes the refresh and /v1/me phases ran in,
	// with the protocol each negotiated.
	Clients []clientInfo `json:"clients"`
	// PeakRSSMiB is the single node's peak resident memory (VmHWM) from
	// its first user to its last phase.
	PeakRSSMiB float64 `json:"peak_rss_mib"`
}

// clientInfo is one client mode and the protocol it got.
type clientInfo struct {
	Mode  string `json:"mode"`
	Proto string `json:"proto"`
}

// target is one judged ratio or rate.
type target struct {
	Name     string  `json:"name"`
	Value    float64 `json:"value"`
	Goal     float64 `json:"goal"`
	Unit     string  `json:"unit"`
	Pass     bool    `json:"pass"`
	Measured bool    `json:"measured"` // false: its phase did not run or all of it failed
	Detail   string  `json:"detail"`
	Noisy    bool    `json:"noisy"`             // other processes were busy during its phases, or the bound drifted
	AtMost   bool    `json:"at_most,omitempty"` // the goal is a ceiling, not a floor
}

func newReport(o options) *report {
	r := &report{
		Started:   time.Now().UTC(),
		Quick:     o.quick,
		modes:     o.clients,
		PhaseTime: o.duration.String(),
		MaxOps:    o.maxOps,
		Machine: machine{
			GOMAXPROCS: runtime.GOMAXPROCS(0),
			NumCPU:     runtime.NumCPU(),
			CPUModel:   cpuModel(),
			GoVersion:  runtime.Version(),
			OS:         runtime.GOOS + "/" + runtime.GOARCH,
		},
		Node: nodeInfo{
			Argon2MemoryKiB: o.hash.memoryKiB,
			Argon2Iter:      o.hash.iterations,
			Argon2Lanes:     o.hash.parallelism,
			RateLimitExempt: "127.0.0.0/8",
			MaxPerUser:      10, // the default: logins past it evict the oldest session
		},
		Notes: []string{
			"the load comes from 127.0.0.1, which the node's [auth.rate_limit] exempt list covers: rate limits are not measured",
			"client and node share the machine's cores",
		},
	}
	if o.hash.memoryKiB < defaultMemory || o.hash.iterations < defaultIters {
		r.Notes = append(r.Notes, "argon2id cost is BELOW the daemon's defaults: login numbers are not representative")
	}
	if o.cluster {
		r.Cluster = &clusterReport{}
		r.Notes = append(r.Notes, "three nodes: all three processes and the client share the machine's cores; follower phases send every write over the cluster port to the leader")
	}
	if o.quick {
		r.Notes = append(r.Notes, "--quick: 1 s phases, a smoke run, not a measurement")
	}
	return r
}

func (r *report) add(p PhaseResult) { r.Phases = append(r.Phases, p) }

func (r *report) anyFailed() bool {
	for _, p := range r.Phases {
		if p.failed() {
			return true
		}
	}
	return false
}

// find returns the result of phase at concurrency conc, outside the
// cluster.
func (r *report) find(phase string, conc int) (PhaseResult, bool) {
	for _, p := range r.Phases {
		if p.Phase == phase && p.Concurrency == conc && !p.clustered() {
			return p, true
		}
	}
	return PhaseResult{}, false
}

// best returns the result of phase outside the cluster with the most
// operations per second, among those that did not fail.
func (r *report) best(phase string) (PhaseResult, bool) {
	return r.bestWhere(phase, func(p PhaseResult) bool { return !p.clustered() })
}

// bestWhere returns the result of phase among those keep accepts with the
// most operations per second, among those that did not fail.
func (r *report) bestWhere(phase string, keep func(PhaseResult) bool) (PhaseResult, bool) {
	var b PhaseResult
	found := false
	for _, p := range r.Phases {
		if p.Phase == phase && keep(p) && !p.failed() && (!found || p.OpsPerSec > b.OpsPerSec) {
			b, found = p, true
		}
	}
	return b, found
}

// boundDrift: when the bound measured before the node and after it differ
// by more than this share, the machine's speed changed during the run and
// the login share is flagged as noisy, whatever its verdict.
const boundDrift = 0.10

// busyMachine is the share of a core other processes may use during a
// phase before the report warns that the machine was not quiet.
const busyMachine = 0.25

// evaluate judges the targets from the phases measured.
func (r *report) evaluate() {
	r.Targets = nil
	other := 0.0
	for _, p := range r.Phases {
		other = max(other, p.OtherCores)
	}
	if other > busyMachine {
		r.Notes = append(r.Notes, fmt.Sprintf("the machine was not quiet: other processes used up to %.2f cores during a phase; the numbers understate the node", other))
	}
	r.Targets = append(r.Targets, r.loginShareTarget())
	for _, mode := range r.clientModes() {
		r.Targets = append(r.Targets, r.rateTarget(phaseRefresh, mode, "refreshes/s", targetRefresh))
		r.Targets = append(r.Targets, r.rateTarget(phaseMe, mode, "/v1/me validations/s", targetMe))
	}
	if r.Cluster != nil {
		r.Targets = append(r.Targets, r.clusterRefreshTarget())
		if r.Cluster.Stops != nil {
			r.Targets = append(r.Targets, r.stopTarget())
		}
	}
	r.Targets = append(r.Targets, r.peakRSSTarget())
	for i := range r.Targets {
		t := &r.Targets[i]
		t.Pass = t.Measured && (t.Value >= t.Goal && !t.AtMost || t.Value <= t.Goal && t.AtMost)
	}
}

// loginShareTarget judges logins/s at the target's concurrency against
// the argon2id bound measured in turns with them (runPaired). Without
// that bound (an old report, or the pairing failed), the mean of the
// bounds measured before and after the node stands in, and the verdict
// is flagged noisy when those two differ by more than boundDrift.
func (r *report) loginShareTarget() target {
	t := target{Name: "logins/s at c=16 as share of argon2id bound", Goal: targetLoginShare * 100, Unit: "%"}
	login, ok := r.find(phaseLogin, targetLoginConc)
	if !ok || login.Ops == 0 || login.failed() {
		return t
	}
	if b, ok := r.phaseWithSetup(phaseArgon2, setupBetween); ok && b.OpsPerSec > 0 && !b.failed() {
		t.Value, t.Measured = 100*login.OpsPerSec/b.OpsPerSec, true
		t.Detail = fmt.Sprintf("%.1f logins/s vs %.1f password checks/s, measured in %d turns", login.OpsPerSec, b.OpsPerSec, len(login.Rounds))
		if mean, se, ok := roundShares(login.Rounds); ok {
			t.Detail += fmt.Sprintf("; per turn %.1f%% ± %.1f (standard error)", mean, se)
			// The verdict is uncertain when the goal lies inside the
			// 95% confidence interval of the turns' mean share.
			t.Noisy = math.Abs(mean-t.Goal) < studentT95(len(login.Rounds)-1)*se
		}
		if login.NodeCores > 0 && b.BenchCores > 0 {
			// The same ratio per core-second used: a node's CPU per login
			// against this process's per check. It does not move with the
			// cores each got on a busy machine; what separates it from the
			// share is the cores the node did not use (waits, the client,
			// other processes).
			perLogin, perCheck := login.OpsPerSec/login.NodeCores, b.OpsPerSec/b.BenchCores
			t.Detail += fmt.Sprintf("; per core-second used %.1f logins vs %.1f checks (%.1f%%), the node on %.2f cores",
				perLogin, perCheck, 100*perLogin/perCheck, login.NodeCores)
		}
		t.Noisy = t.Noisy || login.OtherCores > busyMachine || b.OtherCores > busyMachine
		return t
	}
	bound, bounds := r.argon2Bound()
	if bound <= 0 {
		return t
	}
	t.Value, t.Measured = 100*login.OpsPerSec/bound, true
	t.Detail = fmt.Sprintf("%.1f logins/s vs %.1f password checks/s", login.OpsPerSec, bound)
	lo, hi := bounds[0].OpsPerSec, bounds[0].OpsPerSec
	if len(bounds) > 1 {
		var each []string
		for _, b := range bounds {
			each = append(each, fmt.Sprintf("%.1f", b.OpsPerSec))
			lo, hi = min(lo, b.OpsPerSec), max(hi, b.OpsPerSec)
		}
		t.Detail += ", the mean of " + strings.Join(each, " and ")
	}
	t.Noisy = login.OtherCores > busyMachine || hi > lo*(1+boundDrift)
	for _, b := range bounds {
		t.Noisy = t.Noisy || b.OtherCores > busyMachine
	}
	return t
}

// roundShares returns the mean of the rounds' shares A/B in percent and
// its standard error; ok is false with fewer than two usable rounds.
func roundShares(rounds []pairedRound) (mean, se float64, ok bool) {
	var xs []float64
	for _, r := range rounds {
		if r.B > 0 {
			xs = append(xs, 100*r.A/r.B)
		}
	}
	if len(xs) < 2 {
		return 0, 0, false
	}
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	var ss float64
	for _, x := range xs {
		ss += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(ss/float64(len(xs)-1)) / math.Sqrt(float64(len(xs))), true
}

// studentT95 is the two-sided 95% quantile of Student's t distribution
// with dof degrees of freedom (1.96 from 30 on).
func studentT95(dof int) float64 {
	table := []float64{12.71, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
		2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
		2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045}
	if dof < 1 {
		return math.Inf(1)
	}
	if dof > len(table) {
		return 1.96
	}
	return table[dof-1]
}

// phaseWithSetup returns the phase measured with setup, outside the
// cluster.
func (r *report) phaseWithSetup(phase, setup string) (PhaseResult, bool) {
	for _, p := range r.Phases {
		if p.Phase == phase && p.Setup == setup {
			return p, true
		}
	}
	return PhaseResult{}, false
}

// argon2Bound returns the mean hashes/s of the bound's phases measured
// before the node started and after it stopped that did not fail, and
// those phases; 0 if there is none.
func (r *report) argon2Bound() (float64, []PhaseResult) {
	var ps []PhaseResult
	sum := 0.0
	for _, p := range r.Phases {
		if p.Phase == phaseArgon2 && p.Setup != setupBetween && !p.failed() && p.OpsPerSec > 0 {
			ps = append(ps, p)
			sum += p.OpsPerSec
		}
	}
	if len(ps) == 0 {
		return 0, nil
	}
	return sum / float64(len(ps)), ps
}

// clientModes are the client modes of the single node's phases, in the
// order they ran.
func (r *report) clientModes() []string {
	var modes []string
	for _, p := range r.Phases {
		if c := p.client(); !p.clustered() && !slices.Contains(modes, c) && (p.Phase == phaseRefresh || p.Phase == phaseMe) {
			modes = append(modes, c)
		}
	}
	for _, c := range r.modes { // asked for, but not run
		if !slices.Contains(modes, c) {
			modes = append(modes, c)
		}
	}
	if len(modes) == 0 {
		modes = []string{clientHTTP1}
	}
	return modes
}

// rateTarget judges the best concurrency of phase over client mode
// against goal ops/s.
func (r *report) rateTarget(phase, mode, name string, goal float64) target {
	t := target{Name: fmt.Sprintf("%s over %s (best concurrency)", name, mode), Goal: goal, Unit: "/s"}
	b, ok := r.bestWhere(phase, func(p PhaseResult) bool { return !p.clustered() && p.client() == mode })
	if ok && b.Ops > 0 {
		t.Value, t.Measured = b.OpsPerSec, true
		t.Detail = fmt.Sprintf("at c=%d", b.Concurrency)
		t.Noisy = b.OtherCores > busyMachine
	}
	return t
}

// peakRSSTarget judges the largest peak resident memory of any node over
// the run (the single node's from its first user on; the three nodes'
// over their phases) against its ceiling.
func (r *report) peakRSSTarget() target {
	t := target{Name: "node peak RSS through the run", Goal: targetPeakRSSMiB, Unit: " MiB", AtMost: true}
	t.Value = r.Node.PeakRSSMiB
	t.Detail = fmt.Sprintf("single node %.0f MiB", r.Node.PeakRSSMiB)
	if r.Cluster != nil && r.Cluster.PeakRSSMiB > 0 {
		t.Value = max(t.Value, r.Cluster.PeakRSSMiB)
		t.Detail += fmt.Sprintf(", three nodes at most %.0f MiB each", r.Cluster.PeakRSSMiB)
	}
	if slices.ContainsFunc(r.Phases, func(p PhaseResult) bool { return p.PeakRSSMiB > 0 }) {
		top := slices.MaxFunc(r.Phases, func(a, b PhaseResult) int { return cmp.Compare(a.PeakRSSMiB, b.PeakRSSMiB) })
		t.Detail += fmt.Sprintf("; highest in %s %s c=%d", top.Phase, top.Client, top.Concurrency)
	}
	t.Measured = t.Value > 0
	return t
}

// clusterRefreshTarget judges the best three-node refresh phase, through
// the leader or a follower at any concurrency, against its goal.
func (r *report) clusterRefreshTarget() target {
	t := target{Name: "refreshes/s on three nodes (best of leader/follower)", Goal: targetClusterRefresh, Unit: "/s"}
	b, ok := r.bestWhere(phaseRefresh, PhaseResult.clustered)
	if !ok || b.Ops == 0 {
		return t
	}
	t.Value, t.Measured = b.OpsPerSec, true
	t.Detail = fmt.Sprintf("at c=%d via %s %s", b.Concurrency, strings.TrimPrefix(b.Setup, "cluster-"), b.Via)
	var others []string
	for _, s := range []string{setupLeader, setupFollower} {
		if p, ok := r.bestWhere(phaseRefresh, func(p PhaseResult) bool { return p.Setup == s }); ok {
			others = append(others, fmt.Sprintf("%s %.0f", strings.TrimPrefix(s, "cluster-"), p.OpsPerSec))
		}
	}
	if p, ok := r.best(phaseRefresh); ok {
		others = append(others, fmt.Sprintf("one node %.0f", p.OpsPerSec))
	}
	t.Detail += "; best " + strings.Join(others, ", ")
	t.Noisy = b.OtherCores > busyMachine
	return t
}

// setupLabel is a phase's setup as the table shows it.
func setupLabel(setup string) string {
	switch setup {
	case setupInProcess:
		return "in process"
	case setupAfter:
		return "after node"
	case setupBetween:
		return "in turns"
	case setupLeader:
		return "3n leader"
	case setupFollower:
		return "3n follower"
	}
	return "1 node"
}

// tableOrder returns the phases ordered for the table: by phase, then
// concurrency, so that each single-node figure has the three-node ones
// of the same phase and concurrency right below it.
func (r *report) tableOrder() []PhaseResult {
	rank := map[string]int{phaseArgon2: 0, phaseXCrypto: 1, phaseLogin: 2, phaseRefresh: 3, phaseMe: 4}
	setupRank := map[string]int{setupInProcess: 0, setupBetween: 1, setupAfter: 2, "": 3, setupSingle: 3, setupLeader: 4, setupFollower: 5}
	ps := slices.Clone(r.Phases)
	slices.SortStableFunc(ps, func(a, b PhaseResult) int {
		return cmp.Or(cmp.Compare(rank[a.Phase], rank[b.Phase]), cmp.Compare(a.Concurrency, b.Concurrency),
			cmp.Compare(setupRank[a.Setup], setupRank[b.Setup]))
	})
	return ps
}

// perNodeCPU shows each node's cores, the leader marked L and the node
// the requests went to marked *.
func perNodeCPU(p PhaseResult) string {
	var parts []string
	for _, n := range p.PerNode {
		mark := ""
		if n.Role == "leader" {
			mark = "L"
		}
		if n.Node == p.Via {
			mark += "*"
		}
		parts = append(parts, fmt.Sprintf("%s%s %.2f", n.Node, mark, n.Cores))
	}
	return strings.Join(parts, " ")
}

// print writes the human-readable report.
func (r *report) print(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "\nbulwark load benchmark — %s, phases of %s (cap %d requests)\n", r.Started.Format(time.RFC3339), r.PhaseTime, r.MaxOps)
	fmt.Fprintf(w, "machine: %s, %d CPUs, GOMAXPROCS %d, %s, %s\n", m.CPUModel, m.NumCPU, m.GOMAXPROCS, m.GoVersion, m.OS)
	n := r.Node
	fmt.Fprintf(w, "node: bulwark %s, argon2id m=%d t=%d p=%d, %s, rate limit exempt %s\n",
		orDash(n.Version), n.Argon2MemoryKiB, n.Argon2Iter, n.Argon2Lanes, orDash(n.HTTPProto), n.RateLimitExempt)
	if c := r.Cluster; c != nil && len(c.Nodes) > 0 {
		var names []string
		for _, n := range c.Nodes {
			names = append(names, n.Name)
		}
		fmt.Fprintf(w, "three nodes: %s, formed in %.1f s, leader %s at start, %s at end (%d change(s)), tokens.issuer %s\n",
			strings.Join(names, " "), c.FormSeconds, orDash(c.LeaderAtStart), orDash(c.LeaderAtEnd), c.LeaderChanges, c.Issuer)
	}
	fmt.Fprintln(w)

	const row = "%-15s %-11s %-6s %5s %10s %9s %9s %9s %7s %15s %8s  %s\n"
	fmt.Fprintf(w, row, "phase", "setup", "client", "conc", "ops/s", "p50 ms", "p99 ms", "ops", "errors", "cpu node/b/oth", "peak MiB", "")
	for _, p := range r.tableOrder() {
		flag := perNodeCPU(p)
		if p.HashSlotsBusy > 0 {
			flag += fmt.Sprintf("hash slots busy %.2f", p.HashSlotsBusy)
		}
		if p.Flagged {
			flag += fmt.Sprintf(" <-- %.1f%% errors", 100*p.ErrorRate)
		}
		if p.HitCap {
			flag += " (request cap)"
		}
		if p.LeaderChanged {
			flag += " (leader changed)"
		}
		peak := "-"
		if p.PeakRSSMiB > 0 {
			peak = fmt.Sprintf("%.0f", p.PeakRSSMiB)
		}
		fmt.Fprintf(w, row, p.Phase, setupLabel(p.Setup), orDash(p.Client), strconv.Itoa(p.Concurrency), fmt.Sprintf("%.1f", p.OpsPerSec),
			fmt.Sprintf("%.2f", p.P50Ms), fmt.Sprintf("%.2f", p.P99Ms),
			strconv.FormatInt(p.Ops, 10), strconv.FormatInt(p.Errors, 10),
			fmt.Sprintf("%.2f/%.2f/%.2f", p.NodeCores, p.BenchCores, p.OtherCores), peak, strings.TrimSpace(flag))
	}
	for _, p := range r.tableOrder() {
		if p.FirstError != "" {
			fmt.Fprintf(w, "  first error, %s %s c=%d: %s\n", p.Phase, setupLabel(p.Setup), p.Concurrency, p.FirstError)
		}
	}

	if r.Cluster != nil && r.Cluster.Stops != nil {
		r.Cluster.Stops.print(w)
	}
	fmt.Fprintln(w, "\ntargets:")
	for _, t := range r.Targets {
		verdict := "FAIL"
		if t.Pass {
			verdict = "PASS"
		}
		if !t.Measured {
			fmt.Fprintf(w, "  %-4s  %-53s  not measured (goal %g%s)\n", verdict, t.Name, t.Goal, t.Unit)
			continue
		}
		noisy := ""
		if t.Noisy {
			noisy = "  NOISY: machine busy or its speed drifted, measure again"
		}
		goal := "≥"
		if t.AtMost {
			goal = "≤"
		}
		fmt.Fprintf(w, "  %-4s  %-53s  %.1f%s (goal %s %g%s; %s)%s\n", verdict, t.Name, t.Value, t.Unit, goal, t.Goal, t.Unit, t.Detail, noisy)
	}
	fmt.Fprintln(w, "\ncpu: cores busy on average in the node (3n: the three nodes together) / this benchmark client / other processes;")
	fmt.Fprintln(w, "     3n rows then list each node's cores, L the leader, * the node the requests went to")
	fmt.Fprintln(w, "client: http1 = one HTTP/1.1 keep-alive connection per worker, http2 = every worker on one HTTP/2 connection;")
	fmt.Fprintln(w, "peak MiB: the node's peak resident memory (VmHWM) during the phase and its workers' set-up (3n: the largest node's)")
	if r.NodeError != "" {
		fmt.Fprintf(w, "\nnode error: %s\n", r.NodeError)
	}
	if r.Cluster != nil && r.Cluster.Error != "" {
		fmt.Fprintf(w, "\nthree-node error: %s\n", r.Cluster.Error)
	}
	if r.Cluster != nil && r.Cluster.Stops != nil && r.Cluster.Stops.Error != "" {
		fmt.Fprintf(w, "\ngraceful stops error: %s\n", r.Cluster.Stops.Error)
	}
	fmt.Fprintln(w, "\nnotes:")
	for _, note := range r.Notes {
		fmt.Fprintf(w, "  - %s\n", note)
	}
}

// write stores the report as indented JSON at path.
func (r *report) write(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// binaryVersion is what `bulwark version` prints, without the name.
func binaryVersion(bin string) string {
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(strings.TrimSpace(string(out)), "bulwark ")
}

// negotiatedProto is the protocol and TLS version the client gets.
func negotiatedProto(ctx context.Context, c *http.Client, url string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return ""
	}
	resp, err := c.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	proto := resp.Proto
	if resp.TLS != nil && resp.TLS.Version == tls.VersionTLS13 {
		proto += " over TLS 1.3"
	}
	return proto
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
