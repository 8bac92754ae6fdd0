package node

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// mappedKiB is how much of the file at path this process holds resident
// through its mappings (/proc/self/smaps).
func mappedKiB(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var kib int64
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if fields := strings.Fields(line); len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			in = len(fields) >= 6 && fields[5] == path
			continue
		}
		if v, ok := strings.CutPrefix(line, "Rss:"); in && ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			kib += n
		}
	}
	return kib
}

// TestRaftLogPagesDropped: appending reads every leaf of the log once and
// compacting it walks every page of the deleted entries; spaceStore keeps
// under dropEvery entries' worth of raft.db resident while appending (here
// 48 MiB of log) and none after DeleteRange (all but the last thousand
// entries deleted).
func TestRaftLogPagesDropped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	bs, err := raftboltdb.New(raftboltdb.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	s := spaceStore{BoltStore: bs, db: boltOf(bs), pages: new(raftPages)}
	if s.db == nil {
		t.Fatal("raft-boltdb's BoltStore no longer keeps its bbolt handle in conn: boltOf needs updating")
	}
	const entries, size = 48 << 10, 1 << 10
	data := make([]byte, size)
	// Batches as small as a leader's under load: each reads the last leaf.
	const batchOf = 16
	for i := uint64(1); i <= entries; i += batchOf {
		batch := make([]*raft.Log, 0, batchOf)
		for j := i; j < i+batchOf; j++ {
			batch = append(batch, &raft.Log{Index: j, Term: 1, Type: raft.LogCommand, Data: data})
		}
		if err := s.StoreLogs(batch); err != nil {
			t.Fatal(err)
		}
	}
	if kib := mappedKiB(t, path); kib > 16<<10 {
		t.Fatalf("raft.db holds %d KiB resident after 48 MiB of appends; want under 16 MiB (%d entries between drops)", kib, dropEvery)
	}
	if err := s.DeleteRange(1, entries-1024); err != nil {
		t.Fatal(err)
	}
	if kib := mappedKiB(t, path); kib > 8<<10 {
		t.Fatalf("raft.db holds %d KiB resident after the log was compacted; want under 8 MiB of its 48 MiB", kib)
	}
	var l raft.Log
	if err := s.GetLog(entries, &l); err != nil || l.Index != entries || len(l.Data) != size {
		t.Fatalf("the log's tail after the drop: %+v %v", l.Index, err)
	}
	if first, err := s.FirstIndex(); err != nil || first != entries-1024+1 {
		t.Fatalf("first index after compaction: %d %v, want %d", first, err, entries-1024+1)
	}
	// A suffix (a follower's conflicting entries) goes in one piece.
	if err := s.DeleteRange(entries-100, entries); err != nil {
		t.Fatal(err)
	}
	if last, err := s.LastIndex(); err != nil || last != entries-101 {
		t.Fatalf("last index after truncating the suffix: %d %v, want %d", last, err, entries-101)
	}
}

// TestRaftLogCompactedInPieces: compaction deletes dropEvery entries a
// transaction from the oldest, so every state a crash can leave is a log
// without a hole. The pieces are counted by the page drops between them
// (each a read transaction of bbolt's).
func TestRaftLogCompactedInPieces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	bs, err := raftboltdb.New(raftboltdb.Options{Path: path, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	s := spaceStore{BoltStore: bs, db: boltOf(bs), pages: new(raftPages)}
	const entries = 5*dropEvery + 100
	batch := make([]*raft.Log, 0, entries)
	for i := uint64(1); i <= entries; i++ {
		batch = append(batch, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte("x")})
	}
	if err := s.StoreLogs(batch); err != nil {
		t.Fatal(err)
	}
	before := s.db.Stats().TxN
	if err := s.DeleteRange(1, 4*dropEvery+50); err != nil {
		t.Fatal(err)
	}
	if reads := s.db.Stats().TxN - before; reads < 6 { // FirstIndex, 4 drops between pieces, the last drop
		t.Errorf("compacting %d entries started %d read transactions; want 6: a drop after each piece of %d entries", 4*dropEvery+50, reads, dropEvery)
	}
	if first, err := s.FirstIndex(); err != nil || first != 4*dropEvery+51 {
		t.Fatalf("first index %d %v, want %d", first, err, 4*dropEvery+51)
	}
	if last, err := s.LastIndex(); err != nil || last != entries {
		t.Fatalf("last index %d %v, want %d", last, err, entries)
	}
}
