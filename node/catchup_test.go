package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/waitfor"
)

// Catch-up by snapshot: a follower that was down while the cluster moved
// past what any log still holds is brought back by InstallSnapshot, on its
// own data directory, after a clean stop or a crash.
//
// The knobs shrink "a day at 100 writes/s" to a few hundred writes: Raft
// snapshots once 32 entries are past the last snapshot (checked every
// 50–100 ms) and keeps 16 entries behind it, so the log is compacted within
// a few batches. They are the same on every node and across restarts.
const (
	catchUpSnapshotThreshold = 32
	catchUpTrailingLogs      = 16
	catchUpSnapshotInterval  = 50 * time.Millisecond
	catchUpBatch             = 16
	// catchUpPatience bounds every wait that follows a stop or restart. A
	// Raft RPC the leader sent as its peer was closing can hang until the
	// transport's 10 s I/O timeout, holding up replication to that peer.
	catchUpPatience = 15 * time.Second
)

// startCatchUpCluster is three voters with the catch-up knobs.
func startCatchUpCluster(t *testing.T) *cluster {
	t.Helper()
	return newCluster(t, 3, clusterOpts{adjust: func(_ int, c *Config) {
		c.SnapshotThreshold, c.TrailingLogs = catchUpSnapshotThreshold, catchUpTrailingLogs
		c.SnapshotInterval = catchUpSnapshotInterval
	}})
}

// catchUpWrite creates the users through n (forwarded when n does not
// lead), eight at a time, and fails the test on any error.
func catchUpWrite(t *testing.T, n *Node, names []string) {
	t.Helper()
	cmds := make([]fsm.Command, len(names))
	for i, name := range names {
		cmds[i] = userCmd(t, name)
	}
	errs := make(chan error, len(names))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), catchUpPatience)
			defer cancel()
			if _, err := n.Apply(ctx, cmds[i]); err != nil {
				errs <- fmt.Errorf("create %s through %s: %w", names[i], n.cfg.ID, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func catchUpNames(prefix string, from, count int) []string {
	names := make([]string, count)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d", prefix, from+i)
	}
	return names
}

// closedLogRange reads the first and last index of the raft log of a
// stopped node, read-only.
func closedLogRange(t *testing.T, dataDir string) (first, last uint64) {
	t.Helper()
	s, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dataDir, "raft", "raft.db"),
		BoltOptions: &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if first, err = s.FirstIndex(); err != nil {
		t.Fatal(err)
	}
	if last, err = s.LastIndex(); err != nil {
		t.Fatal(err)
	}
	return first, last
}

