package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/internal/rawscan"
	"github.com/bulwark-auth/bulwark/internal/waitfor"
)

// rawScan reads every regular file under dir and returns those holding
// one of needles, ASCII letters compared without case.
func rawScan(t *testing.T, dir string, needles ...string) []string {
	t.Helper()
	out, err := rawscan.Find(dir, needles...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// erasureOf reads the erasure part of the node's admin status.
func (n *testNode) erasureOf() (erasures, compacted uint64, raftPending bool) {
	n.t.Helper()
	resp, err := n.adminSocketClient().Get("http://admin/admin/v1/status")
	if err != nil {
		return 0, 0, true
	}
	defer resp.Body.Close()
	var st struct {
		Erasure struct {
			Erasures      uint64 `json:"erasures"`
			Compacted     uint64 `json:"compacted"`
			RaftDBPending bool   `json:"raft_db_pending"`
		} `json:"erasure"`
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &st); err != nil {
		n.t.Fatalf("admin status: %v: %s", err, b)
	}
	return st.Erasure.Erasures, st.Erasure.Compacted, st.Erasure.RaftDBPending
}

// TestBlackBoxEraseUser: on a three-node cluster, a user's export (theirs
// over the API, the admin's on the CLI) holds their records; `bulwark
// user erase` deletes them on every node; once each node has compacted
// (state.db, log, snapshots) and restarted (raft.db), a raw scan of every
// file of every node finds neither the name nor the email, and `bulwark
// audit verify` passes on each stopped node.
func TestBlackBoxEraseUser(t *testing.T) {
	const name, email, pw = "ulrika-erasee", "ulrika.erasee@example.test", "correct horse battery staple"
	node1 := newClusterNode(t, "node1")
	node1.start()
	tok2, tok3 := node1.joinToken(), node1.joinToken()
	node2 := newClusterNode(t, "node2")
	node2.startJoin(tok2)
	node3 := newClusterNode(t, "node3")
	node3.startJoin(tok3)
	nodes := []*testNode{node1, node2, node3}
	waitfor.Nil(t, "three voters", 20*time.Second, 100*time.Millisecond, func() error {
		voters := 0
		for _, m := range node1.clusterStatus().Nodes {
			if m.Suffrage == "voter" && m.Reachable {
				voters++
			}
		}
		if voters != 3 {
			return fmt.Errorf("%d reachable voters", voters)
		}
		return nil
	})

	// Before the account: a failed login for the name. Then the account,
	// a session on node3, a wrong password on node2.
	if code, _ := node2.login(name, pw); code != 401 {
		t.Fatalf("login before the account: %d", code)
	}
	if _, errOut, code := node1.cli(pw+"\n", "user", "add", name, "--email", email, "--password-stdin"); code != 0 {
		t.Fatalf("user add: %s", errOut)
	}
	var access string
	waitfor.Nil(t, "a login on node3", 5*time.Second, 50*time.Millisecond, func() error {
		code, tok := node3.login(name, pw)
		if code != 200 {
			return fmt.Errorf("login: %d %v", code, tok)
		}
		access = tok["access_token"].(string)
		return nil
	})
	if code, _ := node2.login(name, "not the password at all"); code != 401 {
		t.Fatalf("wrong password: %d", code)
	}

	// Their own export, and the admin's.
	code, mine, _ := node2.apiCall("GET", "/v1/me/export", access, nil)
	if code != 200 {
		t.Fatalf("GET /v1/me/export: %d %v", code, mine)
	}
	if u, _ := mine["user"].(map[string]any); u["username"] != name || u["email"] != email ||
		len(mine["sessions"].([]any)) != 1 || len(mine["audit"].([]any)) < 3 {
		t.Fatalf("own export: %v", mine)
	}
	out, errOut, code := node1.cli("", "user", "export", name)
	if code != 0 || !strings.Contains(out, `"username": "`+name+`"`) || strings.Contains(out, "password_hash") {
		t.Fatalf("user export: %d %s %s", code, out, errOut)
	}
	for _, n := range nodes {
		if got := rawScan(t, n.dir, name, email); len(got) == 0 {
			t.Fatalf("%s holds no copy of the user before the erase: the scan cannot fail", n.dir)
		}
	}

	// The erase, on a node that may not lead (forwarded if not). The
	// cluster reaches level 5 on its own once every member reports it.
	waitfor.Nil(t, "user erase", 20*time.Second, 200*time.Millisecond, func() error {
		out, errOut, code = node2.cli("", "user", "erase", name)
		if code != 0 {
			return fmt.Errorf("user erase: %d %s %s", code, out, errOut)
		}
		return nil
	})
	if !strings.Contains(out, "erased user "+name) || !strings.Contains(out, "restart each node") {
		t.Fatalf("user erase said: %s", out)
	}
	t.Logf("user erase: %s", strings.TrimSpace(out))
	// (No login for the name from here on: a failed login records the
	// name it was tried for, a new record the erase cannot know of.)
	if out, _, _ := node1.cli("", "user", "list"); strings.Contains(out, name) {
		t.Fatalf("the user is still listed: %s", out)
	}
	if code, _, _ := node3.apiCall("GET", "/v1/me", access, nil); code != 401 {
		t.Fatalf("the session outlived the erase: %d", code)
	}
	for _, n := range nodes {
		waitfor.Nil(t, n.dir+" compacted", 30*time.Second, 100*time.Millisecond, func() error {
			if e, c, pending := n.erasureOf(); e != 1 || c != 1 || !pending {
				return fmt.Errorf("erasures %d, compacted %d, raft.db pending %v", e, c, pending)
			}
			return nil
		})
	}
	// Each node in turn: its restart rewrites raft.db.
	for _, n := range nodes {
		n.stop()
		n.start()
		if _, _, pending := n.erasureOf(); pending {
			t.Fatalf("%s: raft.db still pending after the restart", n.dir)
		}
	}
	node1.addUser("after-erase", pw, false)
	for _, n := range nodes {
		waitfor.Nil(t, "the cluster writes on", 10*time.Second, 100*time.Millisecond, func() error {
			if out, _, _ := n.cli("", "user", "list"); !strings.Contains(out, "after-erase") {
				return fmt.Errorf("%s lacks the new user", n.dir)
			}
			return nil
		})
	}
	for _, n := range nodes {
		n.stop()
	}
	for _, n := range nodes {
		if got := rawScan(t, n.dir, name, email); len(got) > 0 {
			t.Errorf("after the erase: %s", strings.Join(got, "; "))
		}
		out, errOut, code := n.cli("", "audit", "verify", "--data-dir", n.dataDir())
		if code != 0 || !strings.Contains(out, "audit trail intact") {
			t.Errorf("audit verify on %s: %d %s %s", n.dir, code, out, errOut)
		}
	}
}
