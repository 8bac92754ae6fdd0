package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/tpm/atomicfile"
)

// After a user.erase (fsm/erase.go) the state no longer holds the user,
// but the files still do: bbolt reuses freed pages without zeroing them,
// in state.db and in raft.db, the Raft log keeps the entries that wrote
// the user until it is compacted, and the snapshots are copies of state.db
// from before. So every node, on seeing the cluster's erase count move
// (by applying an erase or by installing a snapshot that holds one):
//
//  1. rewrites state.db into a fresh file (fsm.Store.Compact);
//  2. takes a Raft snapshot of it with no trailing log, so the log up to
//     the erase and past it is deleted from raft.db;
//  3. deletes every older snapshot;
//  4. marks raft.db to be rewritten, as state.db was, at the next start:
//     raft-boltdb cannot be swapped under a running Raft, so until the
//     node restarts the deleted entries' bytes stay in raft.db's free
//     pages. `bulwark user erase` says so.
//
// The count this node has compacted for is kept in raft/erased; the
// marker of step 4 is raft/raft.db.compact. See DESIGN.md, "Erasure".
const (
	erasedFile       = "erased"
	raftCompactFile  = "raft.db.compact-pending"
	eraseSnapRetries = 20
)

// ErasureStatus is how far this node's files are past the cluster's
// erasures.
type ErasureStatus struct {
	// Erasures is the number of user.erase commands the state has applied;
	// Compacted, the number this node's state.db, log and snapshots were
	// rewritten for.
	Erasures  uint64 `json:"erasures"`
	Compacted uint64 `json:"compacted"`
	// RaftDBPending: raft.db still holds freed pages from before the
	// last erase, rewritten at the next start.
	RaftDBPending bool `json:"raft_db_pending"`
	// Leftovers are files in the data directory that erase does not
	// rewrite and that may hold erased data (moved-aside state.db files,
	// forensic backups); the operator decides about them.
	Leftovers []string `json:"leftovers,omitempty"`
}

// ErasureStatus reports this node's erasure compaction.
func (n *Node) ErasureStatus() (ErasureStatus, error) {
	var st ErasureStatus
	if err := n.store.View(func(r fsm.Reader) error { st.Erasures = r.Erasures(); return nil }); err != nil {
		return st, err
	}
	st.Compacted = n.compactedErasures()
	_, err := os.Stat(filepath.Join(n.cfg.DataDir, "raft", raftCompactFile))
	st.RaftDBPending = err == nil
	st.Leftovers = n.eraseLeftovers()
	return st, nil
}

// watchErasures compacts this node's files each time the state's erase
// count passes what they were compacted for; once at start too, for an
// erase applied before a crash.
func (n *Node) watchErasures() {
	defer n.erasing.Done()
	seen := ^uint64(0)
	for {
		n.appliedMu.Lock()
		ch := n.appliedCh
		n.appliedMu.Unlock()
		if gen := n.store.ErasedGeneration(); gen != seen {
			seen = gen
			if err := n.compactAfterErase(); err != nil {
				select {
				case <-n.done:
					return // closing: the next start compacts
				default:
				}
				n.log.Error("compaction after an erase failed; it is tried again after the next applied entry", "error", err)
				seen = ^uint64(0)
			}
		}
		select {
		case <-n.done:
			return
		case <-ch:
		}
	}
}

func (n *Node) compactedErasures() uint64 {
	b, err := os.ReadFile(filepath.Join(n.cfg.DataDir, "raft", erasedFile))
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return v
}

