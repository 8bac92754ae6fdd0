package node

import (
	"reflect"
	"sync/atomic"
	"unsafe"

	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/bulwark-auth/bulwark/internal/boltpages"
)

// raft.db's pages in memory. bbolt reads raft.db through a shared mapping,
// and every page it reads stays counted in the node's resident memory:
// each append reads the log's last leaf, so every leaf is read once while
// it is last, and compacting the log after a snapshot (DeleteRange) walks
// every page of the deleted entries. Under a write burst that is the log
// of up to two snapshot intervals (30 s each) plus TrailingLogs entries,
// about 1 KiB an entry: 150 MiB and more of a bench run's peak, though no
// page behind the log's tail is read again unless a follower catches up
// from it. So spaceStore drops the whole mapping from memory after every
// dropEvery entries appended and after each DeleteRange (the pages stay
// in the page cache; the next append maps the tail's few pages again).

// dropEvery is how many entries raft.db takes between two drops of its
// pages: about 8 MiB of log.
const dropEvery = 8192

// raftPages counts the entries appended since the last drop.
type raftPages struct{ n atomic.Int64 }

// appended counts n entries appended and drops raft.db's pages once
// dropEvery have been since the last drop.
func (s spaceStore) appended(n int) {
	if s.pages == nil || s.pages.n.Add(int64(n)) < dropEvery {
		return
	}
	s.pages.n.Store(0)
	boltpages.DropDB(s.db)
}

// boltOf returns the bbolt handle raft-boltdb keeps unexported (its field
// conn; nil if the version in go.mod names it otherwise, which
// TestRaftLogPagesDropped catches).
func boltOf(s *raftboltdb.BoltStore) *bolt.DB {
	f := reflect.ValueOf(s).Elem().FieldByName("conn")
	if !f.IsValid() || f.Type() != reflect.TypeFor[*bolt.DB]() {
		return nil
	}
	return *(**bolt.DB)(unsafe.Pointer(f.UnsafeAddr()))
}

// DeleteRange deletes the entries min to max and drops raft.db's pages
// from memory. Compaction (min is the log's first index) deletes dropEvery
// entries a transaction, from the oldest, dropping the pages after each:
// one transaction over a burst's log walked all of it (150 MiB and more)
// before the drop. A crash between two pieces leaves a shorter log that
// still starts where the last piece ended, which Raft reads as a log
// compacted that far. Other deletions (a follower truncating a conflicting
// suffix) stay one transaction: pieces from the low end would leave a
// hole behind a crash.
func (s spaceStore) DeleteRange(min, max uint64) error {
	defer boltpages.DropDB(s.db)
	if first, err := s.BoltStore.FirstIndex(); err != nil || first != min || max-min < dropEvery {
		return s.BoltStore.DeleteRange(min, max)
	}
	for lo := min; ; lo += dropEvery {
		hi := max
		if max-lo >= dropEvery {
			hi = lo + dropEvery - 1
		}
		if err := s.BoltStore.DeleteRange(lo, hi); err != nil {
			return err
		}
		if hi == max {
			return nil
		}
		boltpages.DropDB(s.db)
	}
}
