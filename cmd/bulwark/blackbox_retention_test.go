package main

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/internal/waitfor"
)

// TestBlackBoxUnknownNameAuditCap: with [retention] unknown_name_entries
// = 3, 25 failed logins for made-up names from one client add 3
// login.failure entries to the trail, not 25 (the measure: 25 grew
// `audit export` by 23 KB), while the metrics count all 25; once the
// window is over, the next failure closes it with a summary counting the
// other 22.
func TestBlackBoxUnknownNameAuditCap(t *testing.T) {
	const window = 3 * time.Second
	n := newTestNode(t, "[auth.rate_limit]\nexempt = [\"127.0.0.0/8\"]\n",
		fmt.Sprintf("[retention]\nunknown_name_entries = 3\nunknown_name_window = %q\n", window.String()))
	n.start()
	n.waitReady()
	// login.failure v4 is proposed once the cluster is at level 5, which
	// a new node reaches at once; its audit keys (level 4) say it is up.
	waitfor.True(t, "audit keys recorded", 30*time.Second, 100*time.Millisecond, func() bool {
		for _, e := range auditExport(t, n) {
			if e["type"] == "audit.key" {
				return true
			}
		}
		return false
	})
	tally := func() (failures, summaries, summed int) {
		for _, e := range auditExport(t, n) {
			d, _ := e["details"].(map[string]any)
			switch e["type"] {
			case "login.failure":
				if d["reason"] == "unknown_user" {
					failures++
				}
			case "login.failure.summary":
				summaries++
				c, _ := strconv.Atoi(fmt.Sprint(d["failures"]))
				summed += c
			}
		}
		return
	}
	before := n.metricFamilies()
	start := time.Now()
	for i := range 25 {
		if code, _ := n.login(fmt.Sprintf("ghost-%d", i), "not anyone's password"); code != 401 {
			t.Fatalf("login %d: %d", i, code)
		}
	}
	after := n.metricFamilies()
	if time.Since(start) >= window {
		t.Skipf("the logins and a scrape took %s, past the %s window: the machine is too slow for this test's timing", time.Since(start), window)
	}
	if d := sample(after, "bulwark_failed_auth_attempts_total", "reason", "unknown_user") -
		sample(before, "bulwark_failed_auth_attempts_total", "reason", "unknown_user"); d != 25 {
		t.Errorf("bulwark_failed_auth_attempts_total{reason=unknown_user} moved by %v, want 25", d)
	}
	if f, s, _ := tally(); f != 3 || s != 0 {
		t.Fatalf("after 25 failures: %d login.failure entries, %d summaries; want 3 and 0", f, s)
	}
	// The window (from the first failure, before the last one's answer)
	// over, the next failure writes the summary first.
	time.Sleep(window + 100*time.Millisecond)
	if code, _ := n.login("ghost-late", "not anyone's password"); code != 401 {
		t.Fatalf("late login: %d", code)
	}
	if f, s, summed := tally(); f != 4 || s != 1 || summed != 22 {
		t.Fatalf("after the window: %d login.failure entries, %d summaries counting %d; want 4, 1, 22", f, s, summed)
	}
	if _, errOut, code := n.cli("", "audit", "verify"); code != 0 {
		t.Fatalf("audit verify: %s", errOut)
	}
}
