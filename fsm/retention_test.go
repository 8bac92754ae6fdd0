package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"
)

func prune(t testing.TB, s *Store, index uint64, at time.Time, p AuditPrune) (AuditPruneResult, error) {
	t.Helper()
	r := applyRaw(t, s, index, TypeAuditPrune, at, p)
	if r.Err != nil {
		return AuditPruneResult{}, r.Err
	}
	return r.Value.(AuditPruneResult), nil
}

func pruneCandidate(t testing.TB, s *Store, cutoff time.Time) uint64 {
	t.Helper()
	var seq uint64
	if err := s.View(func(r Reader) (err error) { seq, err = r.PruneCandidate(cutoff.UnixNano()); return err }); err != nil {
		t.Fatal(err)
	}
	return seq
}

// TestAuditPrune: retention deletes whole ranges up to a checkpoint, a
// few entries per command, and every verifier, whole or in pieces, starts
// from the kept checkpoint throughout, mid-prune included.
func TestAuditPrune(t *testing.T) {
	s := openTestStore(t)
	a := newAuditSigner(t, "node1")
	// Checkpoints at 4, 9 and 14; entries 1..15, all stamped t0 (+ a few s).
	index := trailWithCheckpoints(t, s, a, 3, 4)
	keep := AuditPrune{KeepFor: int64(MinAuditRetention), Limit: 3}
	later := t0.Add(MinAuditRetention + time.Hour)

	if seq := pruneCandidate(t, s, t0.Add(-time.Hour)); seq != 0 {
		t.Fatalf("nothing is old enough, yet the candidate is %d", seq)
	}
	// Refused: no checkpoint at before_seq-1; too young; too short a
	// retention; nothing written by any of them.
	for _, tc := range []struct {
		name string
		at   time.Time
		p    AuditPrune
	}{
		{"no checkpoint", later, AuditPrune{BeforeSeq: 9, KeepFor: keep.KeepFor, Limit: 3}},
		{"younger than keep_for", t0.Add(time.Hour), AuditPrune{BeforeSeq: 10, KeepFor: keep.KeepFor, Limit: 3}},
		{"keep_for under the minimum", later, AuditPrune{BeforeSeq: 10, KeepFor: int64(time.Hour), Limit: 3}},
		{"no limit", later, AuditPrune{BeforeSeq: 10, KeepFor: keep.KeepFor}},
		{"nothing kept after", later, AuditPrune{BeforeSeq: 16, KeepFor: keep.KeepFor, Limit: 3}},
	} {
		if _, err := prune(t, s, index, tc.at, tc.p); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("%s: %v, want ErrInvalidCommand", tc.name, err)
		}
		index++
	}
	if rep, err := verifyTrail(t, s); err != nil || rep.FirstSeq != 1 || rep.Entries != 15 {
		t.Fatalf("refused prunes changed the trail: %+v, %v", rep, err)
	}

	// The newest checkpoint old enough with an entry after it: 14.
	seq := pruneCandidate(t, s, later.Add(-MinAuditRetention))
	if seq != 15 {
		t.Fatalf("candidate %d, want 15", seq)
	}
	var w AuditWalk // a background check that saw entries 1..2 before the prune
	if err := walkPiece(t, s, &w, 2); err != nil {
		t.Fatal(err)
	}
	keep.BeforeSeq = seq
	res, err := prune(t, s, index, later, keep)
	index++
	if err != nil || res != (AuditPruneResult{Floor: 15, Deleted: 3, More: true}) {
		t.Fatalf("first prune: %+v, %v", res, err)
	}
	// Mid-prune: entries 4..14 are still stored but below the floor.
	for _, check := range []SignatureCheck{checkAuditSig, nil} {
		var rep AuditTrailReport
		var verr error
		s.View(func(r Reader) error { rep, verr = r.VerifyAuditTrail(check); return nil })
		// 15 (checkpoint 14's record) and 16 (the prune's own entry).
		if verr != nil || rep.FirstSeq != 15 || rep.Entries != 2 || rep.LastCheckpoint != 14 || rep.LastSeq != 16 {
			t.Fatalf("mid-prune: %+v, %v", rep, verr)
		}
	}
	if n, err := verifyStored(t, s); err != nil || n != 2 {
		t.Fatalf("VerifyAudit mid-prune: %d, %v", n, err)
	}
	if err := walkPiece(t, s, &w, 0); err != nil || w.FirstSeq != 15 || w.LastSeq != 16 {
		t.Fatalf("the walk left behind the floor: %+v, %v", w.AuditTrailReport, err)
	}
	// The same floor again goes on deleting; a lower one changes nothing
	// but deletes too.
	for _, before := range []uint64{15, 10, 15, 15} {
		keep.BeforeSeq = before
		if res, err = prune(t, s, index, later, keep); err != nil || res.Floor != 15 {
			t.Fatalf("prune(before %d): %+v, %v", before, res, err)
		}
		index++
	}
	if res.Deleted != 2 || res.More {
		t.Fatalf("last prune: %+v", res)
	}
	all := allAudit(t, s)
	if len(all) != 2 || all[0].Seq != 15 || all[1].Type != string(TypeAuditPrune) || all[1].Details["before_seq"] != "15" {
		t.Fatalf("kept: %+v", all)
	}
	// Checkpoints stay, every one.
	n := 0
	s.View(func(r Reader) error {
		return r.AuditCheckpoints(0, func(*AuditCheckpointRecord) bool { n++; return true })
	})
	if n != 3 {
		t.Fatalf("%d checkpoints kept, want 3", n)
	}
	if rep, err := verifyTrail(t, s); err != nil || rep.FirstSeq != 15 || rep.Entries != 2 {
		t.Fatalf("after the prune: %+v, %v", rep, err)
	}

	// An entry of the kept range altered still breaks the trail.
	tamperAudit(t, s, 16, func(e *AuditEntry) { e.Actor = "mallory" })
	if _, err := verifyTrail(t, s); !errors.Is(err, ErrAuditChainBroken) {
		t.Fatalf("an altered kept entry verified: %v", err)
	}
}

