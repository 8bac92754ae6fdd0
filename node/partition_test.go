package node

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/internal/waitfor"
)

// TestPartitionMinorityRefusesWritesAndHealLosesNone isolates the leader of
// a three-node cluster: the old leader (the minority) must refuse writes,
// the two others must elect a leader and acknowledge writes, and once the
// partition heals every acknowledged write is on every node and no refused
// one is anywhere.
func TestPartitionMinorityRefusesWritesAndHealLosesNone(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{partitionable: true})
	nodes := c.nodes
	acked := map[string]bool{}
	var refused []string
	write := func(n *Node, name string, timeout time.Duration) (time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		start := time.Now()
		_, err := n.Apply(ctx, userCmd(t, name))
		if err == nil {
			acked[name] = true
		}
		return time.Since(start), err
	}
	mustWrite := func(n *Node, name string) {
		t.Helper()
		if _, err := write(n, name, 10*time.Second); err != nil {
			t.Fatalf("write %s on %s: %v", name, n.cfg.ID, err)
		}
	}
	// mustRefuse: the minority answers within a bounded time, and with an
	// error (never an acknowledgement).
	mustRefuse := func(n *Node, name string) {
		t.Helper()
		d, err := write(n, name, 5*time.Second)
		if err == nil {
			t.Fatalf("the isolated %s acknowledged %s during the partition", n.cfg.ID, name)
		}
		if !errors.Is(err, ErrNoLeader) && !errors.Is(err, ErrNotLeader) {
			t.Fatalf("the isolated %s refused %s with %v, want ErrNoLeader or ErrNotLeader", n.cfg.ID, name, err)
		}
		if d > 6*time.Second {
			t.Fatalf("the isolated %s took %v to refuse %s", n.cfg.ID, d, name)
		}
		t.Logf("%s refused %s after %v: %v", n.cfg.ID, name, d.Round(time.Millisecond), err)
		refused = append(refused, name)
	}
	others := func(except *Node) []*Node {
		var r []*Node
		for _, n := range nodes {
			if n != except {
				r = append(r, n)
			}
		}
		return r
	}
	hasAll := func(n *Node, want map[string]bool) bool {
		got := users(t, n)
		for name := range want {
			if !got[name] {
				return false
			}
		}
		return true
	}

	// (1) Before: writes on the leader and through a follower (forwarded
	// through the proxies) are acknowledged and reach everyone.
	// On a loaded machine the leader may step down meanwhile; a write it
	// lost is neither acknowledged nor refused, and the next leader takes
	// the rest.
	writeBefore := func(leaderSide bool, name string) {
		t.Helper()
		for try := 0; ; try++ {
			n := waitLeader(t, nodes)
			if !leaderSide {
				n = others(n)[0]
			}
			_, err := write(n, fmt.Sprintf("%s-%d", name, try), 10*time.Second)
			if err == nil {
				return
			}
			if !errors.Is(err, ErrNoLeader) || try == 4 {
				t.Fatalf("write %s on %s: %v", name, n.cfg.ID, err)
			}
			t.Logf("write %s on %s: %v; again", name, n.cfg.ID, err)
		}
	}
	for i := 0; i < 5; i++ {
		writeBefore(true, fmt.Sprintf("before-%d", i))
	}
	writeBefore(false, "before-via-follower")
	for _, n := range nodes {
		waitfor.True(t, n.cfg.ID+" has the writes before the partition", 5*time.Second, 10*time.Millisecond, func() bool { return hasAll(n, acked) })
	}
	before := len(acked)
	old := waitLeader(t, nodes)

	// (2) Partition: the leader alone on one side.
	majority := others(old)
	partitioned := time.Now()
	c.partition(old)
	// A write reaching the old leader at once (it most likely still believes
	// it leads and appends it to its log) is never committed: the leader
	// steps down when its lease runs out and the write fails.
	stillLeader := old.Status().State == "Leader"
	mustRefuse(old, "minority-0")
	t.Logf("first minority write was sent while %s still led: %v", old.cfg.ID, stillLeader)
	waitfor.True(t, old.cfg.ID+" steps down in the minority", 5*time.Second, 10*time.Millisecond, func() bool {
		return old.Status().State != "Leader"
	})
	stepDown := time.Since(partitioned)
	next := waitLeader(t, majority)
	elected := time.Since(partitioned)
	for i := 1; i <= 2; i++ { // and it keeps refusing, whatever it now believes
		mustRefuse(old, fmt.Sprintf("minority-%d", i))
	}
	for i := 0; i < 5; i++ {
		mustWrite(next, fmt.Sprintf("majority-%d", i))
	}
	for _, n := range majority {
		if n != next {
			mustWrite(n, "majority-via-follower")
		}
	}
	mustRefuse(old, "minority-3")
	// The partition is real both ways: the old leader has seen nothing the
	// majority committed, and has committed nothing itself.
	if got := users(t, old); len(got) != before {
		t.Fatalf("the isolated %s has %d users during the partition, want the %d from before", old.cfg.ID, len(got), before)
	}
	if s := old.Status(); s.State == "Leader" {
		t.Fatalf("the isolated %s leads again during the partition: %+v", old.cfg.ID, s)
	}
	partition := time.Since(partitioned)

	// (3) Heal: the old leader follows the majority's leader, catches up,
	// and its refused (and possibly appended) entries are gone.
	c.heal()
	healed := time.Now()
	caughtUp := waitfor.True(t, old.cfg.ID+" follows and catches up after the heal", 12*time.Second, 10*time.Millisecond, func() bool {
		s := old.Status()
		if s.State != "Follower" || s.LeaderID == "" || s.LeaderID == old.cfg.ID {
			return false
		}
		return hasAll(old, acked)
	})
	// A write through the old leader (forwarded to the new one) is
	// acknowledged once the old leader itself has applied it: every node
	// that applies it holds the same committed log before it.
	mustWrite(old, "after-heal-via-old-leader")
	for _, n := range nodes {
		waitfor.True(t, n.cfg.ID+" has every acknowledged write", 10*time.Second, 10*time.Millisecond, func() bool { return hasAll(n, acked) })
	}
	for _, n := range nodes {
		got := users(t, n)
		for _, name := range refused {
			if got[name] {
				t.Errorf("%s holds %s, which the minority refused", n.cfg.ID, name)
			}
		}
		var extra []string
		for name := range got {
			if !acked[name] {
				extra = append(extra, name)
			}
		}
		sort.Strings(extra)
		if len(got) != len(acked) || len(extra) > 0 {
			t.Errorf("%s holds %d users, want the %d acknowledged (unacknowledged: %v)", n.cfg.ID, len(got), len(acked), extra)
		}
	}
	if l := waitLeader(t, nodes); l == old {
		t.Errorf("%s, whose log fell behind, leads after the heal", old.cfg.ID)
	}
	t.Logf("isolated %s: stepped down %v after the cut, %s elected %v after it; partition %v; caught up %v after the heal (total %v); %d acknowledged, %d refused",
		old.cfg.ID, stepDown.Round(time.Millisecond), next.cfg.ID, elected.Round(time.Millisecond), partition.Round(time.Millisecond),
		caughtUp.Round(time.Millisecond), time.Since(healed).Round(time.Millisecond), len(acked), len(refused))
}
