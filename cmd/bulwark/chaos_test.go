package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/bulwark-auth/bulwark/internal/waitfor"
)

// TestChaos runs three real nodes on loopback under a nemesis (kill -9
// and restart, SIGSTOP pauses, one- and two-way cuts and slow links on
// the cluster port through a proxy per node) while several clients log
// in, refresh, log out, delete sessions and change passwords, and an
// administrator disables users. The history is checked with porcupine
// against the model in chaos_model_test.go, the node that acknowledged a
// revocation is held to it at once (strictRevocations), bursts of wrong
// passwords are held to the lockout bound through the nodes' own
// password-check counters, and the bbolt files of every crashed node pass
// bbolt's check. It prints the faults, the operations and the anomalies,
// and fails on any anomaly.
//
// It runs with BULWARK_CHAOS_RUN=short (about a minute, 15 faults) or
// =full (make chaos: 60 faults, at most 6 minutes). BULWARK_CHAOS_BUG=
// revocation|lockout|ackearly builds the binary with the planted bug of
// that name (authcore/chaosbug_*.go) and inverts the verdict: the test
// fails unless the checker reports an anomaly (make chaos-selftest).
func TestChaos(t *testing.T) {
	mode := os.Getenv("BULWARK_CHAOS_RUN")
	var maxFaults int
	var runFor time.Duration
	switch mode {
	case "short":
		maxFaults, runFor = 15, 50*time.Second
	case "full":
		maxFaults, runFor = 60, 6*time.Minute
	default:
		t.Skip("set BULWARK_CHAOS_RUN=short or full (make chaos)")
	}
	bug := os.Getenv("BULWARK_CHAOS_BUG")
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("BULWARK_CHAOS_SEED"), 10, 64); err == nil {
		seed = s
	}
	t.Logf("seed %d (BULWARK_CHAOS_SEED to repeat the nemesis' and clients' choices)", seed)

	bin := bulwarkBinary(t)
	if bug != "" {
		bin = chaosBugBinary(t, bug)
	}
	nodes := formChaosCluster(t, bin)
	ca := chaosCAPool(t, nodes[0].testNode)
	start := time.Now()
	const window = 2500 * time.Millisecond // cluster.max_staleness (2 s) and a margin for the answer's trip

	w := &chaosWorkload{nodes: nodes, ca: ca, rng: rand.New(rand.NewPCG(seed, 1)), bin: bin}
	users := []string{}
	for i := range 8 {
		u := fmt.Sprintf("chaos-user-%d", i)
		nodes[0].addUser(u, chaosPassword(0), false)
		users = append(users, u)
	}
	victims := []string{}
	for i := range 12 {
		v := fmt.Sprintf("chaos-victim-%d", i)
		nodes[0].addUser(v, chaosPassword(0), false)
		victims = append(victims, v)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.client(c, users[2*c:2*c+2], rand.New(rand.NewPCG(seed, uint64(10+c))), stop)
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		w.admin(users, rand.New(rand.NewPCG(seed, 2)), stop)
	}()
	go func() {
		defer wg.Done()
		w.lockoutBursts(victims, stop)
	}()

	nem := &nemesis{t: t, nodes: nodes, rng: rand.New(rand.NewPCG(seed, 3)), faults: map[string]int{}}
	time.Sleep(2 * time.Second) // a calm start: every client's first session
	nem.run(maxFaults, start.Add(runFor))
	time.Sleep(3 * time.Second) // healed: the last checks see a calm cluster
	close(stop)
	wg.Wait()

	// Check.
	recs := w.records()
	var anomalies []string
	ops := chaosOps(recs, start, window)
	checkStart := time.Now()
	res, info := porcupine.CheckOperationsVerbose(chaosModel.ToModel(), ops, 2*time.Minute)
	checkTook := time.Since(checkStart)
	switch res {
	case porcupine.Illegal:
		path := filepath.Join(os.TempDir(), fmt.Sprintf("bulwark-chaos-%d.html", seed))
		if err := porcupine.VisualizePath(chaosModel.ToModel(), info, path); err == nil {
			t.Logf("porcupine's view of the history: %s", path)
		}
		anomalies = append(anomalies, "porcupine: the history is not linearizable against the model of sessions and credentials"+
			" (a revoked session, old password or dead refresh token accepted, or an acknowledged write lost): "+illegalUsers(t, ops))
	case porcupine.Unknown:
		t.Logf("porcupine timed out on %d operations: no verdict (not counted as an anomaly)", len(ops))
	}
	anomalies = append(anomalies, strictRevocations(recs)...)
	anomalies = append(anomalies, w.lockoutAnomalies()...)
	if t.Failed() { // bbolt check after a crash, or a node that did not come back
		anomalies = append(anomalies, "a crashed node's bbolt files failed bbolt's check, or a node did not come back (above)")
	}

	kinds := map[chaosOpKind]map[chaosOutcome]int{}
	for _, r := range recs {
		if kinds[r.In.Kind] == nil {
			kinds[r.In.Kind] = map[chaosOutcome]int{}
		}
		kinds[r.In.Kind][r.Out.Outcome]++
	}
	var opsLine []string
	for _, k := range []chaosOpKind{opLogin, opMe, opRefresh, opLogout, opDelete, opChpw, opDisable} {
		opsLine = append(opsLine, fmt.Sprintf("%s %d/%d/%d", k, kinds[k][outOK], kinds[k][outDenied], kinds[k][outUnknown]))
	}
	t.Logf("faults injected: %d %v; bbolt files checked after crashes: %d", nem.total(), nem.faults, nem.crashChecks)
	for _, l := range nem.log {
		t.Logf("  fault %s", l)
	}
	t.Logf("operations: %d (ok/denied/unknown) %s; porcupine: %s on %d operations in %v", len(recs), strings.Join(opsLine, ", "), res, len(ops), checkTook.Round(time.Millisecond))
	w.mu.Lock()
	t.Logf("lockout bursts: %d checked, %d skipped (a node paused, restarted or unreachable around it)", w.burstsChecked, w.burstsSkipped)
	w.mu.Unlock()
	t.Logf("anomalies found: %d", len(anomalies))
	for _, a := range anomalies {
		t.Logf("  ANOMALY %s", a)
	}

	if bug != "" {
		if len(anomalies) == 0 {
			t.Errorf("planted bug %q: the checker found no anomaly", bug)
		}
		return
	}
	if len(anomalies) > 0 {
		t.Errorf("%d anomalies", len(anomalies))
	}
}

