package node

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/internal/waitfor"
	"github.com/hashicorp/raft"
)

// raftDiskFull is a raft.db whose disk fills on demand: while full, every
// write to it (log appends, term, vote) fails with ENOSPC, counted; while
// looksFull, statfs says so too (otherwise it says 1 GiB of 2 are free).
type raftDiskFull struct {
	full, looksFull atomic.Bool
	refused         atomic.Int64
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
		return fmt.Errorf("raft.db: write: %w", syscall.ENOSPC)
	}
	return nil
}

func openFaultyNode(t *testing.T, d *raftDiskFull) *Node {
	t.Helper()
	n, err := Open(Config{ID: "n1", DataDir: t.TempDir(), Advertise: "127.0.0.1:18444", Logger: testLogger(t), storeFault: d.fault, spaceFree: d.free})
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
