package fsm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// putSessions writes n session records of size bytes straight into the
// sessions bucket, and sets the store's count to match.
func putSessions(t *testing.T, s *Store, n, size int) {
	t.Helper()
	val := []byte(strings.Repeat("s", size))
	for batch := 0; batch < n; batch += 4096 {
		err := s.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketSessions)
			for i := batch; i < min(batch+4096, n); i++ {
				if err := b.Put(fmt.Appendf(nil, "sid-%08d", i), val); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	s.counts.sessions.Add(int64(n))
}

// TestCleanOpenReadsNoPagesAndCheckPagesFindsDamage: a file closed cleanly
// is opened without reading its pages (its session count comes from the
// clean marker), so damage done to it since is found by the background
// CheckPages instead, and then survives a close: the next Open refuses
// the file. Damage to the pages Open itself reads (the root's) is
// ErrCorrupt from Open, not a panic.
func TestCleanOpenReadsNoPagesAndCheckPagesFindsDamage(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	const values = 3*walkRelease + 100 // several pieces
	putSessions(t, s, values, 64)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	marker, err := os.ReadFile(cleanMarker(path))
	if err != nil || string(marker) != fmt.Sprintf("sessions %d\n", values) {
		t.Fatalf("clean marker %q, %v", marker, err)
	}
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	leaves, root, pageSize := leafPages(t, path)

	// A leaf in the middle of the file, not the root: a session page.
	t.Run("session leaf", func(t *testing.T) {
		mid := leaves[len(leaves)/2]
		if mid == root {
			mid = leaves[len(leaves)/2+1]
		}
		p := damagedCopy(t, whole, marker, mid, pageSize)
		s, err := Open(p)
		if err != nil {
			t.Fatalf("a cleanly closed file: Open read its pages: %v", err)
		}
		if n := s.counts.sessions.Load(); n != values {
			t.Fatalf("%d sessions from the marker, want %d", n, values)
		}
		if s.Damaged() != "" {
			t.Fatal("damaged before any check")
		}
		err = s.CheckPages(context.Background())
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("CheckPages on a zeroed leaf page (%d): %v, want ErrCorrupt", mid, err)
		}
		if s.Damaged() == "" {
			t.Fatal("the damage is not remembered")
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(cleanMarker(p)); !os.IsNotExist(err) {
			t.Fatalf("a damaged file was marked clean: %v", err)
		}
		if _, err := Open(p); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("reopen of a file found damaged: %v, want ErrCorrupt", err)
		}
		if _, err := os.Stat(damagedMarker(p)); !os.IsNotExist(err) {
			t.Fatalf("damaged marker left behind: %v", err)
		}
	})
	t.Run("root", func(t *testing.T) {
		p := damagedCopy(t, whole, marker, root, pageSize)
		if s, err := Open(p); !errors.Is(err, ErrCorrupt) {
			if err == nil {
				s.Close()
			}
			t.Fatalf("Open of a file with a zeroed root page: %v, want ErrCorrupt", err)
		}
	})
}

// leafPages lists the file's leaf pages in use, in id order, and the page
// of its root bucket.
func leafPages(t *testing.T, path string) (leaves []int, root, pageSize int) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil) // Page needs the freelist
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		pageSize = tx.DB().Info().PageSize
		for id := 2; id < int(tx.Size())/pageSize; id++ {
			if p, err := tx.Page(id); err == nil && p != nil && p.Type == "leaf" {
				leaves = append(leaves, id)
			}
		}
		return nil
	})
	if err != nil || len(leaves) < 3 {
		t.Fatalf("leaf pages %v: %v", leaves, err)
	}
	// The root bucket's page is in the newer meta page (bbolt's format 2:
	// after the 16-byte page header, magic, version, page size and flags,
	// then the root bucket's page id; the txid at 48 of the meta).
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var txid uint64
	for _, off := range []int{0, pageSize} {
		m := b[off+bboltPageHeader:]
		if id := binary.LittleEndian.Uint64(m[48:]); id >= txid {
			txid, root = id, int(binary.LittleEndian.Uint64(m[16:]))
		}
	}
	return leaves, root, pageSize
}

