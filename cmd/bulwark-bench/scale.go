package main

// The scale run (`make bench-scale`, --scale): one node measured empty and
// then holding --scale-users users and --scale-sessions live sessions, in
// the same run, so that the throughput at size is a ratio of figures taken
// minutes apart on the same machine.
//
//  1. A node starts empty (bulwark serve), gets an escrow key (keys
//     escrow-key) and the benchmark's users (user add). Its restart to
//     ready and idle memory are measured. It keeps running.
//  2. `bulwark backup create` takes its state; the seeding (seed.go)
//     grows it by the replicated commands a login and a user creation
//     propose, applied through fsm, into a new backup archive.
//  3. A new data directory is restored from it the operator's way
//     (`backup restore`, `keys recover` with the escrow key), started,
//     restarted (start-up to ready), idle memory read; then logins,
//     refreshes and /v1/me are measured on both nodes in turns
//     (measurePairs), and the empty node stops.
//  4. `backup create` on it gives the snapshot's size and time; a second
//     node joins it with a join token, and the time until that node is
//     ready (it is caught up: node/catchup.go) is the catch-up time.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	defaultScaleJSON     = "bench-results/bench-scale.json"
	defaultScaleUsers    = 100_000
	defaultScaleSessions = 1_000_000
	// scaleUsers: the benchmark's own users, one per worker of the
	// largest phase, made in the empty node (so they are in the backup
	// with passwords the benchmark knows).
	scaleUsers = 64
	// idleSettle: how long a started node is left alone before its idle
	// memory is read.
	idleSettle = 2 * time.Second
	// bigReadyTimeout bounds a start or a catch-up at size.
	bigReadyTimeout = 10 * time.Minute
	// scaleRounds: loops of each node per phase (measurePairs).
	scaleRounds = 4
	// haltTimeout bounds a stop before a restart: past API.md's 15 s,
	// so that a slow stop at size shows in the figures instead of
	// killing the node and measuring a crash recovery.
	haltTimeout = time.Minute
)

// The scale run's phases: one concurrency each, the single-node runs'
// middle ones.
var scalePhases = []struct {
	name string
	conc int
}{{phaseLogin, 16}, {phaseRefresh, 64}, {phaseMe, 64}}

// Scale targets (issue 18).
const (
	targetScaleRSSMiB     = 300
	targetScaleIdleMiB    = 40
	targetScaleStartSecs  = 2
	targetScaleRatio      = 0.9
	scaleTargetsReference = "issue 18, Scale"
)

// scaleReport is what --scale measures, written as JSON.
type scaleReport struct {
	Kind      string    `json:"kind"`
	StartedAt time.Time `json:"started_at"`
	Command   string    `json:"command"`
	Machine   struct {
		CPUs       int    `json:"cpus"`
		GOMAXPROCS int    `json:"gomaxprocs"`
		GoVersion  string `json:"go_version"`
	} `json:"machine"`
	Version  string  `json:"bulwark_version,omitempty"`
	Users    int     `json:"users"`
	Sessions int     `json:"sessions"`
	Duration float64 `json:"phase_seconds"`

	Empty  scaleFigures `json:"empty"`
	Scaled scaleFigures `json:"scaled"`

	Seed seedResult `json:"seed"`
	// BaseBackupBytes: the empty node's backup the seeding started from.
	BaseBackupBytes int64 `json:"base_backup_bytes"`
	// RestoreSeconds: `bulwark backup restore` of the seeded archive;
	// FirstStartSeconds: the restored node's first `serve` to ready (it
	// makes its keystore, CA and certificate).
	RestoreSeconds    float64 `json:"restore_seconds"`
	FirstStartSeconds float64 `json:"first_start_seconds"`
	// Snapshot*: `bulwark backup create` on the node at size (the
	// state.db stream a snapshot sends), its time and archive size.
	SnapshotSeconds float64 `json:"snapshot_seconds"`
	SnapshotBytes   int64   `json:"snapshot_bytes"`
	// CatchUpSeconds: a second node's `serve --join` to ready, which it
	// is only once it has applied what the leader committed.
	CatchUpSeconds float64 `json:"catch_up_seconds"`
	CatchUpPeakMiB float64 `json:"catch_up_node_peak_rss_mib"`
	// AuditVerifySeconds: after the node at size restarts, how long its
	// background audit check takes to walk the whole trail again (one
	// entry per user and per session seeded), and the CPU seconds the node
	// spent meanwhile. The paired phases start after it, so that a
	// restart's one-off work lands on neither side of their ratios.
	AuditVerifySeconds    float64 `json:"audit_verify_seconds"`
	AuditVerifyCPUSeconds float64 `json:"audit_verify_cpu_seconds"`

	// Ratios: the phase's operations per second at size over empty.
	Ratios  map[string]float64 `json:"ratios"`
	Targets []scaleTarget      `json:"targets"`
	Notes   []string           `json:"notes,omitempty"`
	Error   string             `json:"error,omitempty"`
}

