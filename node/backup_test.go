package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/bulwark-auth/bulwark/internal/waitfor"
)

func openNamedNode(t testing.TB, dir, id, advertise string) *Node {
	t.Helper()
	n, err := Open(Config{ID: id, DataDir: dir, Advertise: advertise, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		n.Close()
		t.Fatal(err)
	}
	return n
}

func backupOf(t testing.TB, n *Node) []byte {
	t.Helper()
	var buf bytes.Buffer
	info, err := n.Backup(context.Background(), &buf, BackupVersion("test"))
	if err != nil {
		t.Fatal(err)
	}
	if info.ArchiveBytes != int64(buf.Len()) || info.Manifest.AppliedIndex == 0 || info.Manifest.AppliedTerm == 0 {
		t.Fatalf("backup info %+v for %d bytes", info, buf.Len())
	}
	return buf.Bytes()
}

// TestBackupRestoreOntoNewNode: a backup restores onto a fresh data
// directory as a one-node cluster of another node, which elects itself,
// holds every user, takes new writes and restarts.
func TestBackupRestoreOntoNewNode(t *testing.T) {
	a := openNamedNode(t, t.TempDir(), "a", "127.0.0.1:18451")
	for i := 0; i < 30; i++ {
		createUser(t, a, fmt.Sprintf("user%d", i))
	}
	// Before the backup: writing it records it (backup.record), which
	// the archive does not hold.
	statusA := a.Status()
	archive := backupOf(t, a)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	info, err := ReadBackup(bytes.NewReader(archive), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	m := info.Manifest
	if m.Format != BackupFormatVersion || m.NodeID != "a" || m.BulwarkVersion != "test" ||
		m.AppliedIndex != statusA.AppliedIndex || m.CreatedAt.IsZero() || info.StateBytes == 0 {
		t.Fatalf("manifest %+v (node a at %+v)", info, statusA)
	}

	dir := filepath.Join(t.TempDir(), "b-data")
	ri, err := RestoreBackup(dir, "b", "127.0.0.1:18452", bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	if ri.Users != 30 || ri.AppliedIndex != m.AppliedIndex || ri.AppliedTerm != m.AppliedTerm {
		t.Fatalf("restore info %+v, manifest %+v", ri, m)
	}
	for _, f := range []string{"state.db", "state.db.clean", "raft/raft.db"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("restore did not write %s: %v", f, err)
		}
	}
	checkSnapshotOnly(t, dir, m.AppliedIndex, m.AppliedTerm, "b")

	b := openNamedNode(t, dir, "b", "127.0.0.1:18452")
	s := b.Status()
	if s.State != "Leader" || s.LeaderID != "b" || s.AppliedIndex < m.AppliedIndex {
		t.Fatalf("restored node: %+v", s)
	}
	if term := b.raft.CurrentTerm(); term <= m.AppliedTerm {
		t.Errorf("restored node's term %d is not after the backup's %d", term, m.AppliedTerm)
	}
	wantUsers(t, b, 30)
	// A backup of the restored node before any write: the applied entry
	// is only in the snapshot, which still gives its term.
	again, err := ReadBackup(bytes.NewReader(backupOf(t, b)), io.Discard)
	if err != nil || again.Manifest.AppliedTerm != m.AppliedTerm || again.Manifest.NodeID != "b" {
		t.Fatalf("backup of the restored node: %+v %v", again.Manifest, err)
	}
	createUser(t, b, "user30")
	wantUsers(t, b, 31)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = openNamedNode(t, dir, "b", "127.0.0.1:18452")
	defer b.Close()
	wantUsers(t, b, 31)
	createUser(t, b, "user31")
	wantUsers(t, b, 32)
}

// checkSnapshotOnly: the restored raft directory has no log, one snapshot
// naming id as the only voter, and counts as existing state, so Open does
// not bootstrap over it.
func checkSnapshotOnly(t *testing.T, dir string, index, term uint64, id string) {
	t.Helper()
	raftDir := filepath.Join(dir, "raft")
	logs, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(raftDir, "raft.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(raftDir, 2, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	if last, _ := logs.LastIndex(); last != 0 {
		t.Errorf("restored log has entries up to %d", last)
	}
	has, err := raft.HasExistingState(logs, logs, snaps)
	if err != nil || !has {
		t.Fatalf("HasExistingState = %v, %v; want true with only a snapshot", has, err)
	}
	metas, err := snaps.List()
	if err != nil || len(metas) != 1 {
		t.Fatalf("snapshots %v %v", metas, err)
	}
	sm := metas[0]
	if sm.Index != index || sm.Term != term || sm.ConfigurationIndex != index ||
		len(sm.Configuration.Servers) != 1 || sm.Configuration.Servers[0].ID != raft.ServerID(id) ||
		sm.Configuration.Servers[0].Suffrage != raft.Voter {
		t.Fatalf("snapshot meta %+v", sm)
	}
}

// TestBackupUnderWriteLoad: every write acknowledged before Backup was
// called is in the backup, while writers keep going.
func TestBackupUnderWriteLoad(t *testing.T) {
	a := openNamedNode(t, t.TempDir(), "a", "127.0.0.1:18453")
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	ctx, stop := context.WithCancel(context.Background())
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil && i < 300; i++ {
				name := fmt.Sprintf("w%d-%d", w, i)
				if _, err := a.Apply(context.Background(), userCmd(t, name)); err != nil {
					t.Errorf("create %s: %v", name, err)
					return
				}
				mu.Lock()
				acked = append(acked, name)
				mu.Unlock()
			}
		}()
	}
	// (Should the writers fail and stop, the wait fails instead of hanging
	// until go test's timeout.)
	waitfor.True(t, "100 writes acknowledged", time.Minute, time.Millisecond, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 100
	})
	mu.Lock()
	before := append([]string(nil), acked...)
	mu.Unlock()
	archive := backupOf(t, a)
	stop()
	wg.Wait()
	a.Close()

	dir := t.TempDir()
	if _, err := RestoreBackup(dir, "b", "127.0.0.1:18454", bytes.NewReader(archive)); err != nil {
		t.Fatal(err)
	}
	b := openNamedNode(t, dir, "b", "127.0.0.1:18454")
	defer b.Close()
	got := users(t, b)
	for _, name := range before {
		if !got[name] {
			t.Errorf("%s was acknowledged before the backup began but is not in it", name)
		}
	}
	t.Logf("%d users acknowledged before the backup, %d in it", len(before), len(got))
}

