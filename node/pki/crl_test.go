package pki

import (
	"crypto/x509"
	"errors"
	"math/big"
	"slices"
	"testing"
	"time"
)

// A node certificate names the CRL URL it is given, only an https URL of
// CRLPath at one of its own hosts; RenewalDue asks for a certificate that
// names another (or none) to be replaced.
func TestNodeCertCRLPoint(t *testing.T) {
	ca, caKey := newTestCA(t)
	hosts := []string{"node1.example", "192.0.2.7"}
	for _, u := range []string{CRLURL("node1.example", "8443"), CRLURL("192.0.2.7", "443"), CRLURL("::1", "8443"), CRLURL("localhost", "1")} {
		leaf, err := IssueNodeCert(ca, caKey, newKey256(t).Public(), "node-1", hosts, u, testNow, NodeCertTTL)
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		if !slices.Equal(leaf.CRLDistributionPoints, []string{u}) {
			t.Fatalf("%s: the certificate names %q", u, leaf.CRLDistributionPoints)
		}
		if why := RenewalDue(leaf, hosts, u, testNow); why != "" {
			t.Fatalf("%s: due: %s", u, why)
		}
		if why := RenewalDue(leaf, hosts, CRLURL("node1.example", "9443"), testNow); why == "" {
			t.Fatalf("%s: not due for another CRL URL", u)
		}
	}
	for _, bad := range []string{
		"http://node1.example:8443/pki/cluster-ca.crl",
		"https://other.example:8443/pki/cluster-ca.crl",
		"https://192.0.2.8:8443/pki/cluster-ca.crl",
		"https://node1.example/pki/cluster-ca.crl",
		"https://node1.example:8443/other.crl",
		"https://node1.example:8443/pki/cluster-ca.crl?x=1",
		"https://u@node1.example:8443/pki/cluster-ca.crl",
		"://",
	} {
		if _, err := IssueNodeCert(ca, caKey, newKey256(t).Public(), "node-1", hosts, bad, testNow, time.Hour); !errors.Is(err, ErrInvalidHost) {
			t.Errorf("%q: %v, want ErrInvalidHost", bad, err)
		}
	}
	plain, err := IssueNodeCert(ca, caKey, newKey256(t).Public(), "node-1", hosts, "", testNow, NodeCertTTL)
	if err != nil || len(plain.CRLDistributionPoints) != 0 {
		t.Fatalf("without a CRL URL: %q, %v", plain.CRLDistributionPoints, err)
	}
	if why := RenewalDue(plain, hosts, CRLURL("node1.example", "8443"), testNow); why == "" {
		t.Fatal("a certificate without a CRL distribution point is not due once there is one to name")
	}
}

// NewCRL signs with the CA key a CRL that verifies against the CA
// certificate and lists what it is given; another key is refused.
func TestNewCRL(t *testing.T) {
	ca, caKey := newTestCA(t)
	revoked := []Revoked{{Serial: big.NewInt(0xabc), RevokedAt: testNow}, {Serial: new(big.Int).Lsh(big.NewInt(1), 127), RevokedAt: testNow}}
	der, err := NewCRL(ca, caKey, revoked, big.NewInt(7), testNow, 7*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(ca); err != nil {
		t.Fatalf("the CRL does not verify against the CA: %v", err)
	}
	switch {
	case crl.Number.Int64() != 7 || !crl.NextUpdate.Equal(testNow.Add(7*24*time.Hour)) || crl.ThisUpdate.After(testNow):
		t.Fatalf("number %v, thisUpdate %v, nextUpdate %v", crl.Number, crl.ThisUpdate, crl.NextUpdate)
	case len(crl.RevokedCertificateEntries) != 2 || crl.RevokedCertificateEntries[0].SerialNumber.Int64() != 0xabc:
		t.Fatalf("entries %+v", crl.RevokedCertificateEntries)
	}
	other, _ := newTestCA(t)
	if err := crl.CheckSignatureFrom(other); err == nil {
		t.Fatal("the CRL verifies against another CA")
	}
	if _, err := NewCRL(ca, newKey256(t), nil, big.NewInt(1), testNow, time.Hour); err == nil {
		t.Fatal("NewCRL signed with a key that is not the CA's")
	}
	if _, err := NewCRL(ca, caKey, nil, big.NewInt(0), testNow, time.Hour); err == nil {
		t.Fatal("NewCRL numbered 0")
	}
}
