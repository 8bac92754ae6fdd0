package node

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	bolt "go.etcd.io/bbolt"

	"github.com/bulwark-auth/bulwark/fsm"
)

func TestMLDSASizesAgree(t *testing.T) {
	if fsm.MLDSA65SignatureSize != mldsa65.SignatureSize || fsm.MLDSA65PublicKeySize != mldsa65.PublicKeySize {
		t.Fatalf("fsm's ML-DSA-65 sizes %d/%d, circl's %d/%d", fsm.MLDSA65SignatureSize, fsm.MLDSA65PublicKeySize,
			mldsa65.SignatureSize, mldsa65.PublicKeySize)
	}
}

// auditState writes, into dir/state.db (closed cleanly), a trail of 12
// entries with checkpoints of seq 4 and 9 (recorded at 5 and 10) signed by
// node1's audit keys, and returns the store's path.
func auditState(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "state.db")
	s, err := fsm.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	mlPub, ml, err := mldsa65.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spki, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	mlRaw, _ := mlPub.MarshalBinary()
	at := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	index := uint64(0)
	apply := func(typ fsm.Type, p any) fsm.Result {
		t.Helper()
		index++
		cmd, err := fsm.NewCommand(typ, 1, at.UnixNano(), p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := cmd.Encode()
		if err != nil {
			t.Fatal(err)
		}
		r := s.ApplyBatch([]fsm.Entry{{Index: index, Term: 1, Command: true, Data: b}})[0]
		if r.Err != nil {
			t.Fatalf("%s: %v", typ, r.Err)
		}
		return r
	}
	apply(fsm.TypeAuditKey, fsm.AuditKey{Kid: fsm.AuditKeyID(spki), Node: "node1", Alg: fsm.AuditAlgES256, Public: spki})
	apply(fsm.TypeAuditKey, fsm.AuditKey{Kid: fsm.AuditKeyID(mlRaw), Node: "node1", Alg: fsm.AuditAlgMLDSA65, Public: mlRaw})
	event := func() *fsm.AuditEntry {
		return apply(fsm.TypeAuditAppend, fsm.AuditAppend{Type: "login.failure", Severity: fsm.AuditWarning, Subject: "alice"}).Value.(*fsm.AuditEntry)
	}
	checkpoint := func(e *fsm.AuditEntry) {
		cp := fsm.AuditCheckpoint{Seq: e.Seq, Hash: e.Hash, Time: at.UnixNano(), Node: "node1",
			ES256Kid: fsm.AuditKeyID(spki), MLDSA65Kid: fsm.AuditKeyID(mlRaw)}
		msg := cp.Preimage()
		sum := sha256.Sum256(msg)
		cp.ES256Sig, _ = ecdsa.SignASN1(rand.Reader, ec, sum[:])
		cp.MLDSA65Sig, _ = ml.Sign(rand.Reader, msg, crypto.Hash(0))
		apply(fsm.TypeAuditCheckpoint, cp)
	}
	var e *fsm.AuditEntry
	for range 4 {
		e = event()
	}
	checkpoint(e) // of 4, at 5
	for range 4 {
		e = event()
	}
	checkpoint(e) // of 9, at 10
	event()
	event()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// rewriteEntry changes entry seq of the state.db at path through bbolt, as
// someone with the file would; with rechain, it recomputes that entry's
// hash and every later one's, so the chain alone still verifies.
func rewriteEntry(t *testing.T, path string, seq uint64, rechain bool) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	key := func(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("audit"))
		prev := ""
		for n := seq; ; n++ {
			v := b.Get(key(n))
			if v == nil {
				return nil
			}
			var e fsm.AuditEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			if n == seq {
				e.Subject = "mallory"
			}
			if !rechain {
				return put(b, key(n), &e)
			}
			if prev != "" {
				e.PrevHash = prev
			}
			e.Hash = e.ComputeHash()
			prev = e.Hash
			if err := put(b, key(n), &e); err != nil {
				return err
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

func put(b *bolt.Bucket, k []byte, v any) error {
	j, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, j)
}

func wantAuditBreak(t *testing.T, err error, seq uint64, reason string) {
	t.Helper()
	var ce *fsm.AuditChainError
	if !errors.As(err, &ce) || ce.Seq != seq || !strings.Contains(err.Error(), reason) {
		t.Fatalf("got %v, want a break at seq %d: %s", err, seq, reason)
	}
}

func TestVerifyAuditDataDir(t *testing.T) {
	dir := t.TempDir()
	path := auditState(t, dir)
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := VerifyAuditDataDir(dir)
	if err != nil || v.Entries != 12 || v.Checkpoints != 2 || v.LastCheckpoint != 9 || v.Unvouched != 3 || v.AppliedIndex != 14 {
		t.Fatalf("intact: %+v, %v", v, err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Fatal("verifying changed state.db")
	}
	if _, err := os.Stat(path + ".clean"); err != nil {
		t.Fatalf("verifying consumed the clean marker: %v", err)
	}

	// A running daemon holds state.db: refused, not read half-written.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyAuditDataDir(dir); !errors.Is(err, ErrRunning) {
		t.Errorf("with state.db held: %v, want ErrRunning", err)
	}
	db.Close()

	t.Run("hash kept", func(t *testing.T) {
		dir := t.TempDir()
		rewriteEntry(t, auditState(t, dir), 3, false)
		_, err := VerifyAuditDataDir(dir)
		wantAuditBreak(t, err, 3, "hash does not match")
	})
	t.Run("hash recomputed", func(t *testing.T) {
		dir := t.TempDir()
		rewriteEntry(t, auditState(t, dir), 7, true)
		_, err := VerifyAuditDataDir(dir)
		wantAuditBreak(t, err, 9, "checkpoint hash differs")
		if !strings.Contains(err.Error(), "one of seq 5..9") {
			t.Errorf("the altered range is not named: %v", err)
		}
	})
	t.Run("after the last checkpoint", func(t *testing.T) {
		// The chain alone holds these: recomputed, nothing can tell.
		dir := t.TempDir()
		rewriteEntry(t, auditState(t, dir), 11, true)
		if v, err := VerifyAuditDataDir(dir); err != nil || v.Unvouched != 3 {
			t.Fatalf("%+v, %v", v, err)
		}
	})
}

func TestVerifyAuditBackup(t *testing.T) {
	dir := t.TempDir()
	path := auditState(t, dir)
	backup := func(t *testing.T) []byte {
		s, err := fsm.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		snap, err := s.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		defer snap.Release()
		var buf bytes.Buffer
		if _, err := writeBackup(context.Background(), &buf, BackupManifest{Format: BackupFormatVersion, NodeID: "node1",
			AppliedIndex: snap.Index(), CreatedAt: time.Now()}, snap.WriteTo); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	good := backup(t)
	v, err := VerifyAuditBackup(bytes.NewReader(good))
	if err != nil || v.Entries != 12 || v.Checkpoints != 2 || !strings.Contains(v.Source, "node1") {
		t.Fatalf("backup: %+v, %v", v, err)
	}
	damaged := bytes.Clone(good)
	damaged[len(damaged)/2] ^= 1
	if _, err := VerifyAuditBackup(bytes.NewReader(damaged)); !errors.Is(err, ErrBackupDamaged) {
		t.Fatalf("damaged backup: %v", err)
	}
	// A forged checkpoint signature inside a backup whose checksums were
	// recomputed: the archive reads, the trail does not verify.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("audit_checkpoints"))
		k := binary.BigEndian.AppendUint64(nil, 4)
		var cp fsm.AuditCheckpointRecord
		if err := json.Unmarshal(b.Get(k), &cp); err != nil {
			return err
		}
		cp.MLDSA65Sig[0] ^= 1
		return put(b, k, &cp)
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = VerifyAuditBackup(bytes.NewReader(backup(t)))
	wantAuditBreak(t, err, 4, "checkpoint signature bad")
	if !strings.Contains(err.Error(), "ML-DSA-65") {
		t.Errorf("the failing algorithm is not named: %v", err)
	}
}

// TestVerifyAuditPruned: `bulwark audit verify` of a data directory whose
// trail retention pruned up to the checkpoint of seq 4, midway (entries 3
// and 4 still stored below the floor) and done, starts from that
// checkpoint and passes; a backup of it too.
func TestVerifyAuditPruned(t *testing.T) {
	dir := t.TempDir()
	path := auditState(t, dir)
	at := time.Date(2026, 12, 9, 12, 0, 0, 0, time.UTC) // 48 h after the trail
	prune := func(index uint64) fsm.AuditPruneResult {
		t.Helper()
		s, err := fsm.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		cmd, err := fsm.NewCommand(fsm.TypeAuditPrune, 1, at.UnixNano(), fsm.AuditPrune{BeforeSeq: 5, KeepFor: int64(fsm.MinAuditRetention), Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		b, err := cmd.Encode()
		if err != nil {
			t.Fatal(err)
		}
		r := s.ApplyBatch([]fsm.Entry{{Index: index, Term: 1, Command: true, Data: b}})[0]
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		return r.Value.(fsm.AuditPruneResult)
	}
	if res := prune(15); !res.More {
		t.Fatalf("first prune: %+v", res)
	}
	// Entries 5..12 and the prune's own, 13, from checkpoint 4.
	if v, err := VerifyAuditDataDir(dir); err != nil || v.FirstSeq != 5 || v.Entries != 9 || v.Checkpoints != 1 || v.LastCheckpoint != 9 {
		t.Fatalf("midway: %+v, %v", v, err)
	}
	if res := prune(16); res.More || res.Deleted != 2 {
		t.Fatalf("second prune: %+v", res)
	}
	if v, err := VerifyAuditDataDir(dir); err != nil || v.FirstSeq != 5 || v.Entries != 9 {
		t.Fatalf("pruned: %+v, %v", v, err)
	}
	s, err := fsm.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_, err = writeBackup(context.Background(), &buf, BackupManifest{Format: BackupFormatVersion, NodeID: "node1",
		AppliedIndex: snap.Index(), CreatedAt: time.Now()}, snap.WriteTo)
	snap.Release()
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	if v, err := VerifyAuditBackup(&buf); err != nil || v.FirstSeq != 5 || v.Entries != 9 {
		t.Fatalf("backup of a pruned trail: %+v, %v", v, err)
	}
}
