package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/descope/virtualwebauthn"

	"github.com/bulwark-auth/bulwark/internal/passkeytest"
	"github.com/bulwark-auth/bulwark/internal/waitfor"
)

// The relying party of the passkey tests: the cluster issuer's host and
// origin (the default for a node whose tokens.issuer is clusterIssuer),
// or set in [mfa] for a single node.
var bbRP = virtualwebauthn.RelyingParty{Name: "bulwark", ID: "bulwark.test", Origin: clusterIssuer}

const passkeyConfig = "[mfa]\nwebauthn_rp_id = \"bulwark.test\"\nwebauthn_origins = [\"https://bulwark.test\"]\n" +
	"[auth.rate_limit]\nexempt = [\"127.0.0.0/8\"]\n"

// bbPasskey is a software authenticator with one credential, playing the
// browser at bbRP's origin whatever node it talks to.
type bbPasskey struct {
	auth virtualwebauthn.Authenticator
	cred virtualwebauthn.Credential
}

func newBBPasskey(userID string) *bbPasskey {
	return &bbPasskey{auth: virtualwebauthn.NewAuthenticatorWithOptions(virtualwebauthn.AuthenticatorOptions{UserHandle: []byte(userID)}),
		cred: passkeytest.NewEC2Credential()}
}

func (k *bbPasskey) id() string { return base64.RawURLEncoding.EncodeToString(k.cred.ID) }

func asJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// attest answers begin's creation options for rp.
func (k *bbPasskey) attest(t *testing.T, rp virtualwebauthn.RelyingParty, begin map[string]any) json.RawMessage {
	t.Helper()
	o, err := virtualwebauthn.ParseAttestationOptions(asJSON(t, begin))
	if err != nil {
		t.Fatalf("creation options %v: %v", begin, err)
	}
	return json.RawMessage(virtualwebauthn.CreateAttestationResponse(rp, k.auth, k.cred, *o))
}

// assert answers begin's request options for rp.
func (k *bbPasskey) assert(t *testing.T, rp virtualwebauthn.RelyingParty, begin map[string]any) json.RawMessage {
	t.Helper()
	o, err := virtualwebauthn.ParseAssertionOptions(asJSON(t, begin))
	if err != nil {
		t.Fatalf("request options %v: %v", begin, err)
	}
	return json.RawMessage(virtualwebauthn.CreateAssertionResponse(rp, k.auth, k.cred, *o))
}

type finishBody struct {
	ChallengeID any             `json:"challenge_id"`
	Credential  json.RawMessage `json:"credential"`
}

// begin calls a begin route and checks it answered a ceremony.
func (n *testNode) begin(path, bearer string, body any) map[string]any {
	n.t.Helper()
	code, out, _ := n.apiCall("POST", path, bearer, body)
	if code != 200 || out["challenge_id"] == nil || out["publicKey"] == nil {
		n.t.Fatalf("POST %s: %d %v", path, code, out)
	}
	return out
}

// passwordStep signs user in with a password and returns the mfa_token.
func (n *testNode) passwordStep(user, pw string) string {
	n.t.Helper()
	code, out := n.login(user, pw)
	tok, _ := out["mfa_token"].(string)
	methods, _ := out["mfa_methods"].([]any)
	if code != 200 || out["mfa_required"] != true || tok == "" || !slices.Contains(methods, any("webauthn")) {
		n.t.Fatalf("login of a user with a passkey: %d %v", code, out)
	}
	return tok
}

