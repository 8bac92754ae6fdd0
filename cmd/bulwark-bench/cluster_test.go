package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestClusterTargetsAndSingleNodeTargetsApart(t *testing.T) {
	r := &report{Cluster: &clusterReport{}, Phases: []PhaseResult{
		{Phase: phaseArgon2, Setup: setupInProcess, Concurrency: 2, Ops: 400, OpsPerSec: 50},
		{Phase: phaseLogin, Setup: setupSingle, Concurrency: 16, Ops: 360, OpsPerSec: 45},
		{Phase: phaseRefresh, Setup: setupSingle, Concurrency: 64, Ops: 24800, OpsPerSec: 3100},
		// three nodes: faster logins must not count for the single node,
		{Phase: phaseLogin, Setup: setupLeader, Concurrency: 16, Ops: 500, OpsPerSec: 60},
		{Phase: phaseRefresh, Setup: setupLeader, Concurrency: 16, Ops: 5000, OpsPerSec: 1800},
		{Phase: phaseRefresh, Setup: setupFollower, Concurrency: 64, Ops: 7800, OpsPerSec: 2600, Via: "node2"},
		// and a failed phase is no measurement, however fast.
		{Phase: phaseRefresh, Setup: setupFollower, Concurrency: 16, Ops: 10, Errors: 90, ErrorRate: 0.9, OpsPerSec: 9000},
		// The single node's refreshes must not count for three nodes.
		{Phase: phaseRefresh, Setup: setupSingle, Concurrency: 16, Ops: 30000, OpsPerSec: 9999},
	}}
	r.evaluate()
	// logins, refreshes, /v1/me, three nodes, peak memory
	if len(r.Targets) != 5 {
		t.Fatalf("%d targets, want 5", len(r.Targets))
	}
	if got := r.Targets[0].Value; got != 90 {
		t.Errorf("login share %v, want 90 (single node only)", got)
	}
	if got := r.Targets[1].Value; got != 9999 {
		t.Errorf("single-node refreshes %v, want 9999", got)
	}
	c := r.Targets[3]
	if c.Value != 2600 || !c.Pass || !c.Measured || !strings.Contains(c.Detail, "follower node2") {
		t.Errorf("three-node target %+v, want 2600 via follower node2, pass", c)
	}
	// Without a cluster run there is no three-node target.
	r.Cluster = nil
	r.evaluate()
	if len(r.Targets) != 4 {
		t.Errorf("%d targets without --cluster, want 4", len(r.Targets))
	}
	// Asked for but not measured: FAIL, not measured.
	r = &report{Cluster: &clusterReport{Error: "did not form"}}
	r.evaluate()
	if c := r.Targets[3]; c.Pass || c.Measured {
		t.Errorf("unmeasured three-node target %+v", c)
	}
}

// TestLoginShareUsesTheMeanBound: the bound measured before the node
// started and after it stopped are averaged; a failed measurement and the
// x/crypto reference row do not count.
func TestLoginShareUsesTheMeanBound(t *testing.T) {
	r := &report{Phases: []PhaseResult{
		{Phase: phaseArgon2, Setup: setupInProcess, Concurrency: 2, Ops: 800, OpsPerSec: 100},
		{Phase: phaseXCrypto, Setup: setupInProcess, Concurrency: 2, Ops: 400, OpsPerSec: 50},
		{Phase: phaseLogin, Setup: setupSingle, Concurrency: 16, Ops: 720, OpsPerSec: 81},
		{Phase: phaseArgon2, Setup: setupAfter, Concurrency: 2, Ops: 640, OpsPerSec: 80},
	}}
	r.evaluate()
	if got := r.Targets[0]; got.Value != 90 || !got.Pass || !strings.Contains(got.Detail, "mean of 100.0 and 80.0") || !got.Noisy {
		t.Errorf("login share %+v, want 90%% of the mean bound 90, noisy (the bounds differ by 25%%)", got)
	}
	r.Phases[3].OpsPerSec = 95
	r.evaluate()
	if got := r.Targets[0]; got.Noisy {
		t.Errorf("bounds 100 and 95 flagged noisy: %+v", got)
	}
	r.Phases[3].Errors, r.Phases[3].ErrorRate = 700, 0.9
	r.evaluate()
	if got := r.Targets[0]; got.Value != 81 || got.Pass || got.Noisy {
		t.Errorf("with the second bound failed: %+v, want 81%% of 100, fail, not noisy", got)
	}
}

func TestTableOrderPutsClusterNextToSingle(t *testing.T) {
	r := &report{Phases: []PhaseResult{
		{Phase: phaseArgon2, Setup: setupInProcess, Concurrency: 2},
		{Phase: phaseXCrypto, Setup: setupInProcess, Concurrency: 2},
		{Phase: phaseLogin, Setup: setupSingle, Concurrency: 16},
		{Phase: phaseArgon2, Setup: setupAfter, Concurrency: 2},
		{Phase: phaseRefresh, Setup: setupSingle, Concurrency: 16},
		{Phase: phaseMe, Setup: setupSingle, Concurrency: 16},
		{Phase: phaseLogin, Setup: setupLeader, Concurrency: 16},
		{Phase: phaseRefresh, Setup: setupLeader, Concurrency: 16},
		{Phase: phaseLogin, Setup: setupFollower, Concurrency: 16},
		{Phase: phaseRefresh, Setup: setupFollower, Concurrency: 16},
	}}
	var got []string
	for _, p := range r.tableOrder() {
		got = append(got, p.Phase+"/"+setupLabel(p.Setup))
	}
	want := "argon2id-bound/in process argon2id-bound/after node argon2-xcrypto/in process login/1 node login/3n leader login/3n follower refresh/1 node refresh/3n leader refresh/3n follower me/1 node"
	if strings.Join(got, " ") != want {
		t.Errorf("table order\n got %s\nwant %s", strings.Join(got, " "), want)
	}
}

func TestClusterStatusFormedAndCaughtUp(t *testing.T) {
	const joining = `{"leader":"node1","nodes":[
		{"id":"node1","suffrage":"voter","leader":true,"reachable":true,"lag":0},
		{"id":"node2","suffrage":"voter","reachable":true,"lag":0},
		{"id":"node3","suffrage":"nonvoter","reachable":true,"lag":12}]}`
	const formed = `{"leader":"node1","nodes":[
		{"id":"node1","suffrage":"voter","leader":true,"reachable":true,"lag":0},
		{"id":"node2","suffrage":"voter","reachable":true,"lag":0},
		{"id":"node3","suffrage":"voter","reachable":true,"lag":3}]}`
	const caughtUp = `{"leader":"node2","nodes":[
		{"id":"node1","suffrage":"voter","reachable":true,"lag":0},
		{"id":"node2","suffrage":"voter","leader":true,"reachable":true,"lag":0},
		{"id":"node3","suffrage":"voter","reachable":true,"lag":0}]}`
	for _, c := range []struct {
		in               string
		formed, caughtUp bool
	}{{joining, false, false}, {formed, true, false}, {caughtUp, true, true}} {
		var st clusterStatus
		if err := json.Unmarshal([]byte(c.in), &st); err != nil {
			t.Fatal(err)
		}
		if st.formed() != c.formed || st.caughtUp() != c.caughtUp {
			t.Errorf("%s: formed %v caught up %v, want %v %v", c.in, st.formed(), st.caughtUp(), c.formed, c.caughtUp)
		}
	}
}
