package node

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/hashicorp/raft"
	"io"
	"net"
	"sync"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
)

// Leader forwarding: a follower sends a write it cannot commit to the
// leader over the cluster port (protocol byte 'F', mutual TLS), and the
// leader applies it and answers the state machine's result. This is the
// one forwarding path; handlers never see NotLeaderError while a leader is
// reachable.
//
// Frames on a forwarding connection, both ways: a 4-byte big-endian
// length, then that many bytes. Request: the encoded fsm.Command. Answer:
// JSON {"index": N, "result": <fsm.EncodeResult>} or {"error": code}.
const protoForward byte = 'F'

// maxFrame bounds a frame: a command is at most fsm.MaxCommandBytes, an
// answer a result of the same order.
const maxFrame = 2 * fsm.MaxCommandBytes

type forwardAnswer struct {
	Index  uint64          `json:"index,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	// Error is "not_applied" (the leader refused before appending the
	// entry: it stepped down, is handing over, is stopping, or could not
	// enqueue; safe to send again to the next leader), "leadership_lost"
	// (appended but not known committed: the write may still take effect,
	// so it must not be sent again), or a message.
	Error string `json:"error,omitempty"`
}

// errNotApplied marks a write that certainly did not reach any log: it
// may be sent again, to the next leader.
var errNotApplied = errors.New("node: write not applied")

// notAppended reports whether raft refused an Apply before appending it.
func notAppended(err error) bool {
	return errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipTransferInProgress) ||
		errors.Is(err, raft.ErrRaftShutdown) || errors.Is(err, raft.ErrEnqueueTimeout)
}

func writeFrame(w *bufio.Writer, b []byte) error {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return err
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

// serveForward answers forwarded writes on one connection until it closes.
func (n *Node) serveForward(c net.Conn) {
	defer c.Close()
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	for {
		req, err := readFrame(r)
		if err != nil {
			return
		}
		ans := n.applyForwarded(req)
		b, err := json.Marshal(ans)
		if err != nil || writeFrame(w, b) != nil {
			return
		}
	}
}

// applyForwarded applies a follower's command if this node leads.
func (n *Node) applyForwarded(data []byte) forwardAnswer {
	cmd, err := fsm.DecodeCommand(data)
	if err != nil {
		return forwardAnswer{Error: err.Error()}
	}
	f := n.raft.Apply(data, n.cfg.ApplyTimeout)
	if err := f.Error(); err != nil {
		switch {
		case notAppended(err):
			return forwardAnswer{Error: "not_applied"}
		case errors.Is(err, raft.ErrLeadershipLost):
			return forwardAnswer{Error: "leadership_lost"}
		default:
			return forwardAnswer{Error: err.Error()}
		}
	}
	res, ok := f.Response().(fsm.Result)
	if !ok {
		return forwardAnswer{Error: fmt.Sprintf("unexpected apply response %T", f.Response())}
	}
	b, err := fsm.EncodeResult(cmd.Type, res)
	if err != nil {
		return forwardAnswer{Error: err.Error()}
	}
	return forwardAnswer{Index: f.Index(), Result: b}
}

// forwarder keeps idle connections to the leader for reuse: a TLS
// handshake per write would cost more than the write.
type forwarder struct {
	tls *ClusterTLS

	mu   sync.Mutex
	idle map[string][]net.Conn
}

const maxIdleForward = 16

func (f *forwarder) get(addr string, timeout time.Duration) (net.Conn, error) {
	f.mu.Lock()
	if cs := f.idle[addr]; len(cs) > 0 {
		c := cs[len(cs)-1]
		f.idle[addr] = cs[:len(cs)-1]
		f.mu.Unlock()
		return c, nil
	}
	f.mu.Unlock()
	return dialCluster(f.tls, addr, protoForward, timeout)
}

func (f *forwarder) put(addr string, c net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.idle == nil {
		f.idle = map[string][]net.Conn{}
	}
	if len(f.idle[addr]) >= maxIdleForward {
		c.Close()
		return
	}
	f.idle[addr] = append(f.idle[addr], c)
}

func (f *forwarder) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, cs := range f.idle {
		for _, c := range cs {
			c.Close()
		}
	}
	f.idle = nil
}

// forward sends data to the leader at addr and returns the result once
// this node's own state has applied the entry, so a client reading from
// the node that acknowledged its write sees it (a revoked session stays
// revoked here, a new one is found here).
func (n *Node) forward(ctx context.Context, addr string, cmd fsm.Command, data []byte) (any, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(n.cfg.ApplyTimeout)
	}
	c, err := n.fwd.get(addr, time.Until(deadline))
	if err != nil { // nothing was sent
		return nil, fmt.Errorf("%w: %w: forwarding to the leader at %s: %v", ErrNoLeader, errNotApplied, addr, err)
	}
	c.SetDeadline(deadline)
	if err := writeFrame(bufio.NewWriter(c), data); err != nil {
		c.Close()
		return nil, fmt.Errorf("%w: forwarding to the leader at %s: %v", ErrNoLeader, addr, err)
	}
	b, err := readFrame(bufio.NewReader(c))
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("%w: no answer from the leader at %s: %v", ErrNoLeader, addr, err)
	}
	c.SetDeadline(time.Time{})
	n.fwd.put(addr, c)
	var ans forwardAnswer
	if err := json.Unmarshal(b, &ans); err != nil {
		return nil, fmt.Errorf("node: forwarded answer: %w", err)
	}
	switch ans.Error {
	case "":
	case "not_applied":
		return nil, fmt.Errorf("%w: %w: the node at %s no longer leads", ErrNoLeader, errNotApplied, addr)
	case "leadership_lost":
		return nil, fmt.Errorf("%w: the leader at %s lost leadership while committing; the write may or may not take effect", ErrNoLeader, addr)
	default:
		return nil, fmt.Errorf("node: the leader refused the write: %s", ans.Error)
	}
	res, err := fsm.DecodeResult(cmd.Type, ans.Result)
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
	n.appliedMu.Lock()
	close(n.appliedCh)
	n.appliedCh = make(chan struct{})
	n.appliedMu.Unlock()
}
