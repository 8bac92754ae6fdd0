package main

import (
	"strings"
	"testing"
)

// TestBlackBoxForbiddenRevokes: a plain user's session that keeps trying
// admin routes is revoked at the revoke_after_forbidden-th refusal, the
// account is flagged, and the event is a critical audit entry; `user
// unflag` clears the flag, and the account signs in and works again.
func TestBlackBoxForbiddenRevokes(t *testing.T) {
	n := newTestNode(t, exemptLoopback+"[incident]\nchallenge_after_failures = 0\nrevoke_after_forbidden = 3\n")
	n.start()
	n.addUser("kim", clusterPassword, false)
	_, tok := n.login("kim", clusterPassword)
	bearer := tok["access_token"].(string)
	for i := range 3 {
		if c, _, _ := n.apiCall("GET", "/v1/admin/users", bearer, nil); c != 403 {
			t.Fatalf("refusal %d: %d", i+1, c)
		}
	}
	if c, _, _ := n.apiCall("GET", "/v1/me", bearer, nil); c != 401 {
		t.Fatalf("the session after three refusals: %d, want 401", c)
	}
	out, _, _ := n.cli("", "user", "show", "kim", "--json")
	if !strings.Contains(out, `"flagged": true`) && !strings.Contains(out, `"flagged":true`) {
		t.Errorf("kim is not flagged: %s", out)
	}
	audit, _, _ := n.cli("", "audit", "tail", "-n", "20")
	if !strings.Contains(audit, "account.flagged") {
		t.Errorf("no account.flagged in the trail:\n%s", audit)
	}
	if out, _, _ := n.cli("", "user", "show", "kim"); !strings.Contains(out, "active, flagged") {
		t.Errorf("user show does not say kim is flagged:\n%s", out)
	}
	if out, errOut, code := n.cli("", "user", "unflag", "kim"); code != 0 || !strings.Contains(out, "unflagged user kim") {
		t.Fatalf("user unflag: %d %s %s", code, out, errOut)
	}
	if out, _, _ := n.cli("", "user", "show", "kim", "--json"); strings.Contains(out, `"flagged"`) {
		t.Errorf("kim is still flagged: %s", out)
	}
	if audit, _, _ := n.cli("", "audit", "tail", "-n", "5"); !strings.Contains(audit, "user.unflag") {
		t.Errorf("no user.unflag in the trail:\n%s", audit)
	}
	_, tok = n.login("kim", clusterPassword)
	if c, _, _ := n.apiCall("GET", "/v1/me", tok["access_token"].(string), nil); c != 200 {
		t.Fatalf("kim after unflag: %d", c)
	}
}
