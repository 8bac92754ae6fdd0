package node

// Offline access to a stopped node's data directory, for the commands
// that read its state with the daemon stopped (`bulwark keys recover`,
// `keys datakey-fingerprint`): a lock that keeps the daemon out, and a
// read of the state as the daemon's start would see it, that changes
// nothing in the data directory.

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/bulwark-auth/bulwark/fsm"
)

// LockDataDir takes shared locks on state.db and raft/raft.db, the files
// a running daemon holds exclusively (bbolt's flock), so that a running
// daemon is refused (ErrRunning) and none starts while the lock is held.
func LockDataDir(dataDir string) (unlock func(), err error) {
	var files []*os.File
	unlock = func() {
		for _, f := range files {
			f.Close() // releases the flock
		}
	}
	for _, name := range []string{"state.db", filepath.Join("raft", "raft.db")} {
		f, err := os.Open(filepath.Join(dataDir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			unlock()
			return nil, err
		}
		files = append(files, f)
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
			unlock()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("%w (%s is locked); stop it first (systemctl stop bulwark)",
					ErrRunning, filepath.Join(dataDir, name))
			}
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
	}
	return unlock, nil
}

// ViewStopped calls fn with a view of a stopped node's state, changing
// nothing in dataDir: it works on a copy of state.db, opened as the
// daemon's start opens it (openState: brought up to the newest Raft
// snapshot), then brought up to date with the log after it, as Raft would
// replay it. The log may end with entries not yet committed. The caller
// holds LockDataDir.
func ViewStopped(dataDir string, fn func(fsm.Reader) error) error {
	tmp, err := os.MkdirTemp("", "bulwark-recover-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	path := filepath.Join(tmp, "state.db")
	src := filepath.Join(dataDir, "state.db")
	copied, err := copyFile(src, path)
	if err != nil {
		return err
	}
	if copied {
		// The copy is ours to trust: whatever is stale in it, the
		// snapshot and the log below bring up to date.
		if err := os.WriteFile(path+".clean", nil, 0o600); err != nil {
			return err
		}
	}
	raftDir := filepath.Join(dataDir, "raft")
	var snaps raft.SnapshotStore
	if _, err := os.Stat(filepath.Join(raftDir, "snapshots")); err == nil {
		if snaps, err = raft.NewFileSnapshotStoreWithLogger(raftDir, 2, hclog.NewNullLogger()); err != nil {
			return fmt.Errorf("raft snapshots: %w", err)
		}
	}
	store, err := openState(path, snaps, slog.New(slog.DiscardHandler))
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	defer store.Close()
	if err := replayLog(store, raftDir); err != nil {
		return err
	}
	return store.View(fn)
}

func copyFile(src, dst string) (bool, error) {
	in, err := os.Open(src)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return false, err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err == nil, err
}

// replayLog applies to store, read-only from raftDir/raft.db, every log
// entry after the store's applied index, in batches as Raft hands them.
func replayLog(store *fsm.Store, raftDir string) error {
	logPath := filepath.Join(raftDir, "raft.db")
	if _, err := os.Stat(logPath); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	applied, _, err := store.Applied()
	if err != nil {
		return err
	}
	logs, err := raftboltdb.New(raftboltdb.Options{Path: logPath,
		BoltOptions: &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second}})
	if err != nil {
		return fmt.Errorf("raft log: %w", err)
	}
	defer logs.Close()
	first, err := logs.FirstIndex()
	if err != nil {
		return err
	}
	last, err := logs.LastIndex()
	if err != nil {
		return err
	}
	var batch []fsm.Entry
	for i := max(applied+1, first); i <= last && i > 0; i++ {
		var l raft.Log
		if err := logs.GetLog(i, &l); err != nil {
			return fmt.Errorf("raft log entry %d: %w", i, err)
		}
		batch = append(batch, fsm.Entry{Index: l.Index, Term: l.Term, Command: l.Type == raft.LogCommand, Data: l.Data})
		if len(batch) == 256 || i == last {
			store.ApplyBatch(batch)
			batch = batch[:0]
		}
	}
	return nil
}

// ReadDataKeyState reads the data key record of a stopped node's state
// (ViewStopped). The recovered key is checked against its fingerprint
// whatever record it came from.
func ReadDataKeyState(dataDir string) (*fsm.DataKeyState, error) {
	var st *fsm.DataKeyState
	err := ViewStopped(dataDir, func(r fsm.Reader) error {
		var err error
		st, err = r.DataKey()
		return err
	})
	if errors.Is(err, fsm.ErrNoDataKey) {
		return nil, fmt.Errorf("the state in %s has no cluster data key fingerprint: it predates the data key, or is not this cluster's", dataDir)
	}
	return st, err
}
