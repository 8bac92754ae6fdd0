package api

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/internal/waitfor"
	dto "github.com/prometheus/client_model/go"
)

// limitedServer serves 200s on a loopback listener behind a ConnLimiter
// (plain HTTP: the limiter sits below TLS and sees the same connections).
func limitedServer(t *testing.T, lim ConnLimits) (*ConnLimiter, string) {
	t.Helper()
	logger, _ := newTestLogger(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewConnLimiter(ln, lim, logger)
	srv := NewServer("", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), nil, logger)
	srv.ConnState = l.ConnState
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l, ln.Addr().String()
}

// connMetrics scrapes l's figures as /metrics serves them.
func connMetrics(t *testing.T, l *ConnLimiter) map[string]*dto.MetricFamily {
	t.Helper()
	src := testSources(&fakeStats{})
	src.Conns = l.Stats
	return scrapeFamilies(t, NewMetrics().Handler(src, false))
}

// request sends a keep-alive GET on c and reports whether a 200 came
// within d.
func request(c net.Conn, br *bufio.Reader, d time.Duration) bool {
	c.SetDeadline(time.Now().Add(d))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return false
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer reports whether the server closed c (EOF within d).
func closedByServer(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 1))
	return err == io.EOF
}

// TestConnLimiterClosesLongestIdle: at Max, a new connection is served
// after the connection idle the longest is closed; the others stay.
func TestConnLimiterClosesLongestIdle(t *testing.T) {
	l, addr := limitedServer(t, ConnLimits{Max: 3})
	var conns []net.Conn
	var readers []*bufio.Reader
	for i := range 3 {
		c := dialFrom(t, "127.0.0.1", addr)
		br := bufio.NewReader(c)
		if !request(c, br, 5*time.Second) {
			t.Fatal("request under the limit failed")
		}
		conns, readers = append(conns, c), append(readers, br)
		// Idle since the server said so (ConnState), which may come after
		// the client read the answer: wait for it, so that the first
		// connection is the longest idle.
		waitfor.True(t, fmt.Sprint(i+1, " idle connections"), 5*time.Second, time.Millisecond, func() bool {
			open, idle := l.Open()
			return open == i+1 && idle == i+1
		})
	}
	// The second is used again: the first is now the longest idle.
	if !request(conns[1], readers[1], 5*time.Second) {
		t.Fatal("second connection failed")
	}
	c := dialFrom(t, "127.0.0.1", addr)
	if !request(c, bufio.NewReader(c), 5*time.Second) {
		t.Fatal("a new connection at the limit was not served")
	}
	if !closedByServer(conns[0], 5*time.Second) {
		t.Error("the longest-idle connection was not closed")
	}
	for i := 1; i < 3; i++ {
		if !request(conns[i], readers[i], 5*time.Second) {
			t.Errorf("connection %d was closed; only the longest idle should be", i)
		}
	}
	if open, _ := l.Open(); open != 3 {
		t.Errorf("%d connections open, limit 3", open)
	}
	fams := connMetrics(t, l)
	wantValue(t, fams, 1, "bulwark_connections_idle_closed_total")
	wantValue(t, fams, 3, "bulwark_connections_open")
	wantValue(t, fams, 0, "bulwark_connections_refused_total", "reason", "max_connections")
	wantValue(t, fams, 0, "bulwark_connections_refused_total", "reason", "per_client")
}

// TestConnLimiterWaitsWhileNoneIdle: at Max with every connection in the
// middle of a request, a new connection waits (in the backlog) and is
// served once one closes.
func TestConnLimiterWaitsWhileNoneIdle(t *testing.T) {
	l, addr := limitedServer(t, ConnLimits{Max: 1})
	busy := dialFrom(t, "127.0.0.1", addr)
	io.WriteString(busy, "GET / HTTP/1.1\r\nHost: x\r\n") // headers not finished: active
	time.Sleep(100 * time.Millisecond)                    // let the server read them
	c := dialFrom(t, "127.0.0.1", addr)
	if request(c, bufio.NewReader(c), 500*time.Millisecond) {
		t.Fatal("a connection past the limit was served while the other was active")
	}
	fams := connMetrics(t, l)
	wantValue(t, fams, 1, "bulwark_connections_refused_total", "reason", "max_connections")
	wantValue(t, fams, 0, "bulwark_connections_idle_closed_total")
	busy.Close()
	c = dialFrom(t, "127.0.0.1", addr)
	if !request(c, bufio.NewReader(c), 5*time.Second) {
		t.Fatal("not served after the active connection closed")
	}
}

// TestConnLimiterPerClient: a client past PerClient is closed at once;
// another address, and an exempt one, are not.
func TestConnLimiterPerClient(t *testing.T) {
	l, addr := limitedServer(t, ConnLimits{Max: 100, PerClient: 2, Exempt: []netip.Prefix{netip.MustParsePrefix("127.0.0.9/32")}})
	for i := range 2 {
		c := dialFrom(t, "127.0.0.2", addr)
		if !request(c, bufio.NewReader(c), 5*time.Second) {
			t.Fatalf("connection %d under the per-client limit failed", i)
		}
	}
	if c := dialFrom(t, "127.0.0.2", addr); !closedByServer(c, 5*time.Second) {
		t.Error("a third connection from one address was not closed")
	}
	wantValue(t, connMetrics(t, l), 1, "bulwark_connections_refused_total", "reason", "per_client")
	for _, src := range []string{"127.0.0.3", "127.0.0.9", "127.0.0.9", "127.0.0.9"} {
		c := dialFrom(t, src, addr)
		if !request(c, bufio.NewReader(c), 5*time.Second) {
			t.Errorf("connection from %s failed", src)
		}
	}
	// The refused connection holds no place.
	waitfor.True(t, "six open", 5*time.Second, 10*time.Millisecond, func() bool { open, _ := l.Open(); return open == 6 })
	fams := connMetrics(t, l)
	wantValue(t, fams, 6, "bulwark_connections_open")
	wantValue(t, fams, 1, "bulwark_connections_refused_total", "reason", "per_client") // exempt addresses are not refused
	wantValue(t, fams, 0, "bulwark_connections_refused_total", "reason", "max_connections")
}

func TestConnLimiterClientKey(t *testing.T) {
	l := NewConnLimiter(nil, ConnLimits{Exempt: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, nil)
	for _, tc := range []struct {
		remote  string
		key     string
		counted bool
	}{
		{"192.0.2.7:443", "192.0.2.7/32", true},
		{"[::ffff:192.0.2.7]:443", "192.0.2.7/32", true},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64", true},
		{"[2001:db8:1:2:ffff::1]:443", "2001:db8:1:2::/64", true},
		{"10.1.2.3:443", "invalid Prefix", false},
	} {
		key, counted := l.clientKey(fakeConn{remote: tc.remote})
		if key.String() != tc.key || counted != tc.counted {
			t.Errorf("%s: %s %v; want %s %v", tc.remote, key, counted, tc.key, tc.counted)
		}
	}
}

type fakeConn struct {
	net.Conn
	remote string
}

func (f fakeConn) RemoteAddr() net.Addr { return fakeAddr(f.remote) }

type fakeAddr string

func (a fakeAddr) Network() string { return "tcp" }
func (a fakeAddr) String() string  { return string(a) }
