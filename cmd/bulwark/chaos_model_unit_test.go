package main

import (
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// TestChaosModel: the checker itself, on hand-made histories: each
// anomaly it exists for is found, and what the design allows (a check on
// another node within the window, a write of unknown outcome either way)
// is not reported.
func TestChaosModel(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	rec := func(from, to int, in chaosInput, out chaosOutput) chaosRecord {
		in.User = "alice"
		if in.Node == "" {
			in.Node = "node1"
		}
		return chaosRecord{In: in, Out: out, Called: at(from), Return: at(to)}
	}
	login := rec(0, 10, chaosInput{Kind: opLogin, Gen: 0}, chaosOutput{Outcome: outOK, Sid: "s1", Refresh: "r1"})
	logout := rec(20, 30, chaosInput{Kind: opLogout, Sid: "s1"}, chaosOutput{Outcome: outOK})
	me := func(from int, node string, ok bool) chaosRecord {
		o := outDenied
		if ok {
			o = outOK
		}
		return rec(from, from+5, chaosInput{Kind: opMe, Sid: "s1", Node: node}, chaosOutput{Outcome: o})
	}
	const window = 2500 * time.Millisecond
	cases := []struct {
		name   string
		recs   []chaosRecord
		legal  bool // porcupine's verdict
		strict bool // strictRevocations finds nothing
	}{
		{"login, check, logout, refused", []chaosRecord{login, me(12, "node2", true), logout, me(40, "node1", false)}, true, true},
		{"revoked session accepted after the window", []chaosRecord{login, logout, me(3000, "node2", true)}, false, true},
		{"revoked session accepted on another node within the window", []chaosRecord{login, logout, me(500, "node2", true)}, true, true},
		{"revoked session accepted by the node that acknowledged it", []chaosRecord{login, logout, me(40, "node1", true)}, true, false},
		{"logout of unknown outcome, then refused or accepted", []chaosRecord{login,
			rec(20, 30, chaosInput{Kind: opLogout, Sid: "s1"}, chaosOutput{Outcome: outUnknown}),
			me(4000, "node1", true), me(5000, "node1", false)}, true, true},
		{"old password accepted after a change", []chaosRecord{login,
			rec(20, 30, chaosInput{Kind: opChpw, Sid: "s1", Gen: 0}, chaosOutput{Outcome: outOK, Sid: "s1", Refresh: "r2"}),
			rec(40, 50, chaosInput{Kind: opLogin, Gen: 0}, chaosOutput{Outcome: outOK, Sid: "s2", Refresh: "r3"})}, false, true},
		{"new password refused after a change", []chaosRecord{login,
			rec(20, 30, chaosInput{Kind: opChpw, Sid: "s1", Gen: 0}, chaosOutput{Outcome: outOK, Sid: "s1", Refresh: "r2"}),
			rec(40, 50, chaosInput{Kind: opLogin, Gen: 1}, chaosOutput{Outcome: outDenied})}, false, true},
		{"dead refresh token accepted", []chaosRecord{login,
			rec(20, 30, chaosInput{Kind: opRefresh, Sid: "s1", Refresh: "r1"}, chaosOutput{Outcome: outOK, Sid: "s1", Refresh: "r2"}),
			rec(40, 50, chaosInput{Kind: opRefresh, Sid: "s1", Refresh: "r1"}, chaosOutput{Outcome: outOK, Sid: "s1", Refresh: "r3"})}, false, true},
		{"acknowledged session lost", []chaosRecord{login, rec(3000, 3010, chaosInput{Kind: opRefresh, Sid: "s1", Refresh: "r1"}, chaosOutput{Outcome: outDenied})}, false, true},
		{"disabled user signs in", []chaosRecord{
			rec(0, 10, chaosInput{Kind: opDisable, Node: "node3"}, chaosOutput{Outcome: outOK}),
			rec(20, 30, chaosInput{Kind: opLogin, Gen: 0}, chaosOutput{Outcome: outOK, Sid: "s9", Refresh: "r9"})}, false, true},
		{"password change keeps its own session", []chaosRecord{login,
			rec(20, 30, chaosInput{Kind: opChpw, Sid: "s1", Gen: 0}, chaosOutput{Outcome: outOK, Sid: "s1", Refresh: "r2"}),
			me(40, "node1", true)}, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ops := chaosOps(tc.recs, t0, window)
			got := porcupine.CheckOperationsTimeout(chaosModel.ToModel(), ops, 10*time.Second)
			if (got == porcupine.Ok) != tc.legal {
				t.Errorf("porcupine: %s, want legal=%v", got, tc.legal)
			}
			bad := strictRevocations(tc.recs)
			if (len(bad) == 0) != tc.strict {
				t.Errorf("strictRevocations: %s, want clean=%v", strings.Join(bad, "; "), tc.strict)
			}
		})
	}
}
