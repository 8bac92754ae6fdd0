// Command bulwark-bench is the load benchmark of bulwark. It starts a real
// node from the built binary (temporary data directory, loopback ports,
// software sealing, default argon2id cost), creates users with the admin
// CLI, and measures, each phase bounded in time and in requests:
//
//  1. the argon2id bound: password checks per second on all cores, in
//     process, with the node's own function (and, for reference, hashes
//     per second with golang.org/x/crypto/argon2);
//  2. password logins at concurrency 1, 4 and 16; at 16, in eight turns
//     with the argon2id bound (a login loop, then a bound loop, each a
//     quarter of a phase long, eight times), so that the two are measured
//     over the same stretch of time on a machine whose speed drifts;
//  3. refresh-token rotation at concurrency 16, 64 and 256;
//  4. GET /v1/me with a Bearer token at concurrency 16 and 64;
//     phases 3 and 4 in each client mode (--clients): a pool of HTTP/1.1
//     keep-alive connections, one per worker, and one HTTP/2 connection
//     that multiplexes every worker (logins in the first mode only);
//  5. the argon2id bound again, with the node stopped;
//  6. unless --cluster=false, with that node stopped: three nodes on this
//     machine form a cluster (node1 serves, node2 and node3 join with
//     tokens, one tokens.issuer), and logins at concurrency 16 and
//     refreshes at 16 and 64 are measured through the leader's API and
//     then through a follower's, which forwards the writes to the leader;
//     then --stop-trials graceful stops of the leader (SIGTERM), refresh
//     and login trials alternating, each survivor writing meanwhile: how
//     long its writes stall (stop.go). The stopped node starts again.
//
// It prints a table and the targets (logins at c=16 ≥ 90% of the argon2id
// bound measured in turns with them, flagged noisy when the goal lies in the
// 95% confidence interval of the turns' mean share; phases 1 and 5 are shown for
// reference; ≥ 5,000 refreshes/s, ≥ 15,000 /v1/me/s on one node in each
// client mode; ≥ 2,500 refreshes/s on three nodes, the better of leader
// and follower; writes resuming ≤ 50 ms after a graceful leader stop
// (the median of the refresh trials' worse survivor); the node's peak resident memory ≤ 200 MiB through the
// run, read from VmHWM in /proc and reset before each phase, so the table
// shows each phase's peak too) and writes the same as JSON. It exits 0 whether or not targets are met; 1 if
// a node could not be started, a phase had more than half its requests
// fail, or it was interrupted; 2 on a usage error. Every node is always
// stopped with SIGTERM and its directory removed.
//
// --phases runs only some of phases 2 to 4 (the bound of phases 1 and 5
// only with logins), to measure or profile one workload again and again;
// --profile-dir saves a CPU profile of the node over each single-node
// phase's measured loop (not its workers' set-up, which logs them in).
// --single=false skips the single node; --cluster-phases none skips the
// three-node throughput phases (the graceful stops alone).
//
// With --scale it runs the scale benchmark instead (scale.go): the node
// empty, then holding --scale-users users and --scale-sessions live
// sessions, seeded by replicated commands applied through fsm into a
// backup the node restores (seed.go).
//
//	go run ./cmd/bulwark-bench [--bin bin/bulwark] [--duration 8s] [--json FILE] [--quick] [--cluster=false] [--single=false] [--cluster-phases login,refresh|none] [--stop-trials 6] [--clients both|http1|http2] [--phases login,refresh,me] [--profile-dir DIR] [--scale]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// options are the command-line flags.
type options struct {
	bin      string
	duration time.Duration
	jsonPath string
	quick    bool
	cluster  bool
	// single: run the single node's phases (false: the cluster alone).
	single bool
	// clusterPhases: the three-node throughput phases to run (phaseLogin,
	// phaseRefresh; none when empty); stopTrials: graceful leader stops
	// after them (stop.go; 0: none).
	clusterPhases map[string]bool
	stopTrials    int
	maxOps        int64
	hash          hashParams
	// profileDir: where to save CPU profiles of the single node during
	// each login phase ("": none).
	profileDir string
	// scale: run the scale benchmark (scale.go) instead, with
	// scaleUsers users and scaleSessions live sessions seeded.
	scale                     bool
	scaleUsers, scaleSessions int
	// clients: the client modes the single node's refresh and /v1/me
	// phases run in (logins run in the first).
	clients []string
	// phases: the single node's HTTP phases to run (phaseLogin,
	// phaseRefresh, phaseMe); all by default.
	phases map[string]bool
}

