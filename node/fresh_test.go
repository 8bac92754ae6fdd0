package node

import (
	"errors"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/internal/waitfor"
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
	// Until it has heard from the leader.
	waitfor.Nil(t, "a follower of a healthy cluster fresh", 5*time.Second, 10*time.Millisecond, func() error { return lone.Fresh(maxStale) })
	if err := leader.Fresh(maxStale); err != nil {
		t.Fatalf("the leader is not fresh: %v", err)
	}
	for _, n := range nodes {
		if n != lone {
			n.Close()
		}
	}
	cut := time.Now()
	var since time.Duration
	waitfor.True(t, "stale after losing the cluster", maxStale+3*time.Second, 10*time.Millisecond, func() bool {
		err := lone.Fresh(maxStale)
		since = time.Since(cut)
		if err != nil && !errors.Is(err, ErrNoLeader) {
			t.Fatalf("stale: %v, want ErrNoLeader", err)
		}
		return err != nil
	})
	if since < maxStale/2 {
		t.Fatalf("stale %v after the cut, before maxStale %v", since, maxStale)
	}
}
