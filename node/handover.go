package node

import (
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// A graceful stop of the leader (Close) hands leadership to another voter
// before Raft stops, and the survivors' writes resume as soon as they know
// the new leader. What that costs is mostly the election's few synced
// writes; this file keeps the rest off the path:
//
//   - handover: Close first refuses new proposals (as Raft refuses them
//     during a transfer: nothing appended, so the caller may send them
//     again to the next leader) and waits for those in flight to commit.
//     A write still uncommitted when the old leader steps down would fail
//     as "leadership lost" although it most likely takes effect: a client
//     told 503 whose refresh token rotated anyway.
//   - leader events: a write refused by a leader that is handing over
//     waits for the next leader change, not a fixed poll interval
//     (awaitNewLeader).
//   - warm forwarding connections: a follower keeps its forwarding
//     connections to every voter, not only to the leader, so the first
//     write it forwards to a new leader does not wait for a TLS handshake.

// handover refuses proposals once Close has begun and counts those in
// flight; it also holds the forwarding connections this node serves,
// which Close ends once Raft has stopped.
type handover struct {
	mu       sync.RWMutex
	stopping bool
	inFlight sync.WaitGroup

	servedMu sync.Mutex
	served   map[net.Conn]struct{}
	ended    bool // Close ended the served connections; no more
}

// propose hands data to Raft and waits for its outcome, unless the node
// is handing its leadership over: then it refuses with
// raft.ErrLeadershipTransferInProgress, before anything reaches the log
// (f is nil then).
func (n *Node) propose(data []byte, timeout time.Duration) (f raft.ApplyFuture, err error) {
	done, ok := n.proposing()
	if !ok {
		return nil, raft.ErrLeadershipTransferInProgress
	}
	defer done()
	f = n.raft.Apply(data, timeout)
	return f, f.Error()
}

// barrier is raft.Barrier under the same rule as propose. A barrier is an
// entry too: one still queued for the state machine when Raft shuts down
// is never answered (hashicorp/raft drops that queue), so its caller, a
// forwarded write checking the cluster's level, would wait for good and
// the follower's client with it. The handover waits for it like a write.
func (n *Node) barrier(timeout time.Duration) error {
	done, ok := n.proposing()
	if !ok {
		return raft.ErrLeadershipTransferInProgress
	}
	defer done()
	return n.raft.Barrier(timeout).Error()
}

// proposing counts one more proposal in flight, until done, unless the
// handover has begun (ok false).
func (n *Node) proposing() (done func(), ok bool) {
	h := &n.handover
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.stopping {
		return nil, false
	}
	h.inFlight.Add(1)
	return h.inFlight.Done, true
}

// stopProposing makes propose refuse from now on and waits, at most
// limit, for the proposals in flight to end. It reports whether they all
// did.
func (n *Node) stopProposing(limit time.Duration) bool {
	h := &n.handover
	h.mu.Lock()
	h.stopping = true
	h.mu.Unlock()
	done := make(chan struct{})
	go func() { h.inFlight.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(limit):
		return false
	}
}

// serving records c, a forwarding connection this node serves, until
// release; ok is false once Close has ended them (c is to be closed).
func (n *Node) serving(c net.Conn) (release func(), ok bool) {
	h := &n.handover
	h.servedMu.Lock()
	defer h.servedMu.Unlock()
	if h.ended {
		return nil, false
	}
	if h.served == nil {
		h.served = map[net.Conn]struct{}{}
	}
	h.served[c] = struct{}{}
	return func() {
		h.servedMu.Lock()
		delete(h.served, c)
		h.servedMu.Unlock()
	}, true
}

// endServing stops every forwarding connection this node serves from
// reading more requests: each answers those it has taken (Raft has
// stopped, so they fail as not applied, to be sent to the leader), tells
// the follower that the rest were not read (goodbyeID) and closes; one
// that arrives later gets the goodbye at once. Without it a stopped
// node's connections stayed open in a process that went on (tests), and a
// follower's warm connection to it looked alive.
func (n *Node) endServing() {
	h := &n.handover
	h.servedMu.Lock()
	defer h.servedMu.Unlock()
	h.ended = true
	for c := range h.served {
		c.SetReadDeadline(time.Now())
	}
}

// servingEnded reports whether Close has ended the served connections.
func (n *Node) servingEnded() bool {
	h := &n.handover
	h.servedMu.Lock()
	defer h.servedMu.Unlock()
	return h.ended
}

// leaderEvents is closed and replaced whenever this node learns of a
// leader change (the leader lost included).
type leaderEvents struct {
	mu sync.Mutex
	ch chan struct{}
}

// next returns the channel closed at the next leader change.
func (e *leaderEvents) next() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ch == nil {
		e.ch = make(chan struct{})
	}
	return e.ch
}

func (e *leaderEvents) fire() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ch != nil {
		close(e.ch)
	}
	e.ch = make(chan struct{})
}

// warmTimeout bounds dialling one warm forwarding connection.
const warmTimeout = 5 * time.Second

// warmForwarding keeps forwarding connections open to every other voter,
// each time the leader or the membership changes (n.warm is signalled),
// until Close.
func (n *Node) warmForwarding() {
	for {
		select {
		case <-n.done:
			return
		case <-n.warm:
		}
		f := n.raft.GetConfiguration()
		if f.Error() != nil {
			continue
		}
		var wg sync.WaitGroup
		for _, s := range f.Configuration().Servers {
			if s.Suffrage != raft.Voter || string(s.ID) == n.cfg.ID {
				continue
			}
			wg.Go(func() { n.fwd.warm(string(s.ID), string(s.Address), warmTimeout) })
		}
		wg.Wait()
	}
}

// observe is called by Raft (on its own goroutine, so it must not block)
// with each observation.
func (n *Node) observe(o *raft.Observation) {
	switch d := o.Data.(type) {
	case raft.LeaderObservation:
		if d.LeaderID != "" {
			n.leaderChanges.Add(1)
			n.leaderTimes.add(n.cfg.Clock.Now())
		}
		n.leaderEvents.fire()
	case raft.PeerObservation:
	default:
		return
	}
	select {
	case n.warm <- struct{}{}:
	default: // a warm-up is pending already
	}
}
