package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The vendored widget is served from the binary with its licence.
func TestAssetsServed(t *testing.T) {
	h, _ := newTestHandler(t, fakeReady{ok: true})
	for path, want := range map[string]string{
		"/assets/altcha/altcha.js":   "javascript",
		"/assets/altcha/worker.js":   "javascript",
		"/assets/altcha/altcha.css":  "text/css",
		"/assets/altcha/LICENSE.txt": "text/plain",
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != 200 || !strings.Contains(rec.Header().Get("Content-Type"), want) || rec.Body.Len() == 0 {
			t.Errorf("%s: %d %q (%d bytes)", path, rec.Code, rec.Header().Get("Content-Type"), rec.Body.Len())
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/assets/altcha/LICENSE.txt", nil))
	if !strings.Contains(rec.Body.String(), "MIT License") {
		t.Error("the widget's licence is not served")
	}
}