// compactAfterErase runs steps 1–4 above if the state's erase count is
// past what the files were compacted for.
func (n *Node) compactAfterErase() error {
	var want uint64
	if err := n.store.View(func(r fsm.Reader) error { want = r.Erasures(); return nil }); err != nil {
		return err
	}
	if want <= n.compactedErasures() {
		return nil
	}
	start := time.Now()
	if err := n.store.Compact(); err != nil {
		return err
	}
	raftDir := filepath.Join(n.cfg.DataDir, "raft")
	// raft.db is marked before the log is cut, so a crash in between
	// still rewrites it at the next start.
	if err := atomicfile.WriteFile(filepath.Join(raftDir, raftCompactFile), []byte("after erase "+strconv.FormatUint(want, 10)+"\n"), 0o600); err != nil {
		return err
	}
	if err := n.snapshotWithoutTrailingLog(); err != nil {
		return err
	}
	metas, err := n.snaps.List()
	if err != nil {
		return err
	}
	for _, m := range metas[min(1, len(metas)):] {
		if err := os.RemoveAll(filepath.Join(raftDir, "snapshots", m.ID)); err != nil {
			return err
		}
	}
	if err := atomicfile.WriteFile(filepath.Join(raftDir, erasedFile), []byte(strconv.FormatUint(want, 10)+"\n"), 0o600); err != nil {
		return err
	}
	n.log.Info("compacted state.db, the Raft log and snapshots after an erase; raft.db is rewritten at the next start",
		"erasures", want, "took", time.Since(start).Round(time.Millisecond))
	if left := n.eraseLeftovers(); len(left) > 0 {
		n.log.Warn("files that erase does not rewrite may hold erased data", "files", left)
	}
	return nil
}

// snapshotWithoutTrailingLog takes a snapshot of the (compacted) state
// and deletes the whole log up to it.
func (n *Node) snapshotWithoutTrailingLog() error {
	rc := n.raft.ReloadableConfig()
	trailing := rc.TrailingLogs
	rc.TrailingLogs = 0
	if err := n.raft.ReloadConfig(rc); err != nil {
		return err
	}
	defer func() {
		rc.TrailingLogs = trailing
		if err := n.raft.ReloadConfig(rc); err != nil {
			n.log.Error("restoring the trailing log setting", "error", err)
		}
	}()
	var err error
	for try := 0; try < eraseSnapRetries; try++ {
		if err = n.raft.Snapshot().Error(); err == nil {
			return nil
		}
		if errors.Is(err, raft.ErrRaftShutdown) {
			return err
		}
		// Nothing new since the last snapshot (one taken of the
		// compacted state, but with the trailing log kept), or a
		// configuration change being applied: log something and try again.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		barrier, berr := fsm.NewCommand(fsm.TypeReadBarrier, 1, n.cfg.Clock.Now().UnixNano(), fsm.ReadBarrier{})
		if berr == nil {
			_, berr = n.Apply(ctx, barrier)
		}
		cancel()
		if berr != nil {
			n.log.Debug("barrier before the erase snapshot", "error", berr)
		}
		select {
		case <-n.done:
			return fmt.Errorf("node: closing: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("node: snapshot after erase: %w", err)
}

// eraseLeftovers lists the files erase does not rewrite.
func (n *Node) eraseLeftovers() []string {
	var out []string
	if m, _ := filepath.Glob(filepath.Join(n.cfg.DataDir, "state.db.corrupt-*")); len(m) > 0 {
		out = append(out, m...)
	}
	_ = filepath.WalkDir(filepath.Join(n.cfg.DataDir, "forensics"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// compactRaftDB rewrites raft.db into a fresh file if an erase marked it,
// before raft-boltdb opens it: the entries the erase's snapshot deleted
// leave their bytes in free pages otherwise.
func compactRaftDB(raftDir string, log interface{ Info(string, ...any) }) error {
	marker := filepath.Join(raftDir, raftCompactFile)
	if _, err := os.Stat(marker); err != nil {
		return nil
	}
	path := filepath.Join(raftDir, "raft.db")
	tmp := path + ".compact"
	if err := os.Remove(tmp); err != nil && !os.IsNotExist(err) {
		return err
	}
	src, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, ReadOnly: true})
	if err != nil {
		return fmt.Errorf("node: compact raft.db: %w", err)
	}
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		src.Close()
		return fmt.Errorf("node: compact raft.db: %w", err)
	}
	err = bolt.Compact(dst, src, 16<<20)
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	src.Close()
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = atomicfile.SyncDir(raftDir)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("node: compact raft.db: %w", err)
	}
	log.Info("rewrote raft.db after an erase")
	if err := os.Remove(marker); err != nil {
		return err
	}
	return atomicfile.SyncDir(raftDir)
}