func firstLogIndex(t *testing.T, n *Node) uint64 {
	t.Helper()
	i, err := n.logs.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// waitConverged waits until every node holds exactly the leader's users
// and the same state.db applied index, and returns the leader's users.
func waitConverged(t *testing.T, nodes []*Node, limit time.Duration) map[string]bool {
	t.Helper()
	var want map[string]bool
	waitfor.Nil(t, "the nodes converge", limit, 10*time.Millisecond, func() error {
		leader := waitLeader(t, nodes)
		lead, applied := users(t, leader), leader.Status().AppliedIndex
		for _, n := range nodes {
			if n == leader {
				continue
			}
			got, a := users(t, n), n.Status().AppliedIndex
			if a != applied || !sameUsers(got, lead) {
				return fmt.Errorf("%s has %d users at applied index %d; leader %s has %d at %d",
					n.cfg.ID, len(got), a, leader.cfg.ID, len(lead), applied)
			}
		}
		want = lead
		return nil
	})
	return want
}

func sameUsers(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// TestFollowerCatchUpBySnapshotAfterCleanStop: a follower closed cleanly
// while the others commit enough for every remaining log to be compacted
// past its next index comes back on its own data directory by
// InstallSnapshot, serves the leader's state and keeps replicating.
func TestFollowerCatchUpBySnapshotAfterCleanStop(t *testing.T) {
	testCatchUpBySnapshot(t, false)
}

// TestFollowerCatchUpBySnapshotAfterCrash: the same for a follower that
// died without closing state.db (no clean marker): its state.db is
// distrusted and rebuilt from its own snapshot and log, and the leader's
// snapshot brings it the rest.
func TestFollowerCatchUpBySnapshotAfterCrash(t *testing.T) {
	testCatchUpBySnapshot(t, true)
}

func testCatchUpBySnapshot(t *testing.T, crash bool) {
	c := startCatchUpCluster(t)
	leader := c.leader()
	fi := -1
	for i, n := range c.nodes {
		if n != leader {
			fi = i
			break
		}
	}
	f, fcfg := c.nodes[fi], c.cfgs[fi]

	// History every node has.
	catchUpWrite(t, leader, catchUpNames("before", 0, 40))
	waitConverged(t, c.running(), 10*time.Second)
	if crash {
		// The follower's own snapshot, so the crashed node has one to
		// rebuild state.db from (it may have taken one already).
		if err := f.Snapshot(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
			t.Fatal(err)
		}
		if metas, err := f.snaps.List(); err != nil || len(metas) == 0 {
			t.Fatalf("the follower has no snapshot of its own: %v %v", metas, err)
		}
	}
	appliedAtStop := f.Status().AppliedIndex

	// (1) The follower goes down.
	stopped := time.Now()
	c.stop(fi)
	statePath := filepath.Join(fcfg.DataDir, "state.db")
	if crash {
		corrupt(t, statePath, "unclean")
		// The crash is real to the node: state.db will not be trusted.
		if s, err := fsm.Open(statePath); !errors.Is(err, fsm.ErrUnclean) {
			if s != nil {
				s.Close()
			}
			t.Fatalf("state.db without its clean marker opened with %v, want ErrUnclean", err)
		}
	}
	_, followerLast := closedLogRange(t, fcfg.DataDir)
	if followerLast < appliedAtStop {
		t.Fatalf("the follower's log ends at %d, before its applied index %d", followerLast, appliedAtStop)
	}

	// The others move on. The first batch's entries all lie in
	// (followerLast, goneThrough]; the cluster writes on until every
	// running node's log starts past goneThrough, so those entries exist
	// in no log any more, only in snapshots.
	rest := c.running()
	writer := rest[0]
	catchUpWrite(t, writer, catchUpNames("while-down", 0, catchUpBatch))
	written := catchUpBatch
	goneThrough := waitLeader(t, rest).Status().LastIndex
	gone := catchUpNames("while-down", 0, catchUpBatch)
	compacted := func() bool {
		for _, n := range rest {
			if firstLogIndex(t, n) <= goneThrough {
				return false
			}
		}
		return true
	}
	// Each round writes a batch and waits for the snapshot timer, so the
	// rounds follow each other at once.
	round := 0
	waitfor.Nil(t, fmt.Sprintf("logs compacted past %d", goneThrough), 15*time.Second, 0, func() error {
		if compacted() {
			return nil
		}
		if round++; round > 40 {
			t.Fatalf("logs not compacted past %d after %d writes (first indexes %d, %d)",
				goneThrough, written, firstLogIndex(t, rest[0]), firstLogIndex(t, rest[1]))
		}
		catchUpWrite(t, writer, catchUpNames("while-down", written, catchUpBatch))
		written += catchUpBatch
		// Give the snapshot timer (50–100 ms) a chance before writing more.
		waitfor.Poll(150*time.Millisecond, 10*time.Millisecond, compacted)
		return fmt.Errorf("%d writes, first indexes %d, %d", written, firstLogIndex(t, rest[0]), firstLogIndex(t, rest[1]))
	})
	if goneThrough <= followerLast {
		t.Fatalf("compaction point %d is not past the follower's last index %d", goneThrough, followerLast)
	}
	leader = waitLeader(t, rest)
	leaderFirst := firstLogIndex(t, leader)
	if leaderFirst <= followerLast+1 {
		t.Fatalf("the leader's log starts at %d and still holds the follower's next index %d", leaderFirst, followerLast+1)
	}
	leaderUsers := users(t, leader)
	for _, name := range gone {
		if !leaderUsers[name] {
			t.Fatalf("the leader lacks %s", name)
		}
	}
	down := time.Since(stopped)

	// (2) The follower comes back on the same data directory and port.
	reopened := time.Now()
	f = c.start(fi)
	if f.startIndex != followerLast {
		t.Fatalf("the reopened follower starts at log index %d, want %d", f.startIndex, followerLast)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := f.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	ready := time.Since(reopened)
	// Ready means caught up: the restarted follower asked the leader how
	// far to catch up, so when it says Ready it holds every write made
	// while it was down, although its own log ended where its snapshot
	// did and heartbeats carry no commit index.
	atReady := f.Status().AppliedIndex
	usersAtReady := len(users(t, f))
	if atReady <= goneThrough {
		t.Fatalf("ready with state at %d, before the writes made while it was down (through %d)", atReady, goneThrough)
	}
	if err := f.Fresh(time.Minute); err != nil {
		t.Fatalf("ready but not fresh: %v", err)
	}
	want := waitConverged(t, c.running(), catchUpPatience)
	caughtUp := time.Since(reopened)

	// It holds entries no log holds any more: they came in a snapshot.
	got := users(t, f)
	for _, name := range gone {
		if !got[name] {
			t.Fatalf("the follower lacks %s, whose entry was compacted away", name)
		}
	}
	st := f.Status()
	if st.AppliedIndex <= goneThrough || st.AppliedIndex <= followerLast {
		t.Fatalf("the follower's state is at %d: not past its own log's end %d and the compaction point %d",
			st.AppliedIndex, followerLast, goneThrough)
	}
	// Its own log never received the entry after followerLast: the state
	// past it arrived in a snapshot, which its store now holds.
	var l raft.Log
	if err := f.logs.GetLog(followerLast+1, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("the follower's log holds entry %d (err %v): it was replicated, not installed", followerLast+1, err)
	}
	metas, err := f.snaps.List()
	if err != nil {
		t.Fatal(err)
	}
	var installed *raft.SnapshotMeta
	for _, m := range metas {
		if m.Index >= goneThrough && m.Index > followerLast {
			installed = m
			break
		}
	}
	if installed == nil {
		var idx []uint64
		for _, m := range metas {
			idx = append(idx, m.Index)
		}
		t.Fatalf("the follower's snapshot store holds snapshots at %v, none at or past the compaction point %d", idx, goneThrough)
	}

	// (3) Writes after the restart reach it: through the leader, and
	// through the follower itself (forwarded, applied here before Apply
	// returns).
	after := catchUpNames("after", 0, 5)
	catchUpWrite(t, c.leader(), after)
	catchUpWrite(t, f, []string{"after-via-follower"})
	if !users(t, f)["after-via-follower"] {
		t.Fatal("the follower acknowledged a write it does not show")
	}
	want = waitConverged(t, c.running(), catchUpPatience)
	for _, name := range append(after, "after-via-follower") {
		if !want[name] {
			t.Fatalf("%s missing after the restart", name)
		}
	}
	if total := 40 + written + len(after) + 1; len(want) != total {
		t.Fatalf("%d users, want %d", len(want), total)
	}

	// (4) What the install left on disk (the snapshot, state.db restored
	// from it, and a log that skips from the old entries to those after
	// the snapshot) restarts cleanly.
	c.stop(fi)
	f = c.start(fi)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel2()
	if err := f.WaitReady(ctx2); err != nil {
		t.Fatal(err)
	}
	catchUpWrite(t, f, []string{"after-second-restart"})
	final := waitConverged(t, c.running(), catchUpPatience)
	if !final["after-second-restart"] || len(final) != len(want)+1 {
		t.Fatalf("after the second restart: %d users, want %d", len(final), len(want)+1)
	}

	t.Logf("crash=%v: follower %s down %v at log index %d (applied %d); %d writes while down; every log compacted past %d (leader's starts at %d); "+
		"reopened: ready in %v (state then at %d with %d users), converged in %v; installed snapshot index %d term %d, %d bytes; %d users",
		crash, fcfg.ID, down.Round(time.Millisecond), followerLast, appliedAtStop, written, goneThrough, leaderFirst,
		ready.Round(time.Millisecond), atReady, usersAtReady, caughtUp.Round(time.Millisecond),
		installed.Index, installed.Term, installed.Size, len(final))
	if _, err := os.Stat(statePath + ".restore"); !os.IsNotExist(err) {
		t.Fatalf("a restore left %s.restore behind (%v)", statePath, err)
	}
}

// TestCatchUpReadsYourWrites: right after the leader acknowledged a
// write, a follower has often not applied it yet (it learns the commit
// with the next AppendEntries); after CatchUp it has, every time.
func TestCatchUpReadsYourWrites(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{})
	leader := c.leader()
	follower := c.followers(leader)[0]
	lagged := 0
	for i := range 20 {
		name := fmt.Sprint("u", i)
		createUser(t, leader, name)
		if !users(t, follower)[name] {
			lagged++
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := follower.CatchUp(ctx)
		cancel()
		if err != nil {
			t.Fatalf("CatchUp after write %d: %v", i, err)
		}
		if !users(t, follower)[name] {
			t.Fatalf("write %d, acknowledged by the leader, is not applied on the follower after CatchUp", i)
		}
	}
	t.Logf("the follower had not applied %d of 20 writes when the leader acknowledged them", lagged)
	// The leader itself catches up at once.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := leader.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
}
