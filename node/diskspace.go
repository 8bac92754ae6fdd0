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
	bolt "go.etcd.io/bbolt"
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
//
// A write can fail for want of space while statfs shows plenty free: a
// quota (EDQUOT), or a filesystem that statfs misjudges. The free-space
// figure then says nothing, so once a write has failed (failed) the guard
// accepts writes again only when Raft and state.db no longer wait for
// space (a write accepted meanwhile would queue behind them, unanswered,
// for as long as the disk stays full) and a small probe write, then the
// reserve's allocation, succeed.
const reserveFile = "space.reserve"

// probeFile is the guard's probe write (probe).
const probeFile = "space.probe"

// spaceLook is how often the guard looks at the disk when nothing asks.
const spaceLook = 250 * time.Millisecond

type spaceGuard struct {
	dir, file string
	log       *slog.Logger
	reserve   int64                                        // 0: the guard is off (space is not measured here)
	measure   func(string) (avail, total int64, err error) // fsSpace, or a test's
	fault     func() error                                 // tests: an error the probe writes answer instead (Config.storeFault)

	parked   chan struct{} // closed when a Raft write parks (park)
	parkOnce sync.Once

	mu     sync.Mutex
	full   bool
	failed bool // full since a write failed for want of space: statfs alone does not end it
	// raftWaits, stateWaits: Raft's term or vote (spaceStore.retryStable),
	// a state.db commit (fsm.Store.SetNoSpace) waits for space.
	raftWaits, stateWaits bool
	looked                time.Time
	probeErr              error // the last probe's failure, logged once
	err                   error // ErrDiskFull with the data directory named, while full
}

// newSpaceGuard sizes the reserve (1/16 of the filesystem, between 1 and
// 16 MiB) and allocates the reserve file if it is missing.
func newSpaceGuard(dir string, log *slog.Logger, measure func(string) (int64, int64, error), fault func() error) *spaceGuard {
	if measure == nil {
		measure = fsSpace
	}
	g := &spaceGuard{dir: dir, file: filepath.Join(dir, reserveFile), log: log, parked: make(chan struct{}), measure: measure, fault: fault}
	_, total, err := measure(dir)
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
		g.log.Error("disk full: a write to the data directory failed; writes are refused until one fits again", "data_dir", g.dir, "error", err)
	}
	g.failed = true
	g.setFull("a write failed: " + err.Error())
}

// waiting records that Raft (raft) or state.db (!raft) waits for space,
// or no longer does: while either waits, writes are refused.
func (g *spaceGuard) waiting(raft, waits bool) {
	if g == nil || g.reserve == 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if raft {
		g.raftWaits = waits
	} else {
		g.stateWaits = waits
	}
}

// stateNoSpace is fsm.Store.SetNoSpace's function: err is the commit's
// failure, each time it is tried again, or nil once it went through.
func (g *spaceGuard) stateNoSpace(err error) {
	if err != nil {
		g.noSpace(err)
	}
	g.waiting(false, err != nil)
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
	avail, _, err := g.measure(g.dir)
	if err != nil {
		return
	}
	free := fmt.Sprintf("%d bytes free, %d reserved", avail, g.reserve)
	if !g.full {
		if avail < g.reserve {
			g.log.Error("disk full: writes are refused until space returns", "data_dir", g.dir,
				"free_bytes", avail, "reserve_bytes", g.reserve)
			g.setFull(free)
		}
		return
	}
	if avail < 2*g.reserve {
		if g.err == nil { // at start, without a reserve file
			g.log.Error("disk full: writes are refused until space returns", "data_dir", g.dir,
				"free_bytes", avail, "needed_bytes", 2*g.reserve)
		}
		g.setFull(free)
		return
	}
	if g.raftWaits || g.stateWaits {
		return // their own tries are the probe
	}
	if g.failed {
		if err := g.probe(); err != nil {
			if g.probeErr == nil {
				g.log.Warn("disk space: a probe write to the data directory failed although statfs shows space free (a quota?); writes stay refused",
					"data_dir", g.dir, "free_bytes", avail, "error", err)
			}
			g.probeErr = err
			return
		}
	}
	if err := g.allocate(); err != nil {
		g.log.Warn("disk space: the reserve file could not be allocated; writes stay refused", "data_dir", g.dir, "error", err)
		return
	}
	g.full, g.failed, g.probeErr, g.err = false, false, nil, nil
	g.log.Info("disk space returned: writes are accepted again", "data_dir", g.dir, "free_bytes", avail-g.reserve)
}

