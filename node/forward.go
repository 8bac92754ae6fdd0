package node

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/bulwark-auth/bulwark/fsm"
)

// Leader forwarding: a follower sends a write it cannot commit to the
// leader over the cluster port (protocol byte 'F', mutual TLS), and the
// leader applies it and answers the state machine's result. This is the
// one forwarding path; handlers never see NotLeaderError while a leader is
// reachable.
//
// A forwarding connection carries many writes at once: the follower sends
// each request as soon as it has it, the leader applies them concurrently
// (so they share Raft batches) and answers each when it commits, in any
// order. Frames, both ways: a 4-byte big-endian length, then that many
// bytes: an 8-byte request id, then the payload. Request payload: the
// encoded fsm.Command. Answer payload: JSON {"index": N, "result":
// <fsm.EncodeResult>} or {"error": code}.
const protoForward byte = 'F'

const (
	// maxFrame bounds a frame: a command is at most fsm.MaxCommandBytes,
	// an answer a result of the same order.
	maxFrame = 2 * fsm.MaxCommandBytes
	// forwardConns is how many connections a follower keeps to the
	// leader; writes are spread over them.
	forwardConns = 2
	// maxForwardInFlight bounds the writes a leader applies at once for
	// one connection; the connection's reader waits beyond it.
	maxForwardInFlight = 1024
	idSize             = 8
	// forwardWriteTimeout bounds writing one frame, either way: a peer
	// that stops reading for that long is dropped.
	forwardWriteTimeout = 10 * time.Second
)

