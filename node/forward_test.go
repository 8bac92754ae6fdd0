package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
)

// liveForwardConns counts the forwarding connections n holds open to
// each address.
func liveForwardConns(n *Node) map[string]int {
	n.fwd.mu.Lock()
	defer n.fwd.mu.Unlock()
	count := map[string]int{}
	for addr, slots := range n.fwd.conns {
		for _, fc := range slots {
			if fc != nil && fc.alive() {
				count[addr]++
			}
		}
	}
	return count
}

// TestForwardManyAtOnce: a follower's concurrent writes share a couple of
// connections to the leader, each gets its own result, and a caller that
// gives up does not fail the others.
func TestForwardManyAtOnce(t *testing.T) {
	nodes := newCluster(t, 3, clusterOpts{timeout: 2 * time.Second}).nodes
	leader := waitLeader(t, nodes)
	follower := nodes[0]
	if follower == leader {
		follower = nodes[1]
	}
	const writers = 64
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Callers that give up at once, interleaved with the real writes.
	gaveUp, giveUp := context.WithCancel(ctx)
	giveUp()
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Go(func() {
			name := fmt.Sprintf("fwd-%03d", i)
			if i%10 == 0 {
				follower.Apply(gaveUp, userCmd(t, "abandoned-"+name))
			}
			v, err := follower.Apply(ctx, userCmd(t, name))
			// A leader lost while committing (this load, with -race, can
			// cost the leader its lease) answers ErrNoLeader: the write may
			// or may not have taken effect. A client sends it again; the
			// name then existing means the first one committed.
			for errors.Is(err, ErrNoLeader) && ctx.Err() == nil {
				t.Logf("write %d: %v; sending it again", i, err)
				v, err = follower.Apply(ctx, userCmd(t, name))
				if errors.Is(err, fsm.ErrUserExists) {
					v, err = &fsm.User{Username: name}, nil
				}
			}
			if err == nil {
				if u, ok := v.(*fsm.User); !ok || u.Username != name {
					err = fmt.Errorf("result %#v", v)
				}
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("write %d through the follower: %v", i, err)
		}
	}
	got := users(t, follower)
	for i := range writers {
		if !got[fmt.Sprintf("fwd-%03d", i)] {
			t.Fatalf("the follower acknowledged fwd-%03d but does not show it", i)
		}
	}
	// At most forwardConns to each node that led meanwhile (a leader may
	// step down and another take over under this load with -race).
	conns := liveForwardConns(follower)
	for addr, c := range conns {
		if c > forwardConns {
			t.Fatalf("%d forwarding connections to %s for %d concurrent writes, want at most %d", c, addr, writers, forwardConns)
		}
	}
	if len(conns) == 0 {
		t.Fatal("no forwarding connection open after the writes")
	}
}

// BenchmarkClusterWrites measures writes committed on three nodes over
// mutual TLS on loopback (in one process), 64 writers through the leader
// and through a follower.
func BenchmarkClusterWrites(b *testing.B) {
	for _, via := range []string{"leader", "follower"} {
		b.Run("via="+via, func(b *testing.B) {
			nodes := startCluster(b, 3)
			target := waitLeader(b, nodes)
			if via == "follower" {
				for _, n := range nodes {
					if n != target {
						target = n
						break
					}
				}
			}
			applyConcurrently(b, target, 64, via)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
		})
	}
}
