package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/internal/boltcheck"

	"github.com/bulwark-auth/bulwark/internal/waitfor"
	"github.com/hashicorp/raft"
)

// raftDiskFull is a raft.db whose disk fills on demand: while full, every
// write to it (log appends, term, vote) and the space guard's probe
// writes fail with ENOSPC (with EDQUOT while quota), counted; while
// looksFull, statfs says so too (otherwise it says 1 GiB of 2 are free).
type raftDiskFull struct {
	full, looksFull, quota atomic.Bool
	refused                atomic.Int64
}

func (d *raftDiskFull) free(string) (avail, total int64, err error) {
	if d.looksFull.Load() {
		return 0, 2 << 30, nil
	}
	return 1 << 30, 2 << 30, nil
}

func (d *raftDiskFull) fault() error {
	if d.full.Load() {
		d.refused.Add(1)
		if d.quota.Load() {
			return fmt.Errorf("raft.db: write: %w", syscall.EDQUOT)
		}
		return fmt.Errorf("raft.db: write: %w", syscall.ENOSPC)
	}
	return nil
}

func openFaultyNode(t *testing.T, d *raftDiskFull) *Node {
	t.Helper()
	return openFaultyNodeAt(t, d, t.TempDir(), testLogger(t))
}

func openFaultyNodeAt(t *testing.T, d *raftDiskFull, dir string, log *slog.Logger) *Node {
	t.Helper()
	n, err := Open(Config{ID: "n1", DataDir: dir, Advertise: "127.0.0.1:18444", Logger: log, storeFault: d.fault, spaceFree: d.free})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		n.Close()
		t.Fatal(err)
	}
	return n
}

// TestRaftLogDiskFull: raft.db itself refuses writes for want of space
// (past the reserve: whatever filled the disk took that too). The write
// that met it fails with ErrDiskFull; the leader steps down (raft
// v1.8.0) and the election that follows cannot save its term: raft
// panics there unless the store waits for space (spaceStore.retryStable).
// The node must not crash, must refuse writes meanwhile, and once space
// returns elect itself and take writes again, with what it held before.
func TestRaftLogDiskFull(t *testing.T) {
	d := &raftDiskFull{}
	n := openFaultyNode(t, d)
	defer n.Close()
	createUser(t, n, "before")

	// The disk fills between two looks of the guard: the write reaches
	// raft.db, which refuses it.
	d.full.Store(true)
	_, err := n.Apply(context.Background(), userCmd(t, "refused"))
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("a write when raft.db is full: %v; want ErrDiskFull", err)
	}
	d.looksFull.Store(true)
	// The leader steps down; elections try to save a term and cannot.
	waitfor.True(t, "an election meeting the full disk", 10*time.Second, 10*time.Millisecond, func() bool {
		return n.raft.State() != raft.Leader && d.refused.Load() >= 4
	})
	time.Sleep(time.Second) // more election timeouts pass
	if st := n.raft.State(); st == raft.Leader || st == raft.Shutdown {
		t.Fatalf("raft state %v with raft.db full", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, err = n.Apply(ctx, userCmd(t, "refused2"))
	cancel()
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("a write with the disk full and Raft waiting: %v; want ErrDiskFull", err)
	}

	// Space returns: the node elects itself and takes writes.
	d.full.Store(false)
	d.looksFull.Store(false)
	waitfor.Nil(t, "a write once space returned", 15*time.Second, 50*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := n.Apply(ctx, userCmd(t, "after"))
		return err
	})
	got := users(t, n)
	if !got["before"] || !got["after"] || got["refused"] {
		t.Errorf("users after the disk was full: %v; want before and after, not refused", got)
	}
}