// scaleFigures are one node's figures, empty or at size.
type scaleFigures struct {
	// StartSeconds: a restart (SIGTERM, then serve) to /readyz 200.
	StartSeconds float64 `json:"start_seconds"`
	// Idle memory, idleSettle after the start: resident (VmRSS), its
	// anonymous part (heap, stacks) and its file-backed part (state.db's
	// and the log's mapped pages, the binary).
	IdleRSSMiB  float64 `json:"idle_rss_mib"`
	IdleAnonMiB float64 `json:"idle_rss_anon_mib"`
	IdleFileMiB float64 `json:"idle_rss_file_mib"`
	// Settled memory, the same idleSettle after the background audit
	// check has walked the whole trail (at size it walks for about two
	// minutes after a start; the figures above are taken during it): the
	// idle target is judged on these.
	SettledRSSMiB  float64 `json:"settled_rss_mib"`
	SettledAnonMiB float64 `json:"settled_rss_anon_mib"`
	SettledFileMiB float64 `json:"settled_rss_file_mib"`
	// PeakRSSMiB: VmHWM over the start and the phases.
	PeakRSSMiB float64       `json:"peak_rss_mib"`
	Phases     []PhaseResult `json:"phases"`
}

type scaleTarget struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Goal  string  `json:"goal"`
	Met   bool    `json:"met"`
}

// runScale does the scale run and returns the exit code.
func runScale(ctx context.Context, o options) int {
	rep := &scaleReport{Kind: "bench-scale", StartedAt: time.Now().UTC(), Users: o.scaleUsers, Sessions: o.scaleSessions,
		Duration: o.duration.Seconds(), Command: "go run ./cmd/bulwark-bench " + strings.Join(os.Args[1:], " ")}
	rep.Machine.CPUs, rep.Machine.GOMAXPROCS, rep.Machine.GoVersion = runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version()
	code := 0
	if err := ensureBinary(o.bin); err != nil {
		rep.Error, code = err.Error(), 1
	} else {
		rep.Version = binaryVersion(o.bin)
		if err := measureScale(ctx, o, rep); err != nil {
			rep.Error, code = err.Error(), 1
			fmt.Fprintln(os.Stderr, "bulwark-bench:", err)
		}
	}
	if ctx.Err() != nil {
		rep.Notes = append(rep.Notes, "interrupted: results are partial")
		code = 1
	}
	rep.evaluate()
	rep.print(os.Stdout)
	if err := writeJSONFile(o.jsonPath, rep); err != nil {
		fmt.Fprintln(os.Stderr, "bulwark-bench:", err)
		return 1
	}
	fmt.Printf("\nresults written to %s\n", o.jsonPath)
	return code
}