// illegalUsers names the users whose part of the history porcupine
// finds impossible.
// It writes each such user's history, ordered by call, to a file.
func illegalUsers(t *testing.T, ops []porcupine.Operation) string {
	var bad []string
	for _, part := range chaosModel.Partition(ops) {
		user := part[0].Input.(chaosInput).User
		if r := porcupine.CheckOperationsTimeout(chaosModel.ToModel(), part, time.Minute); r != porcupine.Illegal {
			if r == porcupine.Unknown {
				bad = append(bad, user+" (no verdict alone within a minute)")
			}
			continue
		}
		bad = append(bad, user)
		part = slices.Clone(part)
		slices.SortFunc(part, func(a, b porcupine.Operation) int { return cmp.Compare(a.Call, b.Call) })
		var b strings.Builder
		for _, op := range part {
			ret := "never"
			if op.Return < 1<<62 {
				ret = fmt.Sprintf("%.3f", float64(op.Return)/1e9)
			}
			fmt.Fprintf(&b, "%9.3f %9s c%-2d %s\n", float64(op.Call)/1e9, ret, op.ClientId, chaosModel.DescribeOperation(op.Input, op.Output))
		}
		// The shortest prefix (by return) porcupine already finds
		// impossible ends near the anomaly (a hint: an operation still
		// pending at its end is left out).
		byReturn := slices.Clone(part)
		slices.SortFunc(byReturn, func(a, b porcupine.Operation) int { return cmp.Compare(a.Return, b.Return) })
		lo, hi := 1, len(part)
		for lo < hi {
			mid := (lo + hi) / 2
			if porcupine.CheckOperationsTimeout(chaosModel.ToModel(), byReturn[:mid], time.Minute) == porcupine.Illegal {
				hi = mid
			} else {
				lo = mid + 1
			}
		}
		last := chaosModel.DescribeOperation(byReturn[hi-1].Input, byReturn[hi-1].Output)
		fmt.Fprintf(&b, "the first %d operations to return are already impossible; the last of them:\n%s\n", hi, last)
		bad[len(bad)-1] += fmt.Sprintf(" (around %s)", last)
		path := filepath.Join(os.TempDir(), fmt.Sprintf("bulwark-chaos-%s-%d.txt", user, time.Now().UnixNano()))
		if os.WriteFile(path, []byte(b.String()), 0o600) == nil {
			t.Logf("%s's history (call, return in s from the start; a check's call moved back by the window): %s", user, path)
		}
	}
	return strings.Join(bad, ", ")
}

