package fsm

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

func readSession(t *testing.T, s *Store, id string) *Session {
	t.Helper()
	return viewValue(t, s, func(r Reader) (*Session, error) { return r.Session(id) })
}

func readUser(t *testing.T, s *Store, name string) *User {
	t.Helper()
	return viewValue(t, s, func(r Reader) (*User, error) { return r.UserByName(name) })
}

// TestReadCacheFollowsTheStoredRecord checks that reads through the cache
// see every change Apply makes, and that what one reader does to its copy
// reaches neither the cache nor the next reader.
func TestReadCacheFollowsTheStoredRecord(t *testing.T) {
	a := setupUser(t)
	if r := createSession(a, t0, "u1", "s1", "r1", 10, "evict_oldest"); r.Err != nil {
		t.Fatal(r.Err)
	}
	first := readSession(t, a.s, "s1")
	if len(a.s.reads.entries) == 0 {
		t.Fatal("a session read was not remembered")
	}
	// The reader's copy is its own, slices included.
	first.UserID, first.AMR[0] = "someone-else", "forged"
	again := readSession(t, a.s, "s1")
	if again.UserID != "u1" || !slices.Equal(again.AMR, []string{"pwd"}) {
		t.Fatalf("a reader's change reached the next reader: %+v", again)
	}
	// A refresh rewrites the session: the next read sees it.
	later := t0.Add(time.Hour)
	if r := refresh(a, later, "r1", "r2"); r.Err != nil {
		t.Fatal(r.Err)
	}
	if got := readSession(t, a.s, "s1"); !got.LastSeenAt.Equal(later) || got.RefreshHash != hashOf("r2") {
		t.Fatalf("after a refresh the cache served %+v", got)
	}
	// A revoked session is gone, whatever was remembered.
	if r := a.apply(TypeSessionRevoke, later, SessionRevoke{ID: "s1", UserID: "u1", Reason: "logout"}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if err := a.s.View(func(r Reader) error { _, err := r.Session("s1"); return err }); err != ErrSessionNotFound {
		t.Fatalf("a revoked session read as %v", err)
	}

	if r := a.apply(TypeUserCreate, t0, UserCreate{ID: "u2", Username: "bob", PasswordHash: "h", Roles: []string{"ops"}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	u := readUser(t, a.s, "bob")
	u.Roles[0], u.Username = "admin", "mallory"
	if got := readUser(t, a.s, "bob"); got.HasRole("admin") || got.Username != "bob" {
		t.Fatalf("a reader's change reached the next reader: %+v", got)
	}
	if r := a.apply(TypeUserSetDisabled, later, UserSetDisabled{ID: "u1", Disabled: true}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if got := readUser(t, a.s, "alice"); !got.Disabled {
		t.Fatalf("a disabled user read as %+v", got)
	}
	// A deleted record is forgotten, not only never served.
	if r := a.apply(TypeUserDelete, later, UserDelete{ID: "u2"}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if err := a.s.View(func(r Reader) error { _, err := r.UserByID("u2"); return err }); err != ErrUserNotFound {
		t.Fatalf("a deleted user read as %v", err)
	}
	if _, ok := a.s.reads.entries[readKey{string(bucketUsers), "u2"}]; ok {
		t.Fatal("a deleted user is still remembered")
	}
}

// TestReadCacheChecksTheBytes puts a decoded value in the cache under a
// key whose stored bytes differ: it must not be served.
func TestReadCacheChecksTheBytes(t *testing.T) {
	a := setupUser(t)
	a.s.reads.remember(string(bucketUsers), "u1", []byte(`{"id":"u1","username":"mallory"}`), &User{ID: "u1", Username: "mallory"})
	if got := readUser(t, a.s, "alice"); got.Username != "alice" {
		t.Fatalf("served a value decoded from other bytes: %+v", got)
	}
}

func TestReadCacheIsBounded(t *testing.T) {
	c := newReadCache()
	for i := range maxReadCache + 10 {
		c.remember("b", fmt.Sprint(i), []byte{1}, &User{})
	}
	if n := len(c.entries); n == 0 || n > maxReadCache {
		t.Fatalf("%d entries, want 1 to %d", n, maxReadCache)
	}
	if _, ok := c.lookup("b", fmt.Sprint(maxReadCache+9), []byte{1}); !ok {
		t.Fatal("the newest entry is gone")
	}
}

// BenchmarkReadSession measures a Bearer request's reads, its session
// and its user, with the cache and without.
func BenchmarkReadSession(b *testing.B) {
	for _, cached := range []bool{false, true} {
		b.Run(fmt.Sprintf("cache=%v", cached), func(b *testing.B) {
			a := &applier{t: b, s: openTestStore(b)}
			if r := a.apply(TypeUserCreate, t0, UserCreate{ID: "u1", Username: "alice", PasswordHash: "h", Roles: []string{"ops"}}); r.Err != nil {
				b.Fatal(r.Err)
			}
			if r := createSession(a, t0, "u1", "s1", "r1", 10, "evict_oldest"); r.Err != nil {
				b.Fatal(r.Err)
			}
			if !cached {
				a.s.reads = nil
			}
			b.ResetTimer()
			for range b.N {
				a.s.View(func(r Reader) error {
					if _, err := r.Session("s1"); err != nil {
						return err
					}
					_, err := r.UserByID("u1")
					return err
				})
			}
		})
	}
}
