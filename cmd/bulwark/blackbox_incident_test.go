package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/internal/waitfor"
)

// TestBlackBoxLockdownOverThreeNodes: `bulwark incident lockdown` on one
// node ends every session on every node, refuses a plain user's login
// (right or wrong password alike) while an administrator signs in with a
// second factor, leaves a forensic backup, and `release` lets logins in
// again.
func TestBlackBoxLockdownOverThreeNodes(t *testing.T) {
	nodes := formCluster(t, exemptLoopback)
	nodes[0].addUser("gina", clusterPassword, false)
	nodes[0].addUser("root", clusterPassword, true)
	secret, _ := nodes[0].enrolTOTP("root", clusterPassword)
	var bearers []string
	for _, n := range nodes {
		code, tok := n.login("gina", clusterPassword)
		if code != 200 {
			t.Fatalf("login before the lockdown: %d %v", code, tok)
		}
		bearers = append(bearers, tok["access_token"].(string))
	}
	out, errOut, code := nodes[1].cli("", "incident", "lockdown", "--reason", "suspected breach")
	if code != 0 || !strings.Contains(out, "locked down since") || !strings.Contains(out, "forensic backup: ") {
		t.Fatalf("lockdown: %d %s %s", code, out, errOut)
	}
	backup := strings.TrimSpace(out[strings.Index(out, "forensic backup: ")+len("forensic backup: "):])
	if fi, err := os.Stat(backup); err != nil || fi.Size() == 0 || fi.Mode().Perm() != 0o600 ||
		filepath.Dir(backup) != filepath.Join(nodes[1].dataDir(), "forensics") {
		t.Fatalf("forensic backup %s: %v %v", backup, fi, err)
	}
	// It holds the lockdown's signed checkpoint, and its trail verifies
	// offline.
	if out, errOut, code := nodes[1].cli("", "audit", "verify", "--backup", backup); code != 0 ||
		!strings.Contains(out, "signed checkpoints verified") {
		t.Fatalf("audit verify --backup of the forensic backup: %d %s %s", code, out, errOut)
	}
	for i, n := range nodes {
		for j, b := range bearers {
			waitfor.True(t, "the session ended", 2*time.Second, 10*time.Millisecond, func() bool {
				c, _, _ := n.apiCall("GET", "/v1/me", b, nil)
				return c == 401
			})
			_ = i + j
		}
	}
	for _, pw := range []string{clusterPassword, "a wrong password here"} {
		c, out, _ := nodes[2].apiCall("POST", "/v1/auth/login", "", map[string]string{"username": "gina", "password": pw})
		if c != 503 || out["error"] != "locked_down" {
			t.Fatalf("a plain user's login during the lockdown: %d %v", c, out)
		}
	}
	c, tok := nodes[2].secondFactor(nodes[2].mfaToken("root", clusterPassword), "totp", totpCode(t, secret, time.Now().Add(30*time.Second)))
	if c != 200 {
		t.Fatalf("an admin with a second factor during the lockdown: %d %v", c, tok)
	}
	if c, out, _ := nodes[0].apiCall("GET", "/v1/admin/incident", tok["access_token"].(string), nil); c != 200 || out["active"] != true {
		t.Fatalf("lockdown status: %d %v", c, out)
	}
	if out, errOut, code := nodes[0].cli("", "incident", "release"); code != 0 || !strings.Contains(out, "released") {
		t.Fatalf("release: %d %s %s", code, out, errOut)
	}
	if c, _ := nodes[1].login("gina", clusterPassword); c != 200 {
		t.Fatalf("a login after the release: %d", c)
	}
	audit, _, _ := nodes[0].cli("", "audit", "tail", "-n", "50")
	if !strings.Contains(audit, "incident.lockdown") || !strings.Contains(audit, "incident.release") {
		t.Errorf("the lockdown is not in the audit trail:\n%s", audit)
	}
}