// chaosPassword is a user's password at generation gen.
func chaosPassword(gen int) string {
	return fmt.Sprintf("violet harbor lantern %d quartz", gen)
}

// chaosBugBinary builds cmd/bulwark with the planted bug's tag.
func chaosBugBinary(t *testing.T, bug string) string {
	t.Helper()
	switch bug {
	case "revocation", "lockout", "ackearly":
	default:
		t.Fatalf("BULWARK_CHAOS_BUG=%q: want revocation, lockout or ackearly", bug)
	}
	path := filepath.Join(t.TempDir(), "bulwark-"+bug)
	out, err := exec.Command("go", "build", "-tags", "chaosbug_"+bug, "-o", path, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build -tags chaosbug_%s: %v\n%s", bug, err, out)
	}
	return path
}

// formChaosCluster starts three nodes whose cluster ports are reached
// through a fault proxy each, and waits for three voters.
func formChaosCluster(t *testing.T, bin string) []*chaosNode {
	t.Helper()
	extra := "[auth.rate_limit]\nexempt = [\"127.0.0.0/8\"]\n"
	nodes := make([]*chaosNode, 3)
	for i := range nodes {
		tn := newClusterNode(t, fmt.Sprintf("node%d", i+1), extra)
		tn.bin = bin
		nodes[i] = &chaosNode{testNode: tn, proxy: advertiseThroughProxy(t, tn)}
		if i == 0 {
			tn.start()
		} else {
			tn.startJoin(nodes[0].joinToken())
		}
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			if n.running() {
				n.cmd.Process.Signal(syscall.SIGCONT)
			}
		}
	})
	waitfor.Nil(t, "3 voters", 30*time.Second, 100*time.Millisecond, func() error {
		st := nodes[0].clusterStatus()
		voters := 0
		for _, m := range st.Nodes {
			if m.Suffrage == "voter" && m.Reachable {
				voters++
			}
		}
		if voters != 3 {
			return fmt.Errorf("cluster status %+v", st)
		}
		return nil
	})
	return nodes
}

func chaosCAPool(t *testing.T, n *testNode) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(n.dataDir(), "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("ca.pem holds no certificate")
	}
	return pool
}

// chaosWorkload is the clients' side: it records every operation.
type chaosWorkload struct {
	nodes []*chaosNode
	ca    *x509.CertPool
	rng   *rand.Rand
	bin   string

	// quiet is held for reading by every client operation and for
	// writing by a lockout burst, so a burst's password checks are its
	// own.
	quiet sync.RWMutex

	mu            sync.Mutex
	recs          []chaosRecord
	bursts        []string // lockout bound exceeded
	burstsChecked int
	burstsSkipped int
	unknownPwd    []time.Time // client password checks of unknown outcome (they may still run)
}