// TestAuditPruneSnapshot: a pruned trail and its floor cross a snapshot.
func TestAuditPruneSnapshot(t *testing.T) {
	s := openTestStore(t)
	a := newAuditSigner(t, "node1")
	index := trailWithCheckpoints(t, s, a, 2, 5)
	later := t0.Add(48 * time.Hour)
	if _, err := prune(t, s, index, later, AuditPrune{BeforeSeq: 6, KeepFor: int64(MinAuditRetention), Limit: 2}); err != nil {
		t.Fatal(err)
	}
	dst := openTestStore(t)
	copyState(t, s, dst)
	if rep, err := verifyTrail(t, dst); err != nil || rep.FirstSeq != 6 {
		t.Fatalf("restored: %+v, %v", rep, err)
	}
	var floor uint64
	dst.View(func(r Reader) error { floor = r.AuditFloor(); return nil })
	if floor != 6 {
		t.Fatalf("floor %d after restore", floor)
	}
}

// copyState restores dst from a snapshot of src.
func copyState(t testing.TB, src, dst *Store) {
	t.Helper()
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
	if err := dst.Restore(&buf); err != nil {
		t.Fatal(err)
	}
}

// TestSessionPrune: a walk over the sessions, a few per command from a
// kept cursor, deletes those dead (idle, or past their lifetime) for
// longer than keep_for, with their refresh tokens, and no other.
func TestSessionPrune(t *testing.T) {
	a := setupUser(t)
	for i, at := range []time.Time{t0, t0.Add(24 * time.Hour), t0.Add(47 * time.Hour)} {
		if r := createSession(a, at, "u1", fmt.Sprintf("s%d", i+1), fmt.Sprintf("r%d", i+1), 10, "deny"); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	// At t0+48h, keeping 12 h: s1 died (idle) at t0+24h, 24 h ago: it
	// goes; s2 died just now; s3 is alive.
	now := t0.Add(48 * time.Hour)
	var total int
	passes := 0
	for range 10 {
		r := a.applyVersion(TypeSessionPrune, 1, now, SessionPrune{KeepFor: int64(12 * time.Hour), Limit: 1})
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		res := r.Value.(SessionPruneResult)
		total += res.Deleted
		if res.Done {
			passes++
			break
		}
	}
	if passes != 1 || total != 1 {
		t.Fatalf("%d passes, %d deleted; want one pass deleting s1", passes, total)
	}
	var ids []string
	a.s.View(func(r Reader) error {
		return r.tx.Bucket(bucketSessions).ForEach(func(k, _ []byte) error { ids = append(ids, string(k)); return nil })
	})
	if fmt.Sprint(ids) != "[s2 s3]" {
		t.Fatalf("sessions left: %v", ids)
	}
	var refresh int
	a.s.View(func(r Reader) error { refresh = r.tx.Bucket(bucketRefresh).Stats().KeyN; return nil })
	if refresh != 2 {
		t.Fatalf("%d refresh tokens left, want s2's and s3's", refresh)
	}
	// The next pass, a day later, starts over and takes s2 (dead since
	// t0+48h); keep_for out of range is refused.
	r := a.applyVersion(TypeSessionPrune, 1, now.Add(24*time.Hour), SessionPrune{KeepFor: int64(12 * time.Hour), Limit: 10})
	if r.Err != nil || r.Value.(SessionPruneResult) != (SessionPruneResult{Deleted: 1, Done: true}) {
		t.Fatalf("second pass: %+v", r)
	}
	if r := a.applyVersion(TypeSessionPrune, 1, now, SessionPrune{KeepFor: -1, Limit: 10}); !errors.Is(r.Err, ErrInvalidCommand) {
		t.Fatalf("negative keep_for: %v", r.Err)
	}
}