// Concurrencies of the HTTP phases; one user per worker of the largest.
var (
	loginConcs   = []int{1, 4, 16}
	refreshConcs = []int{16, 64, 256}
	meConcs      = []int{16, 64}
)

const (
	quickDuration   = time.Second
	defaultJSON     = "bench-results/bench.json"
	quickJSON       = "bench-results/bench-quick.json"
	requestTimeout  = 30 * time.Second
	defaultMaxOps   = 1_000_000
	defaultMemory   = 19456 // the daemon's argon2id defaults (authcore.DefaultHashParams)
	defaultIters    = 2
	defaultParallel = 1
	// pairedRounds: login and bound loops at the target's concurrency,
	// each a quarter of a phase: short, so that each pair sees the same
	// machine, and many, so that their mean is steady.
	pairedRounds = 8
)

func main() {
	os.Exit(run())
}

func parseFlags() (options, error) {
	var o options
	fs := flag.NewFlagSet("bulwark-bench", flag.ContinueOnError)
	fs.StringVar(&o.bin, "bin", "bin/bulwark", "bulwark binary; built with `go build` if missing")
	fs.DurationVar(&o.duration, "duration", 8*time.Second, "length of each measured phase")
	fs.StringVar(&o.jsonPath, "json", defaultJSON, "where to write the results as JSON (--quick: "+quickJSON+")")
	fs.BoolVar(&o.quick, "quick", false, "1 s phases: a smoke run, not a measurement")
	fs.BoolVar(&o.cluster, "cluster", true, "after the single node, measure logins and refreshes on a three-node cluster")
	fs.BoolVar(&o.single, "single", true, "measure the single node (false: only the three-node cluster)")
	clusterPhases := fs.String("cluster-phases", "login,refresh", "the three-node throughput phases to run, comma-separated (login, refresh), or none")
	fs.IntVar(&o.stopTrials, "stop-trials", 6, "graceful leader stops on the three-node cluster, refresh and login trials alternating (0: none)")
	fs.Int64Var(&o.maxOps, "max-ops", defaultMaxOps, "hard cap on requests per phase")
	fs.StringVar(&o.profileDir, "profile-dir", "", "save a CPU profile of the node during each single-node phase here (login-c16.pprof, refresh-http2-c64.pprof, ...)")
	phases := fs.String("phases", "login,refresh,me", "the single node's HTTP phases to run, comma-separated (login, refresh, me); the others are skipped")
	fs.BoolVar(&o.scale, "scale", false, "the scale run instead: the node empty, then with --scale-users users and --scale-sessions live sessions (JSON: "+defaultScaleJSON+")")
	fs.IntVar(&o.scaleUsers, "scale-users", defaultScaleUsers, "users seeded for --scale")
	fs.IntVar(&o.scaleSessions, "scale-sessions", defaultScaleSessions, "live sessions seeded for --scale, spread evenly over the users (at most 10 each)")
	clients := fs.String("clients", "both", "client modes of the single node's refresh and /v1/me phases: http1 (a keep-alive connection per worker), http2 (one multiplexed connection) or both")
	mem := fs.Uint("argon2-memory-kib", defaultMemory, "argon2id memory (KiB), for the node and the bound")
	iters := fs.Uint("argon2-iterations", defaultIters, "argon2id iterations")
	par := fs.Uint("argon2-parallelism", defaultParallel, "argon2id lanes")
	err := fs.Parse(os.Args[1:])
	if err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *par < 1 || *par > 255 || *iters < 1 || *mem < 8 {
		return o, fmt.Errorf("argon2 parameters out of range")
	}
	switch *clients {
	case "both":
		o.clients = []string{clientHTTP1, clientHTTP2}
	case clientHTTP1, clientHTTP2:
		o.clients = []string{*clients}
	default:
		return o, fmt.Errorf("--clients %q: want http1, http2 or both", *clients)
	}
	if o.phases, err = parsePhases(*phases); err != nil {
		return o, err
	}
	if o.clusterPhases, err = parseClusterPhases(*clusterPhases); err != nil {
		return o, err
	}
	if o.stopTrials < 0 || o.stopTrials > 100 {
		return o, fmt.Errorf("--stop-trials %d: want 0 to 100", o.stopTrials)
	}
	if o.scale && (o.scaleUsers < 1 || o.scaleSessions < o.scaleUsers || o.scaleSessions > 10*o.scaleUsers) {
		return o, fmt.Errorf("--scale-users must be at least 1 and --scale-sessions between it and 10 times it (sessions.max_per_user)")
	}
	o.hash = hashParams{memoryKiB: uint32(*mem), iterations: uint32(*iters), parallelism: uint8(*par)}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		if !set["duration"] {
			o.duration = quickDuration
		}
		if !set["json"] && !o.scale {
			o.jsonPath = quickJSON // a smoke run does not overwrite the real results
		}
	}
	if o.scale && !set["json"] {
		o.jsonPath = defaultScaleJSON
		if o.quick {
			o.jsonPath = "bench-results/bench-scale-quick.json"
		}
	}
	return o, nil
}

