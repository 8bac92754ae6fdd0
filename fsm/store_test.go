package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// openTestStore opens a store in a temporary directory and, when the test
// ends, closes it and checks the file's consistency (bbolt btesting style).
func openTestStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeAndCheck(t, s) })
	return s
}

func closeAndCheck(t testing.TB, s *Store) {
	t.Helper()
	if s.db == nil {
		return
	}
	// The session count the store kept through every batch is the
	// number the file holds (counts.go): no handler wrote a session
	// past putSession and deleteSession.
	if n, err := checkDB(s.db); err != nil {
		t.Errorf("state.db inconsistent: %v", err)
	} else if kept := s.counts.sessions.Load(); kept != n {
		t.Errorf("the store counted %d sessions; state.db holds %d", kept, n)
	}
	if err := s.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}

func mustEncode(t testing.TB, typ Type, at time.Time, payload any) []byte {
	t.Helper()
	c, err := NewCommand(typ, 1, at.UnixNano(), payload)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func userCreate(t testing.TB, index uint64, id, name string) Entry {
	t.Helper()
	return Entry{Index: index, Term: 1, Command: true, Data: mustEncode(t, TypeUserCreate, t0,
		UserCreate{ID: id, Username: name, PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA"})}
}

func TestApplyUserLifecycle(t *testing.T) {
	s := openTestStore(t)
	res := s.ApplyBatch([]Entry{
		userCreate(t, 1, "u1", "alice"),
		userCreate(t, 2, "u2", "alice"), // same name: refused
		userCreate(t, 3, "u1", "bob"),   // same id: refused
		{Index: 4, Term: 1, Command: true, Data: mustEncode(t, TypeUserSetDisabled, t0.Add(time.Minute), UserSetDisabled{ID: "u1", Disabled: true})},
		{Index: 5, Term: 1}, // a Raft configuration entry
		{Index: 6, Term: 2, Command: true, Data: mustEncode(t, TypeUserDelete, t0, UserDelete{ID: "nope"})},
	})
	wantErr := []error{nil, ErrUserExists, ErrUserExists, nil, nil, ErrUserNotFound}
	for i, want := range wantErr {
		if !errors.Is(res[i].Err, want) {
			t.Errorf("entry %d: err = %v, want %v", i+1, res[i].Err, want)
		}
	}
	if u, ok := res[0].Value.(*User); !ok || u.ID != "u1" || !u.CreatedAt.Equal(t0) {
		t.Errorf("create result = %#v", res[0].Value)
	}
	err := s.View(func(r Reader) error {
		u, err := r.UserByName("alice")
		if err != nil {
			return err
		}
		if !u.Disabled || !u.UpdatedAt.Equal(t0.Add(time.Minute)) {
			t.Errorf("user after disable = %+v", u)
		}
		if _, err := r.UserByName("bob"); !errors.Is(err, ErrUserNotFound) {
			t.Errorf("bob: %v, want not found", err)
		}
		if got := r.AppliedIndex(); got != 6 {
			t.Errorf("applied = %d, want 6", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	res = s.ApplyBatch([]Entry{{Index: 7, Term: 2, Command: true, Data: mustEncode(t, TypeUserDelete, t0, UserDelete{ID: "u1"})}})
	if res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	if n := countUsers(t, s); n != 0 {
		t.Errorf("%d users after delete", n)
	}
	// The name is free again.
	if res := s.ApplyBatch([]Entry{userCreate(t, 8, "u3", "alice")}); res[0].Err != nil {
		t.Errorf("re-create after delete: %v", res[0].Err)
	}
}

func countUsers(t testing.TB, s *Store) int {
	t.Helper()
	n := 0
	if err := s.View(func(r Reader) error {
		return r.Users(func(*User) bool { n++; return true })
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestBadCommandsAreRejectedAlike(t *testing.T) {
	good := mustEncode(t, TypeUserCreate, t0, UserCreate{ID: "x", Username: "x", PasswordHash: "h"})
	cases := map[string]struct {
		data []byte
		want error
	}{
		"not json":        {[]byte("{"), ErrMalformedCommand},
		"unknown type":    {[]byte(`{"type":"user.fly","v":1,"at":1,"p":{}}`), ErrUnknownCommand},
		"unknown version": {[]byte(`{"type":"user.create","v":9,"at":1,"p":{}}`), ErrUnknownCommand},
		"extra field":     {[]byte(`{"type":"user.create","v":1,"at":1,"p":{},"x":1}`), ErrMalformedCommand},
		"trailing data":   {append(append([]byte{}, good...), []byte(` {}`)...), ErrMalformedCommand},
		"no time":         {[]byte(`{"type":"user.create","v":1,"p":{}}`), ErrMalformedCommand},
		"payload field":   {[]byte(`{"type":"user.create","v":1,"at":1,"p":{"id":"a","username":"a","password_hash":"h","admin":true}}`), ErrMalformedCommand},
		"missing id":      {[]byte(`{"type":"user.create","v":1,"at":1,"p":{"username":"a","password_hash":"h"}}`), ErrInvalidCommand},
		"bad utf8":        {[]byte("{\"type\":\"user.create\",\"v\":1,\"at\":1,\"p\":{\"id\":\"\xff\"}}"), ErrMalformedCommand},
		"too large":       {bytes.Repeat([]byte(" "), MaxCommandBytes+1), ErrCommandTooLarge},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s := openTestStore(t)
			res := s.ApplyBatch([]Entry{{Index: 1, Term: 1, Command: true, Data: tc.data}})
			if !errors.Is(res[0].Err, tc.want) {
				t.Fatalf("err = %v, want %v", res[0].Err, tc.want)
			}
			if n := countUsers(t, s); n != 0 {
				t.Fatalf("a rejected command wrote %d users", n)
			}
			// The entry is still consumed: the index moves on identically everywhere.
			if i, _, _ := s.Applied(); i != 1 {
				t.Fatalf("applied = %d, want 1", i)
			}
		})
	}
}

func TestRestartNeitherReappliesNorLoses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var log []Entry
	for i := 1; i <= 10; i++ {
		log = append(log, userCreate(t, uint64(i), fmt.Sprintf("id%d", i), fmt.Sprintf("user%d", i)))
	}
	s.ApplyBatch(log[:6])
	s.Close()

	// After a restart Raft replays from its last snapshot (here: the whole
	// log). Entries already applied must be skipped, not applied again: a
	// second user.create of the same user would answer ErrUserExists.
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeAndCheck(t, s) })
	if i, term, _ := s.Applied(); i != 6 || term != 1 {
		t.Fatalf("applied after restart = %d/%d, want 6/1", i, term)
	}
	res := s.ApplyBatch(log)
	for i, r := range res {
		if r.Err != nil || (i < 6) != (r.Value == nil) {
			t.Errorf("replayed entry %d: %+v", i+1, r)
		}
	}
	if n := countUsers(t, s); n != 10 {
		t.Fatalf("%d users, want 10", n)
	}
}

func TestSnapshotRestore(t *testing.T) {
	src := openTestStore(t)
	for i := 1; i <= 50; i++ {
		src.ApplyBatch([]Entry{userCreate(t, uint64(i), fmt.Sprintf("id%d", i), fmt.Sprintf("user%d", i))})
	}
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Writes after the snapshot began are not in it.
	src.ApplyBatch([]Entry{userCreate(t, 51, "late", "late")})
	var buf bytes.Buffer
	if _, err := snap.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if snap.Index() != 50 {
		t.Errorf("snapshot index %d, want 50", snap.Index())
	}
	snap.Release()

	dst := openTestStore(t)
	dst.ApplyBatch([]Entry{userCreate(t, 1, "stale", "stale")})
	if err := dst.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if n := countUsers(t, dst); n != 50 {
		t.Errorf("%d users after restore, want 50", n)
	}
	if i, _, _ := dst.Applied(); i != 50 {
		t.Errorf("applied after restore = %d", i)
	}
	if err := dst.View(func(r Reader) error { _, err := r.UserByName("stale"); return err }); !errors.Is(err, ErrUserNotFound) {
		t.Errorf("state from before the restore survived: %v", err)
	}
	// Garbage is refused and the current state stays.
	if err := dst.Restore(bytes.NewReader([]byte("not a database"))); err == nil {
		t.Fatal("restore of garbage succeeded")
	}
	if n := countUsers(t, dst); n != 50 {
		t.Errorf("%d users after failed restore, want 50", n)
	}
}

func TestTornStateIsDetected(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 200; i++ {
		s.ApplyBatch([]Entry{userCreate(t, uint64(i), fmt.Sprintf("id%d", i), fmt.Sprintf("user%d", i))})
	}
	s.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"lost tail":     b[:16384],
		"zeroed metas":  append(make([]byte, 8192), b[8192:]...),
		"zeroed leaves": append(append(append([]byte{}, b[:16384]...), make([]byte, 65536)...), b[16384+65536:]...),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			// Marked clean, so that the damage itself must be noticed.
			p := filepath.Join(t.TempDir(), "state.db")
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := markClean(p); err != nil {
				t.Fatal(err)
			}
			s, err := Open(p)
			if err == nil {
				s.Close()
				t.Fatal("opened a torn state.db")
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
		})
	}
}

// TestUncleanCloseIsRefused: state.db is written without fsync, so one that
// was open when its process died is not trusted, however whole it looks.
func TestUncleanCloseIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.ApplyBatch([]Entry{userCreate(t, 1, "u1", "alice")})
	// The process dies here: no Close. (Release the file lock the way the
	// kernel would.)
	s.db.Close()
	if _, err := Open(path); !errors.Is(err, ErrUnclean) {
		t.Fatalf("reopen after a crash: %v, want ErrUnclean", err)
	}
	// A clean close is trusted.
	s2, err := Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	p2 := s2.Path()
	s2.ApplyBatch([]Entry{userCreate(t, 1, "u1", "alice")})
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	s3, err := Open(p2)
	if err != nil {
		t.Fatalf("reopen after a clean close: %v", err)
	}
	t.Cleanup(func() { closeAndCheck(t, s3) })
	if n := countUsers(t, s3); n != 1 {
		t.Fatalf("%d users", n)
	}
	// The marker is consumed: a crash from here on is noticed.
	if _, err := os.Stat(cleanMarker(p2)); !os.IsNotExist(err) {
		t.Fatalf("marker still there after open: %v", err)
	}
}

func FuzzDecodeCommand(f *testing.F) {
	f.Add(mustEncode(f, TypeUserCreate, t0, UserCreate{ID: "a", Username: "b", PasswordHash: "c"}))
	f.Add(mustEncode(f, TypeUserDelete, t0, UserDelete{ID: "a"}))
	f.Add([]byte(`{"type":"user.create","v":1,"at":1,"p":null}`))
	f.Add(mustEncode(f, TypeTokensIssuer, t0, TokensIssuer{Issuer: "https://auth.example"}))
	f.Add([]byte(`{"type":"key.publish","v":2,"at":1,"p":{"kid":"k","node":"n","alg":"ES256","jwk":{"kty":"EC","kid":"k","alg":"ES256"},"issuer":"https://n.example"}}`))
	// level 4: audit keys and checkpoints (checkpoint.go)
	f.Add([]byte(`{"type":"audit.key","v":1,"at":1,"p":{"kid":"00","node":"n","alg":"ML-DSA-65","public":"AAAA"}}`))
	f.Add([]byte(`{"type":"audit.checkpoint","v":1,"at":1,"p":{"seq":1,"hash":"00","time":1,"node":"n","es256_kid":"00","es256_sig":"AAAA","mldsa65_kid":"00","mldsa65_sig":"AAAA"}}`))
	for _, c := range []struct {
		typ Type
		v   uint16
		p   any
	}{ // level 3
		{TypeLoginAttempt, 2, LoginAttemptV2{Username: "a", MaxAttempts: 5, Window: window, PendingTTL: ttl, MaxNamesPerAddress: 2, IP: "2001:db8::1"}},
		{TypeLoginFailure, 2, LoginFailureV2{Username: "a", Slot: 1, MaxAttempts: 5, Window: window, PendingTTL: ttl, MaxNamesPerAddress: 2, IP: "192.0.2.1"}},
		{TypeLoginRelease, 1, LoginRelease{Username: "a", Slot: 1}},
		{TypeSweep, 2, SweepV2{Limit: 10, Migrate: 10}},
		// level 4: blocks and detection
		{TypeBlockAdd, 1, BlockAdd{CIDR: "192.0.2.0/24", For: int64(time.Hour), Reason: "r"}},
		{TypeBlockRemove, 1, BlockRemove{CIDR: "2001:db8::/64"}},
		{TypeLoginFailure, 3, LoginFailureV3{LoginFailureV2: LoginFailureV2{Username: "a", Slot: 1, MaxAttempts: 5, Window: window,
			PendingTTL: ttl, IP: "192.0.2.1"}, Detect: DetectLimits{Window: 60e9, BlockAfterFailures: 1, BlockAfterUsernames: 1, BlockFor: 60e9}}},
	} {
		cmd, _ := NewCommand(c.typ, c.v, t0.UnixNano(), c.p)
		b, _ := cmd.Encode()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeCommand(data)
		if err != nil {
			return
		}
		// Whatever decodes must apply without panicking, and the same
		// bytes must give the same result twice.
		s := openTestStore(t)
		r1 := s.ApplyBatch([]Entry{{Index: 1, Term: 1, Command: true, Data: data}})
		r2 := applyOneFresh(t, data)
		if (r1[0].Err == nil) != (r2.Err == nil) {
			t.Fatalf("%s: nondeterministic result %v vs %v", c.Type, r1[0].Err, r2.Err)
		}
	})
}

func applyOneFresh(t *testing.T, data []byte) Result {
	s := openTestStore(t)
	return s.ApplyBatch([]Entry{{Index: 1, Term: 1, Command: true, Data: data}})[0]
}

// BenchmarkApplyBatch measures entries applied per second by one
// transaction per entry (batch=1) against one per Raft batch (batch=64).
// Transactions are not fsynced, as in the daemon (the Raft log is).
func BenchmarkApplyBatch(b *testing.B) {
	for _, size := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			s := openTestStore(b)
			var index uint64
			b.ResetTimer()
			for n := 0; n < b.N; n += size {
				batch := make([]Entry, 0, size)
				for j := 0; j < size; j++ {
					index++
					batch = append(batch, userCreate(b, index, fmt.Sprintf("id%d", index), fmt.Sprintf("user%d", index)))
				}
				s.ApplyBatch(batch)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
		})
	}
}
