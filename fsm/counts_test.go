package fsm

import (
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestSessionCount: the count follows sessions as they are created,
// revoked and swept.
func TestSessionCount(t *testing.T) {
	a := newApplier(t)
	count := func() int { return viewValue(t, a.s, func(r Reader) (int, error) { return r.SessionCount(), nil }) }
	if n := count(); n != 0 {
		t.Fatalf("empty state: %d sessions", n)
	}
	if r := a.apply(TypeUserCreate, t0, UserCreate{ID: "u1", Username: "alice", PasswordHash: "h"}); r.Err != nil {
		t.Fatal(r.Err)
	}
	for i := range 3 {
		sid := fmt.Sprintf("s%d", i)
		r := a.apply(TypeSessionCreate, t0, SessionCreate{ID: sid, UserID: "u1", RefreshHash: hashOf(sid),
			Lifetime: int64(time.Hour), IdleTimeout: int64(time.Hour), MaxPerUser: 10, OnLimit: "deny"})
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if n := count(); n != 3 {
		t.Fatalf("after 3 logins: %d sessions", n)
	}
	if r := a.apply(TypeSessionRevoke, t0, SessionRevoke{ID: "s1", UserID: "u1"}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if n := count(); n != 2 {
		t.Fatalf("after a revocation: %d sessions", n)
	}
	if r := a.apply(TypeSweep, t0.Add(2*time.Hour), Sweep{Limit: 100}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if n := count(); n != 0 {
		t.Fatalf("after the sweep past their lifetime: %d sessions", n)
	}
	if n := viewValue(t, a.s, func(r Reader) (int, error) { return r.BlockCount(), nil }); n != 0 {
		t.Fatalf("%d blocks in a state that has none", n)
	}
}

// BenchmarkSessionCount: what bulwark_active_sessions costs a scrape at a
// million stored sessions (BULWARK_SESSION_RECORDS for another number):
// the count the store keeps ("kept"), against bbolt's page statistics,
// walking the keys with a cursor, and decoding every record to ask Alive:
//
//	go test -run '^$' -bench SessionCount -benchtime 10x ./fsm
func BenchmarkSessionCount(b *testing.B) {
	n := 1_000_000
	if v := os.Getenv("BULWARK_SESSION_RECORDS"); v != "" {
		fmt.Sscan(v, &n)
	}
	s := openTestStore(b)
	// Written straight into the bucket in a scattered order, as logins
	// write them (half-full pages after splits), with realistic records.
	const batch = 50_000
	for start := 0; start < n; start += batch {
		err := s.db.Update(func(tx *bolt.Tx) error {
			bk := tx.Bucket(bucketSessions)
			for i := start; i < min(start+batch, n); i++ {
				id := scatteredName(i) + scatteredName(n+i) + scatteredName(2*n+i)
				v, _ := json.Marshal(Session{ID: id, UserID: scatteredName(i / 10), CreatedAt: t0, LastSeenAt: t0,
					AuthTime: t0, ExpiresAt: t0.Add(time.Hour), IdleTimeout: int64(time.Hour), IP: "192.0.2.10",
					UserAgent: "Mozilla/5.0 (X11; Linux x86_64) bench", AMR: []string{"pwd"}, RefreshHash: hashOf(id)})
				if err := bk.Put([]byte(id), v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	// Reopened, the store counts them in its consistency check.
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	s, err := Open(s.path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { closeAndCheck(b, s) })
	b.Logf("opened (and checked) %d sessions in %v", n, time.Since(start).Round(time.Millisecond))
	view := func(b *testing.B, fn func(Reader) int) {
		b.ReportAllocs()
		for b.Loop() {
			var got int
			if err := s.View(func(r Reader) error { got = fn(r); return nil }); err != nil {
				b.Fatal(err)
			}
			if got != n {
				b.Fatalf("counted %d of %d", got, n)
			}
		}
	}
	b.Run("kept", func(b *testing.B) { view(b, Reader.SessionCount) })
	b.Run("stats", func(b *testing.B) {
		view(b, func(r Reader) int { return r.tx.Bucket(bucketSessions).Stats().KeyN })
	})
	b.Run("cursor", func(b *testing.B) {
		view(b, func(r Reader) int { return bucketLen(r.tx.Bucket(bucketSessions)) })
	})
	b.Run("decode-alive", func(b *testing.B) {
		view(b, func(r Reader) int {
			c, k := r.tx.Bucket(bucketSessions).Cursor(), 0
			for key, v := c.First(); key != nil; key, v = c.Next() {
				if s, err := decodeSession(v); err == nil && s.Alive(t0) {
					k++
				}
			}
			return k
		})
	})
}
