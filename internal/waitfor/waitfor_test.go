package waitfor

import (
	"fmt"
	"testing"
	"time"
)

// recorder is a testing.TB that records a failure instead of ending the
// test, so that the failures of True and Nil can be checked.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
}

func TestTrueReturnsOnceTheConditionHolds(t *testing.T) {
	start := time.Now()
	asked := 0
	took := True(t, "the third answer", 10*time.Second, time.Millisecond, func() bool { asked++; return asked == 3 })
	if asked != 3 || took <= 0 || took > time.Since(start) {
		t.Fatalf("asked %d times, took %v of %v", asked, took, time.Since(start))
	}
}

func TestTrueFailsPastTheLimitSayingWhat(t *testing.T) {
	r := &recorder{TB: t}
	asked := 0
	start := time.Now()
	took := True(r, "a leader", 30*time.Millisecond, 5*time.Millisecond, func() bool { asked++; return false })
	if r.failed != "a leader: not within 30ms" {
		t.Fatalf("failure %q", r.failed)
	}
	if took <= 30*time.Millisecond || took > time.Since(start) || asked < 2 {
		t.Fatalf("gave up after %v and %d answers", took, asked)
	}
}

func TestNilFailsWithTheLastError(t *testing.T) {
	r := &recorder{TB: t}
	n := 0
	Nil(r, "3 voters", 20*time.Millisecond, time.Millisecond, func() error { n++; return fmt.Errorf("answer %d", n) })
	if want := fmt.Sprintf("3 voters: not within 20ms: answer %d", n); r.failed != want {
		t.Fatalf("failure %q, want %q", r.failed, want)
	}
	r.failed = ""
	if Nil(r, "nothing", time.Second, time.Millisecond, func() error { return nil }); r.failed != "" {
		t.Fatalf("a condition that held failed: %q", r.failed)
	}
}

func TestPollAsksAtLeastOnce(t *testing.T) {
	for _, limit := range []time.Duration{0, -time.Second} {
		asked := 0
		if _, ok := Poll(limit, time.Hour, func() bool { asked++; return asked == 1 }); !ok || asked != 1 {
			t.Fatalf("limit %v: held %v after %d answers", limit, ok, asked)
		}
		asked = 0
		if _, ok := Poll(limit, time.Hour, func() bool { asked++; return false }); ok || asked != 1 {
			t.Fatalf("limit %v: held %v after %d answers", limit, ok, asked)
		}
	}
}
