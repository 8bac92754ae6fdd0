package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	readyTimeout = 30 * time.Second
	stopTimeout  = 15 * time.Second // API.md: exits within 15 s of SIGTERM
)

// node is one bulwark process started for the benchmark, with its own
// temporary data directory.
type node struct {
	bin     string
	name    string // node_name
	dir     string // temporary directory: config, data, log
	config  string
	apiAddr string
	// metricsAddr serves /metrics and, on a benchmark node, /debug/pprof.
	metricsAddr string
	logPath     string
	cmd         *exec.Cmd
	exited      chan error
	// readyTimeout bounds a launch (0: readyTimeout); a node at scale
	// starts or catches up for longer.
	readyTimeout time.Duration
}

func (n *node) dataDir() string { return filepath.Join(n.dir, "data") }

func (n *node) url(path string) string { return "https://" + n.apiAddr + path }

// nodeConfig is the TOML a benchmark node runs with: default settings
// except loopback ports, software sealing, the rate limit exemption for
// loopback (so the load is not throttled) and a session cap high enough
// that no login evicts another worker's session. A non-empty issuer is
// written as [tokens] issuer: the nodes of a cluster share it, so that a
// token from one verifies on every other.
func nodeConfig(name, data, apiAddr, clusterAddr, metricsAddr, issuer string, hp hashParams) string {
	tokens := ""
	if issuer != "" {
		tokens = fmt.Sprintf("\n[tokens]\nissuer = %q\n", issuer)
	}
	return fmt.Sprintf(`node_name = %q
data_dir = %q

[api]
listen = %q

[cluster]
listen = %q

[seal]
mode = "software"

[metrics]
listen = %q
pprof = true

[auth.rate_limit]
exempt = ["127.0.0.0/8"]

[auth.password]
argon2_memory_kib = %d
argon2_iterations = %d
argon2_parallelism = %d
%s`, name, data, apiAddr, clusterAddr, metricsAddr, hp.memoryKiB, hp.iterations, hp.parallelism, tokens)
}

// startNode starts the single benchmark node: a fresh temporary
// directory and config, `bulwark serve`, and a wait until /readyz answers
// 200. On error everything it started is stopped and removed again.
func startNode(ctx context.Context, bin string, hp hashParams) (n *node, err error) {
	n, err = prepareNode(bin, "bench1", "", hp)
	if err != nil {
		return nil, err
	}
	if err := n.launch(ctx); err != nil {
		stopNode(n)
		return nil, err
	}
	return n, nil
}

// prepareNode creates a node's temporary directory and writes its config
// on free loopback ports, taken now: a node should be launched right
// after, before another process's connections can take them. On error
// the directory is removed again.
func prepareNode(bin, name, issuer string, hp hashParams) (*node, error) {
	dir, err := os.MkdirTemp("", "bulwark-bench-")
	if err != nil {
		return nil, err
	}
	n := &node{bin: bin, name: name, dir: dir, config: filepath.Join(dir, "bulwark.toml"), logPath: filepath.Join(dir, "bulwark.log")}
	ports, err := freePorts(3)
	if err == nil {
		n.apiAddr, n.metricsAddr = ports[0], ports[2]
		cfg := nodeConfig(name, n.dataDir(), ports[0], ports[1], ports[2], issuer, hp)
		err = os.WriteFile(n.config, []byte(cfg), 0o600)
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return n, nil
}

// launch runs `bulwark serve --config F [extra...]` and waits until the
// node answers /readyz with 200. On error the process may still run:
// stopNode stops it.
func (n *node) launch(ctx context.Context, extra ...string) error {
	logFile, err := os.Create(n.logPath)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child holds its own descriptor
	n.cmd = exec.Command(n.bin, append([]string{"serve", "--config", n.config}, extra...)...)
	n.cmd.Stdout, n.cmd.Stderr = logFile, logFile
	// Its own process group keeps a terminal's Ctrl-C for us, so the node
	// gets an orderly SIGTERM; Pdeathsig stops it if we are killed.
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := n.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", n.bin, err)
	}
	n.exited = make(chan error, 1)
	go func() { n.exited <- n.cmd.Wait() }()
	if err := n.waitReady(ctx); err != nil {
		return fmt.Errorf("%w\n--- %s log (tail) ---\n%s", err, n.name, n.logTail(20))
	}
	return nil
}

