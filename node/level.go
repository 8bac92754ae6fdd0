package node

import (
	"context"
	"time"

	"github.com/hashicorp/raft"

	"github.com/bulwark-auth/bulwark/fsm"
)

// levelEvery is how often the leader looks whether it can raise the
// cluster's feature level (fsm.MaxLevel).
const levelEvery = 2 * time.Second

// raiseLevel runs until the node closes: while leading, it raises the
// cluster's feature level to the highest one every member applies, as the
// members report it (a member of an earlier release reports none: level
// 1). An unreachable member holds the level where it is.
func (n *Node) raiseLevel() {
	n.every(0, levelEvery, func() bool {
		if n.raft.State() != raft.Leader {
			return false
		}
		var cur int
		if err := n.View(func(r fsm.Reader) error { cur = r.ClusterLevel(); return nil }); err != nil || cur >= fsm.MaxLevel {
			return false
		}
		target := fsm.MaxLevel
		ctx, cancel := context.WithTimeout(context.Background(), memberTimeout)
		defer cancel()
		for _, m := range n.memberInfos(ctx, n.servers()) {
			if m.err != nil {
				target = 0
				break
			}
			target = min(target, max(m.info.Level, 1))
		}
		if target > cur {
			cmd, err := fsm.NewCommand(fsm.TypeClusterLevel, 1, time.Now().UnixNano(), fsm.ClusterLevel{Level: target})
			if err == nil {
				_, err = n.Apply(ctx, cmd)
			}
			if err != nil {
				n.log.Warn("could not raise the cluster's feature level", "to", target, "error", err)
			} else {
				n.log.Info("cluster feature level raised", "from", cur, "to", target)
			}
		}
		return false
	})
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
