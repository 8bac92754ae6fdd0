package node

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/tpm"
)

// offlineEntries is a log: the data key's registration, then users.
func offlineEntries(t *testing.T, fp string, names ...string) []fsm.Entry {
	t.Helper()
	cmds := []fsm.Command{command(t, fsm.TypeDataKeyRegister, fsm.DataKeyRegister{Fingerprint: fp})}
	for _, n := range names {
		cmds = append(cmds, userCmd(t, n))
	}
	var out []fsm.Entry
	for i, c := range cmds {
		b, err := c.Encode()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fsm.Entry{Index: uint64(i + 1), Term: 1, Command: true, Data: b})
	}
	return out
}

// writeState writes a cleanly closed state.db at path holding entries.
func writeState(t *testing.T, path string, entries []fsm.Entry) {
	t.Helper()
	s, err := fsm.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.ApplyBatch(entries)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func storeLog(t *testing.T, dir string, entries []fsm.Entry) {
	t.Helper()
	os.MkdirAll(filepath.Join(dir, "raft"), 0o700)
	logs, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft", "raft.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	var rl []*raft.Log
	for _, e := range entries {
		rl = append(rl, &raft.Log{Index: e.Index, Term: e.Term, Type: raft.LogCommand, Data: e.Data})
	}
	if err := logs.StoreLogs(rl); err != nil {
		t.Fatal(err)
	}
}

func stoppedUsers(t *testing.T, dir string) map[string]bool {
	t.Helper()
	got := map[string]bool{}
	if err := ViewStopped(dir, func(r fsm.Reader) error {
		return r.Users(func(u *fsm.User) bool { got[u.Username] = true; return true })
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestViewStoppedReadsStateAndLog: the offline reader brings a stale
// state.db up to date from the Raft log, as the daemon would, and changes
// nothing.
func TestViewStoppedReadsStateAndLog(t *testing.T) {
	dir := t.TempDir()
	fp := tpm.DataKeyFingerprint(tpm.NewDataKey())
	entries := offlineEntries(t, fp, "alice", "bob")
	// dir/state.db holds only the first entry (the registration), closed
	// cleanly; dir/raft/raft.db holds all of them.
	writeState(t, filepath.Join(dir, "state.db"), entries[:1])
	storeLog(t, dir, entries)
	before := dirState(t, dir, true)

	unlock, err := LockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := stoppedUsers(t, dir)
	st, err := ReadDataKeyState(dir)
	unlock()
	if err != nil || st.Fingerprint != fp {
		t.Fatalf("data key read offline: %+v, %v", st, err)
	}
	if !got["alice"] || !got["bob"] || len(got) != 2 {
		t.Fatalf("users read offline: %v; want the log's", got)
	}
	if after := dirState(t, dir, true); after != before {
		t.Errorf("reading changed the data directory:\n%s\n%s", before, after)
	}
}

// TestViewStoppedRestoresSnapshot: a state.db behind the newest snapshot
// (or none at all) is read as the snapshot, then the log after it: the
// same path the daemon's start takes (openState).
func TestViewStoppedRestoresSnapshot(t *testing.T) {
	for _, withState := range []bool{true, false} {
		dir := t.TempDir()
		entries := offlineEntries(t, tpm.DataKeyFingerprint(tpm.NewDataKey()), "alice", "bob", "carol")
		// The snapshot holds entries 1 and 2, the log 3 and 4, state.db 1.
		snap := filepath.Join(t.TempDir(), "state.db")
		writeState(t, snap, entries[:2])
		f, err := os.Open(snap)
		if err != nil {
			t.Fatal(err)
		}
		if err := RestoreSnapshot(dir, "n1", "127.0.0.1:7000", f, 2, 1); err != nil {
			t.Fatal(err)
		}
		f.Close()
		storeLog(t, dir, entries[2:])
		if withState {
			writeState(t, filepath.Join(dir, "state.db"), entries[:1])
		}
		// Raft's snapshot store, when opened, probes its directory by
		// creating and removing a file: the files are compared, not the
		// directories' times.
		before := dirState(t, dir, false)
		got := stoppedUsers(t, dir)
		if !got["alice"] || !got["bob"] || !got["carol"] || len(got) != 3 {
			t.Fatalf("state.db %v: users read offline: %v; want the snapshot's and the log's", withState, got)
		}
		if after := dirState(t, dir, false); after != before {
			t.Errorf("reading changed the data directory:\n%s\n%s", before, after)
		}
	}
}

func TestReadDataKeyStateWithoutKey(t *testing.T) {
	dir := t.TempDir()
	writeState(t, filepath.Join(dir, "state.db"), nil)
	if _, err := ReadDataKeyState(dir); err == nil || !strings.Contains(err.Error(), "has no cluster data key fingerprint") {
		t.Fatalf("ReadDataKeyState: %v", err)
	}
}

func TestLockDataDirRefusesRunningNode(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// What bbolt does for the daemon: an exclusive flock, held while it runs.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	if _, err := LockDataDir(dir); !errors.Is(err, ErrRunning) || !strings.Contains(err.Error(), "stop it first") {
		t.Fatalf("LockDataDir: %v, want ErrRunning", err)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	unlock, err := LockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
}

// dirState lists the files under dir with their modification times and
// modes; with dirs, the directories too.
func dirState(t *testing.T, dir string, dirs bool) string {
	t.Helper()
	var sb bytes.Buffer
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || (d.IsDir() && !dirs) {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			sb.WriteString(p + " " + fi.ModTime().String() + " " + fi.Mode().String() + "\n")
		}
		return nil
	})
	return sb.String()
}
