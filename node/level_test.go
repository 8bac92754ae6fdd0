package node

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/node/loopback"
)

func clusterLevel(n *Node) (level int) {
	n.View(func(r fsm.Reader) error { level = r.ClusterLevel(); return nil })
	return level
}

// TestNewClusterStartsAtTheTopLevel: a leader looks at once, not a
// levelEvery later, so a new cluster whose members all apply fsm.MaxLevel
// is at it within a moment of electing its leader (until then the admin
// API's reads are not linearizable).
func TestNewClusterStartsAtTheTopLevel(t *testing.T) {
	nodes := startCluster(t, 3)
	elected := time.Now()
	leader := waitLeader(t, nodes)
	for clusterLevel(leader) != fsm.MaxLevel {
		if since := time.Since(elected); since > levelEvery/2 {
			t.Fatalf("level %d %v after the leader was elected", clusterLevel(leader), since.Round(time.Millisecond))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLevelRisesWhenEveryMemberApplies: the leader raises the cluster's
// feature level only once every member reports a binary that applies it;
// a member of the earlier release holds it back.
func TestLevelRisesWhenEveryMemberApplies(t *testing.T) {
	nodes := startClusterWith(t, 3, 300*time.Millisecond, func(i int, c *Config) {
		if i == 2 {
			c.level = 1 // an earlier release reports no level
		}
	})
	old := nodes[2]
	leader := waitLeader(t, nodes)
	time.Sleep(levelEvery + time.Second) // one round of the leader's check, at least
	if l := clusterLevel(leader); l != 1 {
		t.Fatalf("level %d with a member of level 1", l)
	}
	old.level.Store(fsm.MaxLevel) // upgraded
	deadline := time.Now().Add(3 * levelEvery)
	for clusterLevel(leader) != fsm.MaxLevel {
		if time.Now().After(deadline) {
			t.Fatalf("level %d after every member reports %d", clusterLevel(leader), fsm.MaxLevel)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitApplied := time.Now().Add(5 * time.Second)
	for _, n := range nodes {
		for clusterLevel(n) != fsm.MaxLevel && time.Now().Before(waitApplied) {
			time.Sleep(20 * time.Millisecond)
		}
		if clusterLevel(n) != fsm.MaxLevel {
			t.Fatalf("%s at level %d", n.cfg.ID, clusterLevel(n))
		}
	}

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