func (w *chaosWorkload) record(r chaosRecord) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.recs = append(w.recs, r)
	if r.Out.Outcome == outUnknown && (r.In.Kind == opLogin || r.In.Kind == opChpw) {
		w.unknownPwd = append(w.unknownPwd, r.Return)
	}
}

func (w *chaosWorkload) records() []chaosRecord {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.recs)
}

func (w *chaosWorkload) lockoutAnomalies() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.bursts)
}

// httpClient is one client's connection pool to a node (each client has
// its own, so a paused node holds up only the clients that asked it).
func (w *chaosWorkload) httpClient() *http.Client {
	return &http.Client{Timeout: 4 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: w.ca}, MaxIdleConnsPerHost: 4}}
}

// call sends one API request and classifies its answer.
func call(hc *http.Client, n *chaosNode, method, path, bearer string, body any) (chaosOutcome, map[string]any) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, n.url(path), rd)
	if err != nil {
		return outUnknown, nil
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return outUnknown, nil
	}
	defer resp.Body.Close()
	out := map[string]any{}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return outUnknown, nil
	}
	if len(raw) > 0 {
		json.Unmarshal(raw, &out)
	}
	switch {
	case resp.StatusCode == 200 || resp.StatusCode == 204:
		return outOK, out
	case resp.StatusCode == 400 || resp.StatusCode == 401 || resp.StatusCode == 403 || resp.StatusCode == 404:
		return outDenied, out
	default: // 429 (a lock says nothing of the password), 5xx
		return outUnknown, out
	}
}

// heldSession is a session a client holds.
type heldSession struct {
	sid, access, refresh string
	deadRefresh          []string // refresh tokens it exchanged
}