// TestCloseOnRaftDiskFull: a node whose Raft waits to save its term on a
// full disk still closes, promptly, saying why.
func TestCloseOnRaftDiskFull(t *testing.T) {
	d := &raftDiskFull{}
	n := openFaultyNode(t, d)
	d.full.Store(true)
	n.Apply(context.Background(), userCmd(t, "refused"))
	d.looksFull.Store(true)
	waitfor.True(t, "an election meeting the full disk", 10*time.Second, 10*time.Millisecond, func() bool {
		return n.raft.State() != raft.Leader && d.refused.Load() >= 4
	})
	closed := make(chan error, 1)
	go func() { closed <- n.Close() }()
	select {
	case err := <-closed:
		if !errors.Is(err, ErrDiskFull) {
			t.Errorf("Close on a full disk: %v; want ErrDiskFull", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs while Raft waits for space")
	}
}

// TestRaftLogQuota: a quota (EDQUOT) fills while statfs shows the
// filesystem half empty, so the guard has no free-space figure to go by.
// Writes must be refused as on a full disk (ErrDiskFull, which api answers
// 503 disk_full) and promptly, those in flight when it filled and those
// after, across the guard's looks and Raft's elections; the log names the
// data directory; once writes fit again (a probe write succeeds) the node
// takes writes with no restart, holding what it held, and both bbolt files
// pass bbolt's check.
func TestRaftLogQuota(t *testing.T) {
	d := &raftDiskFull{}
	d.quota.Store(true)
	dir := t.TempDir()
	logs := &logLines{t: t}
	n := openFaultyNodeAt(t, d, dir, slog.New(slog.NewTextHandler(logs, nil)))
	closed := false
	defer func() {
		if !closed {
			n.Close()
		}
	}()
	createUser(t, n, "before")

	// write applies cmd and fails the test unless it is refused with
	// ErrDiskFull within a second (a write that hangs is left behind).
	write := func(name string) {
		t.Helper()
		got := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := n.Apply(ctx, userCmd(t, name))
			got <- err
		}()
		select {
		case err := <-got:
			if !errors.Is(err, ErrDiskFull) || !errors.Is(err, syscall.ENOSPC) {
				t.Errorf("write %s over quota: %v; want ErrDiskFull", name, err)
			}
		case <-time.After(time.Second):
			t.Fatalf("write %s over quota: no answer within 1 s", name)
		}
	}

	d.full.Store(true)
	var wg sync.WaitGroup
	for i := range 8 { // in flight together when the quota is met
		wg.Add(1)
		go func() { defer wg.Done(); write(fmt.Sprint("refused", i)) }()
	}
	wg.Wait()
	// Through several of the guard's looks (statfs shows free space
	// throughout) and Raft's election timeouts.
	for i := range 12 {
		time.Sleep(150 * time.Millisecond)
		write(fmt.Sprint("later", i))
	}
	if !logs.has("disk full", "data_dir="+dir) {
		t.Errorf("no log line saying the disk is full and naming the data directory %s", dir)
	}

	d.full.Store(false)
	waitfor.Nil(t, "a write once the quota allows it", 15*time.Second, 50*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := n.Apply(ctx, userCmd(t, "after"))
		return err
	})
	got := users(t, n)
	for name := range got {
		if strings.HasPrefix(name, "refused") || strings.HasPrefix(name, "later") {
			t.Errorf("user %s was created although its write was refused", name)
		}
	}
	if !got["before"] || !got["after"] {
		t.Errorf("users after the quota was met: %v; want before and after", got)
	}
	closed = true
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	checkBolt(t, filepath.Join(dir, "state.db"))
	checkBolt(t, filepath.Join(dir, "raft", "raft.db"))
}

// logLines routes a node's log to t.Log and keeps the lines.
type logLines struct {
	t     *testing.T
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	l.mu.Lock()
	l.lines = append(l.lines, string(p))
	l.mu.Unlock()
	return len(p), nil
}

// has reports whether one line holds every part.
func (l *logLines) has(parts ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
next:
	for _, line := range l.lines {
		for _, p := range parts {
			if !strings.Contains(line, p) {
				continue next
			}
		}
		return true
	}
	return false
}

// checkBolt runs bbolt's consistency check on a stopped node's file.
func checkBolt(t *testing.T, path string) {
	t.Helper()
	if err := boltcheck.Check(path); err != nil {
		t.Error(err)
	}
}

// TestGuardWaitsForStores: statfs shows space and a probe write fits, but
// Raft's term or a state.db commit still waits for space (what filled was
// theirs to write): writes stay refused until both went through, since a
// write accepted meanwhile would queue behind them unanswered.
func TestGuardWaitsForStores(t *testing.T) {
	free := func(string) (int64, int64, error) { return 1 << 30, 2 << 30, nil }
	dir := t.TempDir()
	g := newSpaceGuard(dir, testLogger(t), free, nil)
	if err := g.check(); err != nil {
		t.Fatalf("a fresh guard: %v", err)
	}
	quota := fmt.Errorf("state.db: commit: %w", syscall.EDQUOT)
	for _, raft := range []bool{false, true} {
		if raft {
			g.noSpace(quota)
			g.waiting(true, true)
		} else {
			g.stateNoSpace(quota)
		}
		g.lookNow()
		if err := g.check(); !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), dir) {
			t.Fatalf("raft %v waits: check %v; want ErrDiskFull naming %s", raft, err, dir)
		}
		if raft {
			g.waiting(true, false)
		} else {
			g.stateNoSpace(nil)
		}
		g.lookNow()
		if err := g.check(); err != nil {
			t.Fatalf("raft %v went through: check %v; want writes accepted", raft, err)
		}
	}
}
