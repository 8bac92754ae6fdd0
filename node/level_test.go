package node

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/clock"
	"github.com/bulwark-auth/bulwark/internal/waitfor"
	"github.com/bulwark-auth/bulwark/node/loopback"
)

func clusterLevel(n *Node) (level int) {
	n.View(func(r fsm.Reader) error { level = r.ClusterLevel(); return nil })
	return level
}

// TestNewClusterStartsAtTheTopLevel: a leader looks at once, not a
// levelEvery later, so a new cluster whose members all apply fsm.MaxLevel
// is at it within a moment of electing its leader (until then the admin
// API's reads are not linearizable). The nodes' clock stands still, so
// only the look on becoming leader can raise the level.
func TestNewClusterStartsAtTheTopLevel(t *testing.T) {
	clk := clock.NewFake(time.Now())
	nodes := newCluster(t, 3, clusterOpts{adjust: func(i int, c *Config) { c.Clock = clk }}).nodes
	elected := time.Now()
	leader := waitLeader(t, nodes)
	waitfor.Nil(t, "the top level", 10*time.Second, 10*time.Millisecond, func() error {
		if l := clusterLevel(leader); l != fsm.MaxLevel {
			return fmt.Errorf("level %d %v after the leader was elected", l, time.Since(elected).Round(time.Millisecond))
		}
		return nil
	})
}

// TestLevelRisesWhenEveryMemberApplies: the leader raises the cluster's
// feature level only once every member reports a binary that applies it;
// a member of the earlier release holds it back. The leader looks again
// each levelEvery of the nodes' clock, which the test advances.
func TestLevelRisesWhenEveryMemberApplies(t *testing.T) {
	clk := clock.NewFake(time.Now())
	nodes := newCluster(t, 3, clusterOpts{adjust: func(i int, c *Config) {
		c.Clock = clk
		if i == 2 {
			c.level = 1 // an earlier release reports no level
		}
	}}).nodes
	old := nodes[2]
	leader := waitLeader(t, nodes)
	looks := leader.levelLooks.Load()
	clk.Advance(levelEvery)
	waitfor.True(t, "the leader's next look at the level", 10*time.Second, 10*time.Millisecond,
		func() bool { return leader.levelLooks.Load() > looks })
	if l := clusterLevel(leader); l != 1 {
		t.Fatalf("level %d with a member of level 1", l)
	}
	old.level.Store(fsm.MaxLevel) // upgraded
	clk.Advance(levelEvery)
	waitfor.Nil(t, "the top level once every member reports it", 10*time.Second, 10*time.Millisecond, func() error {
		if l := clusterLevel(leader); l != fsm.MaxLevel {
			return fmt.Errorf("level %d after every member reports %d", l, fsm.MaxLevel)
		}
		return nil
	})
	waitfor.Nil(t, "every node at the top level", 5*time.Second, 20*time.Millisecond, func() error {
		for _, n := range nodes {
			if l := clusterLevel(n); l != fsm.MaxLevel {
				return fmt.Errorf("%s at level %d", n.cfg.ID, l)
			}
		}
		return nil
	})

	// A node of the earlier release is not promoted to voter any more.
	leader = waitLeader(t, nodes)
	if err := leader.raft.AddNonvoter("old", raft.ServerAddress(loopback.Addr(t)), 0, time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	ans := leader.memberLocal(memberRequest{Op: opPromote, ID: "old"}, "old")
	if ans.Code != "refused" || !strings.Contains(ans.Error, "upgrade bulwark on old") {
		t.Fatalf("promotion of a level-1 node: %+v", ans)
	}
}

// TestApplyRefusesAboveTheLevel: a command of a feature level above the
// cluster's is refused with fsm.ErrAboveLevel before it reaches the log,
// on the leader and from a follower that forwards it; one within the
// level goes through.
func TestApplyRefusesAboveTheLevel(t *testing.T) {
	nodes := newCluster(t, 3, clusterOpts{adjust: func(i int, c *Config) {
		c.level = 2 // every member of the release before issuers
	}}).nodes
	leader := waitLeader(t, nodes)
	waitfor.Nil(t, "level 2", 5*time.Second, 20*time.Millisecond, func() error {
		for _, n := range nodes {
			if l := clusterLevel(n); l != 2 {
				return fmt.Errorf("%s at level %d", n.cfg.ID, l)
			}
		}
		return nil
	})
	var follower *Node
	for _, n := range nodes {
		if n != leader {
			follower = n
		}
	}
	ctx := t.Context()
	issuer, _ := fsm.NewCommand(fsm.TypeTokensIssuer, 1, time.Now().UnixNano(), fsm.TokensIssuer{Issuer: "https://bulwark.test"})
	for _, n := range []*Node{leader, follower} {
		if _, err := n.Apply(ctx, issuer); !errors.Is(err, fsm.ErrAboveLevel) {
			t.Fatalf("tokens.issuer v1 (level 3) on %s at level 2: %v, want ErrAboveLevel", n.cfg.ID, err)
		}
	}
	if err := leader.applyHere(ctx, issuer); !errors.Is(err, fsm.ErrAboveLevel) {
		t.Fatalf("tokens.issuer v1 by applyHere at level 2: %v, want ErrAboveLevel", err)
	}
	barrier, _ := fsm.NewCommand(fsm.TypeReadBarrier, 1, time.Now().UnixNano(), fsm.ReadBarrier{})
	for _, n := range []*Node{leader, follower} {
		if _, err := n.Apply(ctx, barrier); err != nil {
			t.Fatalf("read.barrier v1 (level 2) on %s at level 2: %v", n.cfg.ID, err)
		}
		// Every entry before the barrier is applied here: none wrote an issuer.
		n.View(func(r fsm.Reader) error {
			if iss, ok := r.TokensIssuer(); ok {
				t.Errorf("%s holds the issuer %q of a refused command", n.cfg.ID, iss)
			}
			return nil
		})
	}
}