// userView is what a client believes of one of its users.
type userView struct {
	name     string
	gen      int  // the last generation known to be set
	maybeGen bool // a change to gen+1 answered unknown: it may be set
	live     []*heldSession
	revoked  []*heldSession // ended by the client, probed later
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

// client drives its users until stop: one operation at a time, on a node
// picked at random for each.
func (w *chaosWorkload) client(id int, names []string, rng *rand.Rand, stop <-chan struct{}) {
	hcs := make([]*http.Client, len(w.nodes))
	for i := range hcs {
		hcs[i] = w.httpClient()
	}
	views := make([]*userView, len(names))
	for i, n := range names {
		views[i] = &userView{name: n}
	}
	for {
		select {
		case <-stop:
			return
		default:
		}
		u := views[rng.IntN(len(views))]
		ni := rng.IntN(len(w.nodes))
		w.quiet.RLock()
		w.step(id, u, ni, hcs[ni], rng)
		w.quiet.RUnlock()
		time.Sleep(time.Duration(5+rng.IntN(20)) * time.Millisecond)
	}
}

// do runs one operation and records it.
func (w *chaosWorkload) do(id int, in chaosInput, f func() (chaosOutcome, map[string]any)) (chaosOutcome, map[string]any) {
	called := time.Now()
	outcome, body := f()
	out := chaosOutput{Outcome: outcome}
	if outcome == outOK {
		out.Sid, out.Refresh = str(body, "session_id"), str(body, "refresh_token")
	}
	w.record(chaosRecord{Client: id, In: in, Out: out, Called: called, Return: time.Now()})
	return outcome, body
}

func (w *chaosWorkload) step(id int, u *userView, ni int, hc *http.Client, rng *rand.Rand) {
	n := w.nodes[ni]
	base := chaosInput{User: u.name, Node: n.name()}
	in := base
	login := func(gen int) *heldSession {
		in := base
		in.Kind, in.Gen = opLogin, gen
		o, b := w.do(id, in, func() (chaosOutcome, map[string]any) {
			return call(hc, n, "POST", "/v1/auth/login", "", map[string]string{"username": u.name, "password": chaosPassword(gen)})
		})
		if o != outOK {
			return nil
		}
		if gen > u.gen {
			u.gen, u.maybeGen = gen, false
		}
		s := &heldSession{sid: str(b, "session_id"), access: str(b, "access_token"), refresh: str(b, "refresh_token")}
		u.live = append(u.live, s)
		return s
	}
	me := func(s *heldSession) {
		in := base
		in.Kind, in.Sid = opMe, s.sid
		w.do(id, in, func() (chaosOutcome, map[string]any) { return call(hc, n, "GET", "/v1/me", s.access, nil) })
	}
	revoke := func(s *heldSession) {
		u.live = slices.DeleteFunc(u.live, func(x *heldSession) bool { return x == s })
		u.revoked = append(u.revoked, s)
		if len(u.revoked) > 6 {
			u.revoked = u.revoked[1:]
		}
	}
	if len(u.live) == 0 {
		gen := u.gen
		if u.maybeGen && rng.IntN(2) == 0 {
			gen++
		}
		if s := login(gen); s != nil {
			me(s)
		}
		return
	}
	s := u.live[rng.IntN(len(u.live))]
	switch r := rng.IntN(100); {
	case r < 30:
		me(s)
	case r < 45:
		in.Kind, in.Sid, in.Refresh = opRefresh, s.sid, s.refresh
		o, b := w.do(id, in, func() (chaosOutcome, map[string]any) {
			return call(hc, n, "POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": s.refresh})
		})
		switch o {
		case outOK:
			s.deadRefresh = append(s.deadRefresh, s.refresh)
			s.refresh, s.access = str(b, "refresh_token"), str(b, "access_token")
		default:
			revoke(s) // its refresh token's fate is unknown, or refused: the client stops using it
		}
	case r < 55:
		if len(u.live) < 3 {
			login(u.gen)
		} else {
			me(s)
		}
	case r < 63:
		in.Kind, in.Sid = opLogout, s.sid
		o, _ := w.do(id, in, func() (chaosOutcome, map[string]any) { return call(hc, n, "POST", "/v1/auth/logout", s.access, nil) })
		revoke(s)
		if o == outOK {
			me(s) // at once, on the node that acknowledged it
		}
	case r < 70:
		var other *heldSession
		for _, x := range u.live {
			if x != s {
				other = x
			}
		}
		if other == nil {
			login(u.gen)
			return
		}
		in.Kind, in.Sid, in.Target = opDelete, s.sid, other.sid
		o, _ := w.do(id, in, func() (chaosOutcome, map[string]any) {
			return call(hc, n, "DELETE", "/v1/me/sessions/"+other.sid, s.access, nil)
		})
		revoke(other)
		if o == outOK {
			me(other)
		}
	case r < 75:
		from := u.gen
		in.Kind, in.Sid, in.Gen = opChpw, s.sid, from
		o, b := w.do(id, in, func() (chaosOutcome, map[string]any) {
			return call(hc, n, "POST", "/v1/me/password", s.access,
				map[string]string{"current_password": chaosPassword(from), "new_password": chaosPassword(from + 1)})
		})
		switch o {
		case outOK:
			// The session that changed it goes on with fresh tokens;
			// every other one dies.
			u.gen, u.maybeGen = from+1, false
			var other *heldSession
			for _, x := range slices.Clone(u.live) {
				if x.sid != str(b, "session_id") {
					revoke(x)
					other = x
				}
			}
			if x := str(b, "session_id"); x != s.sid {
				s = &heldSession{sid: x}
				u.live = append(u.live, s)
			}
			s.access, s.refresh, s.deadRefresh = str(b, "access_token"), str(b, "refresh_token"), nil
			if other != nil {
				me(other) // another session, on the node that acknowledged the change
			}
			login(from) // the old password, there too
		case outUnknown:
			u.maybeGen = true
			for _, x := range slices.Clone(u.live) {
				revoke(x)
			}
		}
	case r < 88:
		if len(u.revoked) > 0 {
			me(u.revoked[rng.IntN(len(u.revoked))]) // a session ended a while ago
		} else {
			me(s)
		}
	case r < 93:
		if len(s.deadRefresh) > 0 {
			// A dead refresh token: refused, and its session revoked.
			dead := s.deadRefresh[rng.IntN(len(s.deadRefresh))]
			in.Kind, in.Sid, in.Refresh = opRefresh, s.sid, dead
			w.do(id, in, func() (chaosOutcome, map[string]any) {
				return call(hc, n, "POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": dead})
			})
			revoke(s)
			me(s)
		} else {
			me(s)
		}
	default:
		if u.gen > 0 && rng.IntN(3) == 0 {
			login(u.gen - 1) // an old password
		} else {
			me(s)
		}
	}
}