func measureScale(ctx context.Context, o options, rep *scaleReport) (err error) {
	work, err := os.MkdirTemp("", "bulwark-scale-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	escrowKey, escrowPub := filepath.Join(work, "escrow.key"), filepath.Join(work, "escrow.pub")
	if out, err := exec.CommandContext(ctx, o.bin, "keys", "escrow-keygen", escrowKey, escrowPub).CombinedOutput(); err != nil {
		return fmt.Errorf("keys escrow-keygen: %v: %s", err, out)
	}

	// 1. Empty.
	progress("starting the empty node", 0)
	empty, err := startNode(ctx, o.bin, o.hash)
	if err != nil {
		return fmt.Errorf("empty node: %w", err)
	}
	defer func() {
		if empty != nil {
			stopNode(empty)
		}
	}()
	if err := empty.cli(ctx, "", "keys", "escrow-key", escrowPub); err != nil {
		return err
	}
	progress(fmt.Sprintf("creating %d users", scaleUsers), 0)
	users, err := empty.addUsers(ctx, scaleUsers)
	if err != nil {
		return fmt.Errorf("creating users: %w", err)
	}
	if rep.Empty, err = restartIdle(ctx, empty, "empty"); err != nil {
		return err
	}
	base := filepath.Join(work, "base.bwbk")
	if err := empty.cli(ctx, "", "backup", "create", base); err != nil {
		return err
	}
	rep.BaseBackupBytes = fileSize(base)

	// 2. Seeding.
	progress(fmt.Sprintf("seeding %d users and %d sessions", o.scaleUsers, o.scaleSessions), 0)
	seeded := filepath.Join(work, "scaled.bwbk")
	if rep.Seed, err = seedArchive(ctx, base, seeded, defaultSeedSpec(o.scaleUsers, o.scaleSessions, o.hash)); err != nil {
		return fmt.Errorf("seeding: %w", err)
	}
	os.Remove(base)

	// 3. At size, restored the operator's way.
	n, err := prepareNode(o.bin, "bench1", "", o.hash)
	if err != nil {
		return err
	}
	defer stopNode(n)
	progress("restoring the seeded backup", 0)
	t0 := time.Now()
	if err := n.cli(ctx, "", "backup", "restore", seeded); err != nil {
		return err
	}
	rep.RestoreSeconds = time.Since(t0).Seconds()
	os.Remove(seeded)
	if err := n.cli(ctx, "", "keys", "recover", "--escrow-private-key", escrowKey); err != nil {
		return err
	}
	n.readyTimeout = bigReadyTimeout
	progress("first start of the restored node", 0)
	t0 = time.Now()
	if err := n.launch(ctx); err != nil {
		return fmt.Errorf("restored node: %w", err)
	}
	rep.FirstStartSeconds = time.Since(t0).Seconds()
	if rep.Scaled, err = restartIdle(ctx, n, "at size"); err != nil {
		return err
	}
	progress("waiting for the node at size to verify its audit trail", 0)
	if rep.AuditVerifySeconds, rep.AuditVerifyCPUSeconds, err = waitAuditVerified(ctx, n); err != nil {
		return err
	}
	if _, _, err := waitAuditVerified(ctx, empty); err != nil {
		return err
	}
	// Both checks done: idle memory, idleSettle later.
	select {
	case <-time.After(idleSettle):
	case <-ctx.Done():
		return ctx.Err()
	}
	rep.Empty.SettledRSSMiB, rep.Empty.SettledAnonMiB, rep.Empty.SettledFileMiB = rssMiB(empty)
	rep.Scaled.SettledRSSMiB, rep.Scaled.SettledAnonMiB, rep.Scaled.SettledFileMiB = rssMiB(n)
	if err := measurePairs(ctx, o, empty, n, users, rep); err != nil {
		return err
	}
	// The empty node has done its part: the rest runs on the node at
	// size alone.
	if err := stopNode(empty); err != nil {
		rep.Notes = append(rep.Notes, "stopping the empty node: "+err.Error())
	}
	empty = nil

	// 4. Snapshot and catch-up.
	progress("backup of the node at size", 0)
	snap := filepath.Join(work, "snapshot.bwbk")
	t0 = time.Now()
	if err := n.cli(ctx, "", "backup", "create", snap); err != nil {
		return err
	}
	rep.SnapshotSeconds, rep.SnapshotBytes = time.Since(t0).Seconds(), fileSize(snap)
	os.Remove(snap)

	progress("a second node joins and catches up", 0)
	tok, err := n.cliOutput(ctx, "", "cluster", "join-token")
	if err != nil {
		return err
	}
	joiner, err := prepareNode(o.bin, "bench2", "", o.hash)
	if err != nil {
		return err
	}
	defer stopNode(joiner)
	joiner.readyTimeout = bigReadyTimeout
	t0 = time.Now()
	if err := joiner.launch(ctx, "--join", strings.TrimSpace(tok)); err != nil {
		return fmt.Errorf("joining node: %w", err)
	}
	rep.CatchUpSeconds = time.Since(t0).Seconds()
	if kib, err := vmHWM(joiner.cmd.Process.Pid); err == nil {
		rep.CatchUpPeakMiB = float64(kib) / 1024
	}
	return nil
}

// waitAuditVerified waits until n's background audit check has verified
// every entry (bulwark_audit_verified_seq reaches bulwark_audit_last_seq)
// and returns how long that took from now and the node's CPU seconds
// meanwhile. A broken chain, or no progress within bigReadyTimeout, is an
// error.
func waitAuditVerified(ctx context.Context, n *node) (secs, cpuSecs float64, err error) {
	t0 := time.Now()
	cpu0, _ := procCPU(n.cmd.Process.Pid)
	deadline := t0.Add(bigReadyTimeout)
	for {
		verified, err1 := n.metric(ctx, "bulwark_audit_verified_seq")
		last, err2 := n.metric(ctx, "bulwark_audit_last_seq")
		broken, err3 := n.metric(ctx, "bulwark_audit_chain_broken")
		if err := errors.Join(err1, err2, err3); err != nil {
			return 0, 0, err
		}
		if broken != 0 {
			return 0, 0, fmt.Errorf("audit chain broken on the node at size")
		}
		// An empty trail (last 0) is done once the check has had time for
		// its first round, which looks before it walks.
		if verified >= last && (last > 0 || time.Since(t0) > 5*time.Second) {
			cpu1, _ := procCPU(n.cmd.Process.Pid)
			return time.Since(t0).Seconds(), (cpu1 - cpu0).Seconds(), nil
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("audit check at %.0f of %.0f entries after %s", verified, last, bigReadyTimeout)
		}
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		}
	}
}