// probe writes and syncs a small file in the data directory, and removes
// it: whether a write fits, where statfs cannot tell.
func (g *spaceGuard) probe() error {
	if g.fault != nil {
		if err := g.fault(); err != nil {
			return err
		}
	}
	name := filepath.Join(g.dir, probeFile)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(make([]byte, 64<<10))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if rerr := os.Remove(name); err == nil {
		err = rerr
	}
	return err
}

// setFull refuses writes and releases the reserve; g.mu is held.
func (g *spaceGuard) setFull(why string) {
	g.full = true
	if g.err == nil {
		g.err = fmt.Errorf("%w: data directory %s (%s)", ErrDiskFull, g.dir, why)
	}
	if err := os.Remove(g.file); err != nil && !errors.Is(err, os.ErrNotExist) {
		g.log.Warn("disk full: the reserve file could not be removed", "file", g.file, "error", err)
	}
}

func (g *spaceGuard) allocate() error {
	if g.fault != nil {
		if err := g.fault(); err != nil {
			return err
		}
	}
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
//
// If the disk is still full (whatever filled it took the reserve too):
//
//   - a log append fails with the disk's error: raft v1.8.0's leader
//     fails the writes it carried (503 disk_full, raftErr) and steps
//     down; a follower refuses the entries and the leader sends them
//     again later;
//   - a term or vote (Set, SetUint64) is tried again, with back-off,
//     until space returns: raft panics when it cannot save a new term
//     (setCurrentTerm), and a term must not be used before it is saved.
//     Raft's loop waits meanwhile: the node takes no part in elections
//     and answers writes with no leader, as a paused member would. At
//     shutdown the wait parks for good (raft.db keeps its last commit)
//     and Close returns without waiting for Raft.
type spaceStore struct {
	*raftboltdb.BoltStore
	db    *bolt.DB   // the BoltStore's own handle (raftpages.go)
	pages *raftPages // entries appended since raft.db's pages were last dropped
	g     *spaceGuard
	done  <-chan struct{} // the node is closing
	fault func() error    // tests: an error raft.db answers instead (Config.storeFault)
}

func (s spaceStore) try(fn func() error) error {
	if s.fault != nil {
		if err := s.fault(); err != nil {
			return err
		}
	}
	return fn()
}

func (s spaceStore) retry(fn func() error) error {
	err := s.try(fn)
	if err != nil && isNoSpace(err) && s.g != nil && s.g.reserve != 0 {
		s.g.noSpace(err)
		err = s.try(fn)
	}
	return err
}

// retryStable is retry for Raft's term and vote: it waits for space.
func (s spaceStore) retryStable(fn func() error) error {
	err := s.retry(fn)
	if err == nil || !isNoSpace(err) || s.g == nil {
		return err
	}
	s.g.log.Error("disk full: Raft cannot save its term or vote to raft.db; it waits for space, taking no part in elections meanwhile",
		"data_dir", s.g.dir, "error", err)
	s.g.waiting(true, true)
	defer s.g.waiting(true, false)
	for delay := 10 * time.Millisecond; err != nil && isNoSpace(err); delay = min(2*delay, time.Second) {
		select {
		case <-s.done:
			s.g.park()
		case <-time.After(delay):
		}
		err = s.try(fn)
	}
	if err == nil {
		s.g.log.Info("disk space: Raft saved its term again", "data_dir", s.g.dir)
	}
	return err
}

func (s spaceStore) StoreLog(l *raft.Log) error {
	err := s.retry(func() error { return s.BoltStore.StoreLog(l) })
	s.appended(1)
	return err
}

func (s spaceStore) StoreLogs(logs []*raft.Log) error {
	err := s.retry(func() error { return s.BoltStore.StoreLogs(logs) })
	s.appended(len(logs))
	return err
}

func (s spaceStore) Set(k, v []byte) error {
	return s.retryStable(func() error { return s.BoltStore.Set(k, v) })
}

func (s spaceStore) SetUint64(k []byte, v uint64) error {
	return s.retryStable(func() error { return s.BoltStore.SetUint64(k, v) })
}

// park stops a Raft write that waits for space at shutdown, for good:
// Close sees parked closed and returns without Raft.
func (g *spaceGuard) park() {
	g.parkOnce.Do(func() {
		g.log.Error("shutting down on a full disk: Raft's term or vote is not saved; raft.db keeps its last commit", "data_dir", g.dir)
		close(g.parked)
	})
	select {}
}
