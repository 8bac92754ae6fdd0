package node

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// A full disk must not crash the node or corrupt it, and must not need a
// restart once space returns. Raft and bbolt alone do neither: a leader
// whose log append fails steps down, and the election that follows
// panics if the new term cannot be written (raft v1.8.0 setCurrentTerm);
// a state.db commit that fails panics in fsm by design. So the node keeps
// a reserve:
//
//   - reserveFile, of reserveSize bytes allocated at start, which the
//     node deletes the moment the disk fills, giving Raft's term and vote,
//     the appends already under way and state.db room to finish;
//   - writes (Apply) refused with ErrDiskFull, before they reach the log,
//     while the space left is below reserveSize or the reserve file is
//     gone;
//   - once twice the reserve is free again, the file is allocated anew
//     and writes are accepted: no restart.
//
// The raft.db stores and state.db try a write that failed for want of
// space again after the reserve was released (spaceStore, fsm.SetNoSpace).
const reserveFile = "space.reserve"

// spaceLook is how often the guard looks at the disk when nothing asks.
const spaceLook = 250 * time.Millisecond

type spaceGuard struct {
	dir, file string
	log       *slog.Logger
	reserve   int64 // 0: the guard is off (space is not measured here)

	mu     sync.Mutex
	full   bool
	looked time.Time
	err    error // ErrDiskFull with the data directory named, while full
}

// newSpaceGuard sizes the reserve (1/16 of the filesystem, between 1 and
// 16 MiB) and allocates the reserve file if it is missing.
func newSpaceGuard(dir string, log *slog.Logger) *spaceGuard {
	g := &spaceGuard{dir: dir, file: filepath.Join(dir, reserveFile), log: log}
	_, total, err := fsSpace(dir)
	if err != nil {
		log.Info("disk space is not watched here; a full disk is met by raft and bbolt alone", "data_dir", dir, "error", err)
		return g
	}
	g.reserve = min(max(total/16, 1<<20), 16<<20)
	if st, err := os.Stat(g.file); err != nil || st.Size() != g.reserve {
		g.full = true // until the file is in place
	}
	g.lookNow()
	return g
}

// check returns ErrDiskFull (naming the data directory) while writes are
// refused. It measures the disk at most every 50 ms.
func (g *spaceGuard) check() error {
	if g == nil || g.reserve == 0 {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if time.Since(g.looked) >= 50*time.Millisecond {
		g.look()
	}
	return g.err
}

// noSpace is called when a write failed for want of space: the reserve is
// released at once.
func (g *spaceGuard) noSpace(err error) {
	if g == nil || g.reserve == 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.full {
		g.log.Error("disk full: a write to the data directory failed", "data_dir", g.dir, "error", err)
	}
	g.setFull(0)
}

func (g *spaceGuard) lookNow() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.look()
}

// watch looks at the disk every spaceLook until done is closed.
func (g *spaceGuard) watch(done <-chan struct{}) {
	if g == nil || g.reserve == 0 {
		return
	}
	t := time.NewTicker(spaceLook)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			g.lookNow()
		}
	}
}

// look measures the disk and moves between full and not; g.mu is held.
func (g *spaceGuard) look() {
	g.looked = time.Now()
	avail, _, err := fsSpace(g.dir)
	if err != nil {
		return
	}
	if !g.full {
		if avail < g.reserve {
			g.log.Error("disk full: writes are refused until space returns", "data_dir", g.dir,
				"free_bytes", avail, "reserve_bytes", g.reserve)
			g.setFull(avail)
		}
		return
	}
	if avail < 2*g.reserve {
		g.setFull(avail) // at start, without a reserve file
		return
	}
	if err := g.allocate(); err != nil {
		g.log.Warn("disk space: the reserve file could not be allocated; writes stay refused", "data_dir", g.dir, "error", err)
		return
	}
	g.full, g.err = false, nil
	g.log.Info("disk space returned: writes are accepted again", "data_dir", g.dir, "free_bytes", avail-g.reserve)
}

// setFull refuses writes and releases the reserve; g.mu is held.
func (g *spaceGuard) setFull(avail int64) {
	g.full = true
	if g.err == nil {
		g.err = fmt.Errorf("%w: data directory %s (%d bytes free, %d reserved)", ErrDiskFull, g.dir, avail, g.reserve)
	}
	if err := os.Remove(g.file); err != nil && !errors.Is(err, os.ErrNotExist) {
		g.log.Warn("disk full: the reserve file could not be removed", "file", g.file, "error", err)
	}
}

func (g *spaceGuard) allocate() error {
	f, err := os.OpenFile(g.file, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = allocate(f, g.reserve)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(g.file)
	}
	return err
}

// isNoSpace reports whether err says the disk (or the quota) is full.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// spaceStore is raft's log and stable store: a write refused for want of
// space releases the reserve and is tried once more, so a leader does not
// step down, nor an election panic, because the disk filled under it.
type spaceStore struct {
	*raftboltdb.BoltStore
	g *spaceGuard
}

func (s spaceStore) retry(fn func() error) error {
	err := fn()
	if err != nil && isNoSpace(err) && s.g != nil && s.g.reserve != 0 {
		s.g.noSpace(err)
		err = fn()
	}
	return err
}

func (s spaceStore) StoreLog(l *raft.Log) error {
	return s.retry(func() error { return s.BoltStore.StoreLog(l) })
}

func (s spaceStore) StoreLogs(logs []*raft.Log) error {
	return s.retry(func() error { return s.BoltStore.StoreLogs(logs) })
}

func (s spaceStore) Set(k, v []byte) error {
	return s.retry(func() error { return s.BoltStore.Set(k, v) })
}

func (s spaceStore) SetUint64(k []byte, v uint64) error {
	return s.retry(func() error { return s.BoltStore.SetUint64(k, v) })
}
