package main

import (
	"runtime"
	"testing"
)

// TestBlackBoxMemoryLimit: server.memory_limit becomes the Go runtime's
// memory limit, and the password hashes at once are as many as fit
// beside the 64 MiB reserve (one 20 MiB hash in 100 MiB); GOMEMLIMIT in
// the environment sets it when the file says "auto".
func TestBlackBoxMemoryLimit(t *testing.T) {
	const mib = 1 << 20
	n := newTestNode(t, "[auth.password]\nargon2_memory_kib = 20480\nargon2_iterations = 1\n[server]\nmemory_limit = \"100MiB\"\n")
	n.start()
	m := n.scrape(n.metrics).values
	if got := m["go_gc_gomemlimit_bytes"]; got != 100*mib {
		t.Errorf("go_gc_gomemlimit_bytes %v, want %d (100 MiB)", got, 100*mib)
	}
	if got := m["bulwark_password_hash_slots"]; got != 1 {
		t.Errorf("bulwark_password_hash_slots %v, want 1 (one 20 MiB hash beside 64 MiB in 100 MiB)", got)
	}
	if got := m["go_gc_gogc_percent"]; got != gcPercent {
		t.Errorf("go_gc_gogc_percent %v, want %d", got, gcPercent)
	}
	n.stop()

	t.Setenv("GOMEMLIMIT", "300MiB")
	t.Setenv("GOGC", "150")
	e := newNamedTestNode(t, "bb2")
	e.start()
	m = e.scrape(e.metrics).values
	if got := m["go_gc_gomemlimit_bytes"]; got != 300*mib {
		t.Errorf("with GOMEMLIMIT=300MiB: go_gc_gomemlimit_bytes %v, want %d", got, 300*mib)
	}
	if got, want := m["bulwark_password_hash_slots"], float64(runtime.NumCPU()); got != want {
		t.Errorf("with GOMEMLIMIT=300MiB: bulwark_password_hash_slots %v, want one per CPU (%v)", got, want)
	}
	if got := m["go_gc_gogc_percent"]; got != 150 {
		t.Errorf("with GOGC=150: go_gc_gogc_percent %v, want 150", got)
	}
}
