package clock

import (
	"sync"
	"testing"
	"time"
)

var start = time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)

// received returns what c holds now, if anything.
func received(c <-chan time.Time) (time.Time, bool) {
	select {
	case v := <-c:
		return v, true
	default:
		return time.Time{}, false
	}
}

func TestFakeTimer(t *testing.T) {
	f := NewFake(start)
	tm := f.NewTimer(time.Minute)
	if f.Waiting() != 1 {
		t.Fatalf("%d waiting, want the timer", f.Waiting())
	}
	f.Advance(59 * time.Second)
	if v, ok := received(tm.C()); ok {
		t.Fatalf("fired at %v, a second early", v)
	}
	f.Advance(2 * time.Second)
	if v, ok := received(tm.C()); !ok || !v.Equal(start.Add(time.Minute)) {
		t.Fatalf("after its time: %v %v, want the time it was due", v, ok)
	}
	if !f.Now().Equal(start.Add(61*time.Second)) || f.Waiting() != 0 {
		t.Fatalf("now %v with %d waiting", f.Now(), f.Waiting())
	}
	if tm.Stop() {
		t.Fatal("Stop of a fired timer reports it armed")
	}

	// Reset arms it again from now, Stop disarms it.
	if tm.Reset(time.Second) {
		t.Fatal("Reset of a fired timer reports it armed")
	}
	if !tm.Stop() {
		t.Fatal("Stop of an armed timer reports it was not")
	}
	f.Advance(time.Hour)
	if v, ok := received(tm.C()); ok {
		t.Fatalf("a stopped timer fired at %v", v)
	}

	// A value sent but not received is dropped by Reset (Go 1.23 timers).
	tm.Reset(time.Second)
	f.Advance(time.Second)
	tm.Reset(time.Second)
	if v, ok := received(tm.C()); ok {
		t.Fatalf("received %v sent before the Reset", v)
	}

	// A timer of no duration has fired already.
	if v, ok := received(f.NewTimer(0).C()); !ok || !v.Equal(f.Now()) {
		t.Fatalf("a zero timer: %v %v", v, ok)
	}
}

func TestFakeTicker(t *testing.T) {
	f := NewFake(start)
	tk := f.NewTicker(10 * time.Second)
	f.Advance(10 * time.Second)
	if v, ok := received(tk.C()); !ok || !v.Equal(start.Add(10*time.Second)) {
		t.Fatalf("first tick %v %v", v, ok)
	}
	// Three ticks due while nothing reads: the first is kept, the others
	// dropped, as by a time.Ticker; the ticker keeps its phase.
	f.Advance(35 * time.Second)
	if v, ok := received(tk.C()); !ok || !v.Equal(start.Add(20*time.Second)) {
		t.Fatalf("tick after a long advance %v %v", v, ok)
	}
	if _, ok := received(tk.C()); ok {
		t.Fatal("more than one tick buffered")
	}
	f.Advance(5 * time.Second)
	if v, ok := received(tk.C()); !ok || !v.Equal(start.Add(50*time.Second)) {
		t.Fatalf("next tick %v %v", v, ok)
	}
	tk.Reset(time.Minute)
	f.Advance(59 * time.Second)
	if _, ok := received(tk.C()); ok {
		t.Fatal("ticked before its new period")
	}
	f.Advance(time.Second)
	if _, ok := received(tk.C()); !ok {
		t.Fatal("no tick after its new period")
	}
	tk.Stop()
	f.Advance(time.Hour)
	if _, ok := received(tk.C()); ok || f.Waiting() != 0 {
		t.Fatalf("a stopped ticker ticked, or is still waiting (%d)", f.Waiting())
	}
}

// TestFakeFiresInOrder: timers due within one Advance fire in the order of
// their times, each seeing the clock at its own time.
func TestFakeFiresInOrder(t *testing.T) {
	f := NewFake(start)
	late, early := f.NewTimer(2*time.Second), f.NewTimer(time.Second)
	tk := f.NewTicker(time.Second)
	f.Advance(3 * time.Second)
	for _, c := range []struct {
		name string
		tm   Timer
		want time.Duration
	}{{"early", early, time.Second}, {"late", late, 2 * time.Second}} {
		if v, ok := received(c.tm.C()); !ok || !v.Equal(start.Add(c.want)) {
			t.Errorf("%s timer: %v %v", c.name, v, ok)
		}
	}
	if v, ok := received(tk.C()); !ok || !v.Equal(start.Add(time.Second)) {
		t.Errorf("ticker: %v %v", v, ok)
	}
}

// TestFakeConcurrent: goroutines waiting on the clock while another
// advances it each wake once their time has come (run with -race).
func TestFakeConcurrent(t *testing.T) {
	f := NewFake(start)
	const n = 8
	var wg sync.WaitGroup
	woke := make(chan time.Duration, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := time.Duration(i+1) * time.Minute
			tm := f.NewTimer(d)
			<-tm.C()
			woke <- f.Now().Sub(start)
			if f.Now().Sub(start) < d {
				t.Errorf("woke at %v, before %v", f.Now().Sub(start), d)
			}
		}()
	}
	for limit := time.Now().Add(10 * time.Second); f.Waiting() < n; time.Sleep(time.Millisecond) {
		if time.Now().After(limit) {
			t.Fatalf("%d of %d goroutines waiting after 10 s", f.Waiting(), n)
		}
	}
	for range n {
		f.Advance(time.Minute)
	}
	wg.Wait()
	close(woke)
	if len(woke) != n {
		t.Fatalf("%d of %d woke", len(woke), n)
	}
}

func TestReal(t *testing.T) {
	var c Clock = Real{}
	if d := time.Since(c.Now()); d < 0 || d > time.Minute {
		t.Fatalf("Real is %v off the system clock", d)
	}
	tm := c.NewTimer(time.Millisecond)
	select {
	case <-tm.C():
	case <-time.After(10 * time.Second):
		t.Fatal("a real timer did not fire")
	}
	tk := c.NewTicker(time.Millisecond)
	defer tk.Stop()
	select {
	case <-tk.C():
	case <-time.After(10 * time.Second):
		t.Fatal("a real ticker did not tick")
	}
}
