package hashpool

import (
	"errors"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunBoundsConcurrencyToWorkers(t *testing.T) {
	p := New(2, false)
	defer p.Close()
	var running, most atomic.Int32
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			err := p.Run(func() {
				n := running.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				time.Sleep(5 * time.Millisecond)
				running.Add(-1)
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := most.Load(); got != 2 {
		t.Errorf("%d functions ran at once on 2 workers, want 2", got)
	}
}

func TestPinningRefusedOrNotAsked(t *testing.T) {
	p := New(3, false)
	defer p.Close()
	if cpus, err := p.Pinning(); !errors.Is(err, errNotAsked) || !slices.Equal(cpus, []int{-1, -1, -1}) {
		t.Errorf("unasked: %v, %v", cpus, err)
	}
	if runtime.GOOS != "linux" {
		return
	}
	allowed, _ := allowedCPUs()
	q := New(len(allowed)+1, true)
	defer q.Close()
	cpus, err := q.Pinning()
	if err == nil || !strings.Contains(err.Error(), "CPUs to pin them to") || slices.Max(cpus) != -1 {
		t.Errorf("more workers than CPUs: %v, %v; want none pinned and why", cpus, err)
	}
	if q.Workers() != len(allowed)+1 {
		t.Errorf("%d workers, want %d", q.Workers(), len(allowed)+1)
	}
	if err := q.Run(func() {}); err != nil {
		t.Errorf("unpinned pool: %v", err)
	}
}

func TestPanicReachesTheCaller(t *testing.T) {
	p := New(1, false)
	defer p.Close()
	func() {
		defer func() {
			if v := recover(); v != "boom" {
				t.Errorf("recovered %v, want boom", v)
			}
		}()
		p.Run(func() { panic("boom") })
		t.Error("Run returned after a panic")
	}()
	ran := false
	if err := p.Run(func() { ran = true }); err != nil || !ran {
		t.Errorf("after a panic: ran %v, %v", ran, err)
	}
}

// TestGoexitEndsTheCaller: a job that calls runtime.Goexit (t.FailNow in
// a test) ends its caller as if it had run there, and the pool keeps its
// workers.
func TestGoexitEndsTheCaller(t *testing.T) {
	p := New(1, false)
	defer p.Close()
	returned := make(chan bool, 1)
	go func() {
		defer func() { returned <- false }()
		p.Run(runtime.Goexit)
		returned <- true
	}()
	select {
	case r := <-returned:
		if r {
			t.Fatal("Run returned after its job called runtime.Goexit")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the caller of a job that called runtime.Goexit hangs")
	}
	ran := make(chan struct{})
	go p.Run(func() { close(ran) })
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("no worker left after a job called runtime.Goexit")
	}
}

func TestCloseStopsWorkersAndRefusesWork(t *testing.T) {
	before := runtime.NumGoroutine()
	p := New(3, false)
	release := make(chan struct{})
	done := make(chan error)
	go func() { done <- p.Run(func() { <-release }) }()
	time.Sleep(10 * time.Millisecond)
	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while a job was running")
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	if err := <-done; err != nil {
		t.Errorf("the running job: %v", err)
	}
	<-closed
	if err := p.Run(func() { t.Error("ran after Close") }); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close: %v, want ErrClosed", err)
	}
	for deadline := time.Now().Add(2 * time.Second); runtime.NumGoroutine() > before && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after Close, %d before New", n, before)
	}
}