// rssMiB is n's resident memory now, its anonymous part and its
// file-backed part, in MiB (zeros if /proc cannot be read).
func rssMiB(n *node) (rss, anon, file float64) {
	m, err := procStatus(n.cmd.Process.Pid)
	if err != nil {
		return 0, 0, 0
	}
	return m["VmRSS"] / 1024, m["RssAnon"] / 1024, m["RssFile"] / 1024
}

// restartIdle restarts n (the start-up figure) and reads its idle
// memory idleSettle later.
func restartIdle(ctx context.Context, n *node, label string) (scaleFigures, error) {
	var f scaleFigures
	progress("restarting the "+label+" node", 0)
	if err := n.halt(); err != nil {
		return f, err
	}
	t0 := time.Now()
	if err := n.launch(ctx); err != nil {
		return f, fmt.Errorf("%s node: restart: %w", label, err)
	}
	f.StartSeconds = time.Since(t0).Seconds()
	select {
	case <-time.After(idleSettle):
	case <-ctx.Done():
		return f, ctx.Err()
	}
	f.IdleRSSMiB, f.IdleAnonMiB, f.IdleFileMiB = rssMiB(n)
	return f, nil
}

// measurePairs measures each scale phase on the empty node and on the
// node at size in alternation, scaleRounds loops of each, a quarter of a
// phase long, both nodes running throughout: on a shared machine whose
// load changes by the minute, the ratio of two figures taken over the
// same stretch of time is the one that means something (runPaired does
// the same for logins against the argon2id bound). Over HTTP/1.1. Then
// each node's peak memory since its restart.
func measurePairs(ctx context.Context, o options, empty, scaled *node, users []benchUser, rep *scaleReport) error {
	type side struct {
		n   *node
		api *apiClient
		lim phaseLimits
		f   *scaleFigures
	}
	var sides []side
	for _, x := range []struct {
		n *node
		f *scaleFigures
	}{{empty, &rep.Empty}, {scaled, &rep.Scaled}} {
		hc, err := x.n.client(clientHTTP1, 64, requestTimeout)
		if err != nil {
			return err
		}
		defer hc.CloseIdleConnections()
		pid := x.n.cmd.Process.Pid
		sides = append(sides, side{n: x.n, api: &apiClient{http: hc, base: x.n.url(""), users: users},
			lim: phaseLimits{duration: max(o.duration/scaleRounds, 250*time.Millisecond), maxOps: max(1, o.maxOps/scaleRounds),
				cpu: cpuSampler(pid)}, f: x.f})
	}
	labels := []string{"empty", "at size"}
	for _, ph := range scalePhases {
		progress(ph.name+", empty and at size in turns", ph.conc)
		ops := make([][]op, len(sides))
		loops := make([]loopResult, len(sides))
		for i, sd := range sides {
			var w newWorker
			switch ph.name {
			case phaseLogin:
				w = sd.api.loginWorker()
			case phaseRefresh:
				w = sd.api.refreshWorker()
			default:
				w = sd.api.meWorker()
			}
			var err error
			if ops[i], err = setupWorkers(ctx, ph.conc, w); err != nil {
				return fmt.Errorf("%s %s: %w", ph.name, labels[i], err)
			}
		}
		// With --profile-dir, each node's CPU profile spans the phase's
		// turns; a node idles through the other's, so its samples are its
		// own loops'.
		wait := profileTurns(ctx, o, ph.name, ph.conc, sides[0].lim.duration, empty, scaled)
		for range scaleRounds {
			for i, sd := range sides {
				if err := ctx.Err(); err != nil {
					return err
				}
				loops[i].add(runLoop(ctx, ops[i], sd.lim))
			}
		}
		wait()
		for i, sd := range sides {
			p := loops[i].result(ph.name, ph.conc, sd.lim)
			p.Setup, p.Client = labels[i], clientHTTP1
			sd.f.Phases = append(sd.f.Phases, p)
		}
	}
	for _, sd := range sides {
		if kib, err := vmHWM(sd.n.cmd.Process.Pid); err == nil {
			sd.f.PeakRSSMiB = float64(kib) / 1024
		}
	}
	return nil
}

