package main

import (
	"os"
	"runtime"
	"runtime/debug"
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
	w.reset()
	if w.resetErr != nil {
		t.Skipf("this kernel cannot reset VmHWM: %v", w.resetErr)
	}
	if low := w.peak(); low > high-48 {
		t.Errorf("peak %.0f MiB after a reset, want well below %.0f", low, high)
	}
	if o := w.overallMiB(); o < high {
		t.Errorf("overall peak %.0f MiB, want at least %.0f", o, high)
	}
}
