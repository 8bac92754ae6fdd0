package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/node/loopback"
)

// A network partition between in-process nodes, made by fault-injecting
// proxies on loopback.
//
// Every node listens on its real address (Config.Listen) and advertises a
// proxy (Config.Advertise, and the address in every InitialPeers list), so
// every connection between members — Raft ('R'), forwarded writes ('F'),
// membership ('M') — passes through the proxy of the node it goes to.
//
// Isolating a node has to cut both directions. Raft's RPCs go out on
// connections the sender opens and come back on the same connection, so
// cutting only the isolated node's own proxy (inbound) leaves it a working
// leader: it still reaches the others through THEIR proxies. A proxy must
// therefore know who dialled it, and on loopback neither the source address
// (always 127.0.0.1) nor the source port tells. The client certificate does,
// but TLS 1.3 encrypts it, so each proxy terminates the mutual TLS: it
// presents the certificate of the node it stands for (the dialling node
// checks name, key and host as it would the real peer's), identifies the
// dialler by the certificate it shows, and opens its own mutual-TLS
// connection to the real listener presenting that same node's certificate
// (the test holds every node's key). The nodes' code is untouched and still
// sees the peer's real identity on both ends; only the test relays
// plaintext in between.
//
// Alternatives rejected: per-pair addresses (node i knowing peer j at a proxy
// for i→j) need different bootstrap configurations per node, which Raft
// keeps only because it compares log terms, not contents — an unrealistic
// cluster; network namespaces need separate processes and privileges.
//
// A cut closes every relayed connection to or from the isolated node and,
// from then on, closes each new one right after the handshake, once the
// dialler is known (a refused connection, not a silent one: the nodes see
// errors at once rather than after the transport's 10 s I/O timeout; Raft's
// own timers make the decisions either way). Heal lets connections through
// again.
type faultNet struct {
	ca    *x509.CertPool
	nodes map[string]*ClusterTLS // node id → the certificate the proxy presents for it

	mu       sync.Mutex
	isolated string // node id cut off from all others; "" when healed
	links    map[*relayLink]struct{}
	closed   bool
	lns      []net.Listener
	wg       sync.WaitGroup
}

// relayLink is one relayed connection: down is the dialler's connection to
// the proxy, up the proxy's to the real listener. Fields are guarded by
// faultNet.mu.
type relayLink struct {
	from, to string // from is "" until the handshake names the dialler
	down, up net.Conn
}

func newFaultNet(t *testing.T, ca *testCA) *faultNet {
	f := &faultNet{ca: ca.pool, nodes: map[string]*ClusterTLS{},
		links: map[*relayLink]struct{}{}}
	t.Cleanup(f.close) // registered before the nodes': runs after they have closed
	return f
}

// proxy starts the proxy for node id, whose real listener is at target, and
// returns the address peers should dial.
func (f *faultNet) proxy(t *testing.T, id, target string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.lns = append(f.lns, ln)
	f.mu.Unlock()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Add(1)
			go f.relay(c, id, target)
		}
	}()
	return ln.Addr().String()
}

func (f *faultNet) blocked(from, to string) bool {
	return f.isolated != "" && (from == f.isolated || to == f.isolated)
}

func (f *faultNet) relay(raw net.Conn, to, target string) {
	defer f.wg.Done()
	l := &relayLink{to: to, down: raw}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		raw.Close()
		return
	}
	f.links[l] = struct{}{}
	f.mu.Unlock()
	var up net.Conn
	defer func() {
		f.mu.Lock()
		delete(f.links, l)
		f.mu.Unlock()
		raw.Close()
		if up != nil {
			up.Close()
		}
	}()

	down := tls.Server(raw, f.nodes[to].serverConfig())
	down.SetDeadline(time.Now().Add(5 * time.Second))
	if err := down.Handshake(); err != nil {
		return
	}
	from := ""
	if pc := down.ConnectionState().PeerCertificates; len(pc) > 0 {
		for id, c := range f.nodes {
			if pc[0].Equal(c.Cert.Leaf) {
				from = id
			}
		}
	}
	if from == "" {
		return // not a member (no joins in these tests)
	}
	f.mu.Lock()
	l.from = from
	refuse := f.blocked(from, to) || f.closed
	f.mu.Unlock()
	if refuse {
		return
	}
	uc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", target, f.nodes[from].clientConfig("127.0.0.1"))
	if err != nil {
		return // (not into up: a nil *tls.Conn is a non-nil net.Conn)
	}
	up = uc
	f.mu.Lock()
	l.up = up
	// A cut between the two checks closed raw already; check again so it
	// cannot miss up.
	refuse = f.blocked(from, to) || f.closed
	f.mu.Unlock()
	if refuse {
		return
	}
	down.SetDeadline(time.Time{})
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, down); done <- struct{}{} }()
	go func() { io.Copy(down, up); done <- struct{}{} }()
	<-done
	raw.Close()
	up.Close()
	<-done
}

