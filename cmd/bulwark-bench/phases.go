package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/bulwark-auth/bulwark/authcore"
)

// op performs one measured operation; nil means success (a 2xx answer).
type op func(ctx context.Context) error

// newWorker prepares worker i before the clock starts (e.g. logs it in)
// and returns the operation the worker repeats.
type newWorker func(ctx context.Context, i int) (op, error)

// setupParallelism bounds concurrent worker setups: they log in, and
// logins are argon2id-bound, so more would only queue on the node.
const setupParallelism = 4

// phaseLimits bounds every phase in time and in count, so each stops by
// itself.
type phaseLimits struct {
	duration time.Duration
	maxOps   int64
	cpu      func() cpuSample // nil: CPU use is not measured
	// nodes names the node processes cpu samples, in its order; with
	// more than one, each one's use is reported (PhaseResult.PerNode).
	nodes []string
	// rss follows the node processes' peak memory (nil: not measured).
	rss *rssWatch
	// looping, if set, is called by runPhase when the workers are set up
	// and the measured loop starts (to profile the loop alone).
	looping func()
}

// runPhase sets up conc workers, then lets each repeat its operation until
// the phase duration has passed or maxOps operations have been started,
// and summarizes. Operations in flight when the clock runs out complete
// and count; the elapsed time includes them. Only successful operations
// contribute latencies.
func runPhase(ctx context.Context, name string, conc int, lim phaseLimits, setup newWorker) PhaseResult {
	lim.rss.reset()
	ops, err := setupWorkers(ctx, conc, setup)
	if err != nil {
		return setupFailed(name, conc, err)
	}
	if lim.looping != nil {
		lim.looping()
	}
	r := runLoop(ctx, ops, lim).result(name, conc, lim)
	r.PeakRSSMiB = lim.rss.peak()
	return r
}

// setupFailed is the result of a phase whose workers could not be set up.
func setupFailed(name string, conc int, err error) PhaseResult {
	r := summarize(name, conc, nil, int64(conc), 0)
	r.SetupFailed, r.FirstError = true, "setup: "+err.Error()
	return r
}

// loopResult is what one or more measured loops over the same workers saw.
type loopResult struct {
	lats     []time.Duration // of the successful operations
	errors   int64
	firstErr error
	hitCap   bool
	elapsed  time.Duration
	cpu      cpuSample // used during the loops
}

// add counts b's loop in a, as if they had been one loop.
func (a *loopResult) add(b loopResult) {
	a.lats = append(a.lats, b.lats...)
	a.errors += b.errors
	a.firstErr = cmp.Or(a.firstErr, b.firstErr)
	a.hitCap = a.hitCap || b.hitCap
	a.elapsed += b.elapsed
	a.cpu = a.cpu.plus(b.cpu)
}

// runLoop lets each of ops repeat until lim.duration has passed or
// lim.maxOps operations have been started.
func runLoop(ctx context.Context, ops []op, lim phaseLimits) loopResult {
	var (
		started  atomic.Int64
		errCount atomic.Int64
		firstErr error
		errOnce  sync.Once
		wg       sync.WaitGroup
	)
	lats := make([][]time.Duration, len(ops))
	cpu0 := sampleCPU(lim.cpu)
	deadline := time.Now().Add(lim.duration)
	start := time.Now()
	for i := range ops {
		wg.Go(func() {
			for time.Now().Before(deadline) && ctx.Err() == nil && started.Add(1) <= lim.maxOps {
				t0 := time.Now()
				if err := ops[i](ctx); err != nil {
					if ctx.Err() != nil {
						break // interrupted: not the node's error
					}
					errCount.Add(1)
					errOnce.Do(func() { firstErr = err })
					continue
				}
				lats[i] = append(lats[i], time.Since(t0))
			}
		})
	}
	wg.Wait()
	l := loopResult{errors: errCount.Load(), firstErr: firstErr, hitCap: started.Load() > lim.maxOps,
		elapsed: time.Since(start), cpu: sampleCPU(lim.cpu).minus(cpu0)}
	for _, w := range lats {
		l.lats = append(l.lats, w...)
	}
	return l
}