type forwardAnswer struct {
	Index  uint64          `json:"index,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	// Error is "not_applied" (the leader refused before appending the
	// entry: it stepped down, is handing over, is stopping, or could not
	// enqueue; safe to send again to the next leader), "leadership_lost"
	// (appended but not known committed: the write may still take effect,
	// so it must not be sent again), or a message.
	Error string `json:"error,omitempty"`
	// Code "refused": the caller may not have this written
	// (authority.go); "above_level": the command is of a feature level
	// above the cluster's (fsm.ErrAboveLevel). Error says why.
	Code string `json:"code,omitempty"`
}

// errNotApplied marks a write that certainly did not reach any log: it
// may be sent again, to the next leader.
var errNotApplied = errors.New("node: write not applied")

// goodbyeID is the request id of the frame a stopping node sends last on
// a forwarding connection it serves: every request on it not answered yet
// was not read, so not applied (request ids start at 1). Followers of an
// earlier release find no request of that id and ignore it.
var goodbyeID [idSize]byte

// errGoodbye fails the requests a stopping node did not read.
var errGoodbye = fmt.Errorf("%w: the node stopped before reading it", errNotApplied)

// notAppended reports whether raft refused the Apply behind f before
// appending it to the log, so that sending it again cannot apply it twice.
// ErrLeadershipLost never qualifies (the entry may still commit), nor does
// ErrRaftShutdown once the entry had an index (raft answers committed
// entries so when it stops with the state machine's queue full). f is nil
// when propose refused before handing data to Raft (handover.go).
func notAppended(f raft.ApplyFuture, err error) bool {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress),
		errors.Is(err, raft.ErrEnqueueTimeout):
		return true
	case errors.Is(err, raft.ErrRaftShutdown):
		return f == nil || f.Index() == 0
	}
	return false
}

func writeFrame(w *bufio.Writer, b []byte) error {
	return writeFrameParts(w, b)
}

func writeFrameParts(w *bufio.Writer, parts ...[]byte) error {
	size := 0
	for _, p := range parts {
		size += len(p)
	}
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(size))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	for _, p := range parts {
		if _, err := w.Write(p); err != nil {
			return err
		}
	}
	return w.Flush()
}

func readFrame(r *bufio.Reader) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > maxFrame {
		return nil, fmt.Errorf("forward frame of %d bytes exceeds %d", size, maxFrame)
	}
	b := make([]byte, size)
	_, err := io.ReadFull(r, b)
	return b, err
}

// serveForward answers forwarded writes on one connection until it
// closes, applying them concurrently.
func (n *Node) serveForward(c net.Conn) {
	defer c.Close()
	release, ok := n.serving(c) // handover.go
	if !ok {
		// Close has ended serving: nothing sent on c will be read. Say
		// so, or the follower fails what it sent as unanswered (may or
		// may not have taken effect) instead of sending it on.
		c.SetWriteDeadline(time.Now().Add(time.Second))
		writeFrame(bufio.NewWriter(c), goodbyeID[:])
		return
	}
	defer release()
	caller, leaf := peerName(c), peerLeaf(c)
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	var wmu sync.Mutex
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		// Stopped by Close (endServing): every request read is answered;
		// those sent after were not read, so not applied. Say so, so the
		// follower sends them to the next leader instead of failing them
		// as unanswered (which may or may not have taken effect).
		if n.servingEnded() {
			wmu.Lock()
			c.SetWriteDeadline(time.Now().Add(time.Second))
			writeFrameParts(w, goodbyeID[:])
			wmu.Unlock()
		}
	}()
	sem := make(chan struct{}, maxForwardInFlight)
	for {
		req, err := readFrame(r)
		if err != nil || len(req) < idSize {
			return
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ans := n.applyForwarded(caller, leaf, req[idSize:])
			b, err := json.Marshal(ans)
			if err != nil {
				b, _ = json.Marshal(forwardAnswer{Error: err.Error()})
			}
			wmu.Lock()
			c.SetWriteDeadline(time.Now().Add(forwardWriteTimeout))
			err = writeFrameParts(w, req[:idSize], b)
			wmu.Unlock()
			if err != nil {
				c.Close() // the reader stops too
			}
		})
	}
}

// peerName is the cluster certificate name of c's peer, "" if none.
func peerName(c net.Conn) string {
	if leaf := peerLeaf(c); leaf != nil {
		return leaf.Subject.CommonName
	}
	return ""
}

// peerLeaf is the verified cluster certificate of c's peer, nil if none.
func peerLeaf(c net.Conn) *x509.Certificate {
	if tc, ok := c.(*tls.Conn); ok {
		if cs := tc.ConnectionState(); len(cs.VerifiedChains) > 0 {
			return cs.PeerCertificates[0]
		}
	}
	return nil
}

// applyForwarded applies a command that caller, presenting leaf, forwarded,
// if this node leads and the caller may write it (authority.go). The
// command runs on the leader's clock, not the follower's: its time is
// stamped here, so a lockout window or an expiry does not depend on which
// node the client reached (fsm/clock.go keeps it from running backwards
// when the next leader's clock is behind).
func (n *Node) applyForwarded(caller string, leaf *x509.Certificate, data []byte) forwardAnswer {
	if err := n.checkCaller(caller, leaf); err != nil {
		n.log.Warn("refused a forwarded write", "from", caller, "error", err)
		return forwardAnswer{Code: "refused", Error: err.Error()}
	}
	cmd, err := fsm.DecodeCommand(data)
	if err != nil {
		return forwardAnswer{Error: err.Error()}
	}
	if err := n.checkSpeaksFor(caller, leaf, cmd); err != nil {
		n.log.Warn("refused a forwarded write", "from", caller, "type", cmd.Type, "error", err)
		return forwardAnswer{Code: "refused", Error: err.Error()}
	}
	if err := n.checkLevel(cmd, n.cfg.ApplyTimeout); errors.Is(err, fsm.ErrAboveLevel) {
		return forwardAnswer{Code: "above_level", Error: err.Error()}
	} else if err != nil { // no longer leading: nothing reached the log
		return forwardAnswer{Error: "not_applied"}
	}
	cmd.Time = n.cfg.Clock.Now().UnixNano()
	if data, err = cmd.Encode(); err != nil {
		return forwardAnswer{Error: err.Error()}
	}
	f, err := n.propose(data, n.cfg.ApplyTimeout)
	if err != nil {
		switch {
		case notAppended(f, err):
			return forwardAnswer{Error: "not_applied"}
		case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrRaftShutdown):
			return forwardAnswer{Error: "leadership_lost"}
		default:
			return forwardAnswer{Error: err.Error()}
		}
	}
	res, ok := f.Response().(fsm.Result)
	if !ok {
		return forwardAnswer{Error: fmt.Sprintf("unexpected apply response %T", f.Response())}
	}
	b, err := fsm.EncodeResult(cmd.Type, cmd.Version, res)
	if err != nil {
		return forwardAnswer{Error: err.Error()}
	}
	return forwardAnswer{Index: f.Index(), Result: b}
}

// forwarder keeps forwardConns connections to each leader it has sent
// writes to: a TLS handshake per write would cost more than the write.
// Connections are kept by the leader's id and address, and the leader
// must present the certificate of that id (check).
type forwarder struct {
	tls   *ClusterTLS
	check func(id string) serverCheck

	mu     sync.Mutex
	conns  map[string]*[forwardConns]*fwdConn
	next   uint
	closed bool
}

// conn returns a live connection to the leader id at addr, dialling one
// if needed; successive calls take the connections in turn.
func (f *forwarder) conn(id, addr string, timeout time.Duration) (*fwdConn, error) {
	f.mu.Lock()
	i := f.next % forwardConns
	f.next++
	f.mu.Unlock()
	return f.connAt(id, addr, i, timeout)
}

// warm opens every connection to the node id at addr that is not open
// yet, so that writes forwarded to it once it leads do not wait for a
// handshake (handover.go).
func (f *forwarder) warm(id, addr string, timeout time.Duration) {
	for i := range uint(forwardConns) {
		if _, err := f.connAt(id, addr, i, timeout); err != nil {
			return
		}
	}
}

// connAt returns connection i to the node id at addr, dialling it if it
// is not open.
func (f *forwarder) connAt(id, addr string, i uint, timeout time.Duration) (*fwdConn, error) {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil, ErrShutdown
	}
	if f.conns == nil {
		f.conns = map[string]*[forwardConns]*fwdConn{}
	}
	key := id + "@" + addr
	slots := f.conns[key]
	if slots == nil {
		slots = new([forwardConns]*fwdConn)
		f.conns[key] = slots
	}
	if fc := slots[i]; fc != nil && fc.alive() {
		f.mu.Unlock()
		return fc, nil
	}
	f.mu.Unlock()

	c, err := dialCluster(f.tls, addr, protoForward, timeout, f.check(id))
	if err != nil {
		return nil, err
	}
	fc := newFwdConn(c)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		fc.fail(ErrShutdown)
		return nil, ErrShutdown
	}
	if cur := slots[i]; cur != nil && cur.alive() {
		fc.fail(errors.New("not needed")) // another caller dialled first
		return cur, nil
	}
	slots[i] = fc
	return fc, nil
}

func (f *forwarder) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for _, slots := range f.conns {
		for _, fc := range slots {
			if fc != nil {
				fc.fail(ErrShutdown)
			}
		}
	}
	f.conns = nil
}

// fwdConn is one forwarding connection: callers write requests under wmu,
// one reader hands each answer to the caller waiting for its id.
type fwdConn struct {
	c   net.Conn
	wmu sync.Mutex
	w   *bufio.Writer

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan fwdReply
	err     error // why the connection is dead; nil while it lives

	lastRead atomic.Int64 // unix nanoseconds of the last answer
}

type fwdReply struct {
	b   []byte
	err error
}

func newFwdConn(c net.Conn) *fwdConn {
	fc := &fwdConn{c: c, w: bufio.NewWriter(c), pending: map[uint64]chan fwdReply{}}
	fc.lastRead.Store(time.Now().UnixNano())
	go fc.readLoop()
	return fc
}

func (fc *fwdConn) alive() bool {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.err == nil
}

func (fc *fwdConn) readLoop() {
	r := bufio.NewReader(fc.c)
	for {
		b, err := readFrame(r)
		if err == nil && len(b) < idSize {
			err = errors.New("short forwarding answer")
		}
		if err != nil {
			fc.fail(err)
			return
		}
		fc.lastRead.Store(time.Now().UnixNano())
		id := binary.BigEndian.Uint64(b)
		if id == 0 { // goodbyeID
			fc.fail(errGoodbye)
			return
		}
		fc.mu.Lock()
		ch := fc.pending[id]
		delete(fc.pending, id)
		fc.mu.Unlock()
		if ch != nil {
			ch <- fwdReply{b: b[idSize:]}
		}
	}
}

// fail closes the connection and fails every caller still waiting on it.
func (fc *fwdConn) fail(err error) {
	fc.mu.Lock()
	if fc.err != nil {
		fc.mu.Unlock()
		return
	}
	fc.err = err
	pending := fc.pending
	fc.pending = nil
	fc.mu.Unlock()
	fc.c.Close()
	for _, ch := range pending {
		ch <- fwdReply{err: err}
	}
}

// call sends data and waits for its answer until deadline or ctx ends.
// sent is false when the request certainly did not reach the leader.
func (fc *fwdConn) call(ctx context.Context, deadline time.Time, data []byte) (answer []byte, sent bool, err error) {
	ch := make(chan fwdReply, 1)
	fc.mu.Lock()
	if fc.err != nil {
		err := fc.err
		fc.mu.Unlock()
		return nil, false, err
	}
	fc.nextID++
	id := fc.nextID
	fc.pending[id] = ch
	fc.mu.Unlock()

	var idb [idSize]byte
	binary.BigEndian.PutUint64(idb[:], id)
	fc.wmu.Lock()
	if err := ctx.Err(); err != nil || !time.Now().Before(deadline) {
		fc.wmu.Unlock()
		fc.mu.Lock()
		delete(fc.pending, id)
		fc.mu.Unlock()
		if err == nil {
			err = context.DeadlineExceeded
		}
		return nil, false, err
	}
	// The connection's own write timeout, not this caller's deadline: a
	// caller short of time must not cut a frame, and with it the
	// connection every other caller waits on.
	fc.c.SetWriteDeadline(time.Now().Add(forwardWriteTimeout))
	err = writeFrameParts(fc.w, idb[:], data)
	fc.wmu.Unlock()
	if err != nil {
		// A write that failed left the frame incomplete: the leader
		// cannot have applied it.
		fc.fail(err)
		return nil, false, err
	}
	start := time.Now()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case r := <-ch:
		if errors.Is(r.err, errGoodbye) {
			return nil, false, r.err // never read, so never applied
		}
		return r.b, true, r.err
	case <-ctx.Done():
		err = ctx.Err()
	case <-t.C:
		err = fmt.Errorf("no answer within %v", time.Since(start).Round(time.Millisecond))
		// Silence for the whole wait, not one slow write, means the
		// leader is gone or cut off: drop the connection, so later writes
		// dial afresh.
		if time.Unix(0, fc.lastRead.Load()).Before(start) {
			fc.fail(err)
		}
	}
	fc.mu.Lock()
	delete(fc.pending, id)
	fc.mu.Unlock()
	return nil, true, err
}

// forward sends data to the leader id at addr and returns the result once
// this node's own state has applied the entry, so a client reading from
// the node that acknowledged its write sees it (a revoked session stays
// revoked here, a new one is found here).
func (n *Node) forward(ctx context.Context, id, addr string, cmd fsm.Command, data []byte) (any, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(n.cfg.ApplyTimeout)
	}
	fc, err := n.fwd.conn(id, addr, time.Until(deadline))
	if err != nil { // nothing was sent
		return nil, fmt.Errorf("%w: %w: forwarding to the leader at %s: %v", ErrNoLeader, errNotApplied, addr, err)
	}
	b, sent, err := fc.call(ctx, deadline, data)
	switch {
	case err != nil && !sent:
		return nil, fmt.Errorf("%w: %w: forwarding to the leader at %s: %w", ErrNoLeader, errNotApplied, addr, err)
	case err != nil:
		return nil, fmt.Errorf("%w: no answer from the leader at %s: %w", ErrNoLeader, addr, err)
	}
	var ans forwardAnswer
	if err := json.Unmarshal(b, &ans); err != nil {
		return nil, fmt.Errorf("node: forwarded answer: %w", err)
	}
	switch {
	case ans.Error == "":
	case ans.Code == "refused":
		return nil, fmt.Errorf("%w: %s", ErrRefused, ans.Error)
	case ans.Code == "above_level":
		return nil, &fsm.RemoteError{Msg: ans.Error, Sentinel: fsm.ErrAboveLevel}
	case ans.Error == "not_applied":
		return nil, fmt.Errorf("%w: %w: the node at %s no longer leads", ErrNoLeader, errNotApplied, addr)
	case ans.Error == "leadership_lost":
		return nil, fmt.Errorf("%w: the leader at %s lost leadership while committing; the write may or may not take effect", ErrNoLeader, addr)
	default:
		return nil, fmt.Errorf("node: the leader refused the write: %s", ans.Error)
	}
	res, err := fsm.DecodeResult(cmd.Type, cmd.Version, ans.Result)
	if err != nil {
		return nil, err
	}
	if err := n.waitApplied(ctx, ans.Index); err != nil {
		return nil, err
	}
	return res.Value, res.Err
}

// waitApplied blocks until state.db has applied index, or ctx ends.
func (n *Node) waitApplied(ctx context.Context, index uint64) error {
	for {
		n.appliedMu.Lock()
		ch := n.appliedCh
		n.appliedMu.Unlock()
		if applied, _, err := n.store.Applied(); err != nil || applied >= index {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("node: entry %d committed but not yet applied here: %w", index, ctx.Err())
		case <-time.After(n.cfg.ApplyTimeout):
			return fmt.Errorf("node: entry %d committed but not applied here within %v", index, n.cfg.ApplyTimeout)
		}
	}
}

// noteApplied wakes waitApplied after every batch the state machine applies.
func (n *Node) noteApplied() {
	n.lastApply.Store(time.Now().UnixNano())
	n.appliedMu.Lock()
	close(n.appliedCh)
	n.appliedCh = make(chan struct{})
	n.appliedMu.Unlock()
}
