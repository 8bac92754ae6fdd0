package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/authcore"
)

// logSink routes a logger to t.Log and keeps the lines for assertions.
type logSink struct {
	t     testing.TB
	mu    sync.Mutex
	lines []string
}

func (s *logSink) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	s.mu.Lock()
	s.lines = append(s.lines, line)
	s.mu.Unlock()
	s.t.Log(line)
	return len(p), nil
}

// contains reports whether a logged line contains every one of subs.
func (s *logSink) contains(subs ...string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.lines {
		all := true
		for _, sub := range subs {
			all = all && strings.Contains(l, sub)
		}
		if all {
			return true
		}
	}
	return false
}

func (s *logSink) all() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

func newTestLogger(t testing.TB) (*slog.Logger, *logSink) {
	t.Helper()
	sink := &logSink{t: t}
	return slog.New(slog.NewTextHandler(sink, &slog.HandlerOptions{Level: slog.LevelDebug})), sink
}

// fakeUsers is an in-memory UserAdmin that counts calls. err, when set, is
// what every call returns.
type fakeUsers struct {
	mu    sync.Mutex
	calls int
	err   error
	users map[string]authcore.User
	last  authcore.NewUser
	// barriers counts ReadBarrier calls; barrierErr is what they return.
	barriers   int
	barrierErr error
}

func (f *fakeUsers) ReadBarrier(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.barriers++
	return f.barrierErr
}

func newFakeUsers() *fakeUsers { return &fakeUsers{users: map[string]authcore.User{}} }

func (f *fakeUsers) enter() error {
	f.calls++
	return f.err
}

func (f *fakeUsers) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeUsers) CreateUser(ctx context.Context, req authcore.NewUser) (authcore.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(); err != nil {
		return authcore.User{}, err
	}
	f.last = req
	name := strings.ToLower(req.Username)
	if name == "" {
		return authcore.User{}, fmt.Errorf("%w: empty", authcore.ErrInvalidUsername)
	}
	if len(req.Password) < 8 {
		return authcore.User{}, fmt.Errorf("%w: shorter than 8 characters", authcore.ErrWeakPassword)
	}
	if _, ok := f.users[name]; ok {
		return authcore.User{}, authcore.ErrUserExists
	}
	roles := req.Roles
	if roles == nil {
		roles = []string{}
	}
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	u := authcore.User{ID: "id-" + name, Username: name, Email: req.Email, Roles: roles, CreatedAt: now, UpdatedAt: now}
	f.users[name] = u
	return u, nil
}

func (f *fakeUsers) Users(ctx context.Context) ([]authcore.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(); err != nil {
		return nil, err
	}
	var out []authcore.User
	for _, u := range f.users {
		out = append(out, u)
	}
	return out, nil
}

func (f *fakeUsers) find(nameOrID string) (authcore.User, error) {
	for _, u := range f.users {
		if u.Username == strings.ToLower(nameOrID) || u.ID == nameOrID {
			return u, nil
		}
	}
	return authcore.User{}, authcore.ErrUserNotFound
}

func (f *fakeUsers) User(ctx context.Context, nameOrID string) (authcore.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(); err != nil {
		return authcore.User{}, err
	}
	return f.find(nameOrID)
}

func (f *fakeUsers) SetDisabled(ctx context.Context, nameOrID string, disabled bool) (authcore.User, error) {
	return f.update(nameOrID, func(u *authcore.User) { u.Disabled = disabled })
}

func (f *fakeUsers) Unflag(ctx context.Context, nameOrID string) (authcore.User, error) {
	return f.update(nameOrID, func(u *authcore.User) { u.Flagged = false })
}

// update changes the user nameOrID names with change, as one write.
func (f *fakeUsers) update(nameOrID string, change func(*authcore.User)) (authcore.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(); err != nil {
		return authcore.User{}, err
	}
	u, err := f.find(nameOrID)
	if err != nil {
		return u, err
	}
	change(&u)
	f.users[u.Username] = u
	return u, nil
}

func (f *fakeUsers) DeleteUser(ctx context.Context, nameOrID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(); err != nil {
		return err
	}
	u, err := f.find(nameOrID)
	if err != nil {
		return err
	}
	delete(f.users, u.Username)
	return nil
}

// fakeReady is a Readiness with a fixed answer; it panics if told to.
type fakeReady struct {
	ok     bool
	reason string
	panics bool
}

func (f fakeReady) Ready() (bool, string) {
	if f.panics {
		panic("readiness exploded")
	}
	return f.ok, f.reason
}

// do sends one request to h. A non-empty contentType is set as is.
func do(t *testing.T, h http.Handler, method, target, contentType, body string) *httptest.ResponseRecorder {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// checkError asserts an error answer: status, JSON content type and a
// body of exactly {"error": code, "error_description": non-empty}.
func checkError(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) errorBody {
	t.Helper()
	if rec.Code != status {
		t.Errorf("status %d, want %d (body %s)", rec.Code, status, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("error body %q: %v", rec.Body, err)
	}
	if len(m) != 2 || m["error"] != code {
		t.Errorf("error body %s, want error %q and error_description only", rec.Body, code)
	}
	desc, _ := m["error_description"].(string)
	if desc == "" {
		t.Errorf("error body %s has no error_description", rec.Body)
	}
	return errorBody{Error: code, Description: desc}
}

// checkSecurityHeaders asserts the headers every response carries.
func checkSecurityHeaders(t *testing.T, h http.Header) {
	t.Helper()
	for _, kv := range securityHeaders {
		if got := h.Get(kv[0]); got != kv[1] {
			t.Errorf("%s = %q, want %q", kv[0], got, kv[1])
		}
	}
	if id := h.Get("X-Request-Id"); len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		t.Errorf("X-Request-Id %q, want 32 hex digits", id)
	}
}

var errDiskOnFire = errors.New("bbolt: /var/lib/bulwark/state.db: disk on fire")
