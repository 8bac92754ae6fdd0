package fsm

import (
	"testing"

	bolt "go.etcd.io/bbolt"
)

// walkPiece is ContinueAuditWalk on s's state, limit entries at most.
func walkPiece(t testing.TB, s *Store, w *AuditWalk, limit int) error {
	t.Helper()
	var werr error
	if err := s.View(func(r Reader) error { werr = r.ContinueAuditWalk(w, limit, checkAuditSig); return nil }); err != nil {
		t.Fatal(err)
	}
	return werr
}

// TestAuditWalkInPieces: a trail checked a piece at a time, each piece
// chained to the last, finds what the whole walk finds.
func TestAuditWalkInPieces(t *testing.T) {
	s := openTestStore(t)
	var w AuditWalk
	if err := walkPiece(t, s, &w, 10); err != nil || w.Entries != 0 {
		t.Fatalf("empty trail: %+v, %v", w.AuditTrailReport, err)
	}
	appendSamples(t, s, 1, 7)
	// In pieces of three: 1-3, 4-6, 7, then nothing more.
	for _, want := range []uint64{3, 6, 7, 7} {
		if err := walkPiece(t, s, &w, 3); err != nil || w.LastSeq != want {
			t.Fatalf("%+v, %v; want through %d", w.AuditTrailReport, err, want)
		}
	}
	if w.Entries != 7 || w.FirstSeq != 1 || w.Unvouched != 7 {
		t.Fatalf("report %+v", w.AuditTrailReport)
	}

	// An altered entry breaks the piece that holds it; the entries before
	// it in the piece checked out.
	var w2 AuditWalk
	if err := walkPiece(t, s, &w2, 3); err != nil {
		t.Fatal(err)
	}
	tamperAudit(t, s, 5, func(e *AuditEntry) { e.Subject = "mallory" })
	wantBreakAt(t, walkPiece(t, s, &w2, 10), 5)
	if w2.LastSeq != 4 {
		t.Fatalf("last good entry before the break: %d", w2.LastSeq)
	}
	// A deleted entry is named as missing.
	var w3 AuditWalk
	if err := walkPiece(t, s, &w3, 3); err != nil {
		t.Fatal(err)
	}
	rawAudit(t, s, 5, func(b *bolt.Bucket, k []byte) { b.Delete(k) })
	wantBreakAt(t, walkPiece(t, s, &w3, 10), 5)
}

// TestAuditWalkCheckpointOfWalkedEntry: the checkpoint schedule signs the
// newest entry, which a walk in pieces (the node's background check) has
// often passed already. The next piece holds the late checkpoint to its
// entry and accepts the checkpoint's own trail entry, instead of calling
// the chain broken; a late checkpoint that does not match its entry is
// still caught.
func TestAuditWalkCheckpointOfWalkedEntry(t *testing.T) {
	s := openTestStore(t)
	a := newAuditSigner(t, "n1")
	index := trailWithCheckpoints(t, s, a, 0, 0)
	appendSamples(t, s, index, 5)
	index += 5
	var w AuditWalk
	if err := walkPiece(t, s, &w, 0); err != nil || w.LastSeq != 5 {
		t.Fatalf("first piece: %+v, %v", w.AuditTrailReport, err)
	}
	last := lastAuditOf(t, s)
	if r := applyRaw(t, s, index, TypeAuditCheckpoint, t0, a.sign(t, last.Seq, last.Hash, t0)); r.Err != nil {
		t.Fatalf("checkpoint of %d: %v", last.Seq, r.Err)
	}
	index++
	if err := walkPiece(t, s, &w, 0); err != nil || w.LastSeq != 6 || w.Checkpoints != 1 || w.LastCheckpoint != 5 || w.Unvouched != 1 {
		t.Fatalf("after a checkpoint of a walked entry: %+v, %v", w.AuditTrailReport, err)
	}

	// Another walk that passed entry 7 before its checkpoint, which is
	// then forged over an altered hash behind Apply's back.
	appendSamples(t, s, index, 1)
	index++
	var w2 AuditWalk
	if err := walkPiece(t, s, &w2, 0); err != nil || w2.LastSeq != 7 {
		t.Fatalf("%+v, %v", w2.AuditTrailReport, err)
	}
	last = lastAuditOf(t, s)
	if r := applyRaw(t, s, index, TypeAuditCheckpoint, t0, a.sign(t, last.Seq, last.Hash, t0)); r.Err != nil {
		t.Fatalf("checkpoint of %d: %v", last.Seq, r.Err)
	}
	tamperAudit(t, s, 7, func(e *AuditEntry) { e.Subject = "mallory" })
	wantBreakAt(t, walkPiece(t, s, &w2, 0), 7)
}
