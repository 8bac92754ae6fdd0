package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
	bwnode "github.com/bulwark-auth/bulwark/node"
)

// baseArchive writes a backup of a state holding one user, made by
// fsm's own Apply, as a node's backup would hold it.
func baseArchive(t testing.TB, dir string) string {
	t.Helper()
	store, err := fsm.Open(filepath.Join(dir, "base", "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cmd, err := fsm.NewCommand(fsm.TypeUserCreate, 1, time.Now().UnixNano(), fsm.UserCreate{
		ID: "u-base", Username: "base", PasswordHash: "$argon2id$placeholder"})
	if err != nil {
		t.Fatal(err)
	}
	data, err := cmd.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if r := store.ApplyBatch([]fsm.Entry{{Index: 7, Term: 3, Command: true, Data: data}}); r[0].Err != nil {
		t.Fatal(r[0].Err)
	}
	var buf bytes.Buffer
	if _, err := bwnode.BackupStore(context.Background(), &buf, store, bwnode.BackupManifest{NodeID: "base", AppliedTerm: 3}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "base.bwbk")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSeedArchive grows a small backup by the seeding and restores the
// result with the node's own restore: every user and live session is
// there, the base's user too, at the log index the entries reached.
func TestSeedArchive(t *testing.T) {
	dir := t.TempDir()
	base := baseArchive(t, dir)
	out := filepath.Join(dir, "seeded.bwbk")
	spec := defaultSeedSpec(20, 60, hashParams{memoryKiB: 64, iterations: 1, parallelism: 1})
	spec.batch = 7 // several batches, the last one short
	res, err := seedArchive(context.Background(), base, out, spec)
	if err != nil {
		t.Fatal(err)
	}
	if res.Users != 20 || res.Sessions != 60 || res.Entries != 80 || res.Sweeps != 1 || res.AppliedIndex != 7+1+80 {
		t.Fatalf("seed result %+v: want 20 users, 60 sessions, 80 entries after 1 sweep, applied index 88", res)
	}

	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data := filepath.Join(dir, "restored")
	ri, err := bwnode.RestoreBackup(data, "bench1", "127.0.0.1:1", f)
	if err != nil {
		t.Fatal(err)
	}
	if ri.Users != 21 || ri.AppliedIndex != 88 || ri.AppliedTerm != 3 || ri.AuditProblem != "" {
		t.Fatalf("restored %+v: want 21 users at index 88, term 3, a sound audit chain", ri)
	}
	live, now := 0, time.Now()
	err = bwnode.ViewStopped(data, func(r fsm.Reader) error {
		return r.Users(func(u *fsm.User) bool {
			ss, err := r.UserSessions(u.ID)
			if err != nil {
				t.Error(err)
				return false
			}
			for _, s := range ss {
				if s.Alive(now) {
					live++
				}
			}
			if u.Username == "scale0000019" {
				if len(ss) != 3 {
					t.Errorf("%s has %d sessions, want 3", u.Username, len(ss))
				}
			}
			return true
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if live != 60 {
		t.Errorf("%d live sessions, want 60", live)
	}

	// The base was swept before the seeding: the restored node's first
	// sweep has no records from before level 3 left to walk (fsm's
	// migrate), which it would otherwise walk over every seeded session.
	store, err := fsm.Open(filepath.Join(data, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	sweep, err := fsm.NewCommand(fsm.TypeSweep, 2, time.Now().UnixNano(), fsm.SweepV2{Limit: 32, Migrate: 64})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := sweep.Encode()
	if err != nil {
		t.Fatal(err)
	}
	r := store.ApplyBatch([]fsm.Entry{{Index: 89, Term: 3, Command: true, Data: enc}})[0]
	if sr, ok := r.Value.(fsm.SweepResult); r.Err != nil || !ok || sr.Migrated != 0 || sr.More {
		t.Errorf("the restored node's first sweep: %+v, %v; want nothing to migrate", r.Value, r.Err)
	}
}
