package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// serveAdmin serves h on ln until the test ends.
func serveAdmin(t *testing.T, ln net.Listener, h http.Handler) {
	t.Helper()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("admin serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
}

// listenTestAdmin listens on a fresh socket and serves a fake-backed admin
// handler on it.
func listenTestAdmin(t *testing.T, path string, opts ...ListenOption) (*fakeUsers, *logSink) {
	t.Helper()
	logger, sink := newTestLogger(t)
	ln, err := ListenAdmin(path, append([]ListenOption{ListenLogger(logger)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	users := newFakeUsers()
	serveAdmin(t, ln, NewAdminHandler(users, nil, func() any { return map[string]string{"state": "Leader"} }, logger))
	return users, sink
}

func TestListenAdminModeAndCleanup(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "bulwark")
	path := filepath.Join(dir, "admin.sock")
	logger, _ := newTestLogger(t)
	ln, err := ListenAdmin(path, ListenLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Lstat(path)
	if err != nil || st.Mode().Type() != fs.ModeSocket || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v, mode %v; want a socket with mode 0600", err, st.Mode())
	}
	if dst, err := os.Stat(dir); err != nil || dst.Mode().Perm() != 0o700 {
		t.Errorf("created directory: %v, mode %v; want 0700", err, dst.Mode())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the socket (no temporary left)", len(entries))
	}
	ln.Close()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file after Close: %v; want it removed", err)
	}
}

func TestListenAdminReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.sock")
	// A dead daemon's socket: the file stays, nobody listens.
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false)
	old.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
	listenTestAdmin(t, path)
	if err := NewAdminClient(path).Do(context.Background(), "GET", "/admin/v1/status", nil, nil); err != nil {
		t.Errorf("new socket does not answer: %v", err)
	}
}

func TestListenAdminRefusesLiveSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.sock")
	listenTestAdmin(t, path)
	logger, _ := newTestLogger(t)
	_, err := ListenAdmin(path, ListenLogger(logger))
	if err == nil || !strings.Contains(err.Error(), "another bulwark is using "+path) {
		t.Fatalf("second ListenAdmin: %v; want another bulwark is using %s", err, path)
	}
	// The first daemon still answers.
	if err := NewAdminClient(path).Do(context.Background(), "GET", "/admin/v1/status", nil, nil); err != nil {
		t.Errorf("first daemon disturbed: %v", err)
	}
}

func TestListenAdminRefusesNonSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.sock")
	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	logger, _ := newTestLogger(t)
	if _, err := ListenAdmin(path, ListenLogger(logger)); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("ListenAdmin over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Error("the file was touched")
	}
}

// TestAdminPeerCheck: a peer whose uid is not allowed is cut off and
// logged; the check itself, without needing another user.
func TestAdminPeerCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.sock")
	users, sink := listenTestAdmin(t, path, withAllowedUIDs(4242))
	err := NewAdminClient(path).Do(context.Background(), "GET", "/admin/v1/users", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "closed the connection") {
		t.Errorf("refused peer: %v; want the connection closed", err)
	}
	if users.callCount() != 0 {
		t.Error("a refused peer reached the auth service")
	}
	if !sink.contains("level=WARN", "refused a peer", fmt.Sprintf("uid=%d", os.Geteuid()), fmt.Sprintf("pid=%d", os.Getpid())) {
		t.Errorf("refusal not logged with uid and pid:\n%s", sink.all())
	}
}

