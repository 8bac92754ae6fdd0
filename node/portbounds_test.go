package node

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/internal/waitfor"
	"github.com/bulwark-auth/bulwark/node/loopback"
)

// TestClusterPortBoundsStrangers: connections that have shown no cluster
// certificate are bounded before the port does work for them. With
// maxJoinConns 'J' connections served, the next is closed at once, while
// a member's connection is still served; with maxHandshakes connections
// silent in their handshake, the next is closed at once, before its own.
// Once they go, the slots are free again.
func TestClusterPortBoundsStrangers(t *testing.T) {
	ca := newTestCA(t)
	ct := ca.clusterTLS(t, "a")
	addr := loopback.Addr(t)
	l, err := listenCluster(addr, ct, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	served := make(chan struct{}, 2*maxJoinConns)
	l.handle(protoJoin, func(c net.Conn) {
		defer c.Close()
		served <- struct{}{}
		io.Copy(io.Discard, c) // until the client goes
	})
	l.handle(protoMember, func(c net.Conn) {
		defer c.Close()
		c.Write([]byte{'!'})
	})
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	joinConn := func() net.Conn {
		t.Helper()
		c, err := tls.Dial("tcp", addr, &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte{protoJoin}); err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
		return c
	}
	// closed reports whether the server closed c within a second and a
	// half (handshakeTimeout is 5 s: a connection it keeps times out).
	closed := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		return err != nil && !(errors.As(err, &ne) && ne.Timeout())
	}
	waitServed := func(count int) {
		t.Helper()
		for range count {
			select {
			case <-served:
			case <-time.After(10 * time.Second):
				t.Fatal("a join connection was not served")
			}
		}
	}
	waitSlots := func(what string, cond func() bool) {
		t.Helper()
		waitfor.Nil(t, what, 10*time.Second, 10*time.Millisecond, func() error {
			if !cond() {
				return fmt.Errorf("%d in their handshake, %d joins", len(l.handshakes), len(l.joins))
			}
			return nil
		})
	}

	for range maxJoinConns {
		joinConn()
	}
	waitServed(maxJoinConns)
	if !closed(joinConn()) {
		t.Fatalf("a join connection past %d was kept open", maxJoinConns)
	}
	member, err := dialCluster(ct, addr, protoMember, 5*time.Second, anyServer)
	if err != nil {
		t.Fatalf("a member's connection with the join slots full: %v", err)
	}
	member.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := member.Read(make([]byte, 1)); err != nil {
		t.Fatalf("a member's connection with the join slots full was not served: %v", err)
	}
	member.Close()

	for range maxHandshakes {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
	}
	waitSlots("silent connections in their handshake", func() bool { return len(l.handshakes) == maxHandshakes })
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	open = append(open, extra)
	if !closed(extra) {
		t.Fatalf("a connection past %d in their handshake was kept open", maxHandshakes)
	}

	for _, c := range open {
		c.Close()
	}
	open = nil
	waitSlots("slots given back", func() bool { return len(l.handshakes) == 0 && len(l.joins) == 0 })
	joinConn()
	waitServed(1)
}
