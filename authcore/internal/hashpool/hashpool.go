// Package hashpool runs password hashes on a fixed set of dedicated OS
// threads, each pinned, where the system allows it, to a CPU of its own.
//
// An argon2id check is 20 to 40 ms of one core's time and 19 MiB of
// memory traffic. Run on the caller's goroutine, a check moves with it:
// the Go scheduler preempts a goroutine every 10 ms and resumes it on any
// thread, and Linux places that thread on any core, sometimes beside the
// other hash while a core idles until its load balancer notices. On the
// project's 2-core machine, during a login flood, a core was idle 2.7% of
// the time while both hash slots were taken, and each hash cost more CPU
// than the same hash in a quiet process. A worker here keeps one thread
// for its whole life, pinned to one CPU, so two workers never queue on one
// core while another idles. Pinning reserves nothing: the rest of the
// process (Raft, TLS, HTTP) and other processes still run on those cores,
// unpinned, and a pinned worker cannot move off a CPU that other pinned
// work keeps busy (hence the switch to turn it off).
//
// Only authcore uses it. Callers wait for a free worker, but authcore's
// hash slots, one per worker, are what bound and time out the waits.
package hashpool

import (
	"cmp"
	"errors"
	"fmt"
	"runtime"
	"sync"
)

// ErrClosed is Run's answer once the pool is closed.
var ErrClosed = errors.New("hashpool: closed")

var errNotAsked = errors.New("pinning is turned off")

// Pool is a set of worker threads. Run hands a function to a free worker
// and waits for it; with more concurrent callers than workers, callers
// wait for a worker.
type Pool struct {
	jobs   chan job
	closed chan struct{}
	// cpus[i] is the CPU worker i is pinned to, -1 when it is not.
	cpus []int
	// pinErr says why some or all workers are not pinned (nil: all are).
	pinErr    error
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// job is one function to run and where to report its end.
type job struct {
	fn   func()
	done chan any // receives the panic value, or nil
}

// New starts n workers (at least one). With pin, worker i is pinned to
// the i-th CPU the process may run on, provided there are at least n of
// them; otherwise, or where the system refuses, workers run unpinned and
// Pinning says why.
func New(n int, pin bool) *Pool {
	n = max(n, 1)
	p := &Pool{jobs: make(chan job), closed: make(chan struct{}), cpus: make([]int, n)}
	pinTo := make([]int, n)
	for i := range pinTo {
		pinTo[i] = -1
	}
	if !pin {
		p.pinErr = errNotAsked
	} else if allowed, err := allowedCPUs(); err != nil {
		p.pinErr = err
	} else if len(allowed) < n {
		p.pinErr = fmt.Errorf("%d workers but only %d CPUs to pin them to", n, len(allowed))
	} else {
		copy(pinTo, allowed)
	}
	type report struct {
		worker int
		err    error
	}
	started := make(chan report, n)
	for i := range n {
		p.wg.Add(1)
		go p.work(pinTo[i], func(err error) { started <- report{i, err} })
	}
	for range n {
		r := <-started
		p.cpus[r.worker] = pinTo[r.worker]
		if r.err != nil {
			p.cpus[r.worker] = -1
			p.pinErr = cmp.Or(p.pinErr, r.err)
		}
	}
	return p
}

// work is one worker: it locks its goroutine to a thread, pins the thread
// to cpu (unless -1), reports, then runs jobs until the pool closes. It
// exits still locked, so Go ends the thread rather than reuse a pinned
// one for other goroutines.
func (p *Pool) work(cpu int, started func(error)) {
	defer p.wg.Done()
	runtime.LockOSThread()
	var err error
	if cpu >= 0 {
		if err = pinThread(cpu); err != nil {
			err = fmt.Errorf("pinning a thread to CPU %d: %w", cpu, err)
		}
	}
	started(err)
	for {
		select {
		case j := <-p.jobs:
			p.run(j, cpu)
		case <-p.closed:
			return
		}
	}
}

// goexit is what a job that called runtime.Goexit reports to its caller.
type goexit struct{}

// run runs j on the worker and reports its end to the caller whatever
// happens: a return, a panic (recovered, passed on), or runtime.Goexit,
// which ends this worker's goroutine (and its thread) too; a new worker
// on the same CPU then takes its place.
func (p *Pool) run(j job, cpu int) {
	returned := false
	defer func() {
		if returned {
			return
		}
		v := recover()
		if v == nil {
			v = goexit{}
			p.wg.Add(1)
			go p.work(cpu, func(error) {})
		}
		j.done <- v
	}()
	j.fn()
	returned = true
	j.done <- nil
}

// Run runs fn on a worker and returns when it has returned, or
// ErrClosed, without running fn, once the pool is closed. A panic in fn
// is raised again in the caller, and runtime.Goexit in fn ends the
// caller's goroutine, as if fn had run there.
func (p *Pool) Run(fn func()) error {
	done := make(chan any, 1)
	select {
	case p.jobs <- job{fn: fn, done: done}:
	case <-p.closed:
		return ErrClosed
	}
	switch v := <-done; v.(type) {
	case nil:
		return nil
	case goexit:
		runtime.Goexit()
		return nil
	default:
		panic(v)
	}
}

// Workers is the number of worker threads.
func (p *Pool) Workers() int { return len(p.cpus) }

// Pinning returns the CPU each worker is pinned to (-1: none) and, unless
// every worker is pinned, why not.
func (p *Pool) Pinning() ([]int, error) {
	return append([]int(nil), p.cpus...), p.pinErr
}

// Close stops the workers once their current jobs end, and waits for
// them; their threads exit. Run refuses work from then on.
func (p *Pool) Close() {
	p.closeOnce.Do(func() { close(p.closed) })
	p.wg.Wait()
}