// result summarizes the loops as phase name at concurrency conc.
func (l loopResult) result(name string, conc int, lim phaseLimits) PhaseResult {
	r := summarize(name, conc, l.lats, l.errors, l.elapsed)
	r.HitCap = l.hitCap
	if secs := l.elapsed.Seconds(); secs > 0 {
		r.NodeCores = l.cpu.node.Seconds() / secs
		r.BenchCores = l.cpu.bench.Seconds() / secs
		// Other processes' share, from the machine's busy time; never
		// below zero (the counters tick at different moments).
		r.OtherCores = max(0, l.cpu.machine.Seconds()/secs-r.NodeCores-r.BenchCores)
		if len(lim.nodes) > 1 && len(l.cpu.nodes) == len(lim.nodes) {
			for i, name := range lim.nodes {
				r.PerNode = append(r.PerNode, NodeCores{Node: name, Cores: l.cpu.nodes[i].Seconds() / secs})
			}
		}
	}
	if l.firstErr != nil {
		r.FirstError = l.firstErr.Error()
	}
	return r
}

// pairedRound is one round of runPaired: the two loops' operations per
// second.
type pairedRound struct {
	A float64 `json:"a_ops_per_sec"`
	B float64 `json:"b_ops_per_sec"`
}

// runPaired measures two phases in alternation, rounds times each for
// lim.duration: a, b, a, b... Each phase's result pools its loops, so
// both are measured over the same stretch of time; on a machine whose
// speed drifts by a fifth within a minute, that is what makes their ratio
// mean something. Workers of both are set up once, before the first loop.
func runPaired(ctx context.Context, a, b pairedPhase, rounds int, lim phaseLimits) (PhaseResult, PhaseResult, []pairedRound) {
	lim.rss.reset()
	opsA, err := setupWorkers(ctx, a.conc, a.setup)
	if err != nil {
		return setupFailed(a.name, a.conc, err), PhaseResult{Phase: b.name, Concurrency: b.conc}, nil
	}
	opsB, err := setupWorkers(ctx, b.conc, b.setup)
	if err != nil {
		return PhaseResult{Phase: a.name, Concurrency: a.conc}, setupFailed(b.name, b.conc, err), nil
	}
	var la, lb loopResult
	var each []pairedRound
	for range rounds {
		if ctx.Err() != nil {
			break
		}
		ra := runLoop(ctx, opsA, a.limits(lim))
		rb := runLoop(ctx, opsB, b.limits(lim))
		la.add(ra)
		lb.add(rb)
		each = append(each, pairedRound{A: ra.rate(), B: rb.rate()})
	}
	ra := la.result(a.name, a.conc, a.limits(lim))
	ra.PeakRSSMiB = lim.rss.peak() // the node's, during a's loops (b's run in process)
	return ra, lb.result(b.name, b.conc, b.limits(lim)), each
}

// pairedPhase is one side of runPaired.
type pairedPhase struct {
	name  string
	conc  int
	setup newWorker
	// inProcess: the phase runs in this process alone (the argon2id
	// bound); the node's CPU is not sampled.
	inProcess bool
}

func (p pairedPhase) limits(lim phaseLimits) phaseLimits {
	if p.inProcess {
		lim.cpu, lim.nodes, lim.rss = cpuSampler(0), nil, nil
	}
	return lim
}

// rate is the loop's successful operations per second.
func (l loopResult) rate() float64 {
	if l.elapsed <= 0 {
		return 0
	}
	return float64(len(l.lats)) / l.elapsed.Seconds()
}

// setupWorkers runs setup for each of conc workers, a few at a time.
func setupWorkers(ctx context.Context, conc int, setup newWorker) ([]op, error) {
	ops := make([]op, conc)
	errs := make([]error, conc)
	sem := make(chan struct{}, setupParallelism)
	var wg sync.WaitGroup
	for i := range conc {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ops[i], errs[i] = setup(ctx, i)
		})
	}
	wg.Wait()
	failed := 0
	var first error
	for _, err := range errs {
		if err != nil {
			failed++
			first = cmp.Or(first, err)
		}
	}
	if first != nil {
		return nil, fmt.Errorf("%d of %d workers: %w", failed, conc, first)
	}
	return ops, nil
}

// hashParams are argon2id's cost parameters, the daemon's defaults unless
// overridden on the command line.
type hashParams struct {
	memoryKiB   uint32
	iterations  uint32
	parallelism uint8
}

// argon2Worker: phase 1, the argon2id bound. In process, with no network
// and no node, each worker checks a password at the node's parameters
// with authcore.VerifyPassword, the very function the node's logins call;
// run with GOMAXPROCS workers this is the most password checks per second
// the machine can do, which password logins are judged against.
func argon2Worker(hp hashParams) newWorker {
	return func(_ context.Context, i int) (op, error) {
		password := "bench-password-" + randomHex(8)
		salt := []byte(randomHex(8)) // 16 bytes, as the daemon's salts
		phc, err := authcore.HashPassword(password, authcore.HashParams{
			MemoryKiB: hp.memoryKiB, Iterations: hp.iterations, Parallelism: hp.parallelism}, salt)
		if err != nil {
			return nil, err
		}
		return func(context.Context) error {
			ok, err := authcore.VerifyPassword(password, phc)
			if err == nil && !ok {
				err = errors.New("password check failed")
			}
			return err
		}, nil
	}
}

