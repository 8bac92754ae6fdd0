package main

import (
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/internal/waitfor"
	"github.com/bulwark-auth/bulwark/node/pki"
)

// nodeLeaf is the node certificate in n's tls/node.pem.
func (n *testNode) nodeLeaf() *x509.Certificate {
	n.t.Helper()
	b, err := os.ReadFile(filepath.Join(n.dataDir(), filepath.FromSlash(pki.NodeCertFile)))
	if err != nil {
		n.t.Fatal(err)
	}
	certs, err := pki.ParseCertPEM(b)
	if err != nil {
		n.t.Fatal(err)
	}
	return certs[0]
}

// checkCRLPoint fails unless n's certificate names n's own API port as
// its only CRL distribution point.
func (n *testNode) checkCRLPoint() {
	n.t.Helper()
	if dp, want := n.nodeLeaf().CRLDistributionPoints, n.url(pki.CRLPath); !slices.Equal(dp, []string{want}) {
		n.t.Fatalf("%s's certificate names CRL distribution points %q, want %q", n.dir, dp, want)
	}
}

// fetchCRL gets the CRL at url through n's client (which trusts the
// cluster CA) and checks it: application/pkix-crl, parseable, signed by
// the cluster CA in n's ca.pem.
func (n *testNode) fetchCRL(url string) (*x509.RevocationList, error) {
	resp, err := n.client().Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/pkix-crl" {
		return nil, fmt.Errorf("GET %s: %d %q: %s", url, resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	crl, err := x509.ParseRevocationList(b)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	pem, err := os.ReadFile(filepath.Join(n.dataDir(), pki.CAFile))
	if err != nil {
		return nil, err
	}
	ca, err := pki.ParseCertPEM(pem)
	if err != nil {
		return nil, err
	}
	if err := crl.CheckSignatureFrom(ca[0]); err != nil {
		return nil, fmt.Errorf("the CRL at %s is not signed by the cluster CA: %w", url, err)
	}
	if !crl.NextUpdate.After(time.Now()) {
		return nil, fmt.Errorf("the CRL at %s is stale: nextUpdate %v", url, crl.NextUpdate)
	}
	return crl, nil
}

// waitRevoked waits until the CRL n serves lists each of serials (hex),
// and returns it.
func (n *testNode) waitRevoked(within time.Duration, serials ...string) *x509.RevocationList {
	n.t.Helper()
	var crl *x509.RevocationList
	waitfor.Nil(n.t, fmt.Sprintf("%s's CRL lists %v", n.dir, serials), within, 100*time.Millisecond, func() error {
		var err error
		if crl, err = n.fetchCRL(n.url(pki.CRLPath)); err != nil {
			return err
		}
		for _, s := range serials {
			if !slices.ContainsFunc(crl.RevokedCertificateEntries, func(e x509.RevocationListEntry) bool {
				return e.SerialNumber.Text(16) == s
			}) {
				return fmt.Errorf("CRL number %v lists %d certificates, not %s", crl.Number, len(crl.RevokedCertificateEntries), s)
			}
		}
		return nil
	})
	return crl
}

// A single node serves a CRL at the distribution point its certificate
// names, signed by the cluster CA and listing nothing.
func TestBlackBoxCRLSingleNode(t *testing.T) {
	n := newTestNode(t, "")
	n.start()
	n.checkCRLPoint()
	crl := n.waitRevoked(20 * time.Second)
	if len(crl.RevokedCertificateEntries) != 0 {
		t.Fatalf("a fresh cluster's CRL lists %d certificates", len(crl.RevokedCertificateEntries))
	}
}