// profileTurns, with --profile-dir, saves a CPU profile of each node over
// a scale phase's turns (scaleRounds loops of loop each, per node) to
// scale-PHASE-cCONC-empty.pprof and -size.pprof, and returns a function
// that waits for them. Without --profile-dir it does nothing.
func profileTurns(ctx context.Context, o options, phase string, conc int, loop time.Duration, empty, scaled *node) (wait func()) {
	if o.profileDir == "" || os.MkdirAll(o.profileDir, 0o755) != nil {
		return func() {}
	}
	d := 2 * scaleRounds * loop
	done := make(chan error, 2)
	for _, x := range []struct {
		n     *node
		label string
	}{{empty, "empty"}, {scaled, "size"}} {
		path := filepath.Join(o.profileDir, fmt.Sprintf("scale-%s-c%d-%s.pprof", phase, conc, x.label))
		go func() { done <- x.n.profile(ctx, d, path) }()
	}
	return func() {
		for range 2 {
			if err := <-done; err != nil {
				fmt.Fprintln(os.Stderr, "bulwark-bench: profile:", err)
			}
		}
	}
}

// halt stops n's process with SIGTERM (killing it after stopTimeout) and
// keeps its directory, for a restart.
func (n *node) halt() error {
	if n.cmd == nil || n.cmd.Process == nil {
		return nil
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-n.exited:
		n.cmd = nil
		if err != nil {
			return fmt.Errorf("%s exited with %v after SIGTERM", n.name, err)
		}
		return nil
	case <-time.After(haltTimeout):
		n.cmd.Process.Kill()
		<-n.exited
		n.cmd = nil
		return fmt.Errorf("%s did not exit within %v of SIGTERM; killed", n.name, haltTimeout)
	}
}

