package node

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// The cluster port carries several protocols over one mutual-TLS
// listener; the first byte a client writes after the handshake says which.
const (
	protoRaft byte = 'R' // hashicorp/raft's RPCs
	// protoForward ('F', forward.go): a follower's writes to the leader.
	// protoJoin ('J', join.go): a joining node, without a certificate yet.
	// protoMember ('M', membership.go): membership changes and status.
)

// ClusterTLS is what a node presents to its peers and trusts from them:
// its certificate (server and client auth, issued by the cluster CA) and
// the cluster CA. SetCertificate replaces the certificate while the node
// runs (a renewal): new connections present the new one, open ones keep
// theirs. Use it by pointer.
type ClusterTLS struct {
	Cert tls.Certificate // the certificate at start
	CA   *x509.CertPool

	renewed atomic.Pointer[tls.Certificate]
}

// Certificate is the certificate new connections present.
func (c *ClusterTLS) Certificate() *tls.Certificate {
	if p := c.renewed.Load(); p != nil {
		return p
	}
	return &c.Cert
}

// SetCertificate makes cert the one new connections present.
func (c *ClusterTLS) SetCertificate(cert tls.Certificate) { c.renewed.Store(&cert) }

// serverConfig verifies the certificate a peer presents against the
// cluster CA (a foreign one fails the handshake). A peer without one is
// let through the handshake only so that a joining node, which has no
// certificate yet, can speak protocol 'J'; route refuses it every other
// protocol, so no unauthenticated connection reaches Raft.
func (c *ClusterTLS) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.Certificate(), nil
		},
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  c.CA,
	}
}

// clientConfig checks the peer's certificate against the cluster CA and
// the host it was dialled at.
func (c *ClusterTLS) clientConfig(host string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return c.Certificate(), nil
		},
		RootCAs:    c.CA,
		ServerName: host,
	}
}

// serverCheck decides whether the certificate a dialled peer presents is
// the member the dialler meant (Node.checkServer); it runs after the
// certificate verified against the cluster CA and the host.
type serverCheck func(leaf *x509.Certificate) error

// clusterListener accepts mutual-TLS connections on the cluster port and
// hands each to the protocol its first byte names.
type clusterListener struct {
	ln   net.Listener
	tls  *ClusterTLS
	log  *slog.Logger
	raft chan net.Conn

	mu       sync.RWMutex
	handlers map[byte]func(net.Conn) // other protocols, registered once their server is up
	closed   bool                    // no connection is queued for Raft any more
	// check, once set, must accept a peer's certificate name and leaf
	// for every protocol but 'J' (Node.checkPeer).
	check func(name string, leaf *x509.Certificate) error
	// dialCheck, once set, must accept what a peer dialled at an address
	// for Raft presents (Node.checkServerAt); until then Raft dials no one.
	dialCheck func(addr string, leaf *x509.Certificate) error

	// handshakes holds a slot for each connection from its accept until
	// its handshake and protocol byte are done; joins one for each 'J'
	// connection while it is served. A connection that finds no slot is
	// closed at once and counted, for busy's warning.
	handshakes       chan struct{}
	joins            chan struct{}
	refusedHandshake atomic.Int64
	refusedJoin      atomic.Int64
	lastBusyLog      atomic.Int64 // Unix nanoseconds

	closeOnce sync.Once
	done      chan struct{}
}

// The cluster port serves strangers: until its handshake shows a cluster
// certificate a connection may be anyone's, and protocol 'J' is served to
// connections without one. What they can hold is bounded before any work
// is done for them.
const (
	// handshakeTimeout bounds a peer's TLS handshake and protocol byte, so
	// a silent connection holds its handshake slot only that long.
	handshakeTimeout = 5 * time.Second
	// maxHandshakes bounds the connections in their handshake: a slot is
	// taken at accept, before the handshake allocates anything, and the
	// excess is closed at once. Every connection gives its slot back once
	// its protocol byte is read; a member's takes no other, so connections
	// that stall after their handshake (as on the join door) never keep
	// members out. Connections that stall inside the handshake can, for
	// handshakeTimeout: members' open connections are not affected.
	maxHandshakes = 64
	// maxJoinConns bounds the 'J' connections served at once (four of
	// them admit at a time, the rest are answered busy); the excess is
	// closed at once after its handshake.
	maxJoinConns = 4 * maxJoinsInFlight
	// busyLogEvery spaces the warnings about connections closed for want
	// of a slot: a flood must not become a flood of log lines.
	busyLogEvery = 10 * time.Second
)

func listenCluster(addr string, t *ClusterTLS, logger *slog.Logger) (*clusterListener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cluster.listen %s: %w", addr, err)
	}
	l := &clusterListener{ln: ln, tls: t, log: logger, raft: make(chan net.Conn, 16), done: make(chan struct{}),
		handshakes: make(chan struct{}, maxHandshakes), joins: make(chan struct{}, maxJoinConns)}
	go l.acceptLoop()
	return l, nil
}

func (l *clusterListener) acceptLoop() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			l.log.Error("cluster listener stopped", "error", err)
			return
		}
		select {
		case l.handshakes <- struct{}{}:
			go l.route(c)
		default:
			c.Close()
			l.busy(&l.refusedHandshake)
		}
	}
}

// busy counts a connection closed for want of a slot in refused and
// warns, at most once every busyLogEvery, how many were since the last
// warning.
func (l *clusterListener) busy(refused *atomic.Int64) {
	refused.Add(1)
	now := time.Now().UnixNano()
	last := l.lastBusyLog.Load()
	if now-last < int64(busyLogEvery) || !l.lastBusyLog.CompareAndSwap(last, now) {
		return
	}
	l.log.Warn("cluster port busy: connections closed unserved since the last warning",
		"in_handshake", l.refusedHandshake.Swap(0), "handshake_limit", maxHandshakes,
		"join", l.refusedJoin.Swap(0), "join_limit", maxJoinConns)
}

