package node

import (
	"reflect"
	"unsafe"

	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/bulwark-auth/bulwark/internal/boltpages"
)

// raft.db's pages in memory. bbolt reads raft.db through a shared mapping,
// and compacting the log after a snapshot (DeleteRange) walks every page
// of the deleted entries, which then stay counted in the node's resident
// memory: under a write burst that is the log of up to two snapshot
// intervals plus TrailingLogs entries, 150 MiB and more of a bench run's
// peak. Once the range is deleted its pages are free and not read again,
// so spaceStore.DeleteRange drops the whole mapping from memory (the
// pages stay in the page cache; the log's tail is mapped again by the
// next append).

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

// DeleteRange compacts the log, then drops raft.db's pages from memory.
func (s spaceStore) DeleteRange(min, max uint64) error {
	err := s.BoltStore.DeleteRange(min, max)
	boltpages.DropDB(s.db)
	return err
}
