package api

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	tests := []struct {
		name    string
		remote  string
		xff     []string
		trusted []netip.Prefix
		want    string
	}{
		{"no proxies: header ignored", "203.0.113.5:1234", []string{"1.2.3.4"}, nil, "203.0.113.5"},
		{"untrusted peer: header ignored", "203.0.113.5:1234", []string{"1.2.3.4"}, trusted, "203.0.113.5"},
		{"trusted peer, no header", "10.0.0.1:1234", nil, trusted, "10.0.0.1"},
		{"trusted peer", "10.0.0.1:1234", []string{"1.2.3.4"}, trusted, "1.2.3.4"},
		{"spoofed left entry ignored", "10.0.0.1:1234", []string{"6.6.6.6, 1.2.3.4"}, trusted, "1.2.3.4"},
		{"proxy chain", "10.0.0.1:1234", []string{"6.6.6.6, 1.2.3.4, 10.0.0.2"}, trusted, "1.2.3.4"},
		{"all trusted: leftmost", "10.0.0.1:1234", []string{"10.0.0.3, 10.0.0.2"}, trusted, "10.0.0.3"},
		{"several header lines", "10.0.0.1:1234", []string{"6.6.6.6", "1.2.3.4"}, trusted, "1.2.3.4"},
		{"garbage last: the peer", "10.0.0.1:1234", []string{"1.2.3.4, garbage"}, trusted, "10.0.0.1"},
		{"garbage behind a trusted hop", "10.0.0.1:1234", []string{"garbage, 10.0.0.2"}, trusted, "10.0.0.2"},
		{"garbage left of the client", "10.0.0.1:1234", []string{"garbage, 1.2.3.4"}, trusted, "1.2.3.4"},
		{"empty entry", "10.0.0.1:1234", []string{"1.2.3.4,"}, trusted, "10.0.0.1"},
		{"entry with port", "10.0.0.1:1234", []string{"1.2.3.4:5678"}, trusted, "1.2.3.4"},
		{"ipv6 peer and client", "[::1]:443", []string{"2001:db8::1"}, trusted, "2001:db8::1"},
		{"bracketed ipv6 with port", "[::1]:443", []string{"[2001:db8::2]:80"}, trusted, "2001:db8::2"},
		{"mapped ipv4 peer is trusted", "[::ffff:10.0.0.1]:1", []string{"1.2.3.4"}, trusted, "1.2.3.4"},
		{"mapped ipv4 client unmapped", "10.0.0.1:1", []string{"::ffff:1.2.3.4"}, trusted, "1.2.3.4"},
		{"zone dropped", "[fe80::1%eth0]:1", nil, nil, "fe80::1"},
		{"unix socket peer", "@", []string{"1.2.3.4"}, trusted, "invalid IP"},
		{"empty remote", "", nil, trusted, "invalid IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := clientIP(r, tt.trusted).String(); got != tt.want {
				t.Errorf("clientIP = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestAccessLog: one line per request with what an operator needs, and
// never the query string, bodies or credentials.
func TestAccessLog(t *testing.T) {
	logger, sink := newTestLogger(t)
	h := NewHandler(Options{Logger: logger, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}},
		fakeReady{ok: true}, newFakeUsers(), nil)
	req := httptest.NewRequest("GET", "/healthz?access_token=sekrit-token", strings.NewReader(`{"password":"hunter22"}`))
	req.RemoteAddr = "192.0.2.1:5555"
	req.Header.Set("X-Forwarded-For", "198.51.100.7")
	req.Header.Set("Authorization", "Bearer sekrit-bearer")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)

	id := rec.Header().Get("X-Request-Id")
	if !sink.contains("msg=request", "method=GET", "path=/healthz", "status=200", "bytes=16",
		"duration=", "remote_ip=198.51.100.7", "request_id="+id) {
		t.Errorf("access log line missing or incomplete:\n%s", sink.all())
	}
	for _, secret := range []string{"sekrit", "hunter22", "access_token"} {
		if strings.Contains(sink.all(), secret) {
			t.Errorf("%q reached the log", secret)
		}
	}
}

func TestRequestIDsDiffer(t *testing.T) {
	h, _ := newTestHandler(t, fakeReady{ok: true})
	seen := map[string]bool{}
	for range 50 {
		id := do(t, h, "GET", "/healthz", "", "").Header().Get("X-Request-Id")
		if seen[id] {
			t.Fatalf("request id %s repeated", id)
		}
		seen[id] = true
	}
}

// TestHandlerMayOverrideHeaders: headers are set before the handler runs,
// so a route with other needs (a cacheable JWKS) can change one.
func TestHandlerMayOverrideHeaders(t *testing.T) {
	logger, _ := newTestLogger(t)
	h := newRouter(Options{Logger: logger}, func(mux *http.ServeMux) {
		mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "public, max-age=300")
			writeJSON(w, r, 200, map[string]any{"keys": []any{}})
		})
	})
	rec := do(t, h, "GET", "/jwks", "", "")
	if got := rec.Header().Get("Cache-Control"); got != "public, max-age=300" {
		t.Errorf("Cache-Control %q", got)
	}
	if rec.Header().Get("Strict-Transport-Security") == "" {
		t.Error("HSTS missing")
	}
}

// TestRequestLogLevels: successful reads are logged at debug, writes and
// failures at info, so an info-level log keeps every change and every
// refusal without a line per token check or probe.
func TestRequestLogLevels(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	h := &middleware{log: log, next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/missing":
			http.NotFound(w, r)
		default:
			w.Write([]byte("ok"))
		}
	})}
	for _, c := range []struct {
		method, path string
		logged       bool
	}{
		{http.MethodGet, "/v1/me", false},
		{http.MethodHead, "/healthz", false},
		{http.MethodGet, "/missing", true},
		{http.MethodPost, "/v1/auth/login", true},
		{http.MethodDelete, "/v1/me/sessions/x", true},
	} {
		buf.Reset()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(c.method, c.path, nil))
		if got := strings.Contains(buf.String(), "msg=request"); got != c.logged {
			t.Errorf("%s %s: logged %v at info, want %v (%q)", c.method, c.path, got, c.logged, buf.String())
		}
	}
}

// TestSecurityHeaderKeysCanonical: the middleware sets the headers by
// map key, which only works for keys in canonical form.
func TestSecurityHeaderKeysCanonical(t *testing.T) {
	for _, kv := range append(securityHeaders, [2]string{"X-Request-Id"}) {
		if c := http.CanonicalHeaderKey(kv[0]); c != kv[0] {
			t.Errorf("header %q is set by key but its canonical form is %q", kv[0], c)
		}
	}
}
