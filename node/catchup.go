package node

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Knowing how far to catch up.
//
// A follower learns the commit index from AppendEntries, capped at the end
// of its own log, and heartbeats carry none. So a follower that restarts
// (or comes back from a partition) with a log that ends where its own
// snapshot does sees itself caught up with old state until the leader's
// InstallSnapshot lands, which may take seconds. Such a node must be
// neither Ready nor Fresh: it asks the leader for its commit index (the
// 'M' info call) and counts as caught up once it has applied that far.
// It asks again whenever it has gone MaxStaleness without hearing from a
// leader (a shorter silence, such as an election, keeps what it knew).

// catchUp is the tracker's finding: caughtUp once this node knows how far
// to catch up (or leads), to index catchUpTo.
type catchUp struct {
	caughtUp  atomic.Bool
	catchUpTo atomic.Uint64
}

// catchUpPoll is how often the tracker looks at the node's contact with
// the leader.
const catchUpPoll = 50 * time.Millisecond

// trackCatchUp runs until the node closes.
func (n *Node) trackCatchUp() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-n.done
		cancel()
	}()
	n.every(catchUpPoll, catchUpPoll, func() bool {
		if n.raft.State() == raft.Leader {
			// Its own commit index is the cluster's; Ready compares them.
			n.catchUpTo.Store(0)
			n.caughtUp.Store(true)
			return false
		}
		if last := n.raft.LastContact(); last.IsZero() || time.Since(last) > n.cfg.MaxStaleness {
			n.caughtUp.Store(false) // out of touch: ask again once a leader is back
		}
		if n.caughtUp.Load() {
			return false
		}
		addr, id := n.leader()
		if id == "" || string(id) == n.cfg.ID {
			return false
		}
		ans, err := n.memberCall(ctx, string(id), string(addr), memberRequest{Op: opInfo}, infoTimeout)
		if err != nil || ans.Info == nil || ans.Info.State != raft.Leader.String() {
			return false
		}
		n.catchUpTo.Store(ans.Info.CommitIndex)
		n.caughtUp.Store(true)
		return false
	})
}

// behindLeader says, when it is so, that this node (its state at applied)
// has not yet applied what the leader had committed when it last asked, or
// does not know how far that is.
func (n *Node) behindLeader(applied uint64) string {
	if n.cluster == nil {
		return "" // a single node on the in-memory transport leads itself
	}
	if !n.caughtUp.Load() {
		return "asking the leader how far to catch up"
	}
	target := n.catchUpTo.Load()
	if !n.appliedThrough(applied, target) {
		return fmt.Sprintf("catching up with the leader: state at %d of %d", applied, target)
	}
	return ""
}

// CatchUp returns once this node has applied every entry the leader had
// committed when asked, or fails when ctx ends or no leader answers. It
// costs one 'M' info call to the leader (none on the leader itself): a
// client whose write another node acknowledged a moment ago (a session it
// just opened there) reads it here after CatchUp, without a Raft write.
func (n *Node) CatchUp(ctx context.Context) error {
	target := n.raft.CommitIndex()
	if n.cluster != nil && n.raft.State() != raft.Leader {
		addr, id := n.leader()
		if id == "" {
			return fmt.Errorf("%w: catching up with the leader", ErrNoLeader)
		}
		ans, err := n.memberCall(ctx, string(id), string(addr), memberRequest{Op: opInfo}, infoTimeout)
		if err != nil || ans.Info == nil || ans.Info.State != raft.Leader.String() {
			return fmt.Errorf("%w: asking %s how far to catch up: %v", ErrNoLeader, id, err)
		}
		target = ans.Info.CommitIndex
	}
	for {
		n.appliedMu.Lock()
		ch := n.appliedCh
		n.appliedMu.Unlock()
		applied, _, err := n.store.Applied()
		if err != nil {
			return err
		}
		if n.appliedThrough(applied, target) {
			return nil
		}
		// Raft's no-op entries wake no one: look again shortly too.
		t := time.NewTimer(5 * time.Millisecond)
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("node: catching up to entry %d: %w", target, ctx.Err())
		}
		t.Stop()
	}
}
