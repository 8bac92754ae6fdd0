package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// tlsProbe is one handshake with the node's API port under cfg (the
// cluster CA trusted); it returns the connection state or the error.
func (n *testNode) tlsProbe(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	n.t.Helper()
	pem, err := os.ReadFile(filepath.Join(n.dataDir(), "ca.pem"))
	if err != nil {
		n.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cfg.RootCAs, cfg.ServerName = pool, "127.0.0.1"
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer conn.Close()
	return conn.ConnectionState(), nil
}

var tlsVersionNames = map[uint16]string{tls.VersionTLS10: "1.0", tls.VersionTLS11: "1.1", tls.VersionTLS12: "1.2", tls.VersionTLS13: "1.3"}

// TestBlackBoxTLSScan connects to the API port with every TLS version and
// every TLS 1.2 cipher suite crypto/tls knows, as a scanner does: by
// default only TLS 1.3 is accepted; with api.tls_min_version = "1.2",
// TLS 1.2 only with forward-secret AEAD suites (ECDHE with AES-GCM or
// ChaCha20-Poly1305), never CBC, RC4, 3DES or RSA key exchange. The
// post-quantum hybrid X25519MLKEM768 is negotiated with a client that
// offers it (as Go's does by default), and every answer carries HSTS and
// the security headers. The cluster port takes TLS 1.3 only.
func TestBlackBoxTLSScan(t *testing.T) {
	strong := func(id uint16) bool {
		name := tls.CipherSuiteName(id)
		return strings.HasPrefix(name, "TLS_ECDHE_") &&
			(strings.HasSuffix(name, "_GCM_SHA256") || strings.HasSuffix(name, "_GCM_SHA384") || strings.Contains(name, "CHACHA20_POLY1305"))
	}
	var suites12 []*tls.CipherSuite
	for _, cs := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if slices.Contains(cs.SupportedVersions, tls.VersionTLS12) {
			suites12 = append(suites12, cs)
		}
	}

	for _, tc := range []struct {
		name, extra string
		versions    []uint16 // accepted
	}{
		{"default", "", []uint16{tls.VersionTLS13}},
		{"tls_min_version 1.2", `api.tls_min_version = "1.2"`, []uint16{tls.VersionTLS12, tls.VersionTLS13}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newTestNode(t, tc.extra)
			n.start()
			addr := fmt.Sprintf("127.0.0.1:%d", n.apiPort)
			for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12, tls.VersionTLS13} {
				st, err := n.tlsProbe(addr, &tls.Config{MinVersion: v, MaxVersion: v})
				if want := slices.Contains(tc.versions, v); want != (err == nil) {
					t.Errorf("TLS %s: handshake error %v; want accepted %v", tlsVersionNames[v], err, want)
				} else if err == nil && st.Version != v {
					t.Errorf("TLS %s offered alone, %s negotiated", tlsVersionNames[v], tlsVersionNames[st.Version])
				}
			}
			var accepted []string
			for _, cs := range suites12 {
				_, err := n.tlsProbe(addr, &tls.Config{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{cs.ID}})
				if err != nil {
					continue
				}
				accepted = append(accepted, cs.Name)
				if !strong(cs.ID) {
					t.Errorf("TLS 1.2 with %s accepted; want only ECDHE with AES-GCM or ChaCha20-Poly1305", cs.Name)
				}
			}
			if slices.Contains(tc.versions, tls.VersionTLS12) == (len(accepted) == 0) {
				t.Errorf("TLS 1.2 suites accepted: %v", accepted)
			}
			t.Logf("TLS 1.2 suites accepted: %v", accepted)

			// The hybrid post-quantum key exchange: negotiated by default,
			// and accepted when it is all a client offers.
			for _, curves := range [][]tls.CurveID{nil, {tls.X25519MLKEM768}} {
				st, err := n.tlsProbe(addr, &tls.Config{CurvePreferences: curves})
				if err != nil || st.CurveID != tls.X25519MLKEM768 {
					t.Errorf("key exchange offering %v: %v, %v; want X25519MLKEM768", curves, st.CurveID, err)
				}
			}
			// A TLS 1.3 client offering no post-quantum group still gets in
			// (the hybrid is preferred, not required).
			if st, err := n.tlsProbe(addr, &tls.Config{CurvePreferences: []tls.CurveID{tls.X25519}}); err != nil || st.CurveID != tls.X25519 {
				t.Errorf("key exchange offering X25519 only: %v, %v", st.CurveID, err)
			}

			// HSTS and the security headers, on an answer and an error.
			for _, path := range []string{"/readyz", "/no/such/path"} {
				resp, err := n.client().Get(n.url(path))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				for _, h := range []string{"Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options", "Content-Security-Policy", "Referrer-Policy"} {
					if resp.Header.Get(h) == "" {
						t.Errorf("GET %s: no %s header", path, h)
					}
				}
				if hsts := resp.Header.Get("Strict-Transport-Security"); !strings.Contains(hsts, "max-age=") || strings.Contains(hsts, "max-age=0") {
					t.Errorf("GET %s: Strict-Transport-Security %q", path, hsts)
				}
			}

			// The cluster port: TLS 1.3 only, whatever the API allows.
			// (Unverified, so that only the version can fail the handshake.)
			if _, err := n.tlsProbe(n.clusterAddr(), &tls.Config{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12, InsecureSkipVerify: true}); err == nil {
				t.Error("the cluster port accepted TLS 1.2")
			}
		})
	}
}
