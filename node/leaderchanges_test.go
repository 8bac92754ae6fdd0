package node

import (
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/bulwark-auth/bulwark/internal/waitfor"
)

// TestLeaderChanges: every member counts the first leader it learns of,
// and a leadership transfer once more (bulwark_leader_changes_total).
func TestLeaderChanges(t *testing.T) {
	nodes := startCluster(t, 3)
	leader := waitLeader(t, nodes)
	waitfor.True(t, "every member knows the leader", 5*time.Second, 10*time.Millisecond, func() bool {
		for _, n := range nodes {
			if n.Status().LeaderID != leader.cfg.ID {
				return false
			}
		}
		return true
	})
	before := map[string]uint64{}
	for _, n := range nodes {
		if before[n.cfg.ID] = n.LeaderChanges(); before[n.cfg.ID] < 1 {
			t.Fatalf("%s knows leader %s and counted %d leader changes", n.cfg.ID, leader.cfg.ID, before[n.cfg.ID])
		}
	}
	var to *Node
	for _, n := range nodes {
		if n != leader {
			to = n
			break
		}
	}
	// A leader that stepped down on its own meanwhile (a loaded machine)
	// refuses the transfer: that election is a leader change to count too.
	if err := leader.raft.LeadershipTransferToServer(raft.ServerID(to.cfg.ID), raft.ServerAddress(to.cfg.Advertise)).Error(); err != nil &&
		!errors.Is(err, raft.ErrNotLeader) {
		t.Fatal(err)
	}
	waitfor.True(t, "every member counted the new leader", 10*time.Second, 10*time.Millisecond, func() bool {
		for _, n := range nodes {
			if n.LeaderChanges() <= before[n.cfg.ID] {
				return false
			}
		}
		return true
	})
}