// admin disables up to two users over the run, through a random node's
// admin socket, a while apart.
func (w *chaosWorkload) admin(users []string, rng *rand.Rand, stop <-chan struct{}) {
	disabled := 0
	for disabled < 2 {
		select {
		case <-stop:
			return
		case <-time.After(time.Duration(8+rng.IntN(8)) * time.Second):
		}
		u := users[rng.IntN(len(users))]
		n := w.nodes[rng.IntN(len(w.nodes))]
		in := chaosInput{Kind: opDisable, User: u, Node: n.name()}
		w.quiet.RLock()
		w.do(99, in, func() (chaosOutcome, map[string]any) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, w.bin, "user", "disable", u, "--config", n.config)
			out, err := cmd.CombinedOutput()
			if err != nil {
				if strings.Contains(string(out), "not found") {
					return outDenied, nil
				}
				return outUnknown, nil
			}
			return outOK, nil
		})
		w.quiet.RUnlock()
		disabled++
	}
}

// lockoutBursts sends, every few seconds, 40 concurrent wrong passwords
// for a fresh victim spread over the three nodes while the clients wait,
// and holds the password checks the nodes count for it (the sum of
// bulwark_password_checks_total before and after) to max_failed_attempts
// (5), plus the client password checks of unknown outcome of the last
// 30 s (a request a paused node still runs). A burst around a node's
// pause, restart or failed scrape is skipped: its counter says nothing.
func (w *chaosWorkload) lockoutBursts(victims []string, stop <-chan struct{}) {
	hc := w.httpClient()
	scrapeAll := func() (int, bool) {
		sum := 0
		for _, n := range w.nodes {
			if n.paused.Load() {
				return 0, false
			}
			c := &http.Client{Timeout: 2 * time.Second}
			resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", n.metrics))
			if err != nil {
				return 0, false
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			found := false
			for _, l := range strings.Split(string(raw), "\n") {
				if v, ok := strings.CutPrefix(l, "bulwark_password_checks_total "); ok {
					f, err := strconv.ParseFloat(v, 64)
					if err != nil {
						return 0, false
					}
					sum += int(f)
					found = true
				}
			}
			if !found {
				return 0, false
			}
		}
		return sum, true
	}
	restarts := func() int64 {
		var s int64
		for _, n := range w.nodes {
			s += n.restarts.Load()
		}
		return s
	}
	for _, v := range victims {
		select {
		case <-stop:
			return
		case <-time.After(4 * time.Second):
		}
		w.quiet.Lock()
		r0 := restarts()
		before, ok0 := scrapeAll()
		var wg sync.WaitGroup
		for i := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				call(hc, w.nodes[i%3], "POST", "/v1/auth/login", "", map[string]string{"username": v, "password": "wrong password " + strconv.Itoa(i)})
			}()
		}
		wg.Wait()
		after, ok1 := scrapeAll()
		ok := ok0 && ok1 && restarts() == r0
		w.mu.Lock()
		slack := 0
		for _, at := range w.unknownPwd {
			if time.Since(at) < 30*time.Second {
				slack++
			}
		}
		if !ok {
			w.burstsSkipped++
		} else {
			w.burstsChecked++
			if got := after - before; got > 5+slack {
				w.bursts = append(w.bursts, fmt.Sprintf("lockout bound: %d passwords checked across the cluster for 40 wrong attempts on %s, bound 5 (+%d client checks of unknown outcome)", got, v, slack))
			}
		}
		w.mu.Unlock()
		w.quiet.Unlock()
	}
}