// route completes the handshake, checks the peer's certificate (one from
// the cluster CA is required for every protocol but 'J') and reads the
// protocol byte. It holds a handshake slot (taken by acceptLoop) until
// then, and a 'J' connection a join slot while it is served.
func (l *clusterListener) route(c net.Conn) {
	handshaking := true
	endHandshake := func() {
		if handshaking {
			handshaking = false
			<-l.handshakes
		}
	}
	defer endHandshake()
	tc := tls.Server(c, l.tls.serverConfig())
	tc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.Handshake(); err != nil {
		l.log.Warn("cluster connection refused: TLS handshake failed", "remote", c.RemoteAddr().String(), "error", err)
		c.Close()
		return
	}
	var b [1]byte
	if _, err := tc.Read(b[:]); err != nil {
		tc.Close()
		return
	}
	tc.SetDeadline(time.Time{})
	if len(tc.ConnectionState().VerifiedChains) == 0 && b[0] != protoJoin {
		l.log.Warn("cluster connection refused: no cluster certificate", "remote", c.RemoteAddr().String(), "byte", b[0])
		tc.Close()
		return
	}
	if b[0] != protoJoin {
		l.mu.RLock()
		check := l.check
		l.mu.RUnlock()
		leaf := tc.ConnectionState().PeerCertificates[0]
		if check != nil {
			if err := check(leaf.Subject.CommonName, leaf); err != nil {
				l.log.Warn("cluster connection refused", "remote", c.RemoteAddr().String(), "peer", leaf.Subject.CommonName, "error", err)
				tc.Close()
				return
			}
		}
	}
	if b[0] == protoJoin {
		select {
		case l.joins <- struct{}{}:
			defer func() { <-l.joins }()
		default:
			tc.Close()
			l.busy(&l.refusedJoin)
			return
		}
	}
	endHandshake()
	switch b[0] {
	case protoRaft:
		if !l.queueRaft(tc) {
			tc.Close()
		}
	default:
		l.mu.RLock()
		h := l.handlers[b[0]]
		l.mu.RUnlock()
		if h == nil {
			l.log.Warn("cluster connection refused: unknown protocol", "remote", c.RemoteAddr().String(), "byte", b[0])
			tc.Close()
			return
		}
		h(tc)
	}
}

// queueRaft hands a Raft connection to the transport's Accept, unless the
// listener is closed: a connection queued after Close would never be
// served, and its dialler would wait for its reply until its I/O timeout.
func (l *clusterListener) queueRaft(c net.Conn) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return false
	}
	select {
	case l.raft <- c:
		return true
	case <-l.done:
		return false
	}
}

// setCheck makes check decide on every authenticated connection, and
// dialCheck on every peer Raft dials.
func (l *clusterListener) setCheck(check func(name string, leaf *x509.Certificate) error,
	dialCheck func(addr string, leaf *x509.Certificate) error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.check, l.dialCheck = check, dialCheck
}

// handle serves protocol proto with h from now on.
func (l *clusterListener) handle(proto byte, h func(net.Conn)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.handlers == nil {
		l.handlers = map[byte]func(net.Conn){}
	}
	l.handlers[proto] = h
}

func (l *clusterListener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.done)
		err = l.ln.Close()
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		// Raft will accept none of the connections still queued: close
		// them, so their diallers fail now rather than at their timeout.
		for {
			select {
			case c := <-l.raft:
				c.Close()
			default:
				return
			}
		}
	})
	return err
}

// raftLayer is the raft.StreamLayer of the cluster port.
type raftLayer struct {
	l         *clusterListener
	advertise net.Addr
}

var _ raft.StreamLayer = (*raftLayer)(nil)

func (r *raftLayer) Accept() (net.Conn, error) {
	select {
	case c := <-r.l.raft:
		return c, nil
	case <-r.l.done:
		return nil, net.ErrClosed
	}
}

func (r *raftLayer) Close() error { return r.l.Close() }

func (r *raftLayer) Addr() net.Addr { return r.advertise }

// Dial opens a mutual-TLS connection to a peer and names the protocol.
// The peer must present the certificate of the member the configuration
// has at addr.
func (r *raftLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	r.l.mu.RLock()
	check := r.l.dialCheck
	r.l.mu.RUnlock()
	if check == nil {
		return nil, fmt.Errorf("dial %s: the node is not running yet", addr)
	}
	return dialCluster(r.l.tls, string(addr), protoRaft, timeout,
		func(leaf *x509.Certificate) error { return check(string(addr), leaf) })
}

// dialCluster opens a mutual-TLS connection to the peer at addr, which
// must present a certificate of the cluster CA for the host of addr that
// check accepts, and names the protocol.
func dialCluster(t *ClusterTLS, addr string, proto byte, timeout time.Duration, check serverCheck) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	cfg := t.clientConfig(host)
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("the peer presented no certificate")
		}
		return check(cs.PeerCertificates[0])
	}
	d := &net.Dialer{Timeout: timeout}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	c.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte{proto}); err != nil {
		c.Close()
		return nil, err
	}
	c.SetWriteDeadline(time.Time{})
	return c, nil
}

// tcpAddr resolves an advertised host:port for raft's Addr.
func tcpAddr(advertise string) (net.Addr, error) {
	return net.ResolveTCPAddr("tcp", advertise)
}
