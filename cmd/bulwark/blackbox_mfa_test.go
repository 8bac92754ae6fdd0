package main

import (
	"encoding/base32"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// totpCode is the code of secret for the 30-second step at t.
func totpCode(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	c, err := totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// enrolTOTP signs user in on n with a password, turns TOTP on, and
// returns the secret and the recovery codes. The confirming code is the
// current step's, so the next login uses the next step's code (one step
// of skew is accepted).
func (n *testNode) enrolTOTP(user, password string) (string, []string) {
	n.t.Helper()
	code, tok := n.login(user, password)
	if code != 200 || tok["access_token"] == nil {
		n.t.Fatalf("password login of %s before enrolment: %d %v", user, code, tok)
	}
	bearer := tok["access_token"].(string)
	code, e, _ := n.apiCall("POST", "/v1/me/mfa/totp", bearer, nil)
	if code != 200 {
		n.t.Fatalf("enrol: %d %v", code, e)
	}
	secret, _ := e["secret"].(string)
	if uri, _ := e["otpauth_uri"].(string); !strings.HasPrefix(uri, "otpauth://totp/") || !strings.Contains(uri, "secret="+secret) {
		n.t.Fatalf("otpauth_uri %q", uri)
	}
	if qr, _ := e["qr_png"].(string); !strings.HasPrefix(qr, "data:image/png;base64,") {
		n.t.Fatalf("qr_png %.40q", qr)
	}
	if code, out, _ := n.apiCall("POST", "/v1/me/mfa/totp/confirm", bearer, map[string]string{"code": "12345"}); code != 400 {
		n.t.Fatalf("a 5-digit confirmation: %d %v", code, out)
	}
	code, out, _ := n.apiCall("POST", "/v1/me/mfa/totp/confirm", bearer, map[string]string{"code": totpCode(n.t, secret, time.Now())})
	if code != 200 {
		n.t.Fatalf("confirm: %d %v", code, out)
	}
	var codes []string
	for _, c := range out["recovery_codes"].([]any) {
		codes = append(codes, c.(string))
	}
	if len(codes) < 10 {
		n.t.Fatalf("%d recovery codes", len(codes))
	}
	return secret, codes
}

// mfaToken signs user in with a password and returns the mfa_token the
// second factor must follow.
func (n *testNode) mfaToken(user, password string) string {
	n.t.Helper()
	code, out := n.login(user, password)
	if code != 200 || out["mfa_required"] != true || out["access_token"] != nil {
		n.t.Fatalf("password login of %s with TOTP on: %d %v", user, code, out)
	}
	return out["mfa_token"].(string)
}

func (n *testNode) secondFactor(token, method, code string) (int, map[string]any) {
	n.t.Helper()
	c, out, _ := n.apiCall("POST", "/v1/auth/mfa", "", map[string]string{"mfa_token": token, "method": method, "code": code})
	return c, out
}

// TestBlackBoxTOTPOverThreeNodes: TOTP enrolled on one node; the second
// factor checked on another; a code used once refused on a third; wrong
// codes lock the second factor cluster-wide but not the password; a
// recovery code good once; and neither the secret nor a recovery code in
// any file of any node's data directory.
func TestBlackBoxTOTPOverThreeNodes(t *testing.T) {
	nodes := formCluster(t, exemptLoopback)
	nodes[0].addUser("dora", clusterPassword, false)
	secret, recovery := nodes[0].enrolTOTP("dora", clusterPassword)

	next := totpCode(t, secret, time.Now().Add(30*time.Second))
	code, tok := nodes[2].secondFactor(nodes[1].mfaToken("dora", clusterPassword), "totp", next)
	if code != 200 {
		t.Fatalf("second factor on node3: %d %v", code, tok)
	}
	c, me, _ := nodes[1].apiCall("GET", "/v1/me", tok["access_token"].(string), nil)
	if mfa, _ := me["mfa"].(map[string]any); c != 200 || mfa["totp"] != true || mfa["recovery_codes_left"] != float64(10) {
		t.Fatalf("/v1/me: %d %v", c, me)
	}
	if c, out := nodes[0].secondFactor(nodes[0].mfaToken("dora", clusterPassword), "totp", next); c != 401 || out["error"] != "invalid_credentials" {
		t.Fatalf("a code used on node3, again on node1: %d %v", c, out)
	}

	// Malformed input is refused and not counted.
	for _, bad := range []map[string]string{
		{"mfa_token": "bwm_forged.AAAA", "method": "totp", "code": "123456"},
		{"mfa_token": nodes[0].mfaToken("dora", clusterPassword), "method": "totp", "code": "12a456"},
		{"mfa_token": nodes[0].mfaToken("dora", clusterPassword), "method": "sms", "code": "123456"},
	} {
		if c, out, _ := nodes[1].apiCall("POST", "/v1/auth/mfa", "", bad); c != 400 && c != 401 {
			t.Fatalf("bad input %v: %d %v", bad, c, out)
		}
	}

	// Four more wrong codes (the replayed one counted): the fifth locks.
	wrong := "000000"
	if wrong == totpCode(t, secret, time.Now()) || wrong == totpCode(t, secret, time.Now().Add(30*time.Second)) {
		wrong = "999999"
	}
	for i := range 4 {
		if c, out := nodes[i%3].secondFactor(nodes[(i+1)%3].mfaToken("dora", clusterPassword), "totp", wrong); c != 401 {
			t.Fatalf("wrong code %d: %d %v", i+1, c, out)
		}
	}
	good := totpCode(t, secret, time.Now().Add(30*time.Second))
	c, out, h := nodes[2].apiCall("POST", "/v1/auth/mfa", "", map[string]string{
		"mfa_token": nodes[0].mfaToken("dora", clusterPassword), "method": "totp", "code": good})
	if c != 429 || h.Get("Retry-After") == "" {
		t.Fatalf("a right code after five wrong ones: %d %v", c, out)
	}
	// The password is not locked: it still answers mfa_required.
	nodes[1].mfaToken("dora", clusterPassword)

	// Recovery codes: an operator's unlock of the name clears the second
	// factor's counter too.
	if _, errOut, code := nodes[0].cli("", "user", "unlock", "dora"); code != 0 {
		t.Fatalf("unlock: %s", errOut)
	}
	if c, out := nodes[1].secondFactor(nodes[1].mfaToken("dora", clusterPassword), "recovery_code", recovery[0]); c != 200 {
		t.Fatalf("a recovery code: %d %v", c, out)
	}
	if c, out := nodes[2].secondFactor(nodes[2].mfaToken("dora", clusterPassword), "recovery_code", recovery[0]); c != 401 {
		t.Fatalf("a recovery code used twice: %d %v", c, out)
	}

	// Nothing of the secret or the codes in plain form on any node.
	raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secret)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		scanForSecret(t, n.dataDir(), secret)
		scanForSecret(t, n.dataDir(), string(raw))
		for _, rc := range recovery {
			scanForSecret(t, n.dataDir(), rc)
			scanForSecret(t, n.dataDir(), strings.ReplaceAll(rc, "-", ""))
		}
	}
}

