package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/waitfor"
)

// TestBlackBoxAuditVerifyOffline: `bulwark audit verify --backup` passes
// a backup, and `--data-dir` a stopped node's data directory, with their
// signed checkpoints; an entry rewritten through bbolt in a copy of
// state.db is named, whether its hash was kept or the chain recomputed
// after it (which only the checkpoint signature catches), as is a forged
// checkpoint signature.
func TestBlackBoxAuditVerifyOffline(t *testing.T) {
	n := newTestNode(t)
	n.start()
	n.waitReady()
	n.addUser("alice", "correct horse battery staple", true)
	n.addUser("bob", "correct horse battery staple", false)
	// The audit keys are recorded once the node runs at feature level 4.
	waitfor.True(t, "audit keys recorded", 30*time.Second, 100*time.Millisecond, func() bool {
		keys := 0
		for _, e := range auditExport(t, n) {
			if e["type"] == "audit.key" {
				keys++
			}
		}
		return keys == 2
	})

	if out, errOut, code := n.cli("", "audit", "verify", "--data-dir", n.dataDir()); code != 1 || !strings.Contains(errOut, "stop it first") {
		t.Fatalf("--data-dir of a running node: %d %q %q", code, out, errOut)
	}
	if _, errOut, code := n.cli("", "audit", "verify", "--data-dir", n.dataDir(), "--backup", "x"); code != 2 {
		t.Fatalf("both flags: %d %q", code, errOut)
	}

	// A backup is checkpointed first; its trail verifies offline.
	bk := filepath.Join(t.TempDir(), "state.bwbk")
	if _, errOut, code := n.cli("", "backup", "create", bk); code != 0 {
		t.Fatalf("backup create: %s", errOut)
	}
	out, errOut, code := n.cli("", "audit", "verify", "--backup", bk, "--json")
	var rep struct {
		OK          bool   `json:"ok"`
		Entries     uint64 `json:"entries"`
		Checkpoints int    `json:"checkpoints"`
		LastCP      uint64 `json:"last_checkpoint"`
		LastSeq     uint64 `json:"last_seq"`
	}
	if err := json.Unmarshal([]byte(out), &rep); code != 0 || err != nil || !rep.OK || rep.Checkpoints < 1 || rep.LastCP+1 != rep.LastSeq {
		t.Fatalf("verify --backup: %d %v %+v\n%s%s", code, err, rep, out, errOut)
	}
	t.Logf("backup: %s", strings.TrimSpace(out))

	// Stopped, the leader has signed the rest.
	n.addUser("carol", "correct horse battery staple", false)
	n.stop()
	out, errOut, code = n.cli("", "audit", "verify", "--data-dir", n.dataDir())
	if code != 0 || !strings.Contains(out, "audit trail intact") || !strings.Contains(out, "1 entries after it held by the chain alone") {
		t.Fatalf("verify --data-dir: %d\n%s%s", code, out, errOut)
	}
	t.Logf("data dir: %s", strings.TrimSpace(out))

	// The entry to alter: carol's creation, vouched for by the shutdown
	// checkpoint only; and the checkpoints' seqs.
	var carol uint64
	var cps []uint64
	readState(t, filepath.Join(n.dataDir(), "state.db"), func(tx *bolt.Tx) {
		tx.Bucket([]byte("audit")).ForEach(func(k, v []byte) error {
			var e fsm.AuditEntry
			json.Unmarshal(v, &e)
			if e.Type == "user.create" && e.Details["username"] == "carol" {
				carol = e.Seq
			}
			return nil
		})
		tx.Bucket([]byte("audit_checkpoints")).ForEach(func(k, v []byte) error {
			cps = append(cps, binary.BigEndian.Uint64(k))
			return nil
		})
	})
	if carol == 0 || len(cps) < 2 || cps[len(cps)-1] < carol || cps[len(cps)-2] >= carol {
		t.Fatalf("carol's entry %d, checkpoints %v", carol, cps)
	}
	lastCP, prevCP := cps[len(cps)-1], cps[len(cps)-2]

	for _, tc := range []struct {
		name   string
		tamper func(tx *bolt.Tx)
		want   []string
	}{
		{"hash kept", func(tx *bolt.Tx) { rewriteAudit(t, tx, carol, false) },
			[]string{"AUDIT TRAIL BROKEN at seq " + itoa(carol) + ": hash does not match the entry's contents"}},
		{"hash and chain recomputed", func(tx *bolt.Tx) { rewriteAudit(t, tx, carol, true) },
			[]string{"AUDIT TRAIL BROKEN at seq " + itoa(lastCP) + ": checkpoint hash differs",
				"the altered entry is one of seq " + itoa(prevCP+1) + ".." + itoa(lastCP)}},
		{"forged checkpoint signature", func(tx *bolt.Tx) {
			b := tx.Bucket([]byte("audit_checkpoints"))
			k := binary.BigEndian.AppendUint64(nil, prevCP)
			var cp fsm.AuditCheckpointRecord
			if err := json.Unmarshal(b.Get(k), &cp); err != nil {
				t.Fatal(err)
			}
			cp.ES256Sig[len(cp.ES256Sig)/2] ^= 0x40
			putJSON(t, b, k, &cp)
		}, []string{"AUDIT TRAIL BROKEN at seq " + itoa(prevCP) + ": checkpoint signature bad: the ES256 signature"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			copyTo(t, filepath.Join(n.dataDir(), "state.db"), filepath.Join(dir, "state.db"))
			db, err := bolt.Open(filepath.Join(dir, "state.db"), 0o600, &bolt.Options{Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(func(tx *bolt.Tx) error { tc.tamper(tx); return nil }); err != nil {
				t.Fatal(err)
			}
			db.Close()
			out, errOut, code := n.cli("", "audit", "verify", "--data-dir", dir)
			if code != 1 {
				t.Fatalf("exit %d, want 1\n%s%s", code, out, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if !strings.HasPrefix(errOut, "bulwark: ") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
				t.Errorf("stderr is not one line of reason: %q", errOut)
			}
			t.Logf("%s", strings.TrimSpace(out))
		})
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// rewriteAudit changes entry seq's subject; with rechain it recomputes that
// entry's hash and every later entry's prev_hash and hash, as a careful
// forger would.
func rewriteAudit(t *testing.T, tx *bolt.Tx, seq uint64, rechain bool) {
	t.Helper()
	b := tx.Bucket([]byte("audit"))
	prev := ""
	for n := seq; ; n++ {
		k := binary.BigEndian.AppendUint64(nil, n)
		v := b.Get(k)
		if v == nil {
			return
		}
		var e fsm.AuditEntry
		if err := json.Unmarshal(v, &e); err != nil {
			t.Fatal(err)
		}
		if n == seq {
			e.Subject = "mallory"
		}
		if rechain {
			if prev != "" {
				e.PrevHash = prev
			}
			e.Hash = e.ComputeHash()
			prev = e.Hash
		}
		putJSON(t, b, k, &e)
		if !rechain {
			return
		}
	}
}

func putJSON(t *testing.T, b *bolt.Bucket, k []byte, v any) {
	t.Helper()
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Put(k, j); err != nil {
		t.Fatal(err)
	}
}

func readState(t *testing.T, path string, fn func(*bolt.Tx)) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bolt.Tx) error { fn(tx); return nil })
}

func copyTo(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestBlackBoxCheckpointSchedule: [audit] checkpoint_entries is the
// schedule the leader keeps (the default, 1000 entries or 5 minutes,
// would write none in this test).
func TestBlackBoxCheckpointSchedule(t *testing.T) {
	n := newTestNode(t, "[audit]\ncheckpoint_entries = 5\ncheckpoint_interval = \"24h\"\n")
	n.start()
	n.waitReady()
	for i := range 8 {
		n.addUser(fmt.Sprintf("user%d", i), "correct horse battery staple", false)
	}
	var cpEntry float64
	waitfor.True(t, "a checkpoint after 5 entries", 30*time.Second, 200*time.Millisecond, func() bool {
		for _, e := range auditExport(t, n) {
			if e["type"] == "audit.checkpoint" {
				cpEntry, _ = e["seq"].(float64)
				return true
			}
		}
		return false
	})
	// The background check (every 10 s) walked the signed entry before
	// its checkpoint existed; it must still verify the checkpoint's own
	// entry rather than call the chain broken.
	waitfor.True(t, "the background check past the checkpoint's entry", 30*time.Second, 250*time.Millisecond, func() bool {
		fams := n.metricFamilies()
		if v := sample(fams, "bulwark_audit_chain_broken"); v != 0 {
			t.Fatalf("bulwark_audit_chain_broken = %v after a scheduled checkpoint", v)
		}
		return sample(fams, "bulwark_audit_verified_seq") >= cpEntry
	})
}