// procStatus reads the kB fields of /proc/PID/status.
func procStatus(pid int) (map[string]float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if v, isKB := strings.CutSuffix(strings.TrimSpace(v), " kB"); ok && isKB {
			if x, err := strconv.ParseFloat(v, 64); err == nil {
				m[k] = x
			}
		}
	}
	return m, sc.Err()
}

func fileSize(path string) int64 {
	if fi, err := os.Stat(path); err == nil {
		return fi.Size()
	}
	return 0
}

// evaluate computes the ratios and judges the targets.
func (r *scaleReport) evaluate() {
	r.Ratios = map[string]float64{}
	for i, ph := range scalePhases {
		if i < len(r.Empty.Phases) && i < len(r.Scaled.Phases) && r.Empty.Phases[i].OpsPerSec > 0 {
			r.Ratios[ph.name] = r.Scaled.Phases[i].OpsPerSec / r.Empty.Phases[i].OpsPerSec
		}
	}
	r.Targets = nil
	add := func(name string, v float64, goal string, met bool) {
		r.Targets = append(r.Targets, scaleTarget{Name: name, Value: v, Goal: goal, Met: met})
	}
	if r.Scaled.PeakRSSMiB > 0 {
		add("peak RSS at size (MiB)", r.Scaled.PeakRSSMiB, fmt.Sprintf("≤ %d", targetScaleRSSMiB), r.Scaled.PeakRSSMiB <= targetScaleRSSMiB)
	}
	if r.Scaled.StartSeconds > 0 {
		add("start-up to ready at size (s)", r.Scaled.StartSeconds, fmt.Sprintf("≤ %d", targetScaleStartSecs), r.Scaled.StartSeconds <= targetScaleStartSecs)
	}
	for _, ph := range scalePhases {
		if v, ok := r.Ratios[ph.name]; ok {
			add(fmt.Sprintf("%s c=%d at size / empty", ph.name, ph.conc), v, fmt.Sprintf("≥ %.2f", targetScaleRatio), v >= targetScaleRatio)
		}
	}
	if r.Empty.SettledRSSMiB > 0 {
		add("idle RSS, empty (MiB)", r.Empty.SettledRSSMiB, fmt.Sprintf("≤ %d", targetScaleIdleMiB), r.Empty.SettledRSSMiB <= targetScaleIdleMiB)
	}
	if r.Scaled.SettledRSSMiB > 0 {
		add("idle RSS at size (MiB)", r.Scaled.SettledRSSMiB, fmt.Sprintf("≤ %d", targetScaleIdleMiB), r.Scaled.SettledRSSMiB <= targetScaleIdleMiB)
	}
}

