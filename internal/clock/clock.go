// Package clock is the time bulwark's decisions read: the stamp a
// proposer puts on a command (and so lockout windows and expiries), a join
// token's expiry, when a signing key rotates and when a certificate is
// renewed, when the leader looks again at the cluster's feature level.
// Real is the system clock; Fake is one a test moves by hand, so that a
// 15-minute window, a month before a certificate expires or the leader's
// next look costs the test no time and no sleep, whatever the machine's
// speed.
//
// What measures the machine rather than policy stays on the real clock
// and does not come through here: deadlines on connections, Raft's own
// timers, retry back-offs, and waits for a busy resource.
//
// It imports only the standard library, so every layer may use it
// (layering_test.go).
package clock

import (
	"context"
	"sync"
	"time"
)

// Clock tells the time and makes timers that fire by it.
type Clock interface {
	Now() time.Time
	// NewTimer is time.NewTimer on this clock.
	NewTimer(d time.Duration) Timer
	// NewTicker is time.NewTicker on this clock; d must be positive.
	NewTicker(d time.Duration) Ticker
}

// Timer is a *time.Timer on a Clock. As with a time.Timer since Go 1.23,
// no value sent before Stop or Reset is received after it.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
	Reset(d time.Duration) bool
}

// Ticker is a *time.Ticker on a Clock.
type Ticker interface {
	C() <-chan time.Time
	Stop()
	Reset(d time.Duration)
}

// Real is the system clock.
type Real struct{}

func (Real) Now() time.Time                   { return time.Now() }
func (Real) NewTimer(d time.Duration) Timer   { return realTimer{time.NewTimer(d)} }
func (Real) NewTicker(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time        { return r.t.C }
func (r realTimer) Stop() bool                 { return r.t.Stop() }
func (r realTimer) Reset(d time.Duration) bool { return r.t.Reset(d) }

type realTicker struct{ t *time.Ticker }

func (r realTicker) C() <-chan time.Time   { return r.t.C }
func (r realTicker) Stop()                 { r.t.Stop() }
func (r realTicker) Reset(d time.Duration) { r.t.Reset(d) }

// Every calls fn every d by c until ctx ends: the schedule of a background
// job, on whichever clock the caller was given.
func Every(ctx context.Context, c Clock, d time.Duration, fn func()) {
	t := c.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			fn()
		}
	}
}

// Fake is a Clock that moves only when Advance moves it. Its timers and
// tickers fire inside Advance, in the order of their times (then of their
// making), each sent the time it was due, the clock reading that time as
// it is sent; a ticker whose tick is still unread drops the next, as a
// time.Ticker does. A goroutine that received a tick runs after Advance
// sent it, so a test waits for what that goroutine does (waitfor), and
// for a goroutine to be waiting on the clock before it advances past
// that wait (Waiting). It is safe for concurrent use.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	waiters map[*waiter]struct{} // armed timers and tickers
	made    uint64               // orders waiters due at the same time
}

// NewFake returns a Fake that reads start until advanced.
func NewFake(start time.Time) *Fake {
	return &Fake{now: start, waiters: map[*waiter]struct{}{}}
}

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Waiting reports how many timers and tickers are armed: a goroutine
// about to wait d on this clock has made its timer once Waiting counts
// it, so a test can then advance past d.
func (f *Fake) Waiting() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waiters)
}

// Advance moves the clock d forward, firing each timer and tick due by
// then in turn. d must not be negative: time on a Fake, as on the
// monotonic clock timers run by, never goes back.
func (f *Fake) Advance(d time.Duration) {
	if d < 0 {
		panic("clock: Fake.Advance with a negative duration")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	until := f.now.Add(d)
	for {
		var next *waiter
		for w := range f.waiters {
			if !w.when.After(until) && (next == nil || w.when.Before(next.when) || w.when.Equal(next.when) && w.made < next.made) {
				next = w
			}
		}
		if next == nil {
			break
		}
		if next.when.After(f.now) {
			f.now = next.when
		}
		select {
		case next.c <- next.when:
		default: // a ticker's unread tick: this one is dropped
		}
		if next.period > 0 {
			next.when = next.when.Add(next.period)
		} else {
			delete(f.waiters, next)
		}
	}
	f.now = until
}

// NewTimer returns a timer that fires once the clock reaches Now()+d; one
// of d <= 0 has fired already.
func (f *Fake) NewTimer(d time.Duration) Timer {
	w := &waiter{f: f, c: make(chan time.Time, 1)}
	w.Reset(d)
	return w
}

// NewTicker returns a ticker that fires every d from Now(), as the clock
// is advanced.
func (f *Fake) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("clock: non-positive interval for NewTicker")
	}
	w := &waiter{f: f, c: make(chan time.Time, 1)}
	w.resetTicker(d)
	return tickerOf{w}
}

// waiter is a Fake's timer, or (period > 0) ticker.
type waiter struct {
	f      *Fake
	c      chan time.Time
	when   time.Time
	period time.Duration
	made   uint64
}

func (w *waiter) C() <-chan time.Time { return w.c }

// Stop disarms w and drops a value sent but not received; it reports
// whether w was armed.
func (w *waiter) Stop() bool {
	w.f.mu.Lock()
	defer w.f.mu.Unlock()
	return w.disarm()
}

// Reset arms w to fire at Now()+d, dropping what it sent before; it
// reports whether w was armed.
func (w *waiter) Reset(d time.Duration) bool {
	w.f.mu.Lock()
	defer w.f.mu.Unlock()
	armed := w.disarm()
	w.when = w.f.now.Add(d)
	if d <= 0 {
		w.c <- w.when // the channel was just drained: room for one
		return armed
	}
	w.arm()
	return armed
}

func (w *waiter) resetTicker(d time.Duration) {
	w.f.mu.Lock()
	defer w.f.mu.Unlock()
	w.disarm()
	w.period = d
	w.when = w.f.now.Add(d)
	w.arm()
}

// arm and disarm run with w.f.mu held.
func (w *waiter) arm() {
	w.f.made++
	w.made = w.f.made
	w.f.waiters[w] = struct{}{}
}

func (w *waiter) disarm() bool {
	_, armed := w.f.waiters[w]
	delete(w.f.waiters, w)
	select {
	case <-w.c:
	default:
	}
	return armed
}

// tickerOf gives a ticker waiter the Ticker methods.
type tickerOf struct{ w *waiter }

func (t tickerOf) C() <-chan time.Time { return t.w.c }
func (t tickerOf) Stop()               { t.w.Stop() }
func (t tickerOf) Reset(d time.Duration) {
	if d <= 0 {
		panic("clock: non-positive interval for Ticker.Reset")
	}
	t.w.resetTicker(d)
}
