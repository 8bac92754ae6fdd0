package hashpool

import (
	"errors"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestWorkersKeepTheirThreads(t *testing.T) {
	p := New(1, false)
	defer p.Close()
	var tids []int
	for range 20 {
		p.Run(func() { tids = append(tids, threadID()) })
		runtime.Gosched()
	}
	if slices.Min(tids) != slices.Max(tids) || tids[0] == threadID() {
		t.Errorf("one worker ran on threads %v (the caller is on %d), want one thread of its own", slices.Compact(tids), threadID())
	}
}

func TestPinnedWorkersRunOnTheirCPU(t *testing.T) {
	allowed, err := allowedCPUs()
	if err != nil {
		t.Fatal(err)
	}
	n := len(allowed)
	p := New(n, true)
	defer p.Close()
	cpus, err := p.Pinning()
	if errors.Is(err, unix.EPERM) {
		t.Skipf("this sandbox refuses sched_setaffinity: %v", err)
	}
	if err != nil {
		t.Fatalf("%d workers on %d CPUs not pinned: %v", n, len(allowed), err)
	}
	if !slices.Equal(slices.Sorted(slices.Values(cpus)), allowed) {
		t.Fatalf("workers pinned to %v, want one on each of %v", cpus, allowed)
	}
	// Every worker, whichever takes a job, may run on its CPU alone.
	seen := map[int]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 4 * n {
		wg.Go(func() {
			p.Run(func() {
				mask, err := allowedCPUs() // no t.Fatal on a worker
				if err != nil {
					t.Error(err)
					return
				}
				time.Sleep(2 * time.Millisecond) // let the others take the other workers
				mu.Lock()
				defer mu.Unlock()
				if len(mask) != 1 {
					t.Errorf("a pinned worker may run on CPUs %v, want one", mask)
					return
				}
				seen[mask[0]] = true
			})
		})
	}
	wg.Wait()
	for cpu := range seen {
		if !slices.Contains(allowed, cpu) {
			t.Errorf("a worker ran pinned to CPU %d, outside %v", cpu, allowed)
		}
	}
	// The caller's own thread is not pinned.
	if mask := threadCPUs(t); len(mask) != len(allowed) {
		t.Errorf("the caller's thread may run on %v, want all of %v", mask, allowed)
	}
}

func threadID() int { return unix.Gettid() }

// threadCPUs lists the CPUs the calling thread may run on.
func threadCPUs(t *testing.T) []int {
	t.Helper()
	cpus, err := allowedCPUs()
	if err != nil {
		t.Fatal(err)
	}
	return cpus
}
