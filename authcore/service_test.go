package authcore

import (
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/clock"
)

// localStore is the Store of every authcore test. It applies commands
// straight to an fsm.Store, one entry per Apply, the way a one-node Raft
// would: the same encoding, the same dispatcher, no network. Its hooks,
// all optional, let a test act between a command's proposal and its
// result; a test sets them on its own goroutine, between calls.
type localStore struct {
	mu    sync.Mutex
	s     *fsm.Store
	index uint64
	// versions is the version of the last command of each type applied.
	versions map[fsm.Type]uint16

	// before runs first in each Apply, with the caller's context.
	before func(ctx context.Context, cmd fsm.Command)
	// follower refuses, like a follower forwarding a write, a command
	// whose context has ended before it is sent: it is never applied.
	// (A leader, which the store otherwise is, applies it.)
	follower bool
	// after runs once a command has applied, before its result returns.
	after func(cmd fsm.Command)
	// views counts read transactions (View calls).
	views atomic.Int64
	// fail, if set, may refuse a command before it is applied (a lost
	// leader, a dropped connection): its error is the answer.
	fail func(cmd fsm.Command) error
}

func newLocalStore(t testing.TB) *localStore {
	t.Helper()
	s, err := fsm.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &localStore{s: s}
}

func (l *localStore) Apply(ctx context.Context, cmd fsm.Command) (any, error) {
	if l.before != nil {
		l.before(ctx, cmd)
	}
	if err := ctx.Err(); err != nil && l.follower {
		return nil, err // never sent
	}
	if l.fail != nil {
		if err := l.fail(cmd); err != nil {
			return nil, err
		}
	}
	v, err := l.apply(cmd)
	if l.after != nil {
		l.after(cmd)
	}
	return v, err
}

func (l *localStore) apply(cmd fsm.Command) (any, error) {
	b, err := cmd.Encode()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.versions == nil {
		l.versions = map[fsm.Type]uint16{}
	}
	l.versions[cmd.Type] = cmd.Version
	l.index++
	r := l.s.ApplyBatch([]fsm.Entry{{Index: l.index, Term: 1, Command: true, Data: b}})[0]
	return r.Value, r.Err
}

func (l *localStore) View(fn func(fsm.Reader) error) error {
	l.views.Add(1)
	return l.s.View(fn)
}

var testHash = HashParams{MemoryKiB: 8192, Iterations: 1, Parallelism: 1}

func newTestService(t *testing.T, opts ...Option) (*Service, *localStore) {
	t.Helper()
	st := newLocalStore(t)
	s, err := New(st, Config{Hash: testHash, Policy: PasswordPolicy{MinLength: 12, MaxLength: 128}}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s, st
}

func TestCreateUser(t *testing.T) {
	now := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	s, st := newTestService(t, WithClock(clock.NewFake(now)))
	ctx := context.Background()
	u, err := s.CreateUser(ctx, NewUser{Username: "Alice", Password: "correct horse battery", Email: "a@example.com", Roles: []string{"admin", "ops", "admin"}})
	if err != nil {
		t.Fatal(err)
	}
	if u.Username != "alice" || len(u.ID) != 32 || !u.CreatedAt.Equal(now) || len(u.Roles) != 2 || u.Roles[0] != "admin" {
		t.Errorf("created %+v", u)
	}
	// The stored hash verifies the password and is argon2id with the
	// configured parameters; the password itself is nowhere.
	st.View(func(r fsm.Reader) error {
		stored, err := r.UserByName("alice")
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := VerifyPassword("correct horse battery", stored.PasswordHash); !ok || err != nil {
			t.Errorf("stored hash does not verify: %v", err)
		}
		if NeedsRehash(stored.PasswordHash, testHash) {
			t.Errorf("stored hash %q not made with the configured parameters", stored.PasswordHash)
		}
		return nil
	})

	cases := map[string]struct {
		req  NewUser
		want error
	}{
		"same name other case": {NewUser{Username: "ALICE", Password: "another long passphrase"}, ErrUserExists},
		"fullwidth same name":  {NewUser{Username: "ａｌｉｃｅ", Password: "another long passphrase"}, ErrUserExists},
		"bad name":             {NewUser{Username: "a b", Password: "another long passphrase"}, ErrInvalidUsername},
		"short password":       {NewUser{Username: "bob", Password: "short"}, ErrWeakPassword},
		"common password":      {NewUser{Username: "bob", Password: "password1234"}, ErrWeakPassword},
		"bad email":            {NewUser{Username: "bob", Password: "another long passphrase", Email: "Bob <bob@x>"}, ErrInvalidInput},
		"bad role":             {NewUser{Username: "bob", Password: "another long passphrase", Roles: []string{"Admin!"}}, ErrInvalidInput},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			before := st.index
			if _, err := s.CreateUser(ctx, tc.req); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if st.index != before {
				t.Fatal("a refused request proposed a command")
			}
		})
	}
}

