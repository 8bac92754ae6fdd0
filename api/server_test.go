package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/authcore"
)

func newTestHandler(t *testing.T, ready Readiness) (http.Handler, *logSink) {
	t.Helper()
	logger, sink := newTestLogger(t)
	return NewHandler(Options{Logger: logger, SealMode: "tpm", NodeID: "node1"}, ready, newFakeUsers(), newFakeAuth()), sink
}

func TestHealthz(t *testing.T) {
	h, _ := newTestHandler(t, fakeReady{})
	rec := do(t, h, "GET", "/healthz", "", "")
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"status":"ok"}` {
		t.Errorf("GET /healthz = %d %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	checkSecurityHeaders(t, rec.Header())
}

func TestReadyz(t *testing.T) {
	tests := []struct {
		name   string
		ready  Readiness
		status int
		want   map[string]string
	}{
		{"ready", fakeReady{ok: true}, 200,
			map[string]string{"status": "ready", "seal": "tpm", "node": "node1"}},
		{"no leader", fakeReady{reason: "no leader known"}, 503,
			map[string]string{"status": "unavailable", "reason": "no leader known", "seal": "tpm", "node": "node1"}},
		{"not wired", nil, 503,
			map[string]string{"status": "unavailable", "reason": "starting", "seal": "tpm", "node": "node1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _ := newTestHandler(t, tt.ready)
			rec := do(t, h, "GET", "/readyz", "", "")
			if rec.Code != tt.status {
				t.Errorf("status %d, want %d", rec.Code, tt.status)
			}
			var got map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("%s: %v", rec.Body, err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("body %v, want %v", got, tt.want)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			checkSecurityHeaders(t, rec.Header())
		})
	}
}

// TestRoutingErrors: unknown paths and wrong methods get JSON, with the
// security headers, instead of the mux's text.
func TestRoutingErrors(t *testing.T) {
	h, _ := newTestHandler(t, fakeReady{ok: true})
	tests := []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{"GET", "/nope", 404, CodeNotFound, ""},
		{"GET", "/", 404, CodeNotFound, ""},
		{"GET", "/healthz/extra", 404, CodeNotFound, ""},
		{"POST", "/healthz", 405, CodeMethodNotAllowed, "GET, HEAD"},
		{"DELETE", "/readyz", 405, CodeMethodNotAllowed, "GET, HEAD"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			rec := do(t, h, tt.method, tt.path, "", "")
			checkError(t, rec, tt.status, tt.code)
			checkSecurityHeaders(t, rec.Header())
			if got := rec.Header().Get("Allow"); got != tt.allow {
				t.Errorf("Allow %q, want %q", got, tt.allow)
			}
		})
	}
}

// TestPanicRecovered: a panicking handler answers 500 JSON with the
// headers, and the panic and its stack are logged, not sent.
func TestPanicRecovered(t *testing.T) {
	h, sink := newTestHandler(t, fakeReady{panics: true})
	rec := do(t, h, "GET", "/readyz", "", "")
	eb := checkError(t, rec, 500, CodeInternal)
	checkSecurityHeaders(t, rec.Header())
	if strings.Contains(eb.Description, "exploded") {
		t.Errorf("the panic value reached the client: %q", eb.Description)
	}
	if !strings.Contains(eb.Description, rec.Header().Get("X-Request-Id")) {
		t.Errorf("description %q does not name the request id", eb.Description)
	}
	if !sink.contains("panic serving request", "readiness exploded", "goroutine") {
		t.Error("panic and stack not logged")
	}
	if !sink.contains("status=500") {
		t.Error("access log does not show the 500")
	}
}

// TestPanicAfterWrite: once the answer has started, the connection is cut
// (http.ErrAbortHandler) rather than a second answer mixed in.
func TestPanicAfterWrite(t *testing.T) {
	logger, _ := newTestLogger(t)
	h := newRouter(Options{Logger: logger}, func(mux *http.ServeMux) {
		mux.HandleFunc("GET /half", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("partial"))
			panic("late")
		})
	})
	defer func() {
		if v := recover(); v != http.ErrAbortHandler {
			t.Errorf("recovered %v, want http.ErrAbortHandler", v)
		}
	}()
	do(t, h, "GET", "/half", "", "")
}

// TestWriteErrorMapping: every error a handler may hold maps to its code,
// and internals never reach the client.
func TestWriteErrorMapping(t *testing.T) {
	errNoLeader := errors.New("node: no leader")
	tests := []struct {
		name       string
		err        error
		status     int
		code       string
		desc       string // substring of the description
		retryAfter string
	}{
		{"api error", &Error{Status: 429, Code: CodeTooManyAttempts, Description: "slow down", RetryAfter: 1500 * time.Millisecond},
			429, CodeTooManyAttempts, "slow down", "2"},
		{"wrapped api error", fmt.Errorf("x: %w", &Error{Status: 403, Code: CodeForbidden, Description: "admins only"}),
			403, CodeForbidden, "admins only", ""},
		{"invalid username", fmt.Errorf("%w: starts with white space", authcore.ErrInvalidUsername),
			400, CodeInvalidRequest, "invalid username: starts with white space", ""},
		{"weak password", fmt.Errorf("%w: too short", authcore.ErrWeakPassword),
			400, CodeInvalidRequest, "weak password: too short", ""},
		{"invalid input", fmt.Errorf("%w: email", authcore.ErrInvalidInput), 400, CodeInvalidRequest, "email", ""},
		{"exists", fmt.Errorf("node: apply: %w", authcore.ErrUserExists), 409, CodeConflict, "already exists", ""},
		{"not found", fmt.Errorf("node: %w", authcore.ErrUserNotFound), 404, CodeNotFound, "no such user", ""},
		{"busy", authcore.ErrBusy, 503, CodeUnavailable, "busy", "1"},
		{"no leader", fmt.Errorf("apply: %w", errNoLeader), 503, CodeNoLeader, "leader", "1"},
		{"deadline", fmt.Errorf("apply: %w", context.DeadlineExceeded), 503, CodeUnavailable, "timed out", "1"},
		{"unknown", errDiskOnFire, 500, CodeInternal, "internal error", ""},
		{"incomplete api error", &Error{Description: "oops"}, 500, CodeInternal, "internal error", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logger, sink := newTestLogger(t)
			h := newRouter(Options{Logger: logger, IsNoLeader: func(err error) bool { return errors.Is(err, errNoLeader) }},
				func(mux *http.ServeMux) {
					mux.HandleFunc("GET /fail", func(w http.ResponseWriter, r *http.Request) { writeError(w, r, tt.err) })
				})
			rec := do(t, h, "GET", "/fail", "", "")
			eb := checkError(t, rec, tt.status, tt.code)
			checkSecurityHeaders(t, rec.Header())
			if !strings.Contains(eb.Description, tt.desc) {
				t.Errorf("description %q, want it to contain %q", eb.Description, tt.desc)
			}
			if got := rec.Header().Get("Retry-After"); got != tt.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tt.retryAfter)
			}
			if strings.Contains(rec.Body.String(), "disk on fire") || strings.Contains(rec.Body.String(), "bbolt") {
				t.Errorf("internals reached the client: %s", rec.Body)
			}
			if tt.err == errDiskOnFire && !sink.contains("internal error", "disk on fire", "request_id=") {
				t.Error("the internal error was not logged with its request id")
			}
		})
	}
}

// TestNoLeaderNeedsHook: without Options.IsNoLeader, api cannot know a
// node error means no leader; it is then a plain 500.
func TestNoLeaderNeedsHook(t *testing.T) {
	logger, _ := newTestLogger(t)
	h := newRouter(Options{Logger: logger}, func(mux *http.ServeMux) {
		mux.HandleFunc("GET /fail", func(w http.ResponseWriter, r *http.Request) {
			writeError(w, r, errors.New("node: no leader"))
		})
	})
	checkError(t, do(t, h, "GET", "/fail", "", ""), 500, CodeInternal)
}

func TestNewServer(t *testing.T) {
	logger, sink := newTestLogger(t)
	cfg := &tls.Config{MinVersion: tls.VersionTLS13}
	s := NewServer(":8443", http.NotFoundHandler(), cfg, logger)
	if s.Addr != ":8443" || s.TLSConfig != cfg || s.ReadHeaderTimeout != 5*time.Second ||
		s.ReadTimeout != 15*time.Second || s.WriteTimeout != 30*time.Second ||
		s.IdleTimeout != 120*time.Second || s.MaxHeaderBytes != 16<<10 {
		t.Errorf("server settings: %+v", s)
	}
	if h := s.HTTP2; h == nil || h.MaxConcurrentStreams != maxHTTP2Streams || h.MaxReadFrameSize != 16<<10 ||
		h.MaxReceiveBufferPerStream != 64<<10 || h.MaxReceiveBufferPerConnection != 256<<10 {
		t.Errorf("HTTP/2 settings: %+v", s.HTTP2)
	}
	s.ErrorLog.Printf("http: TLS handshake error from 192.0.2.1:5555: EOF")
	s.ErrorLog.Printf("http: something odd")
	if !sink.contains("level=DEBUG", "TLS handshake error") || !sink.contains("level=WARN", "something odd") {
		t.Errorf("server errors not routed to slog:\n%s", sink.all())
	}
}

// TestHTTP2StreamsPerConnection: one HTTP/2 connection carries 300
// requests at once (each handler waits for all of them to arrive), as
// one application server's pooled connection does under load; with Go's
// default of 250 streams the last 50 wait behind the first.
func TestHTTP2StreamsPerConnection(t *testing.T) {
	const inFlight = 300
	logger, _ := newTestLogger(t)
	var arrived atomic.Int64
	all := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if arrived.Add(1) == inFlight {
			close(all)
		}
		select {
		case <-all:
		case <-time.After(5 * time.Second):
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	srv := httptest.NewUnstartedServer(h)
	srv.Config = NewServer("", h, nil, logger)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	tr := srv.Client().Transport.(*http.Transport).Clone()
	var protos http.Protocols
	protos.SetHTTP2(true)
	tr.Protocols, tr.MaxConnsPerHost = &protos, 1
	tr.HTTP2 = &http.HTTP2Config{StrictMaxConcurrentRequests: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range inFlight {
		wg.Go(func() {
			resp, err := c.Get(srv.URL)
			if err != nil || resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
				failed.Add(1)
			}
			if err == nil {
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d requests on one HTTP/2 connection were not in flight together", n, inFlight)
	}
}