// parsePhases reads --phases: a comma-separated list of phaseLogin,
// phaseRefresh and phaseMe, at least one.
func parsePhases(list string) (map[string]bool, error) {
	phases := map[string]bool{}
	for ph := range strings.SplitSeq(list, ",") {
		switch ph = strings.TrimSpace(ph); ph {
		case phaseLogin, phaseRefresh, phaseMe:
			phases[ph] = true
		default:
			return nil, fmt.Errorf("--phases: unknown phase %q (want login, refresh, me)", ph)
		}
	}
	return phases, nil
}

// parseClusterPhases reads --cluster-phases: "none", or a comma-separated
// list of phaseLogin and phaseRefresh.
func parseClusterPhases(list string) (map[string]bool, error) {
	phases := map[string]bool{}
	if strings.TrimSpace(list) == "none" {
		return phases, nil
	}
	for ph := range strings.SplitSeq(list, ",") {
		switch ph = strings.TrimSpace(ph); ph {
		case phaseLogin, phaseRefresh:
			phases[ph] = true
		default:
			return nil, fmt.Errorf("--cluster-phases: unknown phase %q (want login, refresh or none)", ph)
		}
	}
	return phases, nil
}

// run does the whole benchmark and returns the exit code.
func run() int {
	o, err := parseFlags()
	if err != nil {
		if err != flag.ErrHelp {
			fmt.Fprintln(os.Stderr, "bulwark-bench:", err)
		}
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if o.scale {
		return runScale(ctx, o)
	}

	rep := newReport(o)
	code := measure(ctx, o, rep)
	if ctx.Err() != nil {
		rep.Notes = append(rep.Notes, "interrupted: results are partial")
		code = 1
	}
	rep.evaluate()
	rep.print(os.Stdout)
	if err := rep.write(o.jsonPath); err != nil {
		fmt.Fprintln(os.Stderr, "bulwark-bench:", err)
		return 1
	}
	fmt.Printf("\nresults written to %s\n", o.jsonPath)
	if code == 0 && rep.anyFailed() {
		fmt.Fprintln(os.Stderr, "bulwark-bench: a phase had more than 50% errors")
		code = 1
	}
	return code
}

// measure runs the phases into rep. It returns 1 if a node could not be
// started or stopped cleanly, else 0.
func measure(ctx context.Context, o options, rep *report) int {
	lim := phaseLimits{duration: o.duration, maxOps: o.maxOps, cpu: cpuSampler(0)}
	// Phase 1 runs first, on an otherwise idle machine, and is reported
	// even when the node cannot be built or started.
	// The bound is the logins' reference: without them it is not run.
	bound := o.single && o.phases[phaseLogin]
	procs := runtime.GOMAXPROCS(0)
	if bound {
		progress("argon2id", procs)
		p := runPhase(ctx, phaseArgon2, procs, lim, argon2Worker(o.hash))
		p.Setup = setupInProcess
		rep.add(p)
		progress("argon2id with x/crypto", procs)
		p = runPhase(ctx, phaseXCrypto, procs, lim, xcryptoWorker(o.hash))
		p.Setup = setupInProcess
		rep.add(p)
	}

	if err := ensureBinary(o.bin); err != nil {
		rep.NodeError = err.Error()
		fmt.Fprintln(os.Stderr, "bulwark-bench:", err)
		return 1
	}
	rep.Node.Version = binaryVersion(o.bin)

	// The single node is stopped before the cluster starts: they do not
	// share the machine.
	code := 0
	if o.single {
		code = measureSingle(ctx, o, rep)
	}
	// The machine's speed drifts (by up to a fifth within a minute on a
	// shared 2-core VM), so the bound is measured again right after the
	// single node's phases, with the node stopped; logins are judged
	// against the mean of the two.
	if bound && ctx.Err() == nil {
		progress("argon2id again", procs)
		p := runPhase(ctx, phaseArgon2, procs, lim, argon2Worker(o.hash))
		p.Setup = setupAfter
		rep.add(p)
	}
	if o.cluster && ctx.Err() == nil {
		code = max(code, measureCluster(ctx, o, rep))
	}
	return code
}

// measureSingle runs phases 2 to 4 against one node. It returns 1 if the
// node could not be started or stopped cleanly, else 0.
func measureSingle(ctx context.Context, o options, rep *report) (code int) {
	lim := phaseLimits{duration: o.duration, maxOps: o.maxOps}
	progress("starting node", 0)
	n, err := startNode(ctx, o.bin, o.hash)
	if err != nil {
		rep.NodeError = err.Error()
		fmt.Fprintln(os.Stderr, "bulwark-bench: node failed to start:", err)
		return 1
	}
	defer func() {
		if err := stopNode(n); err != nil {
			rep.Notes = append(rep.Notes, "stopping the node: "+err.Error())
			code = 1
		}
	}()

	maxConc := max(slices.Max(loginConcs), slices.Max(refreshConcs), slices.Max(meConcs))
	api := map[string]*apiClient{}
	for _, mode := range o.clients {
		hc, err := n.client(mode, maxConc, requestTimeout)
		if err != nil {
			rep.NodeError = err.Error()
			return 1
		}
		defer hc.CloseIdleConnections()
		api[mode] = &apiClient{http: hc, base: n.url("")}
		proto := negotiatedProto(ctx, hc, n.url("/readyz"))
		if mode == o.clients[0] {
			rep.Node.HTTPProto = proto
		}
		rep.Node.Clients = append(rep.Node.Clients, clientInfo{Mode: mode, Proto: proto})
	}

	progress(fmt.Sprintf("creating %d users", maxConc), 0)
	users, err := n.addUsers(ctx, maxConc)
	if err != nil {
		rep.NodeError = "creating users: " + err.Error()
		fmt.Fprintln(os.Stderr, "bulwark-bench:", rep.NodeError)
		return 1
	}
	for _, a := range api {
		a.users = users
	}
	lim.cpu = cpuSampler(n.cmd.Process.Pid)
	lim.rss = newRSSWatch(n.cmd.Process.Pid)
	defer func() {
		rep.Node.PeakRSSMiB = lim.rss.overallMiB()
		if lim.rss.resetErr != nil {
			rep.Notes = append(rep.Notes, "the node's peak memory could not be reset between phases ("+lim.rss.resetErr.Error()+"): each phase shows the peak since the node started")
		}
	}()

	// Phases 2 to 4, each at every concurrency, until interrupted; logins
	// in the first client mode, refreshes and /v1/me in each.
	for _, ph := range []struct {
		name   string
		concs  []int
		worker func(*apiClient) newWorker
		modes  []string
	}{
		{phaseLogin, loginConcs, (*apiClient).loginWorker, o.clients[:1]},
		{phaseRefresh, refreshConcs, (*apiClient).refreshWorker, o.clients},
		{phaseMe, meConcs, (*apiClient).meWorker, o.clients},
	} {
		if !o.phases[ph.name] {
			continue
		}
		for _, mode := range ph.modes {
			for _, c := range ph.concs {
				if ctx.Err() != nil {
					return 0
				}
				progress(ph.name+" over "+mode, c)
				var p PhaseResult
				if ph.name == phaseLogin {
					p = measureLogins(ctx, o, n, c, lim, ph.worker(api[mode]), rep)
				} else {
					plim, wait := profileLoop(ctx, o, n, fmt.Sprintf("%s-%s-c%d", ph.name, mode, c), lim)
					p = runPhase(ctx, ph.name, c, plim, ph.worker(api[mode]))
					wait()
				}
				p.Setup, p.Client = setupSingle, mode
				rep.add(p)
			}
		}
	}
	return 0
}

// measureLogins runs a single-node login phase and reads from the node's
// metrics how many of its hash slots were held on average, which tells a
// node that hashes all the time from one that waits on something else;
// with --profile-dir it also saves a CPU profile of the node. At the
// target's concurrency the phase is paired with the argon2id bound (see
// runPaired): pairedRounds rounds of a login loop then a bound loop, each
// a quarter of a phase long, so that the login share compares two figures
// taken over the same minute; the pooled bound is added to rep.
func measureLogins(ctx context.Context, o options, n *node, conc int, lim phaseLimits, w newWorker, rep *report) PhaseResult {
	const busy = "bulwark_password_hash_busy_seconds_total"
	paired := conc == targetLoginConc
	rounds, slice := 1, lim.duration
	if paired {
		rounds, slice = pairedRounds, max(lim.duration/4, 250*time.Millisecond)
	}
	before, errBefore := n.metric(ctx, busy)
	var profiled chan error
	if o.profileDir != "" && os.MkdirAll(o.profileDir, 0o755) == nil {
		profiled = make(chan error, 1)
		path := filepath.Join(o.profileDir, fmt.Sprintf("login-c%d.pprof", conc))
		// Paired, the profile spans the bound's loops too, when the node
		// idles: its samples are the logins'.
		go func() { profiled <- n.profile(ctx, time.Duration(2*rounds)*slice, path) }()
	}
	var p PhaseResult
	if paired {
		// --max-ops bounds the whole phase, not each of its loops.
		lim.duration, lim.maxOps = slice, max(1, lim.maxOps/int64(rounds))
		var bound PhaseResult
		procs := runtime.GOMAXPROCS(0)
		p, bound, p.Rounds = runPaired(ctx,
			pairedPhase{name: phaseLogin, conc: conc, setup: w},
			pairedPhase{name: phaseArgon2, conc: procs, setup: argon2Worker(o.hash), inProcess: true},
			rounds, lim)
		bound.Setup = setupBetween
		rep.add(bound)
	} else {
		p = runPhase(ctx, phaseLogin, conc, lim, w)
	}
	after, errAfter := n.metric(ctx, busy)
	if errBefore == nil && errAfter == nil && p.Seconds > 0 {
		p.HashSlotsBusy = (after - before) / p.Seconds
	}
	if profiled != nil {
		if err := <-profiled; err != nil {
			fmt.Fprintln(os.Stderr, "bulwark-bench: profile:", err)
		}
	}
	return p
}

// profileLoop, with --profile-dir, returns lim set to save a CPU profile
// of the node over the phase's measured loop (not its workers' set-up,
// which logs them in) to name.pprof, and a function that waits for it.
// Without --profile-dir it returns lim as it is.
func profileLoop(ctx context.Context, o options, n *node, name string, lim phaseLimits) (phaseLimits, func()) {
	if o.profileDir == "" || os.MkdirAll(o.profileDir, 0o755) != nil {
		return lim, func() {}
	}
	var done chan error
	path := filepath.Join(o.profileDir, name+".pprof")
	lim.looping = func() {
		done = make(chan error, 1)
		go func() { done <- n.profile(ctx, lim.duration, path) }()
	}
	return lim, func() {
		if done == nil {
			return // the set-up failed
		}
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "bulwark-bench: profile:", err)
		}
	}
}

// ensureBinary builds cmd/bulwark into bin when it does not exist yet.
func ensureBinary(bin string) error {
	if _, err := os.Stat(bin); err == nil {
		return nil
	}
	progress("building "+bin, 0)
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return err
	}
	out, err := exec.Command("go", "build", "-tags", "no_otel", "-o", bin, "./cmd/bulwark").CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build -o %s ./cmd/bulwark: %v\n%s", bin, err, out)
	}
	return nil
}

// progress tells the operator on stderr what is running.
func progress(what string, conc int) {
	if conc > 0 {
		fmt.Fprintf(os.Stderr, "bulwark-bench: %s, concurrency %d\n", what, conc)
		return
	}
	fmt.Fprintf(os.Stderr, "bulwark-bench: %s\n", what)
}
