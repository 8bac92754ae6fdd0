package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
)

// testLogger routes logs to t.Log so they show only when a test fails.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func openTestNode(t testing.TB, dir string) *Node {
	t.Helper()
	n, err := Open(Config{ID: "n1", DataDir: dir, Advertise: "127.0.0.1:18444", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		n.Close()
		t.Fatal(err)
	}
	return n
}

var seq atomic.Int64

func createUser(t testing.TB, n *Node, name string) {
	t.Helper()
	if _, err := n.Apply(context.Background(), userCmd(t, name)); err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
}

func userCmd(t testing.TB, name string) fsm.Command {
	t.Helper()
	c, err := fsm.NewCommand(fsm.TypeUserCreate, 1, time.Now().UnixNano()+seq.Add(1), fsm.UserCreate{
		ID: "id-" + name, Username: name, PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func users(t testing.TB, n *Node) map[string]bool {
	t.Helper()
	got := map[string]bool{}
	if err := n.View(func(r fsm.Reader) error {
		return r.Users(func(u *fsm.User) bool { got[u.Username] = true; return true })
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

func wantUsers(t testing.TB, n *Node, count int) {
	t.Helper()
	got := users(t, n)
	if len(got) != count {
		t.Fatalf("%d users, want %d", len(got), count)
	}
	for i := 0; i < count; i++ {
		if !got[fmt.Sprintf("user%d", i)] {
			t.Fatalf("user%d missing", i)
		}
	}
}

func TestBootstrapApplyRestart(t *testing.T) {
	dir := t.TempDir()
	n := openTestNode(t, dir)
	for i := 0; i < 20; i++ {
		createUser(t, n, fmt.Sprintf("user%d", i))
	}
	// A domain error comes back to the proposer, deterministically.
	if _, err := n.Apply(context.Background(), userCmd(t, "user0")); !errors.Is(err, fsm.ErrUserExists) {
		t.Fatalf("duplicate create: %v, want ErrUserExists", err)
	}
	before := n.Status().AppliedIndex
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	n = openTestNode(t, dir)
	defer n.Close()
	wantUsers(t, n, 20)
	if s := n.Status(); s.AppliedIndex < before || s.State != "Leader" {
		t.Fatalf("after restart: %+v, applied before %d", s, before)
	}
	createUser(t, n, "user20")
	wantUsers(t, n, 21)
}

// corrupt damages a closed state.db in the ways a crash can.
func corrupt(t *testing.T, path, how string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	switch how {
	case "lost tail":
		b = b[:16384]
	case "zeroed pages":
		copy(b[16384:], make([]byte, 32768))
	case "deleted":
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		return
	case "unclean": // the process died without closing state.db
		if err := os.Remove(path + ".clean"); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestDamagedStateIsRebuiltFromSnapshotAndLog(t *testing.T) {
	for _, how := range []string{"lost tail", "zeroed pages", "deleted", "unclean"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			n := openTestNode(t, dir)
			for i := 0; i < 200; i++ {
				createUser(t, n, fmt.Sprintf("user%d", i))
			}
			if err := n.Snapshot(); err != nil {
				t.Fatal(err)
			}
			for i := 200; i < 300; i++ { // only in the log
				createUser(t, n, fmt.Sprintf("user%d", i))
			}
			applied := n.Status().AppliedIndex
			n.Close()

			corrupt(t, filepath.Join(dir, "state.db"), how)
			n, err := Open(Config{ID: "n1", DataDir: dir, Advertise: "127.0.0.1:18444", Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			if aside, _ := filepath.Glob(filepath.Join(dir, "state.db.corrupt-*")); how == "zeroed pages" && len(aside) == 0 {
				// A file closed cleanly is opened without reading its
				// pages (unless the freelist is among the zeroed ones:
				// bbolt reads it at open); the background check finds
				// the damage, and the node stops serving until a
				// restart rebuilds it.
				select {
				case <-n.Damaged():
				case <-time.After(10 * time.Second):
					t.Fatal("the background check did not find the zeroed pages")
				}
				if ok, why := n.Ready(); ok {
					t.Fatal("ready with a damaged state.db")
				} else {
					t.Log("not ready:", why)
				}
				n.Close()
				n, err = Open(Config{ID: "n1", DataDir: dir, Advertise: "127.0.0.1:18444", Logger: testLogger(t)})
				if err != nil {
					t.Fatal(err)
				}
			}
			defer n.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := n.WaitReady(ctx); err != nil {
				t.Fatal(err)
			}
			wantUsers(t, n, 300)
			if got := n.Status().AppliedIndex; got < applied {
				t.Fatalf("applied %d after rebuild, want ≥ %d", got, applied)
			}
			if how == "lost tail" || how == "zeroed pages" {
				aside, _ := filepath.Glob(filepath.Join(dir, "state.db.corrupt-*"))
				if len(aside) != 1 {
					t.Fatalf("damaged file not kept aside: %v", aside)
				}
			}
		})
	}
}

func TestConcurrentWritersAllCommit(t *testing.T) {
	n := openTestNode(t, t.TempDir())
	defer n.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 64*10)
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				if _, err := n.Apply(context.Background(), userCmd(t, fmt.Sprintf("user%d", w*10+i))); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	wantUsers(t, n, 640)
}

// applyConcurrently applies b.N user creations through n from writers
// goroutines, timing only the applies.
func applyConcurrently(b *testing.B, n *Node, writers int, prefix string) {
	cmds := make([]fsm.Command, b.N)
	for i := range cmds {
		cmds[i] = userCmd(b, fmt.Sprintf("%s-%d", prefix, i))
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range writers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				if _, err := n.Apply(context.Background(), cmds[i]); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkCommittedWrites measures writes committed through Raft (the log
// fsynced per batch, state.db written unsynced) per second with 1 and 64
// concurrent writers.
func BenchmarkCommittedWrites(b *testing.B) {
	for _, writers := range []int{1, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			n := openTestNode(b, b.TempDir())
			defer n.Close()
			cpu0 := processCPU(b)
			applyConcurrently(b, n, writers, fmt.Sprintf("w%d", writers))
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
			b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/write")
		})
	}
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Raft runs with the configured heartbeat and election timeouts, 300 ms
// each unless set.
func TestRaftTimeouts(t *testing.T) {
	for _, tc := range []struct{ set, want time.Duration }{{0, 300 * time.Millisecond}, {700 * time.Millisecond, 700 * time.Millisecond}} {
		n, err := Open(Config{ID: "n1", DataDir: t.TempDir(), Advertise: "127.0.0.1:18444", Logger: testLogger(t),
			HeartbeatTimeout: tc.set, ElectionTimeout: tc.set})
		if err != nil {
			t.Fatal(err)
		}
		rc := n.raft.ReloadableConfig()
		n.Close()
		if rc.HeartbeatTimeout != tc.want || rc.ElectionTimeout != tc.want {
			t.Errorf("set %v: raft runs with heartbeat %v, election %v; want %v", tc.set, rc.HeartbeatTimeout, rc.ElectionTimeout, tc.want)
		}
	}
}
