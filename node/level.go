package node

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/bulwark-auth/bulwark/fsm"
)

// levelEvery is how often the leader looks whether it can raise the
// cluster's feature level (fsm.MaxLevel), by the node's clock. It also
// looks as soon as it becomes leader (within levelPoll, on the system
// clock: a stand-in for a notice of leadership) and before it admits a
// joining node, so a new cluster is at the top level before its second
// member joins: below level 2 the admin API's reads are not linearizable
// (authcore.Service.ReadBarrier).
const (
	levelEvery = 2 * time.Second
	levelPoll  = 100 * time.Millisecond
)

// raiseLevel runs until the node closes: while leading, it raises the
// cluster's feature level (raiseLevelNow) on becoming leader and every
// levelEvery after, by the node's clock.
func (n *Node) raiseLevel() {
	var looked time.Time // zero: not since this node last became leader
	n.every(0, levelPoll, func() bool {
		if n.raft.State() != raft.Leader {
			looked = time.Time{}
			return false
		}
		if now := n.cfg.Clock.Now(); looked.IsZero() || now.Sub(looked) >= levelEvery {
			looked = now
			n.raiseLevelNow()
			n.levelLooks.Add(1)
		}
		return false
	})
}

// raiseLevelNow raises the cluster's feature level to the highest one every
// member applies, as the members report it (a member of an earlier release
// reports none: level 1). An unreachable member holds the level where it
// is. It does nothing unless this node leads.
func (n *Node) raiseLevelNow() {
	var cur int
	if err := n.View(func(r fsm.Reader) error { cur = r.ClusterLevel(); return nil }); err != nil || cur >= fsm.MaxLevel {
		return
	}
	target := fsm.MaxLevel
	ctx, cancel := context.WithTimeout(context.Background(), memberTimeout)
	defer cancel()
	for _, m := range n.memberInfos(ctx, n.servers()) {
		if m.err != nil {
			return
		}
		target = min(target, max(m.info.Level, 1))
	}
	if target <= cur || n.raft.State() != raft.Leader {
		return
	}
	cmd, err := fsm.NewCommand(fsm.TypeClusterLevel, 1, n.cfg.Clock.Now().UnixNano(), fsm.ClusterLevel{Level: target})
	if err == nil {
		// A member forwarding it would be refused. Its own level is 2, and
		// it is judged on the members' reports, not on the state's level.
		err = n.proposeHere(ctx, cmd, false)
	}
	if err != nil {
		n.log.Warn("could not raise the cluster's feature level", "to", target, "error", err)
		return
	}
	n.log.Info("cluster feature level raised", "from", cur, "to", target)
}

// every calls fn after first and then every d, until the node closes or
// fn reports that it is done: the skeleton of the node's background loops.
func (n *Node) every(first, d time.Duration, fn func() (done bool)) {
	t := time.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-n.done:
			return
		case <-t.C:
		}
		if fn() {
			return
		}
		t.Reset(d)
	}
}

// checkLevel returns fsm.ErrAboveLevel when cmd is of a feature level
// above the cluster's (fsm.Proposable), so that no member is left with a
// log entry it cannot apply. The level is read from the local state, which
// may lag the log by the very entry that raised it: so a command found
// above it is judged again after a barrier (every entry committed before
// it applied here), which only the leader can pass. Elsewhere checkLevel
// returns raft's refusal, and the caller forwards the command to the
// leader, which judges it (applyForwarded); a follower behind the leader
// thus never refuses what the cluster allows.
func (n *Node) checkLevel(cmd fsm.Command, timeout time.Duration) error {
	if n.proposable(cmd.Type, cmd.Version) {
		return nil
	}
	if err := n.barrier(timeout); err != nil { // handover.go
		return err
	}
	if n.proposable(cmd.Type, cmd.Version) {
		return nil
	}
	level, _ := fsm.CommandLevel(cmd.Type, cmd.Version)
	return fmt.Errorf("%w: %s v%d is of level %d, the cluster is at level %d",
		fsm.ErrAboveLevel, cmd.Type, cmd.Version, level, clusterLevelOf(n))
}

// proposable reports whether the cluster's level, as the local state
// knows it, allows version v of type t (fsm.Proposable).
func (n *Node) proposable(t fsm.Type, v uint16) bool {
	return fsm.Proposable(t, v, clusterLevelOf(n))
}
