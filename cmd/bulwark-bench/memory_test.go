package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

// TestRSSWatch watches this process: touching 64 MiB raises its peak,
// and after the memory is given back a reset starts the next phase
// lower, while the overall peak keeps the high one.
func TestRSSWatch(t *testing.T) {
	w := newRSSWatch(os.Getpid())
	w.reset()
	before := w.peak()
	if before <= 0 {
		t.Fatalf("peak %v MiB", before)
	}
	big := make([]byte, 64<<20)
	for i := range big {
		big[i] = 1
	}
	high := w.peak()
	if high < before+60 {
		t.Errorf("peak %.0f MiB after touching 64 MiB, was %.0f", high, before)
	}
	runtime.KeepAlive(big)
	big = nil
	debug.FreeOSMemory()
	now := vmRSS(t) // the high-water mark after a reset
	if high-now < 16 {
		t.Skipf("only %.0f of %.0f MiB went back to the system (race detector?)", high-now, high)
	}
	w.reset()
	if w.resetErr != nil {
		t.Skipf("this kernel cannot reset VmHWM: %v", w.resetErr)
	}
	if low := w.peak(); low > now+8 {
		t.Errorf("peak %.0f MiB after a reset, want about the %.0f MiB resident then (before: %.0f)", low, now, high)
	}
	if o := w.overallMiB(); o < high {
		t.Errorf("overall peak %.0f MiB, want at least %.0f", o, high)
	}
}

// vmRSS is this process's resident memory now, in MiB.
func vmRSS(t *testing.T) float64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			if err != nil {
				t.Fatal(err)
			}
			return kib / 1024
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}