// waitReady polls /readyz with the node's CA until it answers 200.
func (n *node) waitReady(ctx context.Context) error {
	limit := readyTimeout
	if n.readyTimeout > 0 {
		limit = n.readyTimeout
	}
	deadline := time.Now().Add(limit)
	var last string
	for time.Now().Before(deadline) {
		select {
		case err := <-n.exited:
			n.exited <- err // stopNode waits on it too
			return fmt.Errorf("node exited during start: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if c, err := n.client(clientHTTP1, 4, 2*time.Second); err == nil {
			resp, err := c.Get(n.url("/readyz"))
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return nil
				}
				last = resp.Status
			} else {
				last = err.Error()
			}
			c.CloseIdleConnections()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("node not ready within %v (last: %s)", limit, last)
}

// stopNode sends SIGTERM, waits up to 15 s (then kills), and removes the
// node's temporary directory. It is safe to call on a partly started node.
func stopNode(n *node) error {
	var err error
	if n.cmd != nil && n.cmd.Process != nil {
		n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case werr := <-n.exited:
			if werr != nil {
				err = fmt.Errorf("node exited with %v after SIGTERM", werr)
			}
		case <-time.After(stopTimeout):
			n.cmd.Process.Kill()
			<-n.exited
			err = fmt.Errorf("node did not exit within %v of SIGTERM; killed", stopTimeout)
		}
	}
	if rerr := os.RemoveAll(n.dir); rerr != nil && err == nil {
		err = rerr
	}
	return err
}

// Client modes: how the benchmark's workers reach a node. Applications
// use both, and the targets hold for both.
const (
	// clientHTTP1: TLS 1.3 and HTTP/1.1 over one keep-alive connection
	// per worker, the way many independent clients reach a server, each
	// request on its caller's goroutine (leanTransport).
	clientHTTP1 = "http1"
	// clientHTTP2: every worker's requests multiplexed as streams on one
	// HTTP/2 connection (net/http's Transport), the way one busy
	// application server behind a connection pool of one reaches it.
	clientHTTP2 = "http2"
)

// client returns an HTTP client for mode that trusts only the node's CA:
// for clientHTTP1 with up to 2*conc idle connections, for clientHTTP2
// with exactly one connection (requests past the server's stream limit
// wait for a stream, not for a second connection).
func (n *node) client(mode string, conc int, timeout time.Duration) (*http.Client, error) {
	pem, err := os.ReadFile(filepath.Join(n.dataDir(), "ca.pem"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("ca.pem holds no certificate")
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	switch mode {
	case clientHTTP1:
		return &http.Client{Transport: newLeanTransport(n.apiAddr, cfg, 2*conc, timeout)}, nil
	case clientHTTP2:
		var protos http.Protocols
		protos.SetHTTP2(true)
		tr := &http.Transport{
			TLSClientConfig: cfg, Protocols: &protos, MaxConnsPerHost: 1,
			HTTP2: &http.HTTP2Config{StrictMaxConcurrentRequests: true},
		}
		return &http.Client{Transport: tr, Timeout: timeout}, nil
	}
	return nil, fmt.Errorf("unknown client mode %q", mode)
}

// benchUser is an account created for the benchmark.
type benchUser struct{ name, password string }

// addUsers creates count plain (non-admin, so no MFA) users with the admin
// CLI, a few at a time.
func (n *node) addUsers(ctx context.Context, count int) ([]benchUser, error) {
	users := make([]benchUser, count)
	errs := make([]error, count)
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i := range users {
		users[i] = benchUser{name: fmt.Sprintf("bench%03d", i), password: "bench-" + randomHex(16)}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = n.addUser(ctx, users[i])
		})
	}
	wg.Wait()
	return users, errors.Join(errs...)
}

// addUser creates u, retrying for a while when the cluster answers that
// it has no leader yet (an election under load): a retry that finds the
// name taken means an earlier try took effect.
func (n *node) addUser(ctx context.Context, u benchUser) error {
	for try := 0; ; try++ {
		err := n.cli(ctx, u.password+"\n", "user", "add", u.name, "--password-stdin")
		switch {
		case err != nil && strings.Contains(err.Error(), "try again shortly") && try < 40:
			select {
			case <-ctx.Done():
				return err
			case <-time.After(250 * time.Millisecond):
			}
			continue
		case err != nil && try > 0 && strings.Contains(err.Error(), "already exists"):
			return nil
		}
		return err
	}
}

// cli runs one admin command against the node.
func (n *node) cli(ctx context.Context, stdin string, args ...string) error {
	_, err := n.cliOutput(ctx, stdin, args...)
	return err
}

// cliOutput runs one admin command against the node and returns what it
// printed on stdout.
func (n *node) cliOutput(ctx context.Context, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, n.bin, append(args, "--config", n.config)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("bulwark %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()+errOut.String()))
	}
	return out.String(), nil
}

// logTail returns the last lines of the node's log.
func (n *node) logTail(lines int) string {
	b, _ := os.ReadFile(n.logPath)
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// freePorts returns count distinct free 127.0.0.1 addresses.
func freePorts(count int) ([]string, error) {
	var addrs []string
	for range count {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close() // held open until all are chosen, so they differ
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// metric reads one series without labels from the node's /metrics.
func (n *node) metric(ctx context.Context, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.metricsAddr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s: no %s", n.metricsAddr, name)
}

// profile saves a CPU profile of the node over d to path.
func (n *node) profile(ctx context.Context, d time.Duration, path string) error {
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", n.metricsAddr, max(1, int(d.Seconds())))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