// TestAdminClient: a round trip, an error answer as *Error, and the
// message for a socket that is not there.
func TestAdminClient(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.sock")
	listenTestAdmin(t, path)
	c := NewAdminClient(path)
	ctx := context.Background()

	var u struct{ Username string }
	if err := c.Do(ctx, "POST", "/admin/v1/users", map[string]any{"username": "Alice", "password": "long enough"}, &u); err != nil || u.Username != "alice" {
		t.Fatalf("create: %v %+v", err, u)
	}
	err := c.Do(ctx, "POST", "/admin/v1/users", map[string]any{"username": "alice", "password": "long enough"}, nil)
	var e *Error
	if !errors.As(err, &e) || e.Status != 409 || e.Code != CodeConflict || !strings.Contains(e.Error(), "exists") {
		t.Errorf("duplicate: %#v", err)
	}
	err = c.Do(ctx, "POST", "/admin/v1/users", map[string]any{"username": "bob", "password": "long enough", "admin": true}, nil)
	if !errors.As(err, &e) || e.Status != 400 || !strings.Contains(e.Description, `unknown field "admin"`) {
		t.Errorf("unknown field: %#v", err)
	}
	if err := c.Do(ctx, "DELETE", "/admin/v1/users/alice", nil, &u); err != nil {
		t.Errorf("delete: %v", err)
	}
	if err := c.Do(ctx, "GET", "/admin/v1/users/alice", nil, &u); !errors.As(err, &e) || e.Code != CodeNotFound {
		t.Errorf("after delete: %v", err)
	}

	missing := filepath.Join(t.TempDir(), "nope.sock")
	err = NewAdminClient(missing).Do(ctx, "GET", "/admin/v1/status", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "cannot reach bulwark at "+missing+": is the daemon running?") ||
		!errors.Is(err, syscall.ENOENT) || strings.Count(err.Error(), "\n") != 0 {
		t.Errorf("missing socket: %v", err)
	}
}

// TestAdminClientTimeout: a daemon that accepts and never answers.
func TestAdminClientTimeout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			io.Copy(io.Discard, c)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = NewAdminClient(path).Do(ctx, "GET", "/admin/v1/status", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "did not answer in time") {
		t.Errorf("silent daemon: %v", err)
	}
}

// helperEnv names the socket a re-executed test binary tries to use.
const helperEnv = "BULWARK_TEST_ADMIN_SOCKET"

// TestHelperProcess is not a test: TestAdminSocketOtherUID runs the test
// binary as another user with this test selected, and reads its verdict.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("helper for TestAdminSocketOtherUID")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := NewAdminClient(path).Do(ctx, "GET", "/admin/v1/status", nil, nil)
	fmt.Printf("RESULT uid=%d err=%v\n", os.Getuid(), err)
	os.Exit(0)
}

// TestAdminSocketOtherUID: another local user can neither open the 0600
// socket nor, if its mode is loosened, talk through it: SO_PEERCRED stops
// it. Root (the test's own uid) is served meanwhile.
func TestAdminSocketOtherUID(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a child as another user")
	}
	// A directory the other user can enter, holding a copy of this test
	// binary it can run (the build cache is private).
	dir, err := os.MkdirTemp("", "bulwark-admin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "api.test")
	copyFile(t, bin)
	path := filepath.Join(dir, "admin.sock")
	users, sink := listenTestAdmin(t, path)

	asNobody := func() string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "-test.run=^TestHelperProcess$")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), helperEnv+"="+path)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("helper: %v\n%s", err, out)
		}
		for line := range strings.Lines(string(out)) {
			if r, ok := strings.CutPrefix(line, "RESULT "); ok {
				return strings.TrimSpace(r)
			}
		}
		t.Fatalf("helper said no RESULT:\n%s", out)
		return ""
	}

	// Mode 0600: the kernel refuses the connect.
	if got := asNobody(); !strings.Contains(got, "uid=65534") || !strings.Contains(got, "permission denied: run as root or the bulwark user") {
		t.Errorf("other user, socket 0600: %s", got)
	}
	// Mode 0666: connect succeeds, the peer check closes it.
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if got := asNobody(); !strings.Contains(got, "closed the connection") {
		t.Errorf("other user, socket 0666: %s; want the connection closed", got)
	}
	if !sink.contains("level=WARN", "refused a peer", "uid=65534", "pid=") {
		t.Errorf("refusal of uid 65534 not logged:\n%s", sink.all())
	}
	if users.callCount() != 0 {
		t.Error("the other user reached the auth service")
	}
	// Root is served.
	var st map[string]string
	if err := NewAdminClient(path).Do(context.Background(), "GET", "/admin/v1/status", nil, &st); err != nil || st["state"] != "Leader" {
		t.Errorf("root: %v %v", err, st)
	}
}

// copyFile copies the running test binary to dst, executable by all.
func copyFile(t *testing.T, dst string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
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
