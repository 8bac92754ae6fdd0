package fsm

import (
	"errors"
	"testing"
	"time"
)

// backup.record keeps the newest backup by the command's time; a late
// record of an older one and a malformed one change nothing.
func TestBackupRecord(t *testing.T) {
	a := newApplier(t)
	last := func() (LastBackup, bool) {
		t.Helper()
		var rec LastBackup
		var ok bool
		viewValue(t, a.s, func(r Reader) (bool, error) { rec, ok = r.LastBackup(); return ok, nil })
		return rec, ok
	}
	if _, ok := last(); ok {
		t.Fatal("a fresh state has a backup")
	}
	rec := BackupRecord{Node: "node1", AppliedIndex: 40, Bytes: 8192, StateSHA256: hashOf("state")}
	r := a.apply(TypeBackupRecord, t0.Add(time.Hour), rec)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if got, ok := last(); !ok || got.BackupRecord != rec || !got.At.Equal(t0.Add(time.Hour)) || r.Value.(LastBackup) != got {
		t.Fatalf("recorded %+v (%v), answered %+v", got, ok, r.Value)
	}
	older := rec
	older.Node = "node2"
	if r := a.apply(TypeBackupRecord, t0, older); r.Err != nil || r.Value.(LastBackup).Node != "node1" {
		t.Fatalf("an older backup: %+v", r)
	}
	for _, bad := range []BackupRecord{
		{Node: "", Bytes: 1, StateSHA256: hashOf("x")},
		{Node: "node1", Bytes: 0, StateSHA256: hashOf("x")},
		{Node: "node1", Bytes: 1, StateSHA256: "ABC"},
		{Node: "node\n1", Bytes: 1, StateSHA256: hashOf("x")},
	} {
		if r := a.apply(TypeBackupRecord, t0.Add(2*time.Hour), bad); !errors.Is(r.Err, ErrInvalidCommand) {
			t.Errorf("%+v: %v", bad, r.Err)
		}
	}
	if got, _ := last(); got.Node != "node1" || !got.At.Equal(t0.Add(time.Hour)) {
		t.Fatalf("after refusals: %+v", got)
	}
}
