package api

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// ConnLimits bound the connections the API listener holds open, so that
// clients that open connections and leave them idle, or many connections
// from one address, cannot take the node's memory or file descriptors
// from everyone else. (Slow headers and bodies are bounded by the
// server's timeouts, NewServer.)
type ConnLimits struct {
	// Max is how many connections are open at once; 0: no limit. At the
	// limit the connection idle the longest is closed to make room (an
	// idle HTTP/1.1 keep-alive, or an HTTP/2 connection with no stream
	// open); while none is idle, new connections wait in the kernel's
	// backlog until one closes.
	Max int
	// PerClient is how many connections one client address (an IPv6
	// client: its /64) holds at once; 0: no limit. A connection past it is
	// closed as soon as it is accepted.
	PerClient int
	// Exempt peers are not held to PerClient: reverse proxies
	// (trusted_proxies) carry many clients' connections, and exempt
	// clients (rate_limit.exempt) are the operator's own.
	Exempt []netip.Prefix
}

// ConnLimiter is a listener that enforces ConnLimits. Its ConnState must
// be the server's http.Server.ConnState, so that it knows which
// connections are idle.
type ConnLimiter struct {
	net.Listener
	lim ConnLimits
	log *slog.Logger

	mu       sync.Mutex
	freed    *sync.Cond // a connection closed or went idle, or the listener closed
	live     int        // connections open
	byClient map[netip.Prefix]int
	idle     map[*limitedConn]time.Time // since when
	closed   bool
	logged   time.Time // last refusal logged
	refused  int       // refusals since then
	stats    ConnStats // counters (Stats)
}

// ConnStats is what a ConnLimiter has done since it was made, and holds
// now (bulwark_connections_* metrics).
type ConnStats struct {
	Open, Idle int // connections open now, and how many of them idle
	// RefusedPerClient counts connections closed as soon as accepted
	// because their client held PerClient already.
	RefusedPerClient uint64
	// WaitedMax counts connections that met Max with none idle and were
	// held unanswered until one closed (or went idle).
	WaitedMax uint64
	// ClosedIdle counts idle connections closed to make room under Max.
	ClosedIdle uint64
}

// NewConnLimiter wraps ln.
func NewConnLimiter(ln net.Listener, lim ConnLimits, logger *slog.Logger) *ConnLimiter {
	if logger == nil {
		logger = discardLogger()
	}
	l := &ConnLimiter{Listener: ln, lim: lim, log: logger,
		byClient: map[netip.Prefix]int{}, idle: map[*limitedConn]time.Time{}}
	l.freed = sync.NewCond(&l.mu)
	return l
}

// Accept takes the next connection; closes it at once if its client
// already holds PerClient; and otherwise waits for room under Max,
// closing the longest-idle connection when there is none. (A connection
// that waits has only been accepted: the client sees no answer to its
// handshake until then, as in the kernel's backlog.)
func (l *ConnLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		lc := &limitedConn{Conn: c, l: l}
		key, counted := l.clientKey(c)
		l.mu.Lock()
		if counted && l.lim.PerClient > 0 && l.byClient[key] >= l.lim.PerClient {
			l.refusedLocked(key)
			l.mu.Unlock()
			c.Close()
			continue
		}
		if counted {
			lc.key, lc.counted = key, true
			l.byClient[key]++ // before the wait: its client's count holds
		}
		if err := l.acquireLocked(); err != nil {
			l.releaseLocked(lc)
			l.mu.Unlock()
			c.Close()
			return nil, err
		}
		l.mu.Unlock()
		return lc, nil
	}
}

// acquireLocked takes a slot under Max; l.mu is held.
func (l *ConnLimiter) acquireLocked() error {
	waited := false
	for {
		if l.closed {
			return net.ErrClosed
		}
		if l.lim.Max <= 0 || l.live < l.lim.Max {
			l.live++
			return nil
		}
		if victim := l.oldestIdleLocked(); victim != nil {
			delete(l.idle, victim)
			l.stats.ClosedIdle++
			l.mu.Unlock()
			victim.Close() // gives its slot back
			l.mu.Lock()
			continue
		}
		if !waited {
			waited = true
			l.stats.WaitedMax++
		}
		l.freed.Wait()
	}
}

// release gives back c's slot and its place in its client's count.
func (l *ConnLimiter) release(c *limitedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.live--
	l.releaseLocked(c)
	l.freed.Signal()
}

// releaseLocked takes c out of the idle set and its client's count; l.mu
// is held.
func (l *ConnLimiter) releaseLocked(c *limitedConn) {
	c.done = true
	delete(l.idle, c)
	if c.counted {
		if l.byClient[c.key]--; l.byClient[c.key] <= 0 {
			delete(l.byClient, c.key)
		}
	}
}

// Close closes the listener and wakes an Accept waiting for room.
func (l *ConnLimiter) Close() error {
	l.mu.Lock()
	l.closed = true
	l.freed.Broadcast()
	l.mu.Unlock()
	return l.Listener.Close()
}

// ConnState records which connections are idle (http.Server.ConnState).
func (l *ConnLimiter) ConnState(c net.Conn, st http.ConnState) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if st == http.StateIdle && !lc.done {
		l.idle[lc] = time.Now()
		l.freed.Signal() // an Accept waiting for room may close it
		return
	}
	delete(l.idle, lc)
}

// Open reports how many connections are open and how many of them idle.
func (l *ConnLimiter) Open() (open, idle int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.live, len(l.idle)
}

// Stats reports the connections open now and the counters.
func (l *ConnLimiter) Stats() ConnStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.stats
	st.Open, st.Idle = l.live, len(l.idle)
	return st
}

func (l *ConnLimiter) oldestIdleLocked() *limitedConn {
	var victim *limitedConn
	var since time.Time
	for c, t := range l.idle {
		if victim == nil || t.Before(since) {
			victim, since = c, t
		}
	}
	return victim
}

// clientKey is the address a connection counts against: an IPv4 address,
// or an IPv6 address's /64; counted is false for exempt peers.
func (l *ConnLimiter) clientKey(c net.Conn) (netip.Prefix, bool) {
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Prefix{}, false
	}
	addr := ap.Addr().Unmap()
	if slices.ContainsFunc(l.lim.Exempt, func(p netip.Prefix) bool { return p.Contains(addr) }) {
		return netip.Prefix{}, false
	}
	bits := 32
	if addr.Is6() {
		bits = 64
	}
	p, _ := addr.Prefix(bits)
	return p, true
}

// refusedLocked logs refusals at most every 10 s, with how many there
// were.
func (l *ConnLimiter) refusedLocked(key netip.Prefix) {
	l.stats.RefusedPerClient++
	l.refused++
	if now := time.Now(); now.Sub(l.logged) >= 10*time.Second {
		l.log.Warn("connections refused: a client holds api.max_connections_per_client",
			"client", key.String(), "limit", l.lim.PerClient, "refused", l.refused)
		l.logged, l.refused = now, 0
	}
}

// limitedConn gives its slot back once, when closed.
type limitedConn struct {
	net.Conn
	l       *ConnLimiter
	key     netip.Prefix
	counted bool

	once sync.Once
	done bool // closed (guarded by l.mu)
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c) })
	return err
}
