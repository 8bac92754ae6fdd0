package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/bulwark-auth/bulwark/internal/scorecard"
	"github.com/bulwark-auth/bulwark/tpm/swtpmtest"
)

// TestBlackBoxDoctor: a node hardened as the checklist says (TPM sealing
// bound to PCR 7, the default policies, a backup, recovery shares) passes
// `bulwark doctor` (exit 0: only a one-node cluster and the missing
// systemd sandbox warn). Restarted with TLS 1.2 allowed and admin MFA
// off, doctor exits 1 and names both controls, and an administrator who
// signed in with a password alone reads the same verdicts from GET
// /v1/admin/scorecard.
func TestBlackBoxDoctor(t *testing.T) {
	swtpmtest.Require(t)
	// Its own [incident] table: the harness's turns detection off.
	n := newTestNode(t, "[incident]\nwindow = \"1m\"")
	setSeal(t, n, swtpmtest.Start(t, t.TempDir()).Device())
	appendConfig(t, n, "pcrs = [7]\n") // still in [seal], the last table
	n.start()
	n.waitLevel() // a backup is recorded from level 5
	if _, errOut, code := n.cli("", "backup", "create", n.dir+"/b.backup"); code != 0 {
		t.Fatalf("backup create: %s", errOut)
	}
	if _, errOut, code := n.cli("", "keys", "recovery-shares", "--threshold", "2", "--shares", "3"); code != 0 {
		t.Fatalf("recovery-shares: %s", errOut)
	}
	out, errOut, code := n.cli("", "doctor")
	if code != 0 || errOut != "" {
		t.Fatalf("doctor on a hardened node: exit %d, %s\n%s", code, errOut, out)
	}
	t.Logf("doctor on a hardened node:\n%s", out)
	for _, id := range scorecard.ControlIDs() {
		want := "PASS"
		if id == "cluster.quorum" || id == "host.sandbox" {
			want = "WARN"
		}
		if !strings.Contains(out, want+"  "+id) {
			t.Errorf("%s is not %s:\n%s", id, want, out)
		}
	}

	// Weakened: TLS 1.2 and no second factor for administrators.
	n.stop()
	b, err := os.ReadFile(n.config)
	if err != nil {
		t.Fatal(err)
	}
	weak := strings.Replace(string(b), "[api]\n", "[api]\ntls_min_version = \"1.2\"\n", 1)
	if err := os.WriteFile(n.config, []byte(weak+"\n[auth.security]\nrequire_mfa_for_admin = false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n.start()
	n.addUser("alice", "correct horse battery staple", true)
	out, errOut, code = n.cli("", "doctor")
	if code != 1 {
		t.Fatalf("doctor on a weakened node: exit %d, %s\n%s", code, errOut, out)
	}
	for _, id := range []string{"tls.min_version", "admin.mfa_required", "admin.second_factors"} {
		if !strings.Contains(out, "FAIL  "+id) || !strings.Contains(errOut, id) {
			t.Errorf("%s not named as failed: stderr %q\n%s", id, errOut, out)
		}
	}
	if strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, "3 control(s) failed") {
		t.Errorf("stderr is not the one-line reason: %q", errOut)
	}

	// The API's report: an administrator by password alone, now.
	code, tok := n.login("alice", "correct horse battery staple")
	if code != 200 {
		t.Fatalf("login: %d %v", code, tok)
	}
	code, body, _ := n.apiCall("GET", "/v1/admin/scorecard", tok["access_token"].(string), nil)
	raw, _ := json.Marshal(body)
	var rep scorecard.Report
	if err := json.Unmarshal(raw, &rep); code != 200 || err != nil || !rep.Failed {
		t.Fatalf("GET /v1/admin/scorecard: %d %s", code, raw)
	}
	for _, id := range []string{"tls.min_version", "admin.mfa_required", "admin.second_factors"} {
		if c, ok := rep.Control(id); !ok || c.Status != scorecard.Fail {
			t.Errorf("the API's %s: %+v", id, c)
		}
	}
	n.stop()
}