// TestRestoreRefuses: a non-empty directory and damaged or foreign
// archives are refused, and the target is left as it was.
func TestRestoreRefuses(t *testing.T) {
	a := openNamedNode(t, t.TempDir(), "a", "127.0.0.1:18455")
	createUser(t, a, "user0")
	archive := backupOf(t, a)
	a.Close()

	full := t.TempDir()
	keep := filepath.Join(full, "keep.txt")
	os.WriteFile(keep, []byte("mine"), 0o600)
	if _, err := RestoreBackup(full, "b", "127.0.0.1:18456", bytes.NewReader(archive)); !errors.Is(err, ErrDataDirNotEmpty) {
		t.Fatalf("restore into a non-empty directory: %v", err)
	}
	if entries, _ := os.ReadDir(full); len(entries) != 1 {
		t.Fatalf("refused restore changed the directory: %v", entries)
	}

	flip := func(off int) []byte {
		b := bytes.Clone(archive)
		b[off] ^= 0x40
		return b
	}
	cases := map[string]struct {
		data []byte
		want error
	}{
		"payload byte flipped":  {flip(len(archive) / 2), ErrBackupDamaged},
		"manifest byte flipped": {flip(20), ErrBackupDamaged},
		"checksum flipped":      {flip(len(archive) - 1), ErrBackupDamaged},
		"truncated":             {archive[:len(archive)-100], ErrBackupDamaged},
		"trailing bytes":        {append(bytes.Clone(archive), 0), ErrBackupDamaged},
		"not a backup":          {[]byte("SQLite format 3\x00"), ErrNotBackup},
		"empty":                 {nil, ErrNotBackup},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "new")
			_, err := RestoreBackup(dir, "b", "127.0.0.1:18456", bytes.NewReader(tc.data))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if _, serr := os.Stat(dir); !errors.Is(serr, os.ErrNotExist) {
				t.Errorf("a refused restore left %s behind (%v)", dir, serr)
			}
			// An existing empty directory stays, empty.
			empty := t.TempDir()
			RestoreBackup(empty, "b", "127.0.0.1:18456", bytes.NewReader(tc.data))
			if entries, _ := os.ReadDir(empty); len(entries) != 0 {
				t.Errorf("a refused restore left %v in an empty directory", entries)
			}
		})
	}
}

// TestBackupStopsWithContext: a cancelled context ends the backup with its
// error, and the node goes on.
func TestBackupStopsWithContext(t *testing.T) {
	n := openNamedNode(t, t.TempDir(), "a", "127.0.0.1:18457")
	defer n.Close()
	createUser(t, n, "user0")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var buf bytes.Buffer
	if _, err := n.Backup(ctx, &buf); !errors.Is(err, context.Canceled) {
		t.Fatalf("backup with a cancelled context: %v", err)
	}
	createUser(t, n, "user1")
	wantUsers(t, n, 2)
}
