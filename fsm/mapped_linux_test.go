package fsm

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
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
