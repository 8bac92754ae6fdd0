package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// slowClient dials the node's API port from a loopback source address of
// its own (127.0.0.0/8 is all local on Linux), so that one test plays many
// clients.
type slowClient struct {
	t    *testing.T
	addr string
	tls  *tls.Config
}

func newSlowClient(t *testing.T, n *testNode) *slowClient {
	pem, err := os.ReadFile(filepath.Join(n.dataDir(), "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &slowClient{t: t, addr: fmt.Sprintf("127.0.0.1:%d", n.apiPort),
		tls: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}}}
}

// dial opens a TLS connection from src and completes the handshake.
func (s *slowClient) dial(src string) (*tls.Conn, error) {
	d := &net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	raw, err := d.Dial("tcp", s.addr)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, s.tls)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// get sends one keep-alive GET on c and returns the status (0 on error).
func get(c *tls.Conn, br *bufio.Reader, path, header string) int {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n", path, header); err != nil {
		return 0
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// closedWithin reports whether the server closes c within d, while the
// client sends one byte of trickle every 500 ms.
func closedWithin(c *tls.Conn, d time.Duration, trickle string) bool {
	stop := time.Now().Add(d)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.SetReadDeadline(stop)
		io.Copy(io.Discard, c) // returns at EOF (closed) or at the deadline
	}()
	for i := 0; time.Now().Before(stop); i++ {
		select {
		case <-done:
			return time.Now().Before(stop)
		case <-time.After(500 * time.Millisecond):
		}
		c.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte{trickle[i%len(trickle)]}); err != nil {
			<-done
			return true
		}
	}
	<-done
	return false
}

// nodeUsage is the node process's resident memory (KiB) and open file
// descriptors, from /proc (zero if it cannot be read).
func nodeUsage(n *testNode) (rssKiB, fds int) {
	pid := n.cmd.Process.Pid
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			rssKiB, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return rssKiB, len(ents)
}

// goroutines reads go_goroutines from the node's /metrics (0 if it cannot).
func goroutines(n *testNode) int {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", n.metrics))
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			g, _ := strconv.ParseFloat(v, 64)
			return int(g)
		}
	}
	return 0
}

