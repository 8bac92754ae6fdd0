package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/clock"
	"github.com/bulwark-auth/bulwark/internal/waitfor"
)

// skewed is the system clock, read d off.
type skewed struct {
	clock.Real
	d time.Duration
}

func (s skewed) Now() time.Time { return time.Now().Add(s.d) }

// loginAttempt is a login.attempt for name stamped with at, audited so
// that the trail records the time it was applied at.
func loginAttempt(t *testing.T, name string, at time.Time) fsm.Command {
	t.Helper()
	c, err := fsm.NewCommand(fsm.TypeLoginAttempt, 1, at.UnixNano(), fsm.LoginAttempt{
		Username: name, MaxAttempts: 5, Window: int64(15 * time.Minute), PendingTTL: int64(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	return c.WithAudit(fsm.AuditAppend{Type: "login.attempt", Severity: fsm.AuditInfo, Subject: name})
}

func sessionCreate(t *testing.T, id, userID string, at time.Time) fsm.Command {
	t.Helper()
	sum := sha256.Sum256([]byte("refresh " + id))
	c, err := fsm.NewCommand(fsm.TypeSessionCreate, 1, at.UnixNano(), fsm.SessionCreate{
		ID: id, UserID: userID, RefreshHash: hex.EncodeToString(sum[:]), Lifetime: int64(24 * time.Hour),
		IdleTimeout: int64(time.Hour), MaxPerUser: 10, OnLimit: "evict_oldest"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// transferLeadership makes to the leader of nodes.
func transferLeadership(t *testing.T, nodes []*Node, to *Node) {
	t.Helper()
	waitfor.True(t, to.cfg.ID+" leads", 20*time.Second, 50*time.Millisecond, func() bool {
		if to.raft.State() == raft.Leader {
			return true
		}
		if leader := waitLeader(t, nodes); leader != to {
			leader.raft.LeadershipTransferToServer(raft.ServerID(to.cfg.ID), raft.ServerAddress(to.cfg.Advertise)).Error()
		}
		return false
	})
	if err := to.WaitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// within fails unless at lies in [from, to].
func within(t *testing.T, what string, at, from, to time.Time) {
	t.Helper()
	if at.Before(from) || at.After(to) {
		t.Fatalf("%s at %s: not within the leader's clock [%s, %s] (off by %v)", what,
			at.Format(time.RFC3339Nano), from.Format(time.RFC3339Nano), to.Format(time.RFC3339Nano), at.Sub(from).Round(time.Second))
	}
}

// TestTimeDoesNotDependOnTheProposer: a command forwarded by a follower
// whose clock is an hour off is applied at the leader's time, and a new
// leader whose clock is behind never makes the applied time run backwards.
func TestTimeDoesNotDependOnTheProposer(t *testing.T) {
	skews := []time.Duration{0, -time.Hour, time.Hour}
	nodes := newCluster(t, 3, clusterOpts{adjust: func(i int, c *Config) { c.Clock = skewed{d: skews[i]} }}).nodes
	transferLeadership(t, nodes, nodes[0]) // the one with the right clock
	waitfor.Nil(t, "the top level", 10*time.Second, 20*time.Millisecond, func() error {
		if l := clusterLevel(nodes[0]); l != fsm.MaxLevel {
			return fmt.Errorf("cluster level %d, want %d", l, fsm.MaxLevel)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	createUser(t, nodes[0], "alice")

	var last time.Time // the latest time applied so far
	for i, f := range nodes {
		name := fmt.Sprintf("name-via-%s", f.cfg.ID)
		from := time.Now()
		v, err := f.Apply(ctx, loginAttempt(t, name, f.cfg.Clock.Now()))
		if err != nil {
			t.Fatalf("login.attempt through %s: %v", f.cfg.ID, err)
		}
		s, err := f.Apply(ctx, sessionCreate(t, fmt.Sprintf("sess-%d", i), "id-alice", f.cfg.Clock.Now()))
		if err != nil {
			t.Fatalf("session.create through %s: %v", f.cfg.ID, err)
		}
		to := time.Now()
		slot := time.Unix(0, v.(fsm.AttemptResult).Slot)
		within(t, "the login attempt through "+f.cfg.ID, slot, from, to)
		var l fsm.Lockout
		nodes[0].View(func(r fsm.Reader) error { l, err = r.Lockout(name); return err })
		within(t, "the lockout window opened through "+f.cfg.ID, time.Unix(0, l.WindowStart), from, to)
		within(t, "the session created through "+f.cfg.ID, s.(*fsm.Session).CreatedAt, from, to)
		last = s.(*fsm.Session).CreatedAt
	}

	// The leader's office goes to the node an hour behind: what it and the
	// others propose now is applied no earlier than what was applied.
	behind := nodes[1]
	transferLeadership(t, nodes, behind)
	for _, f := range []*Node{behind, nodes[2], nodes[0]} {
		v, err := f.Apply(ctx, loginAttempt(t, "name-after-"+f.cfg.ID, f.cfg.Clock.Now()))
		if err != nil {
			t.Fatalf("login.attempt through %s: %v", f.cfg.ID, err)
		}
		at := time.Unix(0, v.(fsm.AttemptResult).Slot)
		if at.Before(last) {
			t.Fatalf("a login attempt through %s under leader %s was applied at %s, before %s, which was applied already",
				f.cfg.ID, behind.cfg.ID, at.Format(time.RFC3339Nano), last.Format(time.RFC3339Nano))
		}
		last = at
	}
	// The audit trail, in the order applied, never goes back in time, on
	// any node.
	for _, n := range nodes {
		if err := n.waitApplied(ctx, behind.Status().CommitIndex); err != nil {
			t.Fatal(err)
		}
		var prev time.Time
		n.View(func(r fsm.Reader) error {
			return r.AuditAfter(0, 0, func(e *fsm.AuditEntry) bool {
				if e.Time.Before(prev) {
					t.Errorf("%s: audit entry %d at %s, after one at %s", n.cfg.ID, e.Seq, e.Time, prev)
				}
				prev = e.Time
				return true
			})
		})
	}
}
