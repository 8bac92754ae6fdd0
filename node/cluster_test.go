package node

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/bulwark-auth/bulwark/internal/waitfor"
	"github.com/bulwark-auth/bulwark/node/loopback"
	"github.com/bulwark-auth/bulwark/node/pki"
)

// The in-process cluster harness of the node tests, after hashicorp/raft's
// MakeCluster (testing.go): voters over mutual TLS on loopback, bootstrapped
// together; a stopped member opens again on its own data directory,
// identity and port; a partitionable cluster has every peer address behind
// a fault-injecting proxy (faultNet) that cuts groups of members off and
// heals; everything closes in t.Cleanup. Nodes that join a cluster the
// operator's way are opened with openClusterNode and joinAndOpen. Every
// wait goes through internal/waitfor.

// testCA issues node certificates for in-process clusters.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
	pool *x509.CertPool
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.NewCA("test", key, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert, key, pool}
}

func (ca *testCA) clusterTLS(t testing.TB, name string) *ClusterTLS {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := pki.IssueNodeCert(ca.cert, ca.key, key.Public(), name, []string{"127.0.0.1"}, "", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &ClusterTLS{Cert: tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}, CA: ca.pool}
}

// anyServer accepts whatever certificate of the cluster CA a dialled peer
// presents: for tests that dial as someone other than a member.
func anyServer(*x509.Certificate) error { return nil }

// fakeKeys is a keystore in memory.
type fakeKeys struct {
	keys    map[string]crypto.Signer
	secrets map[string][]byte
}

func (k fakeKeys) PrivateKey(name string) (crypto.Signer, bool) { s, ok := k.keys[name]; return s, ok }
func (k fakeKeys) Secret(name string) ([]byte, bool) {
	b, ok := k.secrets[name]
	return bytes.Clone(b), ok
}

// clusterOpts shapes a cluster; the zero value is the common one.
type clusterOpts struct {
	// timeout is the heartbeat and election timeout, 300 ms when zero: a
	// test that loads the nodes hard under -race gives them more, so a
	// starved heartbeat does not cost the leader its lease.
	timeout time.Duration
	// ca issues the nodes' certificates; a new one when nil.
	ca *testCA
	// adjust, when set, changes node i's Config before it first opens.
	adjust func(i int, c *Config)
	// partitionable puts every peer address behind the proxies of a
	// faultNet, for partition and heal.
	partitionable bool
}

// cluster is size voters n1…nsize whose configs are kept, so that a
// stopped node opens again on the same data directory, identity and port.
type cluster struct {
	t     testing.TB
	ca    *testCA
	cfgs  []Config
	nodes []*Node   // nil while stopped
	net   *faultNet // nil unless partitionable
}

// startCluster starts size nodes with the common options and waits for a
// leader.
func startCluster(t testing.TB, size int) []*Node {
	t.Helper()
	return newCluster(t, size, clusterOpts{}).nodes
}

// newCluster starts size nodes over mutual TLS on loopback, bootstrapped
// together, and waits for a leader. The nodes close in t.Cleanup, before
// their data directories go.
func newCluster(t testing.TB, size int, o clusterOpts) *cluster {
	t.Helper()
	if o.timeout == 0 {
		o.timeout = 500 * time.Millisecond // the product runs 300 ms; make test runs many clusters at once
	}
	if o.ca == nil {
		o.ca = newTestCA(t)
	}
	c := &cluster{t: t, ca: o.ca, cfgs: make([]Config, size), nodes: make([]*Node, size)}
	if o.partitionable {
		c.net = newFaultNet(t) // its cleanup, registered first, runs after the nodes'
	}
	peers := make([]Peer, size)
	listen := make([]string, size)
	for i := range peers {
		id := fmt.Sprintf("n%d", i+1)
		listen[i] = loopback.Addr(t)
		peers[i] = Peer{ID: id, Address: listen[i]}
		if c.net != nil {
			peers[i].Address = c.net.proxy(t, id, listen[i])
		}
	}
	for i, p := range peers {
		var others []Peer
		for j, q := range peers {
			if j != i {
				others = append(others, q)
			}
		}
		c.cfgs[i] = Config{ID: p.ID, DataDir: t.TempDir(), Advertise: p.Address, Listen: listen[i],
			TLS: o.ca.clusterTLS(t, p.ID), InitialPeers: others, Logger: testLogger(t),
			HeartbeatTimeout: o.timeout, ElectionTimeout: o.timeout}
		if o.adjust != nil {
			o.adjust(i, &c.cfgs[i])
		}
		if c.net != nil {
			c.net.member(p.ID, c.cfgs[i].TLS)
		}
	}
	// Registered after the TempDirs: runs before they are removed.
	t.Cleanup(func() {
		for i := len(c.nodes) - 1; i >= 0; i-- {
			if n := c.nodes[i]; n != nil {
				n.Close()
			}
		}
	})
	for i := range c.cfgs {
		c.start(i)
	}
	waitLeader(t, c.nodes)
	return c
}

