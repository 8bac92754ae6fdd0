// Package loopback hands tests free TCP ports on 127.0.0.1 for the
// processes and nodes they start.
//
// A port is found by listening on port 0 and closing the listener, so the
// kernel may offer the same port again before the test has bound it: two
// calls in one test once gave a node the same port for its API and its
// cluster listener. Port never returns a port twice in one process.
package loopback

import (
	"net"
	"strconv"
	"sync"
	"testing"
)

var (
	mu    sync.Mutex
	given = map[int]bool{}
)

// Port returns a port on 127.0.0.1 that was free a moment ago and that no
// earlier call in this process returned.
func Port(t testing.TB) int {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !given[p] {
			given[p] = true
			return p
		}
	}
	t.Fatal("loopback: the kernel kept offering ports already handed out")
	return 0
}

// Addr is Port as a "127.0.0.1:port" address.
func Addr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(Port(t)))
}