// TestBlackBoxSlowClients: while clients hold idle connections (more than
// api.max_connections, from many addresses), one address opens far more
// than api.max_connections_per_client, slowloris clients trickle their
// headers and bodies, and others send oversized headers, a client that
// comes along keeps being served promptly, the node's connections stay
// within max_connections (its file descriptors say so), its memory stays
// bounded, trickling headers are cut at ReadHeaderTimeout (5 s), bodies
// at ReadTimeout (15 s), and oversized headers get 431.
func TestBlackBoxSlowClients(t *testing.T) {
	if testing.Short() {
		t.Skip("black-box test")
	}
	const (
		maxConns  = 600
		perClient = 40
		idleAddrs = 75 // × perClient idle connections: 3,000, five times maxConns
	)
	n := newTestNode(t, fmt.Sprintf("api.max_connections = %d\napi.max_connections_per_client = %d", maxConns, perClient))
	n.start()
	n.addUser("visitor", "correct horse battery staple", false)
	sc := newSlowClient(t, n)

	// A visitor on a connection of its own for each request, as a new
	// client is: every request must be answered, each within 5 s (the
	// machine is busy with the handshakes of thousands of connections).
	var visits, slow, slowest atomic.Int64
	var failures sync.Map
	stopVisits := make(chan struct{})
	visitsDone := make(chan struct{})
	go func() {
		defer close(visitsDone)
		c := n.client()
		c.Transport.(*http.Transport).DisableKeepAlives = true
		for i := 0; ; i++ {
			select {
			case <-stopVisits:
				return
			case <-time.After(100 * time.Millisecond):
			}
			start := time.Now()
			var code int
			var err error
			if i%5 == 0 {
				var resp *http.Response
				resp, err = c.Post(n.url("/v1/auth/login"), "application/json",
					strings.NewReader(`{"username":"visitor","password":"correct horse battery staple"}`))
				if err == nil {
					code = resp.StatusCode
					resp.Body.Close()
				}
				if code != http.StatusOK && code != http.StatusCreated {
					failures.Store(fmt.Sprintf("login %d: %d %v", i, code, err), true)
				}
			} else {
				var resp *http.Response
				resp, err = c.Get(n.url("/readyz"))
				if err == nil {
					code = resp.StatusCode
					resp.Body.Close()
				}
				if code != http.StatusOK {
					failures.Store(fmt.Sprintf("readyz %d: %d %v", i, code, err), true)
				}
			}
			visits.Add(1)
			d := time.Since(start)
			slowest.Store(max(slowest.Load(), int64(d)))
			if d > 5*time.Second {
				slow.Add(1)
				failures.Store(fmt.Sprintf("request %d took %v", i, d), true)
			}
		}
	}()

	baseRSS, baseFDs := nodeUsage(n)
	baseG := goroutines(n)
	var peakRSS, peakFDs, peakG atomic.Int64
	stopSampling := make(chan struct{})
	samplingDone := make(chan struct{})
	go func() {
		defer close(samplingDone)
		for {
			rss, fds := nodeUsage(n)
			peakRSS.Store(max(peakRSS.Load(), int64(rss)))
			peakFDs.Store(max(peakFDs.Load(), int64(fds)))
			peakG.Store(max(peakG.Load(), int64(goroutines(n))))
			select {
			case <-stopSampling:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()

	// One address opening five times its share, before the others (so
	// that no idle connection of its is closed to make room): at most
	// perClient of its connections are answered.
	var greedyServed atomic.Int64
	func() {
		var mine []*tls.Conn
		defer func() {
			for _, c := range mine {
				c.Close()
			}
		}()
		for range 5 * perClient {
			c, err := sc.dial("127.0.2.1")
			if err != nil {
				continue
			}
			mine = append(mine, c)
			if get(c, bufio.NewReader(c), "/healthz", "") == http.StatusOK {
				greedyServed.Add(1)
			}
		}
	}()

	var wg sync.WaitGroup
	var mu sync.Mutex
	var held []*tls.Conn // idle connections, closed at the end
	defer func() {
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	}()

	// Idle keep-alive connections: perClient from each of idleAddrs
	// addresses, each after one request.
	var idleServed atomic.Int64
	for a := range idleAddrs {
		wg.Go(func() {
			for range perClient {
				c, err := sc.dial(fmt.Sprintf("127.0.1.%d", a+1))
				if err != nil {
					continue
				}
				mu.Lock()
				held = append(held, c)
				mu.Unlock()
				if get(c, bufio.NewReader(c), "/healthz", "") == http.StatusOK {
					idleServed.Add(1)
				}
			}
		})
	}

	// Slowloris: headers and bodies trickled a byte every 500 ms, from
	// their own addresses (perClient each).
	var headersCut, bodiesCut, headersKept, bodiesKept atomic.Int64
	for a := range 4 {
		for i := range perClient / 2 {
			body := a%2 == 1
			wg.Go(func() {
				c, err := sc.dial(fmt.Sprintf("127.0.3.%d", a+1))
				if err != nil {
					return
				}
				defer c.Close()
				if body {
					fmt.Fprintf(c, "POST /v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
					if closedWithin(c, 18*time.Second, `"username":"x","password":`) {
						bodiesCut.Add(1)
					} else {
						bodiesKept.Add(1)
					}
					return
				}
				fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
				if closedWithin(c, 8*time.Second, fmt.Sprintf("X-Slow-%d: a\r\n", i)) {
					headersCut.Add(1)
				} else {
					headersKept.Add(1)
				}
			})
		}
	}

	// Oversized headers (64 KiB, MaxHeaderBytes is 16 KiB): 431.
	var bigRefused, bigOther atomic.Int64
	for i := range 20 {
		wg.Go(func() {
			c, err := sc.dial(fmt.Sprintf("127.0.4.%d", i+1))
			if err != nil {
				bigOther.Add(1)
				return
			}
			defer c.Close()
			if code := get(c, bufio.NewReader(c), "/healthz", "X-Big: "+strings.Repeat("b", 64<<10)+"\r\n"); code == http.StatusRequestHeaderFieldsTooLarge {
				bigRefused.Add(1)
			} else {
				bigOther.Add(1)
			}
		})
	}

	wg.Wait()
	// The idle connections stay open while the visitor goes on.
	time.Sleep(time.Second)
	close(stopVisits)
	<-visitsDone
	close(stopSampling)
	<-samplingDone

	t.Logf("node before: RSS %d KiB, %d fds, %d goroutines; peak: RSS %d KiB, %d fds, %d goroutines",
		baseRSS, baseFDs, baseG, peakRSS.Load(), peakFDs.Load(), peakG.Load())
	t.Logf("idle connections answered %d of %d; greedy address %d of %d; slow headers cut %d kept %d; slow bodies cut %d kept %d; 64 KiB headers 431 %d other %d; visitor requests %d (slow %d, slowest %v)",
		idleServed.Load(), idleAddrs*perClient, greedyServed.Load(), 5*perClient, headersCut.Load(), headersKept.Load(),
		bodiesCut.Load(), bodiesKept.Load(), bigRefused.Load(), bigOther.Load(), visits.Load(), slow.Load(), time.Duration(slowest.Load()))
	failures.Range(func(k, _ any) bool {
		t.Errorf("visitor: %s", k)
		return true
	})
	if visits.Load() < 20 {
		t.Errorf("the visitor made %d requests; want a steady stream", visits.Load())
	}
	if got := greedyServed.Load(); got > perClient {
		t.Errorf("one address was answered on %d connections at once; api.max_connections_per_client is %d", got, perClient)
	}
	if got := idleServed.Load(); got < maxConns/2 {
		t.Errorf("only %d idle-to-be connections were answered", got)
	}
	if headersKept.Load() > 0 || bodiesKept.Load() > 0 {
		t.Errorf("slow clients kept their connections past the server's timeouts: %d trickling headers, %d trickling bodies",
			headersKept.Load(), bodiesKept.Load())
	}
	if bigRefused.Load() != 20 {
		t.Errorf("64 KiB headers: %d answered 431, %d otherwise; want all 431", bigRefused.Load(), bigOther.Load())
	}
	// The node's file descriptors: its connections (at most maxConns)
	// and what it held before.
	if peak := peakFDs.Load(); peak > int64(baseFDs+maxConns+16) {
		t.Errorf("the node held %d file descriptors (%d before); api.max_connections is %d", peak, baseFDs, maxConns)
	}
	// Memory. What a connection holds (its goroutine, buffers, TLS
	// state) is bounded by their number: the node's goroutines stay
	// within what it ran before plus one or two per connection allowed.
	// And the node keeps within its own memory limit (GOMEMLIMIT, from
	// server.memory_limit, logged at start), with room for the garbage
	// of thousands of handshakes.
	if peak := peakG.Load(); baseG == 0 || peak > int64(baseG+2*maxConns+32) {
		t.Errorf("the node ran %d goroutines (%d before); api.max_connections is %d", peak, baseG, maxConns)
	}
	m := regexp.MustCompile(`msg="memory limit set" limit_mib=(\d+)`).FindStringSubmatch(n.logs.String())
	if m == nil {
		t.Fatal("no \"memory limit set\" line in the node's log")
	}
	limitMiB, _ := strconv.Atoi(m[1])
	t.Logf("memory limit %d MiB", limitMiB)
	if peak := peakRSS.Load(); peak > int64(limitMiB)<<10+32<<10 {
		t.Errorf("the node's RSS reached %d KiB, over its memory limit of %d MiB and 32 MiB more", peak, limitMiB)
	}
}
