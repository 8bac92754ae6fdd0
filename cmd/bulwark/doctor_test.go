package main

import (
	"slices"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/node"
)

// clusterFacts counts voters and their reachability, and takes a clock
// offset less the round trip's uncertainty; a member that did not answer
// or reported no clock is named.
func TestClusterFacts(t *testing.T) {
	st := node.ClusterStatus{LeaderID: "n1", Nodes: []node.MemberStatus{
		{ID: "n1", Suffrage: "voter", Reachable: true, Self: true, ClockKnown: true},
		{ID: "n2", Suffrage: "voter", Reachable: true, ClockKnown: true, ClockOffset: -3 * time.Second, ClockUncertainty: 200 * time.Millisecond},
		{ID: "n3", Suffrage: "voter", Reachable: false},
		{ID: "n4", Suffrage: "nonvoter", Reachable: true, ClockKnown: true, ClockOffset: 100 * time.Millisecond, ClockUncertainty: time.Second},
		{ID: "n5", Suffrage: "nonvoter", Reachable: true},
	}}
	q, c := clusterFacts(st, 2)
	if q.Leader != "n1" || q.Voters != 3 || q.Reachable != 2 || !slices.Equal(q.Unreachable, []string{"n3"}) || q.LeaderChanges != 2 || q.Window <= 0 {
		t.Errorf("quorum %+v", q)
	}
	if c.Members != 3 || c.MaxSkew != 2800*time.Millisecond || c.Worst != "n2" || !slices.Equal(c.Unreported, []string{"n3", "n5"}) {
		t.Errorf("clock %+v", c)
	}
}