// start opens node i with its one and only Config.
func (c *cluster) start(i int) *Node {
	c.t.Helper()
	if c.nodes[i] != nil {
		c.t.Fatalf("%s is already running", c.cfgs[i].ID)
	}
	n, err := Open(c.cfgs[i])
	if err != nil {
		c.t.Fatalf("open %s: %v", c.cfgs[i].ID, err)
	}
	c.nodes[i] = n
	return n
}

// stop closes node i, which start opens again.
func (c *cluster) stop(i int) {
	c.t.Helper()
	n := c.nodes[i]
	c.nodes[i] = nil
	if err := n.Close(); err != nil {
		c.t.Fatalf("close %s: %v", c.cfgs[i].ID, err)
	}
}

// running is the nodes not stopped.
func (c *cluster) running() []*Node {
	var r []*Node
	for _, n := range c.nodes {
		if n != nil {
			r = append(r, n)
		}
	}
	return r
}

// followers is the running nodes other than leader.
func (c *cluster) followers(leader *Node) []*Node {
	var r []*Node
	for _, n := range c.running() {
		if n != leader {
			r = append(r, n)
		}
	}
	return r
}

// leader is the running node that leads, waiting for one up to 10 s.
func (c *cluster) leader() *Node {
	c.t.Helper()
	return waitLeader(c.t, c.running())
}

// partition cuts the nodes given off from the others, both ways; they
// still reach each other. One node is an isolated one.
func (c *cluster) partition(side ...*Node) {
	c.t.Helper()
	if c.net == nil {
		c.t.Fatal("partition of a cluster not started partitionable")
	}
	ids := make([]string, len(side))
	for i, n := range side {
		ids[i] = n.cfg.ID
	}
	c.net.partition(ids...)
}

// heal lets every member reach every other again.
func (c *cluster) heal() {
	c.t.Helper()
	if c.net == nil {
		c.t.Fatal("heal of a cluster not started partitionable")
	}
	c.net.heal()
}

// waitLeader returns the first of nodes that leads, waiting up to 10 s.
func waitLeader(t testing.TB, nodes []*Node) *Node {
	t.Helper()
	var leader *Node
	waitfor.True(t, "a leader", 10*time.Second, 20*time.Millisecond, func() bool {
		for _, n := range nodes {
			if n.Status().State == "Leader" {
				leader = n
				return true
			}
		}
		return false
	})
	return leader
}

// waitUsers waits up to 5 s until n holds at least count users.
func waitUsers(t *testing.T, n *Node, count int) {
	t.Helper()
	waitfor.Nil(t, fmt.Sprintf("%d users on %s", count, n.cfg.ID), 5*time.Second, 10*time.Millisecond, func() error {
		if got := len(users(t, n)); got < count {
			return fmt.Errorf("%s has %d users, want %d", n.cfg.ID, got, count)
		}
		return nil
	})
}

func suffrages(n *Node) map[string]raft.ServerSuffrage {
	out := map[string]raft.ServerSuffrage{}
	for _, s := range n.servers() {
		out[string(s.ID)] = s.Suffrage
	}
	return out
}

// waitVoters waits up to 20 s until n's configuration is the voters ids
// and no one else.
func waitVoters(t *testing.T, n *Node, ids ...string) {
	t.Helper()
	waitfor.Nil(t, fmt.Sprintf("voters %v on %s", ids, n.cfg.ID), 20*time.Second, 20*time.Millisecond, func() error {
		got := suffrages(n)
		ok := len(got) == len(ids)
		for _, id := range ids {
			ok = ok && got[id] == raft.Voter
		}
		if !ok {
			return fmt.Errorf("configuration %v, want voters %v", got, ids)
		}
		return nil
	})
}