func TestUserAdminLifecycle(t *testing.T) {
	s, _ := newTestService(t)
	ctx := context.Background()
	for _, n := range []string{"carol", "alice", "bob"} {
		if _, err := s.CreateUser(ctx, NewUser{Username: n, Password: "a perfectly fine passphrase"}); err != nil {
			t.Fatal(err)
		}
	}
	us, err := s.Users(ctx)
	if err != nil || len(us) != 3 || us[0].Username != "alice" || us[2].Username != "carol" {
		t.Fatalf("Users = %+v, %v", us, err)
	}
	u, err := s.SetDisabled(ctx, "Bob", true)
	if err != nil || !u.Disabled {
		t.Fatalf("disable: %+v %v", u, err)
	}
	// By id too.
	if u, err = s.User(ctx, u.ID); err != nil || u.Username != "bob" || !u.Disabled {
		t.Fatalf("by id: %+v %v", u, err)
	}
	if _, err := s.SetDisabled(ctx, "bob", false); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUser(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.User(ctx, "bob"); !errors.Is(err, ErrUserNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	if err := s.DeleteUser(ctx, "bob"); !errors.Is(err, ErrUserNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

// TestHashesAreBounded checks that no more password hashes run at once
// than the configured slots, and that waiters give up with ErrBusy, with
// hashes on the callers' goroutines and on dedicated threads.
func TestHashesAreBounded(t *testing.T) {
	for _, mode := range []struct {
		name string
		opts []Option
	}{{"inline", nil}, {"threads", []Option{WithHashThreads(false)}}, {"pinned threads", []Option{WithHashThreads(true)}}} {
		t.Run(mode.name, func(t *testing.T) { testHashesAreBounded(t, mode.opts...) })
	}
}

func testHashesAreBounded(t *testing.T, opts ...Option) {
	st := newLocalStore(t)
	s, err := New(st, Config{Hash: testHash, Policy: PasswordPolicy{MinLength: 12, MaxLength: 128},
		MaxConcurrentHashes: 2, HashWait: 50 * time.Millisecond}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var inFlight, peak atomic.Int32
	release := make(chan struct{})
	var releaseOnce sync.Once
	free := func() { releaseOnce.Do(func() { close(release) }) }
	defer free() // before s.Close, which waits for the hashes holding slots
	var wg sync.WaitGroup
	results := make(chan error, 5)
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- s.withHashSlot(context.Background(), func() error {
				n := inFlight.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				<-release
				inFlight.Add(-1)
				return nil
			})
		}()
	}
	// Two hold the slots until released; the three others give up after
	// HashWait with ErrBusy, first, whatever the machine's speed.
	for i := 0; i < 3; i++ {
		select {
		case err := <-results:
			if !errors.Is(err, ErrBusy) {
				t.Fatalf("a waiter answered %v, want ErrBusy", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("waiters did not give up within 10 s")
		}
	}
	if got := peak.Load(); got != 2 {
		t.Fatalf("peak %d in flight, want 2", got)
	}
	if st := s.HashStats(); st.Slots != 2 || st.InFlight != 2 || st.Waiting != 0 || st.Requests != 5 ||
		st.Refused != 3 || st.Abandoned != 0 || st.Waited < 3*50*time.Millisecond {
		t.Errorf("while two hold their slots: %+v, want 2 slots in flight, 3 refused after 50 ms each", st)
	}
	// A caller whose request ends while it waits is counted apart.
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for s.HashStats().Waiting == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	if err := s.withHashSlot(ctx, func() error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled waiter answered %v", err)
	}
	if st := s.HashStats(); st.Abandoned != 1 || st.Refused != 3 || st.Requests != 6 {
		t.Errorf("after a cancelled wait: %+v, want 1 abandoned, 3 refused, 6 requests", st)
	}
	free()
	wg.Wait()
	close(results)
	for err := range results {
		if err != nil {
			t.Fatalf("a slot holder answered %v", err)
		}
	}
	if st := s.HashStats(); st.InFlight != 0 || st.Waiting != 0 || st.Busy <= 0 {
		t.Errorf("after release: %+v, want none in flight or waiting, some busy time", st)
	}
}

// TestHashThreads checks logins whose hashes run on dedicated threads, the
// threads' report, and that a closed Service refuses to check passwords
// instead of failing.
func TestHashThreads(t *testing.T) {
	s, _ := newTestService(t, WithHashThreads(true))
	ctx := context.Background()
	if _, err := s.CreateUser(ctx, NewUser{Username: "alice", Password: pw}); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.checkPassword(ctx, "alice", mustUser(t, s, "alice"), pw); !ok || err != nil {
		t.Fatalf("the right password on a hash thread: %v, %v", ok, err)
	}
	if ok, err := s.checkPassword(ctx, "alice", mustUser(t, s, "alice"), pw+"!"); ok || err != nil {
		t.Fatalf("a wrong password on a hash thread: %v, %v", ok, err)
	}
	st := s.HashStats()
	if st.Threads != runtime.NumCPU() || st.Requests != 3 {
		t.Errorf("%+v, want one thread per CPU and 3 hashes (one create, two checks)", st)
	}
	if runtime.GOOS == "linux" && !errors.Is(st.PinError, syscall.EPERM) && (st.PinnedThreads != st.Threads || st.PinError != nil) {
		t.Errorf("%d of %d threads pinned (%v), want all", st.PinnedThreads, st.Threads, st.PinError)
	}
	s.Close()
	if _, err := s.checkPassword(ctx, "alice", mustUser(t, s, "alice"), pw); err == nil {
		t.Error("a closed Service checked a password")
	}
	if st := s.HashStats(); st.InFlight != 0 {
		t.Errorf("a refused check holds a slot: %+v", st)
	}
}

func mustUser(t *testing.T, s *Service, name string) *fsm.User {
	t.Helper()
	u, err := s.lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestResultAs: a result of the type its command's row names comes back
// typed; any other is an error naming both, not a panic; an error passes
// through.
func TestResultAs(t *testing.T) {
	cmd := fsm.Command{Type: fsm.TypeUserRevoke, Version: 1}
	if n, err := resultAs[int](cmd, 3, nil); n != 3 || err != nil {
		t.Fatalf("an int: %v, %v", n, err)
	}
	if _, err := resultAs[*fsm.Session](cmd, 3, nil); err == nil || !strings.Contains(err.Error(), "answered int, not *fsm.Session") {
		t.Fatalf("an int as a session: %v", err)
	}
	if _, err := resultAs[*fsm.Session](cmd, nil, nil); err == nil {
		t.Fatal("no value as a session: no error")
	}
	if _, err := resultAs[int](cmd, nil, fsm.ErrUserNotFound); !errors.Is(err, fsm.ErrUserNotFound) {
		t.Fatalf("an error: %v", err)
	}
}