// print writes the table.
func (r *scaleReport) print(w io.Writer) {
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	fmt.Fprintf(w, "\nbulwark-bench --scale: %d users, %d live sessions (%d CPUs, %s phases; shared machine: noisy, read the ratios)\n",
		r.Users, r.Sessions, r.Machine.CPUs, time.Duration(r.Duration*float64(time.Second)))
	fmt.Fprintf(w, "%-34s %14s %14s\n", "", "empty", "at size")
	fmt.Fprintf(w, "%-34s %14.2f %14.2f\n", "restart to ready (s)", r.Empty.StartSeconds, r.Scaled.StartSeconds)
	fmt.Fprintf(w, "%-34s %14.1f %14.1f\n", "RSS 2 s after the restart (MiB)", r.Empty.IdleRSSMiB, r.Scaled.IdleRSSMiB)
	fmt.Fprintf(w, "%-34s %14.1f %14.1f\n", "  of which anonymous (MiB)", r.Empty.IdleAnonMiB, r.Scaled.IdleAnonMiB)
	fmt.Fprintf(w, "%-34s %14.1f %14.1f\n", "  of which file-backed (MiB)", r.Empty.IdleFileMiB, r.Scaled.IdleFileMiB)
	fmt.Fprintf(w, "%-34s %14.1f %14.1f\n", "idle RSS after the audit check (MiB)", r.Empty.SettledRSSMiB, r.Scaled.SettledRSSMiB)
	fmt.Fprintf(w, "%-34s %14.1f %14.1f\n", "  of which anonymous (MiB)", r.Empty.SettledAnonMiB, r.Scaled.SettledAnonMiB)
	fmt.Fprintf(w, "%-34s %14.1f %14.1f\n", "  of which file-backed (MiB)", r.Empty.SettledFileMiB, r.Scaled.SettledFileMiB)
	fmt.Fprintf(w, "%-34s %14.1f %14.1f\n", "peak RSS, restart + phases (MiB)", r.Empty.PeakRSSMiB, r.Scaled.PeakRSSMiB)
	for i, ph := range scalePhases {
		var e, s PhaseResult
		if i < len(r.Empty.Phases) {
			e = r.Empty.Phases[i]
		}
		if i < len(r.Scaled.Phases) {
			s = r.Scaled.Phases[i]
		}
		fmt.Fprintf(w, "%-34s %14.0f %14.0f   ratio %.2f\n", fmt.Sprintf("%s c=%d (ops/s)", ph.name, ph.conc), e.OpsPerSec, s.OpsPerSec, r.Ratios[ph.name])
		fmt.Fprintf(w, "%-34s %14.1f %14.1f\n", "  p99 (ms)", e.P99Ms, s.P99Ms)
		if s.Errors > 0 || e.Errors > 0 {
			fmt.Fprintf(w, "%-34s %14d %14d   %s\n", "  errors", e.Errors, s.Errors, s.FirstError+e.FirstError)
		}
	}
	fmt.Fprintf(w, "seeding: %d entries applied in %.1f s; state.db %.0f MiB (the empty node's backup: %.1f MiB)\n",
		r.Seed.Entries, r.Seed.Seconds, mib(r.Seed.StateBytes), mib(r.BaseBackupBytes))
	fmt.Fprintf(w, "backup restore %.1f s; first start after it %.2f s\n", r.RestoreSeconds, r.FirstStartSeconds)
	fmt.Fprintf(w, "snapshot (backup create) at size: %.0f MiB in %.1f s\n", mib(r.SnapshotBytes), r.SnapshotSeconds)
	fmt.Fprintf(w, "a joining node caught up in %.1f s (its peak RSS %.0f MiB)\n", r.CatchUpSeconds, r.CatchUpPeakMiB)
	fmt.Fprintf(w, "after a restart at size, the audit check walked the trail in %.1f s (%.1f CPU s); the phases ran after it\n",
		r.AuditVerifySeconds, r.AuditVerifyCPUSeconds)
	fmt.Fprintf(w, "\ntargets (%s):\n", scaleTargetsReference)
	for _, t := range r.Targets {
		verdict := "MISSED"
		if t.Met {
			verdict = "met"
		}
		fmt.Fprintf(w, "  %-34s %10.2f  %-8s %s\n", t.Name, t.Value, t.Goal, verdict)
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	if r.Error != "" {
		fmt.Fprintln(w, "error:", r.Error)
	}
}

func writeJSONFile(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
