package api

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// benchHandler is the API with the fake auth service and the daemon's
// logging (text, at info: an access line per write, none per read).
func benchHandler(b *testing.B) (http.Handler, *fakeAuth) {
	b.Helper()
	auth := newFakeAuth()
	logger := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return NewHandler(Options{Logger: logger, SealMode: "tpm", NodeID: "node1"}, fakeReady{ok: true}, newFakeUsers(), auth), auth
}

// BenchmarkMe is GET /v1/me with a Bearer token, the API's side of a
// session check (the fake auth service's allocations included).
func BenchmarkMe(b *testing.B) {
	h, auth := benchHandler(b)
	auth.mu.Lock()
	tok := auth.issue(auth.accounts["alice"], "")
	auth.mu.Unlock()
	req := httptest.NewRequest(http.MethodGet, "/v1/me", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}

// BenchmarkRefresh is POST /v1/auth/refresh, the API's side of a
// rotation: decoding the JSON body, the answer, the access log line.
func BenchmarkRefresh(b *testing.B) {
	h, auth := benchHandler(b)
	auth.mu.Lock()
	rt := auth.issue(auth.accounts["alice"], "").RefreshToken
	auth.mu.Unlock()
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/v1/auth/refresh", strings.NewReader(`{"refresh_token":"`+rt+`"}`))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		_, after, _ := strings.Cut(rec.Body.String(), `"refresh_token":"`)
		rt, _, _ = strings.Cut(after, `"`)
	}
}