// TestBlackBoxStepUpAndAdminMFA: with the default require_mfa_for_admin,
// an administrator without a second factor is refused on admin routes
// but may enrol one; signed in with it, admin writes work while the
// factor is recent and answer insufficient_user_authentication after
// mfa.step_up_window, as does a password change; reset-mfa removes the
// factor and ends the sessions.
func TestBlackBoxStepUpAndAdminMFA(t *testing.T) {
	n := newTestNode(t, exemptLoopback+"[mfa]\nstep_up_window = \"3s\"\n")
	n.start()
	n.addUser("root", clusterPassword, true)
	_, tok := n.login("root", clusterPassword)
	if c, out, _ := n.apiCall("POST", "/v1/admin/users", tok["access_token"].(string),
		map[string]any{"username": "eve", "password": clusterPassword}); c != 403 {
		t.Fatalf("an admin write by a password-only admin: %d %v", c, out)
	}
	secret, _ := n.enrolTOTP("root", clusterPassword)
	c, tok := n.secondFactor(n.mfaToken("root", clusterPassword), "totp", totpCode(t, secret, time.Now().Add(30*time.Second)))
	if c != 200 {
		t.Fatalf("admin second factor: %d %v", c, tok)
	}
	bearer := tok["access_token"].(string)
	if c, out, _ := n.apiCall("POST", "/v1/admin/users", bearer, map[string]any{"username": "eve", "password": clusterPassword}); c != 201 {
		t.Fatalf("an admin write with a fresh factor: %d %v", c, out)
	}
	time.Sleep(4 * time.Second) // past step_up_window
	c, out, h := n.apiCall("DELETE", "/v1/admin/users/eve", bearer, nil)
	if c != 401 || out["error"] != "insufficient_user_authentication" ||
		!strings.Contains(h.Get("WWW-Authenticate"), `error="insufficient_user_authentication"`) ||
		!strings.Contains(h.Get("WWW-Authenticate"), "max_age=3") {
		t.Fatalf("an admin write with a stale factor: %d %v %q", c, out, h.Get("WWW-Authenticate"))
	}
	if c, out, _ := n.apiCall("POST", "/v1/me/password", bearer, map[string]string{
		"current_password": clusterPassword, "new_password": "another long passphrase"}); c != 401 || out["error"] != "insufficient_user_authentication" {
		t.Fatalf("a password change with a stale factor: %d %v", c, out)
	}
	if c, _, _ := n.apiCall("GET", "/v1/admin/users", bearer, nil); c != 200 {
		t.Fatalf("an admin read with a stale factor: %d", c)
	}
	out2, errOut, code := n.cli("", "user", "reset-mfa", "root")
	if code != 0 || !strings.Contains(out2, "revoked") {
		t.Fatalf("reset-mfa: %d %s %s", code, out2, errOut)
	}
	if c, _, _ := n.apiCall("GET", "/v1/me", bearer, nil); c != 401 {
		t.Fatalf("a session outlived reset-mfa: %d", c)
	}
	if c, tok := n.login("root", clusterPassword); c != 200 || tok["access_token"] == nil {
		t.Fatalf("a password login after reset-mfa: %d %v", c, tok)
	}
	audit, _, _ := n.cli("", "audit", "tail", "-n", "100")
	for _, ev := range []string{"mfa.totp.enroll", "mfa.totp.confirm", "mfa.challenge", "login.success", "mfa.reset"} {
		if !strings.Contains(audit, ev) {
			t.Errorf("no %s in the audit trail", ev)
		}
	}
}