// xcryptoWorker hashes like argon2Worker with golang.org/x/crypto/argon2,
// which bulwark's argon2 package derives from: a reference row, showing
// what reusing argon2's memory gains; no target uses it.
func xcryptoWorker(hp hashParams) newWorker {
	return func(_ context.Context, i int) (op, error) {
		password := []byte("bench-password-" + randomHex(8))
		salt := []byte(randomHex(8))
		return func(context.Context) error {
			argon2.IDKey(password, salt, hp.iterations, hp.memoryKiB, hp.parallelism, 32)
			return nil
		}, nil
	}
}

// apiClient speaks the JSON API of API.md to one node.
type apiClient struct {
	http  *http.Client
	base  string
	users []benchUser
}

// tokens is API.md's token answer (plus the MFA challenge, which the
// benchmark's plain users never get).
type tokens struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	SessionID    string `json:"session_id"`
	MFARequired  bool   `json:"mfa_required"`
}

// loginWorker: phase 2, password logins. Each request makes the node
// check an argon2id hash, sign a JWT and commit a new session through
// Raft; worker i logs in as user i.
func (a *apiClient) loginWorker() newWorker {
	return func(_ context.Context, i int) (op, error) {
		u := a.users[i%len(a.users)]
		return func(ctx context.Context) error {
			_, err := a.login(ctx, u)
			return err
		}, nil
	}
}

// refreshWorker: phase 3, refresh-token rotation. Each worker logs in
// once, then trades its newest refresh token for a new pair in a loop:
// no password hashing, but a replicated write per request (the old token
// dies). After a failure the worker logs in again, on the phase's clock.
func (a *apiClient) refreshWorker() newWorker {
	return func(ctx context.Context, i int) (op, error) {
		u := a.users[i%len(a.users)]
		t, err := a.login(ctx, u)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) error {
			var next tokens
			err := a.do(ctx, http.MethodPost, "/v1/auth/refresh", "", map[string]string{"refresh_token": t.RefreshToken}, &next)
			if err == nil && next.RefreshToken == "" {
				err = errors.New("/v1/auth/refresh: answer without refresh_token")
			}
			if err != nil {
				if fresh, lerr := a.login(ctx, u); lerr == nil {
					t = fresh
				}
				return err
			}
			t = next
			return nil
		}, nil
	}
}

// meWorker: phase 4, access-token validation. Each worker logs in once,
// then calls GET /v1/me with its Bearer token: a JWT signature check plus
// a look-up that the session is still alive, all reads.
func (a *apiClient) meWorker() newWorker {
	return func(ctx context.Context, i int) (op, error) {
		t, err := a.login(ctx, a.users[i%len(a.users)])
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) error {
			return a.do(ctx, http.MethodGet, "/v1/me", t.AccessToken, nil, nil)
		}, nil
	}
}

// login posts u's password and returns the tokens.
func (a *apiClient) login(ctx context.Context, u benchUser) (tokens, error) {
	var t tokens
	err := a.do(ctx, http.MethodPost, "/v1/auth/login", "", map[string]string{"username": u.name, "password": u.password}, &t)
	switch {
	case err != nil:
		return t, err
	case t.MFARequired:
		return t, fmt.Errorf("/v1/auth/login: %s got an MFA challenge", u.name)
	case t.AccessToken == "" || t.RefreshToken == "":
		return t, errors.New("/v1/auth/login: answer without tokens")
	}
	return t, nil
}

// do sends one request with an optional JSON body and Bearer token. A 2xx
// answer is decoded into out (or discarded); anything else is an error
// naming the status and the API error code.
func (a *apiClient) do(ctx context.Context, method, path, bearer string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var e struct {
			Error string `json:"error"`
		}
		json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&e)
		io.Copy(io.Discard, resp.Body)
		return fmt.Errorf("%s %s: %s %s", method, path, resp.Status, e.Error)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return fmt.Errorf("%s %s: decoding answer: %w", method, path, err)
		}
	}
	io.Copy(io.Discard, resp.Body) // so the connection is reused
	return nil
}