// damagedCopy writes whole, with page zeroed, into a new state.db marked
// clean with marker, and returns its path.
func damagedCopy(t *testing.T, whole, marker []byte, page, pageSize int) string {
	t.Helper()
	b := append([]byte{}, whole...)
	copy(b[page*pageSize:(page+1)*pageSize], make([]byte, pageSize))
	p := filepath.Join(t.TempDir(), "state.db")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cleanMarker(p), marker, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCheckPiecesReadEveryValueOnce: the pieces CheckPages reads, each in
// its own transaction, cover every value of every bucket exactly once,
// across bucket boundaries and a piece ending at one.
func TestCheckPiecesReadEveryValueOnce(t *testing.T) {
	for _, n := range []int{0, 1, walkRelease - 1, walkRelease, 2*walkRelease + 7} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			s, err := Open(filepath.Join(t.TempDir(), "state.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			putSessions(t, s, n, 16)
			err = s.db.Update(func(tx *bolt.Tx) error {
				for i := range n / 3 {
					if err := tx.Bucket(bucketUsers).Put(fmt.Appendf(nil, "u%08d", i), []byte("x")); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			var want int64
			s.db.View(func(tx *bolt.Tx) error {
				return tx.ForEach(func(_ []byte, b *bolt.Bucket) error {
					want += int64(b.Stats().KeyN)
					return nil
				})
			})
			var at pagePosition
			pieces := 0
			for done := false; !done; pieces++ {
				if pieces > 100 {
					t.Fatal("the walk does not end")
				}
				if done, err = s.checkPiece(&at); err != nil {
					t.Fatal(err)
				}
			}
			if at.values != want {
				t.Fatalf("read %d values in %d pieces, the file holds %d", at.values, pieces, want)
			}
			if err := s.CheckPages(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRestoreCompacts: a restored file holds every key and value of the
// snapshot (bucket sequences too) and the session count, without the
// snapshot's free pages, each of which bbolt would write again at every
// commit; a snapshot with a damaged page is ErrCorrupt and changes nothing.
func TestRestoreCompacts(t *testing.T) {
	src, err := Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	const n = 20_000
	putSessions(t, src, n, 200)
	err = src.db.Update(func(tx *bolt.Tx) error { // most sessions end: free pages
		b := tx.Bucket(bucketSessions)
		for i := 0; i < n; i++ {
			if i%10 != 0 {
				if err := b.Delete(fmt.Appendf(nil, "sid-%08d", i)); err != nil {
					return err
				}
			}
		}
		_, err := tx.Bucket(bucketAudit).NextSequence()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	src.counts.sessions.Add(-n + n/10)
	free := func(s *Store) int {
		// bbolt counts the pages a commit freed at the next write's start
		s.db.Update(func(*bolt.Tx) error { return nil })
		return s.db.Stats().FreePageN
	}
	if free(src) < 100 {
		t.Fatalf("only %d free pages in the source", free(src))
	}
	raw := func(s *Store) map[string]string {
		m := map[string]string{}
		s.View(func(r Reader) error {
			return r.ForEachRaw(func(bucket string, k, v []byte) error {
				m[bucket+"/"+string(k)] = string(v)
				return nil
			})
		})
		s.db.View(func(tx *bolt.Tx) error {
			return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
				m["seq "+string(name)] = fmt.Sprint(b.Sequence())
				return nil
			})
		})
		return m
	}
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_, err = snap.WriteTo(&buf)
	snap.Release()
	if err != nil {
		t.Fatal(err)
	}

	dst := openTestStore(t)
	if err := dst.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if got := free(dst); got > 10 {
		t.Errorf("%d free pages after restore (the snapshot had %d)", got, free(src))
	}
	if got, want := dst.counts.sessions.Load(), int64(n/10); got != want {
		t.Errorf("%d sessions counted, want %d", got, want)
	}
	if want, got := raw(src), raw(dst); !maps.Equal(want, got) {
		t.Errorf("restored %d records, the snapshot held %d, or they differ", len(got), len(want))
	}

	// A zeroed leaf page in use, in the middle of the snapshot.
	copyPath := filepath.Join(t.TempDir(), "snap.db")
	if err := os.WriteFile(copyPath, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	leaves, root, ps := leafPages(t, copyPath)
	mid := leaves[len(leaves)/2]
	if mid == root {
		mid = leaves[len(leaves)/2+1]
	}
	b := buf.Bytes()
	copy(b[mid*ps:(mid+1)*ps], make([]byte, ps))
	if err := dst.Restore(bytes.NewReader(b)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("restore of a damaged snapshot: %v, want ErrCorrupt", err)
	}
	if got := dst.counts.sessions.Load(); got != int64(n/10) {
		t.Errorf("a failed restore changed the count to %d", got)
	}
}
