package node

import (
	"errors"
	"testing"
	"time"
)

// TestFreshBoundsStaleness: the leader and a follower in contact are
// fresh; a follower left alone stops being fresh once maxStale has passed
// since it last heard from a leader.
func TestFreshBoundsStaleness(t *testing.T) {
	nodes := startCluster(t, 3)
	leader := waitLeader(t, nodes)
	var lone *Node
	for _, n := range nodes {
		if n != leader && lone == nil {
			lone = n
		}
	}
	const maxStale = 400 * time.Millisecond
	deadline := time.Now().Add(5 * time.Second)
	for lone.Fresh(maxStale) != nil { // until it has heard from the leader
		if time.Now().After(deadline) {
			t.Fatalf("a follower of a healthy cluster is not fresh: %v", lone.Fresh(maxStale))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := leader.Fresh(maxStale); err != nil {
		t.Fatalf("the leader is not fresh: %v", err)
	}
	for _, n := range nodes {
		if n != lone {
			n.Close()
		}
	}
	cut := time.Now()
	for {
		err := lone.Fresh(maxStale)
		if err != nil {
			if !errors.Is(err, ErrNoLeader) {
				t.Fatalf("stale: %v, want ErrNoLeader", err)
			}
			if since := time.Since(cut); since < maxStale/2 {
				t.Fatalf("stale %v after the cut, before maxStale %v", since, maxStale)
			}
			break
		}
		if time.Since(cut) > maxStale+3*time.Second {
			t.Fatalf("still fresh %v after losing the cluster", time.Since(cut))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
