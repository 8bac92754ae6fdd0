package node

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/internal/waitfor"
)

// TestLeaderCloseAnswersEachWriteTruly: while the leader closes (a
// graceful stop, handing its leadership over), writes run on every node,
// the leader included, several at a time. Every answer must be true: a
// write answered with an error is not in the log, and one answered with
// success is. A write in flight at the stopping leader that committed
// must not fail as "leadership lost": a refresh so answered 503 has
// rotated its token all the same, and the client's retry of the old one
// is then refused as reuse, its session revoked.
func TestLeaderCloseAnswersEachWriteTruly(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{timeout: time.Second})
	leader := c.leader()
	survivors := c.followers(leader)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	type outcome struct {
		name string
		err  error
	}
	const writersPerNode = 8
	stop := make(chan struct{})
	closing := make(chan struct{})
	var mu sync.Mutex
	var outcomes []outcome
	var wg sync.WaitGroup
	for ni, n := range c.nodes {
		for w := range writersPerNode {
			wg.Go(func() {
				for k := 0; k < 5000; k++ {
					select {
					case <-stop:
						return
					default:
					}
					name := fmt.Sprintf("n%d-w%d-%d", ni, w, k)
					_, err := n.Apply(ctx, userCmd(t, name))
					mu.Lock()
					outcomes = append(outcomes, outcome{name, err})
					mu.Unlock()
					if n == leader && err != nil {
						select {
						case <-closing: // the stopped node refuses from now on
							return
						default:
						}
					}
				}
			})
		}
	}
	// Writes flow through every node, then the leader closes with some of
	// its own in flight.
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				close(stop)
				wg.Wait()
				t.Fatalf("no %s within 10 s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitUntil("writes on every node", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(outcomes) > 60
	})
	changes := survivors[0].LeaderChanges()
	close(closing)
	for i, n := range c.nodes {
		if n == leader {
			c.stop(i)
		}
	}
	before := len(users(t, survivors[0]))
	waitUntil("writes after the handover", func() bool { return len(users(t, survivors[0])) > before+50 })
	close(stop)
	wg.Wait()

	// One more write through each survivor: once it is applied there, so
	// is every entry committed before it.
	for _, n := range survivors {
		writeThrough(t, ctx, n)
	}
	if got := survivors[0].LeaderChanges(); got > changes+1 {
		// Leadership moved by itself too (a starved heartbeat on a loaded
		// machine): a write in flight then may rightly fail as "may or may
		// not have taken effect", which is not what this tests.
		t.Skipf("leadership changed %d times around the stop, not once", got-changes)
	}
	var ok, failed int
	for _, n := range survivors {
		have := users(t, n)
		for _, o := range outcomes {
			switch {
			case o.err == nil && !have[o.name]:
				t.Errorf("%s acknowledged but missing on %s", o.name, n.cfg.ID)
			case o.err != nil && have[o.name]:
				t.Errorf("%s answered %v, yet it took effect (on %s)", o.name, o.err, n.cfg.ID)
			}
		}
	}
	errs := map[string]int{}
	for _, o := range outcomes {
		if o.err == nil {
			ok++
		} else {
			failed++
			errs[o.err.Error()]++
		}
	}
	t.Logf("%d writes acknowledged, %d refused (none in the log): %v", ok, failed, errs)
}

