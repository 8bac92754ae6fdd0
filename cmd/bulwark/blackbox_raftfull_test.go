package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/internal/waitfor"
)

// TestBlackBoxRaftLogDiskFull: a node restarted on a completely full
// disk. The data directory (a 24 MiB filesystem) is filled, and filled
// again once the node has given its reserve back, so nothing is left for
// Raft either, and the node is restarted: its election must save a new
// term to raft.db and, once leader, append to its log. (On ext4 both fit
// in pages raft.db already holds, so they succeed; when raft.db must
// grow they fail, which TestRaftLogDiskFull in node injects: raft v1.8.0
// panics when it cannot save a term.) The node must come up refusing
// writes with 503 and a log line saying why, and once space returns
// accept writes without a restart, keep every session, and leave raft.db
// and state.db whole.
func TestBlackBoxRaftLogDiskFull(t *testing.T) {
	n := newTestNode(t)
	kind := mountTiny(t, n, n.dataDir(), 24)
	n.start()
	const pw = "correct horse battery staple"
	n.addUser("user1", pw, false)
	before := n.loginOK("user1", pw)

	// The filler takes the disk; the node gives its reserve back; a
	// second filler takes that too.
	fill(t, filepath.Join(n.dataDir(), "filler1"))
	waitfor.True(t, "the reserve given back", 10*time.Second, 50*time.Millisecond, func() bool {
		_, err := os.Stat(filepath.Join(n.dataDir(), "space.reserve"))
		return os.IsNotExist(err)
	})
	fill(t, filepath.Join(n.dataDir(), "filler2"))

	// A restart on the full disk: the election must write a term.
	n.stop()
	n.spawn()
	waitfor.True(t, "the node answering", 20*time.Second, 100*time.Millisecond, func() bool {
		if !n.running() {
			return true
		}
		resp, err := n.client().Get(n.url("/healthz"))
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	time.Sleep(3 * time.Second) // elections come and go meanwhile
	if !n.running() {
		t.Fatalf("bulwark exited on a full disk:\n%s", tail(n.logs.String(), 40))
	}
	if code, out := n.login("user1", pw); code != 503 {
		t.Errorf("login with the disk full and no leader: %d %v; want 503", code, out)
	}
	if !strings.Contains(n.logs.String(), "disk full") {
		t.Error("no log line says the disk is full")
	}

	// Space returns: the node elects itself and takes writes, no restart.
	os.Remove(filepath.Join(n.dataDir(), "filler1"))
	os.Remove(filepath.Join(n.dataDir(), "filler2"))
	after := n.loginOK("user1", pw)
	for _, tok := range []string{before, after} {
		if code, _, _ := n.apiCall("GET", "/v1/me", tok, nil); code != 200 {
			t.Errorf("/v1/me of an acknowledged session once space returned: %d", code)
		}
	}
	if strings.Contains(n.logs.String(), "panic") {
		t.Errorf("the node panicked:\n%s", tail(n.logs.String(), 40))
	}
	n.stop()
	checkBolt(t, filepath.Join(n.dataDir(), "state.db"))
	checkBolt(t, filepath.Join(n.dataDir(), "raft", "raft.db"))
	if outV, errOut, c := n.cli("", "audit", "verify", "--data-dir", n.dataDir()); c != 0 {
		t.Errorf("audit verify after the disk was full: exit %d %s %s", c, outV, errOut)
	}
	n.start()
	if code, _, _ := n.apiCall("GET", "/v1/me", after, nil); code != 200 {
		t.Errorf("/v1/me after a restart: %d", code)
	}
	t.Logf("%s data directory", kind)
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
