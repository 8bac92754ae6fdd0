package pki

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// realClockPKI returns a CA pool and two node certificates made with the real
// clock, since crypto/tls verifies against time.Now.
func realClockPKI(t *testing.T) (*x509.CertPool, tls.Certificate, tls.Certificate) {
	t.Helper()
	now := time.Now()
	caKey := newKey256(t)
	ca, err := NewCA("test", caKey, now)
	if err != nil {
		t.Fatal(err)
	}
	node := func(name string) tls.Certificate {
		key := newKey256(t)
		leaf, err := IssueNodeCert(ca, caKey, key.Public(), name, nil, "", now, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, node("node-1"), node("node-2")
}

// handshake runs a TLS handshake over an in-memory pipe and returns both
// sides' connection states.
func handshake(t *testing.T, server, client *tls.Config) (srvState, cliState tls.ConnectionState) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	deadline := time.Now().Add(5 * time.Second)
	a.SetDeadline(deadline)
	b.SetDeadline(deadline)
	srv, cli := tls.Server(a, server), tls.Client(b, client)
	errc := make(chan error, 1)
	go func() { errc <- srv.Handshake() }()
	cliErr := cli.Handshake()
	if cliErr != nil {
		a.Close() // unblock the server
	}
	srvErr := <-errc
	if cliErr != nil || srvErr != nil {
		t.Fatalf("handshake: client %v, server %v", cliErr, srvErr)
	}
	return srv.ConnectionState(), cli.ConnectionState()
}

func TestServerTLSConfig(t *testing.T) {
	_, cert, _ := realClockPKI(t)
	tests := []struct {
		in, want uint16
	}{
		{0, tls.VersionTLS13},
		{tls.VersionTLS12, tls.VersionTLS12},
		{tls.VersionTLS13, tls.VersionTLS13},
	}
	for _, tt := range tests {
		c := ServerTLSConfig(cert, tt.in)
		if c.MinVersion != tt.want || len(c.Certificates) != 1 || c.CurvePreferences != nil {
			t.Errorf("ServerTLSConfig(%#x): MinVersion %#x, %d certs, curves %v", tt.in, c.MinVersion, len(c.Certificates), c.CurvePreferences)
		}
	}
}

// TestHandshakePostQuantum checks that default settings on both ends
// negotiate the hybrid X25519MLKEM768 key exchange.
func TestHandshakePostQuantum(t *testing.T) {
	pool, cert, _ := realClockPKI(t)
	srv, cli := handshake(t,
		ServerTLSConfig(cert, tls.VersionTLS13),
		&tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS13})
	for side, st := range map[string]tls.ConnectionState{"server": srv, "client": cli} {
		if st.Version != tls.VersionTLS13 {
			t.Errorf("%s: version %#x, want TLS 1.3", side, st.Version)
		}
		if st.CurveID != tls.X25519MLKEM768 {
			t.Errorf("%s: key exchange %v, want X25519MLKEM768", side, st.CurveID)
		}
	}
}

// TestMutualTLS checks that node certificates work as client certificates
// for cluster mTLS.
func TestMutualTLS(t *testing.T) {
	pool, node1, node2 := realClockPKI(t)
	server := ServerTLSConfig(node1, tls.VersionTLS13)
	server.ClientAuth = tls.RequireAndVerifyClientCert
	server.ClientCAs = pool
	srv, _ := handshake(t, server, &tls.Config{
		RootCAs: pool, ServerName: "127.0.0.1", Certificates: []tls.Certificate{node2}, MinVersion: tls.VersionTLS13,
	})
	if len(srv.PeerCertificates) == 0 || srv.PeerCertificates[0].Subject.CommonName != "node-2" {
		t.Fatalf("server saw peer certificates %v", srv.PeerCertificates)
	}
}

func TestLoadOperatorCert(t *testing.T) {
	ca, caKey := newTestCA(t)
	leaf, key := issue(t, ca, caKey, "auth.example.com")
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyPEM := func(k crypto.Signer) []byte {
		t.Helper()
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	certFile := write("cert.pem", EncodeCertPEM(leaf, ca))
	keyFile := write("key.pem", keyPEM(key))
	otherKeyFile := write("other-key.pem", keyPEM(newKey256(t)))
	garbageFile := write("garbage.pem", []byte("not pem"))
	missing := filepath.Join(dir, "missing.pem")

	got, err := LoadOperatorCert(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Certificate) != 2 || got.Leaf == nil || !got.Leaf.Equal(leaf) {
		t.Fatalf("loaded %d certificates, leaf %v", len(got.Certificate), got.Leaf)
	}

	tests := []struct {
		name, cert, key, wantFile string
		wantIs                    error
	}{
		{"missing cert", missing, keyFile, missing, fs.ErrNotExist},
		{"missing key", certFile, missing, missing, fs.ErrNotExist},
		{"garbage cert", garbageFile, keyFile, garbageFile, ErrNoCertificate},
		{"key as cert", keyFile, keyFile, keyFile, ErrNoCertificate},
		{"garbage key", certFile, garbageFile, garbageFile, nil},
		{"mismatched key", certFile, otherKeyFile, otherKeyFile, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadOperatorCert(tt.cert, tt.key)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.wantFile) {
				t.Errorf("error %q does not name %s", err, tt.wantFile)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v does not wrap %v", err, tt.wantIs)
			}
		})
	}
}
