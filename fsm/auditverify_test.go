package fsm

import (
	"testing"

	bolt "go.etcd.io/bbolt"
)

// verifyFrom is VerifyAuditFrom on s's state.
func verifyFrom(t testing.TB, s *Store, after uint64, prev string, limit int) (*AuditEntry, error) {
	t.Helper()
	var last *AuditEntry
	var verr error
	if err := s.View(func(r Reader) error { last, verr = r.VerifyAuditFrom(after, prev, limit); return nil }); err != nil {
		t.Fatal(err)
	}
	return last, verr
}

// TestVerifyAuditFrom: a trail checked a piece at a time, each piece
// chained to the last hash checked, finds what VerifyAudit finds.
func TestVerifyAuditFrom(t *testing.T) {
	s := openTestStore(t)
	if last, err := verifyFrom(t, s, 0, AuditGenesisHash, 10); last != nil || err != nil {
		t.Fatalf("empty trail: %v, %v", last, err)
	}
	appendSamples(t, s, 1, 7)
	// In pieces of three: 1-3, 4-6, 7, then nothing more.
	after, prev := uint64(0), AuditGenesisHash
	for _, want := range []uint64{3, 6, 7} {
		last, err := verifyFrom(t, s, after, prev, 3)
		if err != nil || last == nil || last.Seq != want {
			t.Fatalf("after %d: %+v, %v; want through %d", after, last, err, want)
		}
		after, prev = last.Seq, last.Hash
	}
	if last, err := verifyFrom(t, s, after, prev, 3); last != nil || err != nil {
		t.Fatalf("caught up: %+v, %v", last, err)
	}
	// Chained to another hash than entry 3's (a trail rewritten below
	// what was checked): the next piece breaks at once.
	if _, err := verifyFrom(t, s, 3, AuditGenesisHash, 3); err == nil {
		t.Fatal("a piece chained to the wrong hash verified")
	} else {
		wantBreakAt(t, err, 4)
	}

	// An altered entry breaks the piece that holds it; the entries before
	// it in the piece checked out.
	e3 := verifyThrough(t, s, 3)
	tamperAudit(t, s, 5, func(e *AuditEntry) { e.Subject = "mallory" })
	last, err := verifyFrom(t, s, 3, e3.Hash, 10)
	wantBreakAt(t, err, 5)
	if last == nil || last.Seq != 4 {
		t.Fatalf("last good entry before the break: %+v", last)
	}
	// A deleted entry is named as missing.
	rawAudit(t, s, 5, func(b *bolt.Bucket, k []byte) { b.Delete(k) })
	_, err = verifyFrom(t, s, 3, e3.Hash, 10)
	wantBreakAt(t, err, 5)
}

// verifyThrough returns entry seq, checking the trail up to it.
func verifyThrough(t testing.TB, s *Store, seq uint64) *AuditEntry {
	t.Helper()
	last, err := verifyFrom(t, s, 0, AuditGenesisHash, int(seq))
	if err != nil || last == nil || last.Seq != seq {
		t.Fatalf("through %d: %+v, %v", seq, last, err)
	}
	return last
}
