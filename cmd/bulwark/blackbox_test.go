package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/waitfor"
	"github.com/bulwark-auth/bulwark/node/loopback"
)

// The tests in this file run the built binary as a separate process, the
// way an operator does.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// bulwarkBinary builds cmd/bulwark once per test run.
func bulwarkBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("black-box test: builds and runs the binary")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "bulwark-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "bulwark")
		out, err := exec.Command("go", "build", "-tags", "no_otel", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// testNode is one bulwark process and its files.
type testNode struct {
	t       *testing.T
	bin     string
	dir     string
	config  string
	apiPort int
	metrics int
	cmd     *exec.Cmd
	logs    *lockedBuffer
	exited  chan error
	done    chan struct{} // closed once the process has been waited for
	// roots, when set, is trusted besides the cluster CA (an operator's
	// own certificate authority).
	roots *x509.CertPool
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newTestNode writes a config for a node on free loopback ports; extra is
// appended to it (TOML tables).
func newTestNode(t *testing.T, extra ...string) *testNode {
	t.Helper()
	return newNamedTestNode(t, "bb1", extra...)
}

// newNamedTestNode is newTestNode for a node called name.
// productRaftTiming, among a test node's extra lines (a TOML comment),
// keeps Raft at the product's default timing, which the harness otherwise
// slows (newNamedTestNode).
const productRaftTiming = "# raft at the product's default timing\n"

func newNamedTestNode(t *testing.T, name string, extra ...string) *testNode {
	t.Helper()
	n := &testNode{t: t, bin: bulwarkBinary(t), dir: t.TempDir(), apiPort: loopback.Port(t), metrics: loopback.Port(t)}
	n.config = filepath.Join(n.dir, "bulwark.toml")
	data := filepath.Join(n.dir, "data")
	// Cheap argon2 parameters keep the test fast, unless extra sets its
	// own; everything else is the default an operator gets.
	cheap := "[auth.password]\nargon2_memory_kib = 8192\nargon2_iterations = 1\n"
	if strings.Contains(strings.Join(extra, "\n"), "[auth.password]") {
		cheap = ""
	}
	// No proof-of-work gate and no detection rules (tests of lockout and
	// timing fail many logins from loopback on purpose), unless extra has
	// an [incident] table of its own. (Not by exempting loopback: exempt
	// clients also sign in during a lockdown.)
	if !strings.Contains(strings.Join(extra, "\n"), "[incident]") {
		cheap += "[incident]\nchallenge_after_failures = 0\nblock_after_failures = 0\nblock_after_usernames = 0\nrevoke_after_forbidden = 0\n"
	}
	// Lines of extra that start "api." or "cluster." go into the [api]
	// or [cluster] table, which the harness writes itself.
	var apiKeys, clusterKeys, rest []string
	for _, l := range strings.Split(strings.Join(extra, "\n"), "\n") {
		if k, ok := strings.CutPrefix(l, "api."); ok {
			apiKeys = append(apiKeys, k+"\n")
		} else if k, ok := strings.CutPrefix(l, "cluster."); ok {
			clusterKeys = append(clusterKeys, k+"\n")
		} else {
			rest = append(rest, l)
		}
	}
	// Raft at the 500 ms heartbeat of earlier releases, not the product's
	// 300 ms: make test runs many clusters at once on two cores, and a
	// stall past the 150 ms lease costs an election that tests not about
	// failover would see as 503s. Failover tests set their own, or ask
	// for the product's with productRaftTiming.
	if !slices.ContainsFunc(clusterKeys, func(k string) bool { return strings.HasPrefix(k, "heartbeat_timeout") }) &&
		!slices.Contains(rest, strings.TrimSuffix(productRaftTiming, "\n")) {
		clusterKeys = append(clusterKeys, "heartbeat_timeout = \"500ms\"\n")
	}
	extra = []string{strings.Join(rest, "\n")}
	cfg := fmt.Sprintf(`node_name = %q
data_dir = %q
[api]
listen = "127.0.0.1:%d"
`+strings.Join(apiKeys, "")+`[cluster]
listen = "127.0.0.1:%d"
`+strings.Join(clusterKeys, "")+`[seal]
mode = "software"
[metrics]
listen = "127.0.0.1:%d"
`, name, data, n.apiPort, loopback.Port(t), n.metrics) + cheap + strings.Join(extra, "\n")
	if err := os.WriteFile(n.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if n.running() {
			n.cmd.Process.Kill()
			<-n.done
		}
		if t.Failed() && n.logs != nil {
			t.Logf("%s logs:\n%s", name, n.logs)
		}
	})
	return n
}

func (n *testNode) dataDir() string { return filepath.Join(n.dir, "data") }

func (n *testNode) start() {
	n.t.Helper()
	n.launch()
}

// launch runs `serve --config` with more arguments and waits until the node
// is ready.
func (n *testNode) launch(args ...string) {
	n.t.Helper()
	n.spawn(args...)
	n.waitReady()
}

// spawn runs `serve --config` with more arguments without waiting.
func (n *testNode) spawn(args ...string) {
	n.t.Helper()
	n.logs = &lockedBuffer{}
	n.cmd = exec.Command(n.bin, append([]string{"serve", "--config", n.config}, args...)...)
	n.cmd.Stdout, n.cmd.Stderr = n.logs, n.logs
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.exited, n.done = make(chan error, 1), make(chan struct{})
	go func() {
		err := n.cmd.Wait()
		close(n.done)
		n.exited <- err
	}()
}

// running reports whether the process was started and not yet waited for.
// (Reading cmd.ProcessState instead races with the goroutine that waits.)
func (n *testNode) running() bool {
	if n.cmd == nil || n.done == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and requires a clean exit within 15 s.
func (n *testNode) stop() {
	n.t.Helper()
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-n.exited:
		if err != nil {
			n.t.Fatalf("bulwark exited with %v after SIGTERM", err)
		}
	case <-time.After(15 * time.Second):
		n.t.Fatal("bulwark did not exit within 15 s of SIGTERM")
	}
}

func (n *testNode) client() *http.Client {
	n.t.Helper()
	pem, err := os.ReadFile(filepath.Join(n.dataDir(), "ca.pem"))
	if err != nil {
		n.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if n.roots != nil {
		pool = n.roots.Clone()
	}
	if !pool.AppendCertsFromPEM(pem) {
		n.t.Fatal("ca.pem holds no certificate")
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

func (n *testNode) url(path string) string {
	return fmt.Sprintf("https://127.0.0.1:%d%s", n.apiPort, path)
}

// waitLevel waits until n's state records this binary's feature level
// (fsm.MaxLevel): a fresh cluster starts lower and its leader raises it
// within moments, and level-5 actions (a backup's record, an erase) are
// refused or skipped until then.
func (n *testNode) waitLevel() {
	n.t.Helper()
	waitfor.True(n.t, fmt.Sprintf("cluster level %d", fsm.MaxLevel), 20*time.Second, 50*time.Millisecond, func() bool {
		resp, err := n.adminSocketClient().Get("http://admin/admin/v1/status")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var st struct{ ClusterLevel int }
		return json.NewDecoder(resp.Body).Decode(&st) == nil && st.ClusterLevel == fsm.MaxLevel
	})
}

func (n *testNode) waitReady() {
	n.t.Helper()
	waitfor.True(n.t, "bulwark ready", 20*time.Second, 50*time.Millisecond, func() bool {
		select {
		case err := <-n.exited:
			n.t.Fatalf("bulwark exited during start: %v", err)
		default:
		}
		if _, err := os.Stat(filepath.Join(n.dataDir(), "ca.pem")); err != nil {
			return false
		}
		resp, err := n.client().Get(n.url("/readyz"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// cli runs an admin command against this node and returns its output and
// exit code.
func (n *testNode) cli(stdin string, args ...string) (string, string, int) {
	n.t.Helper()
	cmd := exec.Command(n.bin, append(args, "--config", n.config)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		n.t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

func TestBlackBoxServeAddUserRestart(t *testing.T) {
	n := newTestNode(t)
	n.start()

	// /readyz over TLS 1.3 with the CA from the data directory.
	resp, err := n.client().Get(n.url("/readyz"))
	if err != nil {
		t.Fatal(err)
	}
	var ready map[string]any
	json.NewDecoder(resp.Body).Decode(&ready)
	resp.Body.Close()
	if ready["seal"] != "software" {
		t.Errorf("/readyz = %v, want seal software", ready)
	}
	if resp.TLS.Version != tls.VersionTLS13 {
		t.Errorf("TLS version %x, want 1.3", resp.TLS.Version)
	}
	if got := resp.Header.Get("Strict-Transport-Security"); got == "" {
		t.Error("no HSTS header")
	}
	st, err := os.Stat(filepath.Join(n.dataDir(), "admin.sock"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket: %v, mode %v; want 0600", err, st.Mode())
	}

	// Flags after the positional, password from stdin with its newline.
	out, errOut, code := n.cli("correct horse battery staple\n", "user", "add", "Alice", "--admin", "--email", "alice@example.com", "--password-stdin")
	if code != 0 {
		t.Fatalf("user add: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "alice") {
		t.Errorf("user add printed %q", out)
	}
	// The same name, differently cased, is the same user.
	if _, errOut, code := n.cli("another long passphrase\n", "user", "add", "ALICE", "--password-stdin"); code != 1 || !strings.Contains(errOut, "exists") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("duplicate add: exit %d, stderr %q; want 1 and a one-line reason", code, errOut)
	}
	// A weak password is refused with a reason, and creates nothing.
	if _, errOut, code := n.cli("password\n", "user", "add", "bob", "--password-stdin"); code != 1 || !strings.Contains(errOut, "password") {
		t.Errorf("weak password: exit %d, stderr %q", code, errOut)
	}
	// Usage errors exit 2.
	if _, _, code := n.cli("", "user", "add", "carol"); code != 2 {
		t.Errorf("user add without --password-stdin: exit %d, want 2", code)
	}
	if _, errOut, code := n.cli("", "user", "disable", "alice"); code != 0 {
		t.Fatalf("disable: exit %d: %s", code, errOut)
	}

	n.stop()
	n.start()

	out, errOut, code = n.cli("", "user", "show", "alice", "--json")
	if code != 0 {
		t.Fatalf("user show after restart: exit %d: %s", code, errOut)
	}
	var u struct {
		Username string   `json:"username"`
		Email    string   `json:"email"`
		Roles    []string `json:"roles"`
		Disabled bool     `json:"disabled"`
	}
	if err := json.Unmarshal([]byte(out), &u); err != nil {
		t.Fatalf("user show --json: %v: %q", err, out)
	}
	if u.Username != "alice" || u.Email != "alice@example.com" || len(u.Roles) != 1 || u.Roles[0] != "admin" || !u.Disabled {
		t.Errorf("after restart: %+v", u)
	}
	out, _, _ = n.cli("", "user", "list", "--json")
	if strings.Contains(out, "bob") || !strings.Contains(out, "alice") {
		t.Errorf("user list after restart: %s", out)
	}
	n.stop()

	// Nothing under the data directory or in the logs holds the password.
	scanForSecret(t, n.dataDir(), "correct horse battery staple")
	if strings.Contains(n.logs.String(), "correct horse") {
		t.Error("the password reached the logs")
	}
}

func scanForSecret(t *testing.T, dir, secret string) {
	t.Helper()
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Type()&os.ModeSocket != 0 {
			return nil
		}
		b, err := os.ReadFile(path)
		if err == nil && bytes.Contains(b, []byte(secret)) {
			t.Errorf("%s holds the secret in plain form", path)
		}
		return nil
	})
}

func TestBlackBoxBadConfigChangesNothing(t *testing.T) {
	bin := bulwarkBinary(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cases := map[string]struct {
		config string
		want   []string
	}{
		"unknown key":  {"[api]\nlisen = \":8443\"\n", []string{"api.lisen", ":2"}},
		"bad value":    {"[auth.security]\nmax_failed_attempts = 0\n", []string{"max_failed_attempts", ":2"}},
		"bad duration": {"[auth.security]\nlockout_duration = \"15x\"\n", []string{"lockout_duration", ":2"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".toml")
			os.WriteFile(cfg, []byte(fmt.Sprintf("data_dir = %q\n", data)+tc.config), 0o600)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var stderr bytes.Buffer
			cmd := exec.CommandContext(ctx, bin, "serve", "--config", cfg)
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("serve with a bad config: %v, want exit 1", err)
			}
			for _, w := range tc.want {
				// the line number follows the file name, one line down from data_dir
				if w[0] == ':' {
					w = fmt.Sprintf(":%d", 1+int(w[1]-'0'))
				}
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr %q does not name %q", stderr.String(), w)
				}
			}
			if _, err := os.Stat(data); !os.IsNotExist(err) {
				t.Errorf("a refused start created %s", data)
			}
		})
	}
	// A missing --config file is an error, not the defaults.
	out, err := exec.Command(bin, "serve", "--config", filepath.Join(dir, "nope.toml")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "nope.toml") {
		t.Errorf("missing config: %v %s", err, out)
	}
}