// TestLeaderCloseWaitsForWriteInFlight: a write forwarded to the leader
// and appended there, but not yet committed (the followers' raft.db is
// slow), when the leader starts a graceful stop is answered with success
// once it commits, not failed as "may or may not have taken effect" while
// it commits all the same on the survivors. Before the handover waited
// for writes in flight, the transfer gave up after an election timeout
// (the target could not catch up), Raft shut down under the write, and the
// follower's client was told 503 about a write that took effect: for a
// refresh, a rotated token whose retry is refused as reuse.
func TestLeaderCloseWaitsForWriteInFlight(t *testing.T) {
	var mu sync.Mutex
	held := map[string]bool{}
	release := make(chan struct{})
	c := newCluster(t, 3, clusterOpts{adjust: func(i int, cfg *Config) {
		id := cfg.ID
		cfg.storeFault = func() error {
			mu.Lock()
			h := held[id]
			mu.Unlock()
			if h {
				<-release
			}
			return nil
		}
	}})
	leader := c.leader()
	survivors := c.followers(leader)
	createUser(t, survivors[0], "before")
	waitUsers(t, survivors[1], 1)

	// The followers' raft.db now holds every append: the write is
	// appended on the leader and goes no further.
	mu.Lock()
	for _, n := range survivors {
		held[n.cfg.ID] = true
	}
	mu.Unlock()
	releaseOnce := sync.OnceFunc(func() {
		mu.Lock()
		clear(held)
		mu.Unlock()
		close(release)
	})
	defer releaseOnce()
	last := leader.raft.LastIndex()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	answered := make(chan error, 1)
	go func() {
		_, err := survivors[0].Apply(ctx, userCmd(t, "in-flight"))
		answered <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for leader.raft.LastIndex() == last {
		if time.Now().After(deadline) {
			t.Fatal("the forwarded write never reached the leader's log")
		}
		time.Sleep(time.Millisecond)
	}

	// The leader stops with the write in flight. The followers stay slow
	// for longer than a leadership transfer may take (an election
	// timeout), then catch up.
	var closed sync.WaitGroup
	for i, n := range c.nodes {
		if n == leader {
			c.nodes[i] = nil
			closed.Go(func() { leader.Close() })
		}
	}
	time.Sleep(3 * leader.cfg.ElectionTimeout) // Raft's own timer: no fake clock reaches it
	releaseOnce()
	closed.Wait()

	err := <-answered
	t.Logf("the write in flight at the leader's stop: %v", err)
	// Every entry committed before it is applied on a survivor once a
	// later write through it is.
	for _, n := range survivors {
		writeThrough(t, ctx, n)
	}
	for _, n := range survivors {
		took := users(t, n)["in-flight"]
		switch {
		case err != nil && took:
			t.Fatalf("the write in flight at the leader's stop was answered %v, yet it took effect (on %s)", err, n.cfg.ID)
		case err == nil && !took:
			t.Fatalf("the write in flight was acknowledged but is missing on %s", n.cfg.ID)
		case err != nil:
			t.Fatalf("the write in flight at the leader's stop failed: %v", err)
		}
	}
}

// writeThrough writes once through n, retrying up to 20 s with a fresh
// name each attempt, each of at most 2 s (on a build whose stopped node
// left its forwarding connections open the first may wait out an answer).
func writeThrough(t *testing.T, ctx context.Context, n *Node) {
	t.Helper()
	k := 0
	waitfor.Nil(t, "a write through "+n.cfg.ID+" after the stop", 20*time.Second, 10*time.Millisecond, func() error {
		k++
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := n.Apply(actx, userCmd(t, fmt.Sprintf("after-%s-%d", n.cfg.ID, k)))
		return err
	})
}

// BenchmarkLeaderCloseStall: the in-process graceful stop. Three nodes at
// the product's Raft timing (300 ms), a write loop on each of the two
// nodes that will survive, then the leader's Close. resume-ms/stop is how
// long after the Close began the first write sent after it succeeded, on
// the worse survivor (issue 18: writes resume ≤ 50 ms); stall-ms/stop the
// worse survivor's longest time between two successful writes from the
// Close on, wherever it lies (what bulwark-bench --stop-trials reports;
// on a loaded machine it often lies well after the handover). Medians
// over the iterations, each one stop of a fresh cluster; -v logs each.
func BenchmarkLeaderCloseStall(b *testing.B) {
	var resumes, stalls []time.Duration
	for b.Loop() {
		resume, stall := leaderCloseStall(b)
		resumes, stalls = append(resumes, resume), append(stalls, stall)
	}
	median := func(ds []time.Duration) float64 {
		slices.Sort(ds)
		return float64(ds[len(ds)/2].Microseconds()) / 1000
	}
	b.ReportMetric(median(resumes), "resume-ms/stop")
	b.ReportMetric(median(stalls), "stall-ms/stop")
	b.ReportMetric(0, "ns/op")
}

func leaderCloseStall(b *testing.B) (resume, stall time.Duration) {
	b.StopTimer()
	defer b.StartTimer()
	c := newCluster(b, 3, clusterOpts{timeout: 300 * time.Millisecond})
	leader := c.leader()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var closedAt time.Time
	var span string
	k := 0
	for _, n := range c.nodes {
		if n == leader {
			continue
		}
		wg.Go(func() {
			var last time.Time
			resumed := false
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				k++
				name := fmt.Sprintf("%s-%d", n.cfg.ID, k)
				mu.Unlock()
				sent := time.Now()
				if _, err := n.Apply(ctx, userCmd(b, name)); err != nil {
					continue // part of the stall
				}
				now := time.Now()
				mu.Lock()
				if !closedAt.IsZero() {
					if !resumed && sent.After(closedAt) {
						resumed = true
						resume = max(resume, now.Sub(closedAt))
					}
					if !last.IsZero() && now.Sub(last) > stall {
						stall = now.Sub(last)
						span = fmt.Sprintf("%s %v..%v", n.cfg.ID, last.Sub(closedAt).Round(time.Millisecond), now.Sub(closedAt).Round(time.Millisecond))
					}
				}
				mu.Unlock()
				last = now
			}
		})
	}
	time.Sleep(300 * time.Millisecond) // writes flowing before the stop
	var closeTook time.Duration
	for i, n := range c.nodes {
		if n == leader {
			mu.Lock()
			closedAt = time.Now()
			mu.Unlock()
			c.stop(i)
			closeTook = time.Since(closedAt)
		}
	}
	time.Sleep(time.Second) // writes after the stop
	close(stop)
	wg.Wait()
	b.Logf("Close took %v; writes resumed after %v; longest stall %v (%s after the Close began)",
		closeTook.Round(time.Millisecond), resume.Round(time.Millisecond), stall.Round(time.Millisecond), span)
	return resume, stall
}
