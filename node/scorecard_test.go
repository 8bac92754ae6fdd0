package node

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/waitfor"
)

// The facts the scorecard reads from the node: each member's clock
// against this one's, the leaders seen in a window, and the last backup,
// recorded on every member by whichever member wrote it.
func TestScorecardFacts(t *testing.T) {
	const skew = 3 * time.Second
	c := newCluster(t, 3, clusterOpts{adjust: func(i int, cfg *Config) {
		if i == 2 {
			cfg.Clock = skewed{d: skew}
		}
	}})
	leader := waitLeader(t, c.nodes)
	// On every node: the follower below records its backup only once it
	// has applied the level that allows backup.record.
	waitfor.True(t, "feature level 5 on every node", 10*time.Second, 20*time.Millisecond, func() bool {
		for _, n := range c.nodes {
			if clusterLevelOf(n) < fsm.MaxLevel {
				return false
			}
		}
		return true
	})

	n1 := c.nodes[0]
	st, err := n1.ClusterStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st.Nodes {
		want := time.Duration(0)
		if m.ID == "n3" {
			want = skew
		}
		if !m.ClockKnown || m.ClockUncertainty > time.Second || (m.ClockOffset-want).Abs() > m.ClockUncertainty+200*time.Millisecond {
			t.Errorf("%s: clock offset %v ± %v (known %v), want %v", m.ID, m.ClockOffset, m.ClockUncertainty, m.ClockKnown, want)
		}
	}

	if got := leader.LeaderChangesWithin(time.Hour); got < 1 {
		t.Errorf("the leader saw %d leaders take over in the last hour", got)
	}
	if got := leader.LeaderChangesWithin(-time.Hour); got != 0 {
		t.Errorf("%d leaders took over in the future", got)
	}

	// A follower's backup is forwarded to the leader as its own record.
	follower := c.followers(leader)[0]
	var buf bytes.Buffer
	info, err := follower.BackupHere(context.Background(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.nodes {
		waitfor.True(t, n.cfg.ID+" holds the backup record", 10*time.Second, 20*time.Millisecond, func() bool {
			var rec fsm.LastBackup
			var ok bool
			n.View(func(r fsm.Reader) error { rec, ok = r.LastBackup(); return nil })
			return ok && rec.Node == follower.cfg.ID && rec.StateSHA256 == info.StateSHA256 && rec.Bytes == info.ArchiveBytes
		})
	}
}

func TestLeaderTimes(t *testing.T) {
	var l leaderTimes
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	for i := range maxLeaderTimes + 10 {
		l.add(t0.Add(time.Duration(i) * time.Minute))
	}
	if got := l.since(t0); got != maxLeaderTimes {
		t.Fatalf("remembers %d, want %d", got, maxLeaderTimes)
	}
	if got := l.since(t0.Add(time.Duration(maxLeaderTimes+10-3) * time.Minute)); got != 3 {
		t.Fatalf("in the last three minutes: %d", got)
	}
}
