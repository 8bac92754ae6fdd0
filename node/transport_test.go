package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/bulwark-auth/bulwark/fsm"
)

func TestThreeNodesOverMutualTLS(t *testing.T) {
	nodes := startCluster(t, 3)
	leader := waitLeader(t, nodes)
	for i := 0; i < 10; i++ {
		createUser(t, leader, fmt.Sprintf("user%d", i))
	}
	for _, n := range nodes {
		waitUsers(t, n, 10)
	}
	// A follower's writes are forwarded to the leader, and are visible on
	// that follower the moment Apply returns (read-your-writes), with the
	// state machine's result and domain errors as on the leader.
	for i, n := range nodes {
		if n == leader {
			continue
		}
		name := fmt.Sprintf("via-follower-%d", i)
		v, err := n.Apply(context.Background(), userCmd(t, name))
		if err != nil {
			t.Fatalf("write through follower %s: %v", n.cfg.ID, err)
		}
		if u, ok := v.(*fsm.User); !ok || u.Username != name {
			t.Fatalf("forwarded result %#v", v)
		}
		if !users(t, n)[name] {
			t.Fatalf("%s acknowledged a write it does not show yet", n.cfg.ID)
		}
		if _, err := n.Apply(context.Background(), userCmd(t, name)); !errors.Is(err, fsm.ErrUserExists) {
			t.Fatalf("a forwarded domain error: %v, want ErrUserExists", err)
		}
	}
	total := 12
	// The leader goes; the two others elect one and keep every write.
	leader.Close()
	var rest []*Node
	for _, n := range nodes {
		if n != leader {
			rest = append(rest, n)
		}
	}
	next := waitLeader(t, rest)
	createUser(t, next, "after-failover")
	for _, n := range rest {
		waitUsers(t, n, total+1)
	}
	// Without a quorum there is no leader: a write fails quickly with
	// ErrNoLeader instead of hanging.
	next.Close()
	var last *Node
	for _, n := range rest {
		if n != next {
			last = n
		}
	}
	start := time.Now()
	_, err := last.Apply(context.Background(), userCmd(t, "no-quorum"))
	if !errors.Is(err, ErrNoLeader) && !errors.Is(err, ErrNotLeader) {
		t.Fatalf("write without a quorum: %v", err)
	}
	if d := time.Since(start); d > 6*time.Second {
		t.Fatalf("write without a quorum took %v", d)
	}
}

// TestClusterPortRefusesForeignCertificates: a peer whose certificate is
// not from the cluster CA, or that shows none, never reaches Raft.
func TestClusterPortRefusesForeignCertificates(t *testing.T) {
	nodes := startCluster(t, 1)
	addr := nodes[0].cfg.Advertise
	rogue := newTestCA(t).clusterTLS(t, "rogue")
	rogue.CA = nodes[0].cfg.TLS.CA // it trusts the server; the server must not trust it
	// Without a certificate only the join protocol is served.
	noCert := func(proto byte) func() (net.Conn, error) {
		return func() (net.Conn, error) {
			c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: nodes[0].cfg.TLS.CA, ServerName: "127.0.0.1"})
			if err != nil {
				return nil, err
			}
			if _, err := c.Write([]byte{proto}); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		}
	}
	for name, dial := range map[string]func() (net.Conn, error){
		"foreign CA":           func() (net.Conn, error) { return dialCluster(rogue, addr, protoRaft, 2*time.Second, anyServer) },
		"no certificate":       noCert(protoRaft),
		"no certificate, 'F'":  noCert(protoForward),
		"no certificate, 'M'":  noCert(protoMember),
		"foreign CA, join 'J'": func() (net.Conn, error) { return dialCluster(rogue, addr, protoJoin, 2*time.Second, anyServer) },
	} {
		t.Run(name, func(t *testing.T) {
			c, err := dial()
			if err != nil {
				return // refused during the handshake
			}
			defer c.Close()
			// TLS 1.3 lets a client finish its handshake before the server
			// has checked its certificate; the refusal then arrives as an
			// alert or a close. A connection the server keeps open (the read
			// times out) was let through.
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			_, err = c.Read(make([]byte, 1))
			var ne net.Error
			if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
				t.Fatalf("the cluster port kept a connection without a cluster certificate open (read: %v)", err)
			}
		})
	}
	// A joining node has no certificate yet: 'J' without one is served
	// (the server waits for its request).
	t.Run("no certificate, join 'J'", func(t *testing.T) {
		c, err := noCert(protoJoin)()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, err = c.Read(make([]byte, 1))
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("the join protocol without a certificate was refused (read: %v)", err)
		}
	})
	// The cluster still works.
	createUser(t, nodes[0], "still-fine")
}

// TestClusterTransportDoesNotPipeline: raft's pipelined replication can
// deadlock when a follower refuses an entry or shows a newer term (the
// sender blocks on a decoder that has exited), stopping replication to
// that follower and raft.Shutdown with it. The cluster transport must
// replicate one request at a time.
func TestClusterTransportDoesNotPipeline(t *testing.T) {
	nodes := startCluster(t, 2)
	peer := nodes[1]
	_, err := nodes[0].trans.AppendEntriesPipeline(raft.ServerID(peer.cfg.ID), raft.ServerAddress(peer.cfg.Advertise))
	if !errors.Is(err, raft.ErrPipelineReplicationNotSupported) {
		t.Fatalf("AppendEntriesPipeline: %v, want ErrPipelineReplicationNotSupported", err)
	}
}
