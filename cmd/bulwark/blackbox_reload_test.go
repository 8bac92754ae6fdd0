package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/internal/waitfor"
	"github.com/bulwark-auth/bulwark/node/pki"
)

// operatorCA issues API certificates as an operator's own PKI would.
type operatorCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newOperatorCA(t *testing.T) *operatorCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert, err := pki.NewCA("operator", key, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &operatorCA{cert, key}
}

// issue writes a certificate for 127.0.0.1 and its key to the two files.
func (o *operatorCA) issue(t *testing.T, certFile, keyFile string) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf, err := pki.IssueNodeCert(o.cert, o.key, key.Public(), "api", []string{"127.0.0.1"}, "", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	if err := os.WriteFile(certFile, pki.EncodeCertPEM(leaf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return leaf
}

// TestBlackBoxSIGHUPReloadsCertificateAndLogLevel: SIGHUP swaps the API
// certificate for new connections while an open one carries on, and
// applies a changed log level; a broken config on SIGHUP changes nothing.
func TestBlackBoxSIGHUPReloadsCertificateAndLogLevel(t *testing.T) {
	ca := newOperatorCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "api.pem"), filepath.Join(dir, "api.key")
	first := ca.issue(t, certFile, keyFile)
	n := newTestNode(t, "[api]\n") // placeholder, rewritten below
	base, _ := os.ReadFile(n.config)
	cfg := strings.Replace(string(base), "[api]\n", "[api]\ntls_cert = \""+certFile+"\"\ntls_key = \""+keyFile+"\"\n", 1)
	cfg = strings.TrimSuffix(cfg, "[api]\n") + "[log]\nlevel = \"info\"\n"
	if err := os.WriteFile(n.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	n.roots = x509.NewCertPool()
	n.roots.AddCert(ca.cert)
	n.start()

	// One keep-alive connection, opened before the reload.
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxConnsPerHost: 1}}
	serial := func(c *http.Client) string {
		t.Helper()
		resp, err := c.Get(n.url("/healthz"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body) // read to EOF, or the connection is not kept
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].SerialNumber.String()
	}
	if s := serial(old); s != first.SerialNumber.String() {
		t.Fatalf("serving %s, want the first certificate", s)
	}

	second := ca.issue(t, certFile, keyFile)
	os.WriteFile(n.config, []byte(strings.Replace(cfg, `level = "info"`, `level = "debug"`, 1)), 0o600)
	n.cmd.Process.Signal(syscall.SIGHUP)
	waitfor.Nil(t, "a reload logged", 5*time.Second, 50*time.Millisecond, func() error {
		if logs := n.logs.String(); !strings.Contains(logs, "TLS certificate reloaded") {
			return fmt.Errorf("logs:\n%s", logs)
		}
		return nil
	})
	fresh := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if s := serial(fresh); s != second.SerialNumber.String() {
		t.Errorf("a new connection after SIGHUP got %s, want the second certificate", s)
	}
	if s := serial(old); s != first.SerialNumber.String() {
		t.Errorf("the open connection was dropped or switched (now %s)", s)
	}
	time.Sleep(200 * time.Millisecond) // the log sink flushes every 100 ms
	if !strings.Contains(n.logs.String(), "level=DEBUG") {
		t.Error("log level not raised to debug by SIGHUP")
	}

	// A broken config on SIGHUP is reported; the node keeps serving.
	os.WriteFile(n.config, []byte("this is not toml ["), 0o600)
	n.cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	if !strings.Contains(n.logs.String(), "configuration not reloaded") {
		t.Error("a broken config on SIGHUP was not reported")
	}
	if s := serial(fresh); s != second.SerialNumber.String() {
		t.Errorf("after a failed reload: %s", s)
	}
	os.WriteFile(n.config, []byte(cfg), 0o600)
	n.stop()
}
