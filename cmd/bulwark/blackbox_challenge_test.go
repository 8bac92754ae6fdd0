package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/authcore/altcha"
)

// TestBlackBoxProofOfWorkOverThreeNodes: after challenge_after_failures
// failures against a name, a login answers 428 challenge_required with an
// ALTCHA challenge; the Go helper solves it; the solution is accepted once
// (on node2) and refused when replayed (on node3); a forged one is refused
// as bad input; GET /v1/auth/challenge serves one for the widget.
func TestBlackBoxProofOfWorkOverThreeNodes(t *testing.T) {
	nodes := formCluster(t, exemptLoopback+"[incident]\nchallenge_after_failures = 2\n")
	nodes[0].addUser("hank", clusterPassword, false)
	for range 2 {
		if c, _ := nodes[0].login("hank", "a wrong password!"); c != 401 {
			t.Fatalf("a wrong password: %d", c)
		}
	}
	c, out, _ := nodes[1].apiCall("POST", "/v1/auth/login", "", map[string]string{"username": "hank", "password": clusterPassword})
	if c != 428 || out["error"] != "challenge_required" {
		t.Fatalf("a third login: %d %v", c, out)
	}
	var ch altcha.Challenge
	b, _ := json.Marshal(out["challenge"])
	if err := json.Unmarshal(b, &ch); err != nil || ch.Algorithm != "SHA-256" || ch.MaxNumber < 1 || ch.Signature == "" {
		t.Fatalf("challenge %s: %v", b, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sol, err := altcha.Solve(ctx, ch)
	if err != nil {
		t.Fatal(err)
	}
	login := func(n *testNode, password, solution string) (int, map[string]any) {
		c, out, _ := n.apiCall("POST", "/v1/auth/login", "", map[string]string{"username": "hank", "password": password, "altcha": solution})
		return c, out
	}
	// A wrong password with the solution: checked (401), the solution spent.
	if c, out := login(nodes[1], "a wrong password!", sol); c != 401 {
		t.Fatalf("with a solution and a wrong password: %d %v", c, out)
	}
	if c, out := login(nodes[2], clusterPassword, sol); c != 428 || out["challenge"] == nil {
		t.Fatalf("the solution replayed on node3: %d %v", c, out)
	}
	var p altcha.Payload
	raw, _ := base64.StdEncoding.DecodeString(sol)
	json.Unmarshal(raw, &p)
	p.Number++
	forged, _ := json.Marshal(p)
	if c, out := login(nodes[2], clusterPassword, base64.StdEncoding.EncodeToString(forged)); c != 400 {
		t.Fatalf("a forged solution: %d %v", c, out)
	}
	// A fresh challenge from the widget's route, solved, lets the right
	// password in on node3.
	c, out, _ = nodes[2].apiCall("GET", "/v1/auth/challenge", "", nil)
	b, _ = json.Marshal(out)
	if err := json.Unmarshal(b, &ch); c != 200 || err != nil {
		t.Fatalf("GET /v1/auth/challenge: %d %v", c, out)
	}
	if sol, err = altcha.Solve(ctx, ch); err != nil {
		t.Fatal(err)
	}
	if c, out := login(nodes[2], clusterPassword, sol); c != 200 || out["access_token"] == nil {
		t.Fatalf("the right password with a fresh solution: %d %v", c, out)
	}
}
