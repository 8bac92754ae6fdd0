// Package waitfor is the tests' one way to wait for what another
// goroutine or process brings about: a leader elected, a write
// replicated, a node ready. It replaces the poll-until-deadline loop each
// test used to write by hand, with the limit and what was awaited named in
// the failure.
//
// Each call says how often to ask: a condition that runs a process or an
// HTTP request is asked less often than one that reads memory.
package waitfor

import (
	"testing"
	"time"
)

// Poll asks cond every `every` until it holds, or until it does not and
// limit has passed since the call, and returns how long it waited and
// whether cond held. It asks at least once, even with a limit of zero or
// less.
func Poll(limit, every time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start), true
		}
		if took := time.Since(start); took > limit {
			return took, false
		}
		time.Sleep(every)
	}
}

// True waits, asking cond every `every`, until it holds, and returns how
// long that took. If cond does not hold within limit, the test fails,
// saying what it waited for and for how long.
func True(t testing.TB, what string, limit, every time.Duration, cond func() bool) time.Duration {
	t.Helper()
	took, ok := Poll(limit, every, cond)
	if !ok {
		t.Fatalf("%s: not within %v", what, limit)
	}
	return took
}

// Nil is True for a condition that says why it does not hold yet: it
// holds once it returns nil, and a failure adds the last error it
// returned.
func Nil(t testing.TB, what string, limit, every time.Duration, cond func() error) time.Duration {
	t.Helper()
	var last error
	took, ok := Poll(limit, every, func() bool { last = cond(); return last == nil })
	if !ok {
		t.Fatalf("%s: not within %v: %v", what, limit, last)
	}
	return took
}