// openClusterNode opens node id on the cluster port addr, on a data
// directory of its own: a cluster of one unless join. adjust, if any,
// changes its Config first.
func openClusterNode(t *testing.T, id, addr string, ct *ClusterTLS, join bool, adjust ...func(*Config)) *Node {
	t.Helper()
	cfg := Config{ID: id, DataDir: t.TempDir(), Advertise: addr, Listen: addr, TLS: ct, Join: join,
		Logger: testLogger(t), HeartbeatTimeout: 500 * time.Millisecond, ElectionTimeout: 500 * time.Millisecond}
	for _, f := range adjust {
		f(&cfg)
	}
	n, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// joinAndOpen joins the cluster as id and starts the node the way serve
// does: with the certificate and CA it received, without bootstrapping,
// promoting itself once caught up.
func joinAndOpen(t *testing.T, token, id string) (*Node, *Joined) {
	t.Helper()
	addr := loopback.Addr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j, err := Join(ctx, token, JoinRequest{NodeID: id, Advertise: addr})
	if err != nil {
		t.Fatalf("join %s: %v", id, err)
	}
	return openJoined(t, id, addr, j), j
}

// openJoined starts the node that joined as id at addr with what Join
// handed it, promoting itself once caught up.
func openJoined(t *testing.T, id, addr string, j *Joined) *Node {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(j.CA)
	ct := &ClusterTLS{Cert: tls.Certificate{Certificate: [][]byte{j.Cert.Raw, j.CA.Raw}, PrivateKey: j.Key, Leaf: j.Cert}, CA: pool}
	n := openClusterNode(t, id, addr, ct, true)
	vctx, vcancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.EnsureVoter(vctx) }()
	t.Cleanup(func() { vcancel(); <-done })
	return n
}

// A network partition between in-process nodes, made by fault-injecting
// proxies on loopback.
//
// Every node listens on its real address (Config.Listen) and advertises a
// proxy (Config.Advertise, and the address in every InitialPeers list), so
// every connection between members — Raft ('R'), forwarded writes ('F'),
// membership ('M') — passes through the proxy of the node it goes to.
//
// Cutting a node off has to cut both directions. Raft's RPCs go out on
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
// A cut closes every relayed connection between the two sides and, from
// then on, closes each new one right after the handshake, once the
// dialler is known (a refused connection, not a silent one: the nodes see
// errors at once rather than after the transport's 10 s I/O timeout; Raft's
// own timers make the decisions either way). Heal lets connections through
// again.
type faultNet struct {
	mu     sync.Mutex
	nodes  map[string]*ClusterTLS // node id → the certificate the proxy presents for it
	cutOff map[string]bool        // the nodes on the far side of a partition; none when healed
	links  map[*relayLink]struct{}
	closed bool
	lns    []net.Listener
	wg     sync.WaitGroup
}

// relayLink is one relayed connection: down is the dialler's connection to
// the proxy, up the proxy's to the real listener. Fields are guarded by
// faultNet.mu.
type relayLink struct {
	from, to string // from is "" until the handshake names the dialler
	down, up net.Conn
}

func newFaultNet(t testing.TB) *faultNet {
	f := &faultNet{nodes: map[string]*ClusterTLS{}, links: map[*relayLink]struct{}{}}
	t.Cleanup(f.close) // registered before the nodes': runs after they have closed
	return f
}

// member records the certificate of node id, which its proxy presents and
// by which it knows the node as a dialler.
func (f *faultNet) member(id string, ct *ClusterTLS) {
	f.mu.Lock()
	f.nodes[id] = ct
	f.mu.Unlock()
}

// proxy starts the proxy for node id, whose real listener is at target, and
// returns the address peers should dial.
func (f *faultNet) proxy(t testing.TB, id, target string) string {
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

// blocked reports whether a partition lies between from and to; f.mu is
// held.
func (f *faultNet) blocked(from, to string) bool {
	return f.cutOff[from] != f.cutOff[to]
}

// dialler names the member whose certificate leaf is; "" for none.
func (f *faultNet) dialler(leaf *x509.Certificate) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, c := range f.nodes {
		if leaf.Equal(c.Cert.Leaf) {
			return id
		}
	}
	return ""
}

func (f *faultNet) tlsOf(id string) *ClusterTLS {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nodes[id]
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

	down := tls.Server(raw, f.tlsOf(to).serverConfig())
	down.SetDeadline(time.Now().Add(5 * time.Second))
	if err := down.Handshake(); err != nil {
		return
	}
	from := ""
	if pc := down.ConnectionState().PeerCertificates; len(pc) > 0 {
		from = f.dialler(pc[0])
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
	uc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", target, f.tlsOf(from).clientConfig("127.0.0.1"))
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

// partition cuts the nodes ids off from every other node, both ways,
// replacing any earlier partition.
func (f *faultNet) partition(ids ...string) {
	f.mu.Lock()
	f.cutOff = map[string]bool{}
	for _, id := range ids {
		f.cutOff[id] = true
	}
	var cut []*relayLink
	for l := range f.links {
		// A link whose dialler is not known yet is checked again once it is.
		if l.from != "" && f.blocked(l.from, l.to) {
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
	f.cutOff = nil
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
