package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/internal/waitfor"
)

// tokenIssuer is the iss claim of a JWT, read without verifying it.
func tokenIssuer(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c.Iss
}

// loginOK logs in on n, retrying while the user has not reached it yet.
func (n *testNode) loginOK(user, password string) string {
	n.t.Helper()
	var access string
	waitfor.Nil(n.t, "a login on "+n.name(), 5*time.Second, 50*time.Millisecond, func() error {
		code, tok := n.login(user, password)
		if code != 200 {
			return fmt.Errorf("login on %s: %d %v", n.name(), code, tok)
		}
		access = tok["access_token"].(string)
		return nil
	})
	return access
}

// meAnswers is the status /v1/me on n gives tok once it has settled: 200,
// or whatever n still answers after a few seconds (a member applies
// another's key within a commit round; the wait is generous).
func (n *testNode) meAnswers(tok string, want int) (int, map[string]any) {
	n.t.Helper()
	var code int
	var out map[string]any
	waitfor.Poll(5*time.Second, 50*time.Millisecond, func() bool {
		code, out, _ = n.apiCall("GET", "/v1/me", tok, nil)
		return code == want
	})
	return code, out
}

// TestBlackBoxClusterDefaultIssuers forms a cluster the README's way, with
// join tokens and no tokens.issuer, so that each node signs with its own
// URL as issuer. A token from any member is accepted by every member (API.md,
// "One cluster, one issuer"); a removed member's is no longer.
func TestBlackBoxClusterDefaultIssuers(t *testing.T) {
	nodes := []*testNode{newNamedTestNode(t, "node1")}
	nodes[0].start()
	for _, name := range []string{"node2", "node3"} {
		tok := nodes[0].joinToken()
		n := newNamedTestNode(t, name)
		n.startJoin(tok)
		nodes = append(nodes, n)
	}
	const pw = "correct horse battery staple"
	nodes[0].addUser("alice", pw, false)

	tokens := make([]string, len(nodes))
	for i, n := range nodes {
		tokens[i] = n.loginOK("alice", pw)
		iss := tokenIssuer(t, tokens[i])
		if want := fmt.Sprintf("https://127.0.0.1:%d", n.apiPort); iss != want {
			t.Errorf("%s signs with iss %q, want its own URL %q", n.name(), iss, want)
		}
		// Discovery, where it exists, names the issuer the node signs with.
		code, disc, _ := n.apiCall("GET", "/.well-known/openid-configuration", "", nil)
		switch {
		case code == 404:
			t.Logf("%s: no OIDC discovery yet (404); its issuer is not compared", n.name())
		case code != 200 || disc["issuer"] != iss:
			t.Errorf("%s: discovery %d issuer %v, its tokens' iss %q", n.name(), code, disc["issuer"], iss)
		}
	}
	for i, tok := range tokens {
		for _, n := range nodes {
			if code, out := n.meAnswers(tok, 200); code != 200 || out["username"] != "alice" {
				t.Errorf("/v1/me on %s with %s's token (iss %s): %d %v", n.name(), nodes[i].name(), tokenIssuer(t, tok), code, out)
			}
		}
	}
	if t.Failed() {
		return
	}

	// Removed, node3 is no longer a member: the others stop accepting its
	// issuer, so its tokens with it.
	if out, errOut, code := nodes[0].cli("", "cluster", "remove", "node3"); code != 0 {
		t.Fatalf("remove node3: exit %d: %s%s", code, out, errOut)
	}
	for _, n := range nodes[:2] {
		if code, out := n.meAnswers(tokens[2], 401); code != 401 || out["error"] != "invalid_token" {
			t.Errorf("/v1/me on %s with removed node3's token: %d %v, want 401 invalid_token", n.name(), code, out)
		}
		for i, tok := range tokens[:2] {
			if code, out := n.meAnswers(tok, 200); code != 200 {
				t.Errorf("/v1/me on %s with %s's token after node3's removal: %d %v", n.name(), nodes[i].name(), code, out)
			}
		}
	}
}

// serveExits runs `serve` with args on n's config and requires it to exit
// 1 within 60 s; it returns what the process printed.
func (n *testNode) serveExits(args ...string) string {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, n.bin, append([]string{"serve", "--config", n.config}, args...)...).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		n.t.Fatalf("serve %v: %v, want exit 1; it printed:\n%s", args, err, out)
	}
	return string(out)
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// setIssuer rewrites n's [tokens] issuer (the last line of its config).
func setIssuer(t *testing.T, n *testNode, from, to string) {
	t.Helper()
	b, err := os.ReadFile(n.config)
	if err != nil {
		t.Fatal(err)
	}
	old := fmt.Sprintf("issuer = %q\n", from)
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s holds no %s", n.config, old)
	}
	if err := os.WriteFile(n.config, []byte(strings.Replace(string(b), old, fmt.Sprintf("issuer = %q\n", to), 1)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestBlackBoxIssuerMismatchRefusesStart: a node configured with another
// tokens.issuer than its cluster's refuses to start, and says which key to
// fix: joining, and restarting.
func TestBlackBoxIssuerMismatchRefusesStart(t *testing.T) {
	const ours, other = "https://auth.example", "https://other.example"
	node1 := newNamedTestNode(t, "node1", fmt.Sprintf("[tokens]\nissuer = %q\n", ours))
	node1.start()
	const pw = "correct horse battery staple"
	node1.addUser("alice", pw, false)

	// A joiner with another issuer.
	node2 := newNamedTestNode(t, "node2", fmt.Sprintf("[tokens]\nissuer = %q\n", other))
	out := node2.serveExits("--join", node1.joinToken())
	t.Logf("the joiner with another issuer printed:\n%s", lastLines(out, 2))
	if !strings.Contains(out, "tokens.issuer") || !strings.Contains(out, ours) || !strings.Contains(out, other) {
		t.Fatalf("a joiner with another issuer exited, but does not say why in terms of tokens.issuer, %s and %s:\n%s", ours, other, out)
	}
	// Fixed, it starts with the data directory the join left, and its
	// tokens work on node1.
	setIssuer(t, node2, other, ours)
	node2.start()
	tok := node2.loginOK("alice", pw)
	if iss := tokenIssuer(t, tok); iss != ours {
		t.Fatalf("node2 signs with iss %q, want %q", iss, ours)
	}
	if code, out := node1.meAnswers(tok, 200); code != 200 {
		t.Fatalf("/v1/me on node1 with node2's token: %d %v", code, out)
	}

	// A member restarted with another issuer, or with none.
	node1.stop()
	setIssuer(t, node1, ours, other)
	out = node1.serveExits()
	t.Logf("node1 restarted with another issuer printed:\n%s", lastLines(out, 1))
	if !strings.Contains(out, "tokens.issuer") || !strings.Contains(out, ours) || !strings.Contains(out, other) {
		t.Fatalf("node1 restarted with another issuer:\n%s", out)
	}
	setIssuer(t, node1, other, "")
	out = node1.serveExits()
	t.Logf("node1 restarted without an issuer printed:\n%s", lastLines(out, 1))
	if !strings.Contains(out, "tokens.issuer") || !strings.Contains(out, ours) {
		t.Fatalf("node1 restarted without an issuer:\n%s", out)
	}
	setIssuer(t, node1, "", ours)
	node1.start()
	if code, out := node1.meAnswers(tok, 200); code != 200 {
		t.Fatalf("/v1/me on node1, restarted with its cluster's issuer: %d %v", code, out)
	}
}
