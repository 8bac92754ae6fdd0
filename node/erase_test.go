package node

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/rawscan"
	"github.com/bulwark-auth/bulwark/internal/waitfor"
)

// rawMentions reads every file under dir and returns those that hold one
// of needles, ASCII letters compared without case.
func rawMentions(t *testing.T, dir string, needles ...string) []string {
	t.Helper()
	out, err := rawscan.Find(dir, needles...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func applyOK(t *testing.T, n *Node, typ fsm.Type, v uint16, p any, audit ...fsm.AuditAppend) any {
	t.Helper()
	c, err := fsm.NewCommand(typ, v, time.Now().UnixNano()+seq.Add(1), p)
	if err != nil {
		t.Fatal(err)
	}
	res, err := n.Apply(context.Background(), c.WithAudit(audit...))
	if err != nil {
		t.Fatalf("%s: %v", typ, err)
	}
	return res
}

// After user.erase, every node compacts state.db, cuts its whole log and
// drops older snapshots, and rewrites raft.db at its next start; then no
// file of any node holds the name or the email, the one that was down
// during the erase (and caught up by snapshot) included, and each node's
// trail still verifies offline.
func TestEraseLeavesNoBytes(t *testing.T) {
	const name, email = "quentin-erasee", "quentin.erasee@example.test"
	c := newCluster(t, 3, clusterOpts{})
	leader := c.leader()
	waitfor.True(t, "level 5", 10*time.Second, 20*time.Millisecond, func() bool { return leader.proposable(fsm.TypeUserErase, 1) })
	applyOK(t, leader, fsm.TypeAuditAppend, 1, fsm.AuditAppend{Type: "login.failure", Severity: fsm.AuditWarning,
		Details: map[string]string{"username": name, "reason": "unknown_user"}})
	applyOK(t, leader, fsm.TypeUserCreate, 1, fsm.UserCreate{ID: "id-q", Username: name, Email: email, PasswordHash: "$argon2id$x"},
		fsm.AuditAppend{Type: "user.create", Severity: fsm.AuditInfo, Actor: "local-admin", Subject: "id-q",
			Details: map[string]string{"username": name, "email": email}})
	applyOK(t, leader, fsm.TypeUserCreate, 1, fsm.UserCreate{ID: "id-r", Username: "rita", PasswordHash: "$argon2id$x"})
	for i := range 20 { // enough churn for freed pages
		applyOK(t, leader, fsm.TypeLoginAttempt, 2, fsm.LoginAttemptV2{Username: name, MaxAttempts: 100, Window: int64(time.Hour),
			PendingTTL: int64(time.Minute), MaxNamesPerAddress: 50, IP: fmt.Sprintf("192.0.2.%d", i+1)})
	}
	for _, n := range c.running() {
		waitUsers(t, n, 2)
		if err := n.Snapshot(); err != nil {
			t.Fatal(err)
		}
	}
	for _, cfg := range c.cfgs {
		if len(rawMentions(t, cfg.DataDir, name, email)) == 0 {
			t.Fatalf("%s holds no copy of the user before the erase: the scan cannot fail", cfg.ID)
		}
	}

	c.stop(2) // n3 is down during the erase
	leader = c.leader()
	res := applyOK(t, leader, fsm.TypeUserErase, 1, fsm.UserErase{ID: "id-q", Actor: "local-admin"}).(fsm.EraseResult)
	if res.AuditEntries != 2 {
		t.Fatalf("erase: %+v", res)
	}
	c.start(2)
	for _, n := range c.running() {
		waitfor.Nil(t, n.cfg.ID+" compacted", 20*time.Second, 20*time.Millisecond, func() error {
			st, err := n.ErasureStatus()
			if err != nil || st.Erasures != 1 || st.Compacted != 1 || !st.RaftDBPending {
				return fmt.Errorf("%+v %v", st, err)
			}
			return nil
		})
	}
	// What the restart is for: before it, raft.db's free pages, and
	// nothing else, still hold the user (state.db, log and snapshots
	// were rewritten).
	for _, cfg := range c.cfgs {
		for _, m := range rawMentions(t, cfg.DataDir, name, email) {
			if !strings.HasPrefix(m, filepath.Join(cfg.DataDir, "raft", "raft.db")+" ") {
				t.Errorf("%s before its restart: %s", cfg.ID, m)
			}
		}
	}
	// raft.db is rewritten at the next start: restart each in turn.
	for i := range c.cfgs {
		c.stop(i)
		n := c.start(i)
		st, err := n.ErasureStatus()
		if err != nil || st.RaftDBPending {
			t.Fatalf("%s after restart: %+v %v", c.cfgs[i].ID, st, err)
		}
		waitUsers(t, n, 1)
	}
	applyOK(t, c.leader(), fsm.TypeAuditAppend, 1, fsm.AuditAppend{Type: "after.erase", Severity: fsm.AuditInfo})
	for i := range c.cfgs {
		c.stop(i)
	}
	for _, cfg := range c.cfgs {
		if got := rawMentions(t, cfg.DataDir, name, email); len(got) > 0 {
			t.Errorf("%s still holds the erased user: %v", cfg.ID, got)
		}
		v, err := VerifyAuditDataDir(cfg.DataDir)
		if err != nil || v.Entries < 3 {
			t.Errorf("%s: the trail does not verify after the erase: %+v %v", cfg.ID, v, err)
		}
	}
}