// isolate cuts node id off from every other node, both ways.
func (f *faultNet) isolate(id string) {
	f.mu.Lock()
	f.isolated = id
	var cut []*relayLink
	for l := range f.links {
		if l.from == id || l.to == id {
			cut = append(cut, l)
		}
	}
	for _, l := range cut {
		l.down.Close()
		if l.up != nil {
			l.up.Close()
		}
	}
	f.mu.Unlock()
}

func (f *faultNet) heal() {
	f.mu.Lock()
	f.isolated = ""
	f.mu.Unlock()
}

func (f *faultNet) close() {
	f.mu.Lock()
	f.closed = true
	for _, ln := range f.lns {
		ln.Close()
	}
	for l := range f.links {
		l.down.Close()
		if l.up != nil {
			l.up.Close()
		}
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// startPartitionableCluster is startCluster with every peer address behind
// the proxies of f.
func startPartitionableCluster(t *testing.T, size int) ([]*Node, *faultNet) {
	t.Helper()
	ca := newTestCA(t)
	f := newFaultNet(t, ca)
	ids := make([]string, size)
	listen := make([]string, size)
	peers := make([]Peer, size)
	for i := range ids {
		ids[i] = fmt.Sprintf("n%d", i+1)
		listen[i] = loopback.Addr(t)
		f.nodes[ids[i]] = ca.clusterTLS(t, ids[i])
	}
	for i := range ids { // after f.nodes is complete: relay reads it unlocked
		peers[i] = Peer{ID: ids[i], Address: f.proxy(t, ids[i], listen[i])}
	}
	nodes := make([]*Node, size)
	for i, p := range peers {
		var others []Peer
		for j, q := range peers {
			if j != i {
				others = append(others, q)
			}
		}
		n, err := Open(Config{ID: p.ID, DataDir: t.TempDir(), Advertise: p.Address, Listen: listen[i],
			TLS: f.nodes[p.ID], InitialPeers: others, Logger: testLogger(t),
			HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = n
		t.Cleanup(func() { n.Close() })
	}
	waitLeader(t, nodes)
	return nodes, f
}

// TestPartitionMinorityRefusesWritesAndHealLosesNone isolates the leader of
// a three-node cluster: the old leader (the minority) must refuse writes,
// the two others must elect a leader and acknowledge writes, and once the
// partition heals every acknowledged write is on every node and no refused
// one is anywhere.
func TestPartitionMinorityRefusesWritesAndHealLosesNone(t *testing.T) {
	nodes, fnet := startPartitionableCluster(t, 3)
	acked := map[string]bool{}
	var refused []string
	write := func(n *Node, name string, timeout time.Duration) (time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		start := time.Now()
		_, err := n.Apply(ctx, userCmd(t, name))
		if err == nil {
			acked[name] = true
		}
		return time.Since(start), err
	}
	mustWrite := func(n *Node, name string) {
		t.Helper()
		if _, err := write(n, name, 10*time.Second); err != nil {
			t.Fatalf("write %s on %s: %v", name, n.cfg.ID, err)
		}
	}
	// mustRefuse: the minority answers within a bounded time, and with an
	// error (never an acknowledgement).
	mustRefuse := func(n *Node, name string) {
		t.Helper()
		d, err := write(n, name, 5*time.Second)
		if err == nil {
			t.Fatalf("the isolated %s acknowledged %s during the partition", n.cfg.ID, name)
		}
		if !errors.Is(err, ErrNoLeader) && !errors.Is(err, ErrNotLeader) {
			t.Fatalf("the isolated %s refused %s with %v, want ErrNoLeader or ErrNotLeader", n.cfg.ID, name, err)
		}
		if d > 6*time.Second {
			t.Fatalf("the isolated %s took %v to refuse %s", n.cfg.ID, d, name)
		}
		t.Logf("%s refused %s after %v: %v", n.cfg.ID, name, d.Round(time.Millisecond), err)
		refused = append(refused, name)
	}
	others := func(except *Node) []*Node {
		var r []*Node
		for _, n := range nodes {
			if n != except {
				r = append(r, n)
			}
		}
		return r
	}
	waitFor := func(what string, limit time.Duration, cond func() bool) time.Duration {
		t.Helper()
		start := time.Now()
		for !cond() {
			if time.Since(start) > limit {
				t.Fatalf("%s: not within %v", what, limit)
			}
			time.Sleep(10 * time.Millisecond)
		}
		return time.Since(start)
	}
	hasAll := func(n *Node, want map[string]bool) bool {
		got := users(t, n)
		for name := range want {
			if !got[name] {
				return false
			}
		}
		return true
	}

	// (1) Before: writes on the leader and through a follower (forwarded
	// through the proxies) are acknowledged and reach everyone.
	// On a loaded machine the leader may step down meanwhile; a write it
	// lost is neither acknowledged nor refused, and the next leader takes
	// the rest.
	writeBefore := func(leaderSide bool, name string) {
		t.Helper()
		for try := 0; ; try++ {
			n := waitLeader(t, nodes)
			if !leaderSide {
				n = others(n)[0]
			}
			_, err := write(n, fmt.Sprintf("%s-%d", name, try), 10*time.Second)
			if err == nil {
				return
			}
			if !errors.Is(err, ErrNoLeader) || try == 4 {
				t.Fatalf("write %s on %s: %v", name, n.cfg.ID, err)
			}
			t.Logf("write %s on %s: %v; again", name, n.cfg.ID, err)
		}
	}
	for i := 0; i < 5; i++ {
		writeBefore(true, fmt.Sprintf("before-%d", i))
	}
	writeBefore(false, "before-via-follower")
	for _, n := range nodes {
		waitFor(n.cfg.ID+" has the writes before the partition", 5*time.Second, func() bool { return hasAll(n, acked) })
	}
	before := len(acked)
	old := waitLeader(t, nodes)

	// (2) Partition: the leader alone on one side.
	majority := others(old)
	partitioned := time.Now()
	fnet.isolate(old.cfg.ID)
	// A write reaching the old leader at once (it most likely still believes
	// it leads and appends it to its log) is never committed: the leader
	// steps down when its lease runs out and the write fails.
	stillLeader := old.Status().State == "Leader"
	mustRefuse(old, "minority-0")
	t.Logf("first minority write was sent while %s still led: %v", old.cfg.ID, stillLeader)
	waitFor(old.cfg.ID+" steps down in the minority", 5*time.Second, func() bool {
		return old.Status().State != "Leader"
	})
	stepDown := time.Since(partitioned)
	next := waitLeader(t, majority)
	elected := time.Since(partitioned)
	for i := 1; i <= 2; i++ { // and it keeps refusing, whatever it now believes
		mustRefuse(old, fmt.Sprintf("minority-%d", i))
	}
	for i := 0; i < 5; i++ {
		mustWrite(next, fmt.Sprintf("majority-%d", i))
	}
	for _, n := range majority {
		if n != next {
			mustWrite(n, "majority-via-follower")
		}
	}
	mustRefuse(old, "minority-3")
	// The partition is real both ways: the old leader has seen nothing the
	// majority committed, and has committed nothing itself.
	if got := users(t, old); len(got) != before {
		t.Fatalf("the isolated %s has %d users during the partition, want the %d from before", old.cfg.ID, len(got), before)
	}
	if s := old.Status(); s.State == "Leader" {
		t.Fatalf("the isolated %s leads again during the partition: %+v", old.cfg.ID, s)
	}
	partition := time.Since(partitioned)

	// (3) Heal: the old leader follows the majority's leader, catches up,
	// and its refused (and possibly appended) entries are gone.
	fnet.heal()
	healed := time.Now()
	caughtUp := waitFor(old.cfg.ID+" follows and catches up after the heal", 12*time.Second, func() bool {
		s := old.Status()
		if s.State != "Follower" || s.LeaderID == "" || s.LeaderID == old.cfg.ID {
			return false
		}
		return hasAll(old, acked)
	})
	// A write through the old leader (forwarded to the new one) is
	// acknowledged once the old leader itself has applied it: every node
	// that applies it holds the same committed log before it.
	mustWrite(old, "after-heal-via-old-leader")
	for _, n := range nodes {
		waitFor(n.cfg.ID+" has every acknowledged write", 10*time.Second, func() bool { return hasAll(n, acked) })
	}
	for _, n := range nodes {
		got := users(t, n)
		for _, name := range refused {
			if got[name] {
				t.Errorf("%s holds %s, which the minority refused", n.cfg.ID, name)
			}
		}
		var extra []string
		for name := range got {
			if !acked[name] {
				extra = append(extra, name)
			}
		}
		sort.Strings(extra)
		if len(got) != len(acked) || len(extra) > 0 {
			t.Errorf("%s holds %d users, want the %d acknowledged (unacknowledged: %v)", n.cfg.ID, len(got), len(acked), extra)
		}
	}
	if l := waitLeader(t, nodes); l == old {
		t.Errorf("%s, whose log fell behind, leads after the heal", old.cfg.ID)
	}
	t.Logf("isolated %s: stepped down %v after the cut, %s elected %v after it; partition %v; caught up %v after the heal (total %v); %d acknowledged, %d refused",
		old.cfg.ID, stepDown.Round(time.Millisecond), next.cfg.ID, elected.Round(time.Millisecond), partition.Round(time.Millisecond),
		caughtUp.Round(time.Millisecond), time.Since(healed).Round(time.Millisecond), len(acked), len(refused))
}
