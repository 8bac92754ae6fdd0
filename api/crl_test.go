package api

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

// GET /pki/cluster-ca.crl serves the CRL's bytes as application/pkix-crl,
// 503 before one is published, 500 on a failure to read it, and 404 when
// the handler has no CRL source.
func TestServeCRL(t *testing.T) {
	der := []byte{0x30, 0x03, 0x02, 0x01, 0x01}
	for _, tc := range []struct {
		name   string
		fn     CRLFunc
		status int
		ctype  string
	}{
		{"published", func() ([]byte, error) { return der, nil }, http.StatusOK, "application/pkix-crl"},
		{"none yet", func() ([]byte, error) { return nil, nil }, http.StatusServiceUnavailable, "application/json"},
		{"state unreadable", func() ([]byte, error) { return nil, errors.New("closed") }, http.StatusInternalServerError, "application/json"},
		{"no source", nil, http.StatusNotFound, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHandler(Options{CRL: tc.fn}, fakeReady{ok: true}, newFakeUsers(), newFakeAuth())
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", CRLPath, nil))
			if rec.Code != tc.status || tc.ctype != "" && rec.Header().Get("Content-Type") != tc.ctype {
				t.Fatalf("%d %q %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
			}
			if tc.status == http.StatusOK && !bytes.Equal(rec.Body.Bytes(), der) {
				t.Fatalf("body %x, want %x", rec.Body.Bytes(), der)
			}
		})
	}
}