// amrOf reads the amr claim of an access token (its payload only).
func amrOf(t *testing.T, access string) string {
	t.Helper()
	parts := strings.Split(access, ".")
	if len(parts) != 3 {
		t.Fatalf("access token %q", access)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	var c struct {
		AMR []string `json:"amr"`
	}
	if err != nil || json.Unmarshal(raw, &c) != nil {
		t.Fatalf("access token payload %q: %v", raw, err)
	}
	return strings.Join(c.AMR, " ")
}

func userIDOf(n *testNode, access string) string {
	n.t.Helper()
	code, me, _ := n.apiCall("GET", "/v1/me", access, nil)
	id, _ := me["id"].(string)
	if code != 200 || id == "" {
		n.t.Fatalf("/v1/me: %d %v", code, me)
	}
	return id
}

// passkeysOf lists GET /v1/me/mfa's passkeys as "id=name" strings.
func passkeysOf(n *testNode, access string) []string {
	n.t.Helper()
	code, out, _ := n.apiCall("GET", "/v1/me/mfa", access, nil)
	list, ok := out["webauthn"].([]any)
	if code != 200 || !ok {
		n.t.Fatalf("/v1/me/mfa: %d %v", code, out)
	}
	var ids []string
	for _, e := range list {
		m := e.(map[string]any)
		if m["created_at"] == nil {
			n.t.Errorf("a passkey without created_at: %v", m)
		}
		ids = append(ids, fmt.Sprintf("%s=%s", m["id"], m["name"]))
	}
	return ids
}

// TestBlackBoxPasskeys registers a passkey with a software authenticator
// over HTTPS and signs in with it, as a second factor and without a
// password; replays and responses for another origin, RP id or challenge
// are refused and start no session; rename, removal and the listing.
func TestBlackBoxPasskeys(t *testing.T) {
	n := newTestNode(t, passkeyConfig)
	n.start()
	const pw = "correct horse battery staple"
	n.addUser("alice", pw, false)
	_, tok := n.login("alice", pw)
	access, _ := tok["access_token"].(string)
	if got := passkeysOf(n, access); len(got) != 0 {
		t.Fatalf("passkeys before registering: %v", got)
	}
	k := newBBPasskey(userIDOf(n, access))

	// Register: creation options for bulwark.test, a discoverable key
	// preferred; the first factor comes with recovery codes.
	b := n.begin("/v1/me/mfa/webauthn/begin", access, map[string]string{"name": "yubikey"})
	opts := asJSON(t, b["publicKey"])
	if !strings.Contains(opts, `"id":"bulwark.test"`) || !strings.Contains(opts, `"residentKey":"preferred"`) ||
		!strings.Contains(opts, `"userVerification":"preferred"`) {
		t.Fatalf("creation options %s", opts)
	}
	evil := bbRP
	evil.Origin = "https://evil.test"
	if code, out, _ := n.apiCall("POST", "/v1/me/mfa/webauthn/finish", access, finishBody{b["challenge_id"], k.attest(t, evil, b)}); code != 400 {
		t.Fatalf("a registration for another origin: %d %v", code, out)
	}
	code, reg, _ := n.apiCall("POST", "/v1/me/mfa/webauthn/finish", access, finishBody{b["challenge_id"], k.attest(t, bbRP, b)})
	if codes, _ := reg["recovery_codes"].([]any); code != 201 || reg["id"] != k.id() || reg["name"] != "yubikey" || len(codes) != 10 {
		t.Fatalf("register: %d %v", code, reg)
	}
	if got := passkeysOf(n, access); !slices.Equal(got, []string{k.id() + "=yubikey"}) {
		t.Fatalf("passkeys after registering: %v", got)
	}

	// Second factor.
	b = n.begin("/v1/auth/webauthn/begin", "", map[string]string{"mfa_token": n.passwordStep("alice", pw)})
	if opts := asJSON(t, b["publicKey"]); !strings.Contains(opts, k.id()) || !strings.Contains(opts, `"rpId":"bulwark.test"`) {
		t.Fatalf("request options %s", opts)
	}
	k.cred.Counter = 1
	assertion := k.assert(t, bbRP, b)
	code, tok, _ = n.apiCall("POST", "/v1/auth/webauthn/finish", "", finishBody{b["challenge_id"], assertion})
	if code != 200 || tok["access_token"] == nil || tok["refresh_token"] == nil {
		t.Fatalf("second factor: %d %v", code, tok)
	}
	if amr := amrOf(t, tok["access_token"].(string)); amr != "pwd hwk mfa" {
		t.Fatalf("amr %q", amr)
	}
	if code, out, _ := n.apiCall("POST", "/v1/auth/webauthn/finish", "", finishBody{b["challenge_id"], assertion}); code != 401 || out["error"] != "invalid_credentials" {
		t.Fatalf("a replayed assertion: %d %v", code, out)
	}

	// Bad answers: 4xx, no session.
	other := n.begin("/v1/auth/webauthn/begin", "", map[string]string{"mfa_token": n.passwordStep("alice", pw)})
	wrongRP := bbRP
	wrongRP.ID = "evil.test"
	for _, tc := range []struct {
		name   string
		answer func(b map[string]any) json.RawMessage
		code   int
	}{
		{"another origin", func(b map[string]any) json.RawMessage { return k.assert(t, evil, b) }, 401},
		{"another RP id", func(b map[string]any) json.RawMessage { return k.assert(t, wrongRP, b) }, 401},
		{"another challenge", func(map[string]any) json.RawMessage { return k.assert(t, bbRP, other) }, 401},
		{"malformed", func(map[string]any) json.RawMessage { return json.RawMessage(`{"id":1}`) }, 400},
	} {
		b := n.begin("/v1/auth/webauthn/begin", "", map[string]string{"mfa_token": n.passwordStep("alice", pw)})
		k.cred.Counter++
		code, out, _ := n.apiCall("POST", "/v1/auth/webauthn/finish", "", finishBody{b["challenge_id"], tc.answer(b)})
		if code != tc.code || out["access_token"] != nil {
			t.Errorf("%s: %d %v, want %d", tc.name, code, out, tc.code)
		}
	}

	// Passwordless: a discoverable credential that verified its user.
	b = n.begin("/v1/auth/webauthn/begin", "", map[string]string{})
	k.cred.Counter++
	code, tok, _ = n.apiCall("POST", "/v1/auth/webauthn/finish", "", finishBody{b["challenge_id"], k.assert(t, bbRP, b)})
	if code != 200 || tok["access_token"] == nil {
		t.Fatalf("passwordless: %d %v", code, tok)
	}
	fresh := tok["access_token"].(string)
	if amr := amrOf(t, fresh); amr != "hwk user mfa" {
		t.Fatalf("passwordless amr %q", amr)
	}

	// Rename; removal needs a recent second factor (the first session
	// had none); then the password alone signs in again.
	if code, out, _ := n.apiCall("PATCH", "/v1/me/mfa/webauthn/"+k.id(), access, map[string]string{"name": "blue key"}); code != 200 {
		t.Fatalf("rename: %d %v", code, out)
	}
	if got := passkeysOf(n, access); !slices.Equal(got, []string{k.id() + "=blue key"}) {
		t.Fatalf("passkeys after renaming: %v", got)
	}
	if code, out, _ := n.apiCall("DELETE", "/v1/me/mfa/webauthn/"+k.id(), access, nil); code != 401 || out["error"] != "insufficient_user_authentication" {
		t.Fatalf("removal from a password-only session: %d %v", code, out)
	}
	if code, out, _ := n.apiCall("DELETE", "/v1/me/mfa/webauthn/nope", fresh, nil); code != 404 {
		t.Fatalf("removing an unknown passkey: %d %v", code, out)
	}
	if code, out, _ := n.apiCall("DELETE", "/v1/me/mfa/webauthn/"+k.id(), fresh, nil); code != 204 {
		t.Fatalf("removal: %d %v", code, out)
	}
	if got := passkeysOf(n, fresh); len(got) != 0 {
		t.Fatalf("passkeys after removal: %v", got)
	}
	if code, out := n.login("alice", pw); code != 200 || out["access_token"] == nil {
		t.Fatalf("a password login once the passkey is gone: %d %v", code, out)
	}
	tail, _, _ := n.cli("", "audit", "tail", "-n", "200")
	for _, ev := range []string{"mfa.webauthn.add", "mfa.webauthn.rename", "mfa.webauthn.remove", "mfa.failure"} {
		if !strings.Contains(tail, ev) {
			t.Errorf("audit tail lacks %s:\n%s", ev, tail)
		}
	}
}

// TestBlackBoxPasskeyAcrossCluster begins each ceremony on one node of a
// three-node cluster and finishes it on another: the ceremony is in its
// sealed challenge_id, and every member holds the data key.
func TestBlackBoxPasskeyAcrossCluster(t *testing.T) {
	nodes := formCluster(t, "[auth.rate_limit]\nexempt = [\"127.0.0.0/8\"]\n")
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	const pw = "correct horse battery staple"
	n1.addUser("alice", pw, false)
	_, tok := n1.login("alice", pw)
	access, _ := tok["access_token"].(string)
	k := newBBPasskey(userIDOf(n1, access))

	b := n1.begin("/v1/me/mfa/webauthn/begin", access, map[string]string{"name": "key"})
	var code int
	var reg map[string]any
	waitfor.True(t, "node2 knows alice", 10*time.Second, 50*time.Millisecond, func() bool {
		c, _, _ := n2.apiCall("GET", "/v1/me", access, nil)
		return c == 200
	})
	code, reg, _ = n2.apiCall("POST", "/v1/me/mfa/webauthn/finish", access, finishBody{b["challenge_id"], k.attest(t, bbRP, b)})
	if code != 201 || reg["id"] != k.id() {
		t.Fatalf("registration begun on node1, finished on node2: %d %v", code, reg)
	}
	waitfor.True(t, "node3 lists the passkey", 10*time.Second, 50*time.Millisecond, func() bool {
		return len(passkeysOf(n3, access)) == 1
	})

	b = n3.begin("/v1/auth/webauthn/begin", "", map[string]string{"mfa_token": n3.passwordStep("alice", pw)})
	k.cred.Counter = 1
	if code, out, _ := n1.apiCall("POST", "/v1/auth/webauthn/finish", "", finishBody{b["challenge_id"], k.assert(t, bbRP, b)}); code != 200 || out["access_token"] == nil {
		t.Fatalf("second factor begun on node3, finished on node1: %d %v", code, out)
	}

	b = n2.begin("/v1/auth/webauthn/begin", "", map[string]string{})
	k.cred.Counter = 2
	assertion := k.assert(t, bbRP, b)
	if code, out, _ := n3.apiCall("POST", "/v1/auth/webauthn/finish", "", finishBody{b["challenge_id"], assertion}); code != 200 || out["access_token"] == nil {
		t.Fatalf("passwordless begun on node2, finished on node3: %d %v", code, out)
	}
	// The same assertion on yet another node: the ceremony is spent
	// cluster-wide.
	if code, out, _ := n1.apiCall("POST", "/v1/auth/webauthn/finish", "", finishBody{b["challenge_id"], assertion}); code != 401 {
		t.Fatalf("a passwordless assertion replayed on node1: %d %v", code, out)
	}
}
