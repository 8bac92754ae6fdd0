package fsm

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// rssFileKiB is this process's resident file-backed memory (RssFile).
func rssFileKiB(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "RssFile:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("/proc/self/status: no RssFile")
	return 0
}

// reopen closes s and opens the file at path again, closed at the test's
// end, with nothing of it mapped in yet; it returns the store and the
// file's size in bytes.
func reopen(t *testing.T, s *Store, path string) (*Store, int64) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var size int64
	s.db.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil })
	return s, size
}

// TestOpenReleasesWalkedPages: the consistency check reads every page of
// state.db through the map, and neither Open's walk (a file marked clean
// without a session count) nor the background CheckPages keeps them
// resident after: each leaves far less than the 48 MiB file mapped into
// the process.
func TestOpenReleasesWalkedPages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	const values, size = 48 << 10, 1 << 10 // 48 MiB of sessions
	putSessions(t, s, values, size)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := markClean(path); err != nil { // no count: Open walks
		t.Fatal(err)
	}

	before := rssFileKiB(t)
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	grew := rssFileKiB(t) - before
	if n := s.counts.sessions.Load(); n != values {
		t.Fatalf("Open counted %d sessions, want %d", n, values)
	}
	if grew > 16<<10 {
		t.Fatalf("after Open, %d KiB more of state.db is mapped in, want under 16 MiB of the 48 MiB walked", grew)
	}

	before = rssFileKiB(t)
	if err := s.CheckPages(context.Background()); err != nil {
		t.Fatal(err)
	}
	if grew := rssFileKiB(t) - before; grew > 16<<10 {
		t.Fatalf("after CheckPages, %d KiB more of state.db is mapped in, want under 16 MiB of the 48 MiB walked", grew)
	}
}

// TestAuditWalkReleasesPages: the background audit check's first pass over
// a long trail, 1000 entries per view as authcore reads it, leaves the
// trail's pages unmapped (they were a source of the node's peak memory at
// size).
func TestAuditWalkReleasesPages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	const entries = 8_000
	long := strings.Repeat("x", 1000)
	for first := 0; first < entries; first += 1000 {
		var batch []Entry
		for i := first; i < first+1000; i++ {
			a := sampleAudit(i)
			a.Details["note"], a.Details["more"], a.Details["yet"] = long, long, long
			batch = append(batch, auditCmd(t, uint64(i+1), t0.Add(time.Duration(i)*time.Second), a))
		}
		for i, r := range s.ApplyBatch(batch) {
			if r.Err != nil {
				t.Fatalf("append %d: %v", first+i, r.Err)
			}
		}
	}
	s, size := reopen(t, s, path)

	before := rssFileKiB(t)
	var w AuditWalk
	for range entries/1000 + 1 {
		if err := walkPiece(t, s, &w, 1000); err != nil {
			t.Fatal(err)
		}
	}
	if w.Entries != entries {
		t.Fatalf("walked %d entries, want %d", w.Entries, entries)
	}
	if grew := rssFileKiB(t) - before; grew > 8<<10 {
		t.Fatalf("after the audit walk, %d KiB more of the %d KiB state.db is mapped in, want under 8 MiB", grew, size>>10)
	}
}

// TestSessionPruneReleasesPages: session.prune reads every session over a
// pass, 1000 per entry as authcore proposes it, and leaves their pages
// unmapped (a pass over a million sessions, an hour apart and a minute
// after every start, held 800 MiB of state.db in the node's memory).
func TestSessionPruneReleasesPages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	const sessions = 40_000 // about 40 MiB
	pad := strings.Repeat("a", 900)
	for first := 0; first < sessions; first += 4096 {
		err := s.db.Update(func(tx *bolt.Tx) error {
			for i := first; i < min(first+4096, sessions); i++ {
				v, err := json.Marshal(Session{ID: fmt.Sprintf("sid-%08d", i), UserID: "u1", CreatedAt: t0, LastSeenAt: t0,
					AuthTime: t0, ExpiresAt: t0.Add(24 * time.Hour), UserAgent: pad, RefreshHash: hashOf("r")})
				if err != nil {
					return err
				}
				if err := tx.Bucket(bucketSessions).Put(fmt.Appendf(nil, "sid-%08d", i), v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	s, size := reopen(t, s, path)

	before := rssFileKiB(t)
	a := &applier{t: t, s: s, index: 1}
	for pass := 0; ; pass++ {
		r := a.apply(TypeSessionPrune, t0.Add(time.Hour), SessionPrune{KeepFor: int64(time.Hour), Limit: 1000})
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		if res := r.Value.(SessionPruneResult); res.Deleted != 0 || res.Done {
			if res.Deleted != 0 || pass != sessions/1000-1 {
				t.Fatalf("prune %d: %+v; want the pass done at entry %d, nothing deleted", pass, res, sessions/1000-1)
			}
			break
		}
	}
	if grew := rssFileKiB(t) - before; grew > 8<<10 {
		t.Fatalf("after a prune pass, %d KiB more of the %d KiB state.db is mapped in, want under 8 MiB", grew, size>>10)
	}
}
