package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newKey256(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newTestCA(t *testing.T) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key := newKey256(t)
	ca, err := NewCA("test", key, testNow)
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	return ca, key
}

func issue(t *testing.T, ca *x509.Certificate, caKey crypto.Signer, hosts ...string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key := newKey256(t)
	leaf, err := IssueNodeCert(ca, caKey, key.Public(), "node-1", hosts, "", testNow, 24*time.Hour)
	if err != nil {
		t.Fatalf("IssueNodeCert: %v", err)
	}
	return leaf, key
}

func TestNewCA(t *testing.T) {
	ca, key := newTestCA(t)
	switch {
	case !ca.IsCA || !ca.BasicConstraintsValid:
		t.Error("not a CA")
	case ca.MaxPathLen != 0 || !ca.MaxPathLenZero:
		t.Errorf("MaxPathLen = %d, zero = %v; want 0, true", ca.MaxPathLen, ca.MaxPathLenZero)
	case ca.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign:
		t.Errorf("KeyUsage = %v", ca.KeyUsage)
	case len(ca.SubjectKeyId) != 20:
		t.Errorf("SubjectKeyId = %x", ca.SubjectKeyId)
	case ca.SerialNumber.Sign() <= 0 || ca.SerialNumber.BitLen() > 128:
		t.Errorf("serial %v", ca.SerialNumber)
	case !ca.NotBefore.Equal(testNow.Add(-time.Minute)) || !ca.NotAfter.Equal(testNow.Add(CAValidity)):
		t.Errorf("validity %v - %v", ca.NotBefore, ca.NotAfter)
	case !SamePublicKey(key.Public(), ca.PublicKey):
		t.Error("public key differs")
	case ca.Subject.CommonName != "test CA":
		t.Errorf("CN = %q", ca.Subject.CommonName)
	}
	if err := ca.CheckSignatureFrom(ca); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	other, _ := NewCA("test", key, testNow)
	if other.SerialNumber.Cmp(ca.SerialNumber) == 0 {
		t.Error("two CAs share a serial number")
	}
	for _, name := range []string{"", "  ", "a\nb", strings.Repeat("x", 62)} {
		if _, err := NewCA(name, key, testNow); err == nil {
			t.Errorf("NewCA(%q) succeeded", name)
		}
	}
}

func TestIssueNodeCertVerifies(t *testing.T) {
	ca, caKey := newTestCA(t)
	leaf, _ := issue(t, ca, caKey, "node1.example.com", "10.0.0.5")
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	tests := []struct {
		name  string
		usage x509.ExtKeyUsage
		dns   string
	}{
		{"server by name", x509.ExtKeyUsageServerAuth, "node1.example.com"},
		{"server by IP", x509.ExtKeyUsageServerAuth, "10.0.0.5"},
		{"server by loopback", x509.ExtKeyUsageServerAuth, "127.0.0.1"},
		{"client", x509.ExtKeyUsageClientAuth, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := leaf.Verify(x509.VerifyOptions{
				Roots: roots, DNSName: tt.dns, CurrentTime: testNow,
				KeyUsages: []x509.ExtKeyUsage{tt.usage},
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "other.example.com", CurrentTime: testNow}); err == nil {
		t.Error("verified for a host it does not name")
	}
	if leaf.IsCA || !bytes.Equal(leaf.AuthorityKeyId, ca.SubjectKeyId) {
		t.Errorf("IsCA = %v, AuthorityKeyId = %x", leaf.IsCA, leaf.AuthorityKeyId)
	}
	if !leaf.NotBefore.Equal(testNow.Add(-time.Minute)) || !leaf.NotAfter.Equal(testNow.Add(24*time.Hour)) {
		t.Errorf("validity %v - %v", leaf.NotBefore, leaf.NotAfter)
	}

	// A leaf never outlives its CA.
	long, err := IssueNodeCert(ca, caKey, newKey256(t).Public(), "n", nil, "", testNow, 20*CAValidity)
	if err != nil || !long.NotAfter.Equal(ca.NotAfter) {
		t.Errorf("long ttl: NotAfter %v, err %v; want the CA's %v", long.NotAfter, err, ca.NotAfter)
	}
	// A key that is not the CA's cannot sign.
	if _, err := IssueNodeCert(ca, newKey256(t), newKey256(t).Public(), "n", nil, "", testNow, time.Hour); err == nil {
		t.Error("issued with a key that does not match the CA")
	}
}

func TestIssueNodeCertSANs(t *testing.T) {
	ca, caKey := newTestCA(t)
	tests := []struct {
		name    string
		hosts   []string
		wantDNS []string
		wantIP  []string
		wantErr bool
	}{
		{name: "none", wantDNS: []string{"localhost"}, wantIP: []string{"127.0.0.1", "::1"}},
		{
			name:    "mixed",
			hosts:   []string{"auth.example.com", "10.1.2.3", "fd00::7"},
			wantDNS: []string{"auth.example.com", "localhost"},
			wantIP:  []string{"10.1.2.3", "fd00::7", "127.0.0.1", "::1"},
		},
		{
			name:    "dedupe",
			hosts:   []string{"Node1", "node1", "LOCALHOST", "127.0.0.1", "::ffff:10.0.0.1", "10.0.0.1", "0:0:0:0:0:0:0:1"},
			wantDNS: []string{"node1", "localhost"},
			wantIP:  []string{"127.0.0.1", "10.0.0.1", "::1"},
		},
		{name: "empty", hosts: []string{""}, wantErr: true},
		{name: "space", hosts: []string{"a b"}, wantErr: true},
		{name: "underscore", hosts: []string{"a_b.example"}, wantErr: true},
		{name: "wildcard", hosts: []string{"*.example.com"}, wantErr: true},
		{name: "trailing dot", hosts: []string{"example.com."}, wantErr: true},
		{name: "leading hyphen", hosts: []string{"-a.example"}, wantErr: true},
		{name: "long label", hosts: []string{strings.Repeat("a", 64) + ".example"}, wantErr: true},
		{name: "unspecified v4", hosts: []string{"0.0.0.0"}, wantErr: true},
		{name: "unspecified v6", hosts: []string{"::"}, wantErr: true},
		{name: "bracketed", hosts: []string{"[::1]"}, wantErr: true},
		{name: "with port", hosts: []string{"host:8443"}, wantErr: true},
		{name: "url", hosts: []string{"https://host"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaf, err := IssueNodeCert(ca, caKey, newKey256(t).Public(), "node-1", tt.hosts, "", testNow, time.Hour)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidHost) {
					t.Fatalf("err = %v, want ErrInvalidHost", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(leaf.DNSNames, tt.wantDNS) {
				t.Errorf("DNSNames = %q, want %q", leaf.DNSNames, tt.wantDNS)
			}
			var ips []string
			for _, ip := range leaf.IPAddresses {
				ips = append(ips, ip.String())
			}
			if !slices.Equal(ips, tt.wantIP) {
				t.Errorf("IPAddresses = %q, want %q", ips, tt.wantIP)
			}
			if !covers(leaf, tt.hosts) {
				t.Error("covers = false for its own hosts")
			}
			if covers(leaf, append(slices.Clone(tt.hosts), "extra.example")) {
				t.Error("covers = true for a host it lacks")
			}
		})
	}
}

func TestPEMRoundTrip(t *testing.T) {
	ca, caKey := newTestCA(t)
	leaf, _ := issue(t, ca, caKey)
	got, err := ParseCertPEM(EncodeCertPEM(leaf, ca))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !got[0].Equal(leaf) || !got[1].Equal(ca) {
		t.Fatalf("round trip returned %d certificates or different ones", len(got))
	}
}

func TestParseCertPEMRejects(t *testing.T) {
	ca, _ := newTestCA(t)
	good := EncodeCertPEM(ca)
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}})
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"white space", []byte("\n \n")},
		{"not PEM", []byte("hello")},
		{"private key", keyPEM},
		{"cert then key", append(slices.Clone(good), keyPEM...)},
		{"trailing garbage", append(slices.Clone(good), "junk"...)},
		{"bad DER", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if certs, err := ParseCertPEM(tt.in); err == nil {
				t.Fatalf("ParseCertPEM = %d certificates, want error", len(certs))
			}
		})
	}
}

func FuzzParseCertPEM(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca, err := NewCA("fuzz", key, testNow)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(EncodeCertPEM(ca, ca))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		certs, err := ParseCertPEM(b)
		if err == nil && len(certs) == 0 {
			t.Fatal("no error and no certificates")
		}
	})
}

func TestPin(t *testing.T) {
	ca, key := newTestCA(t)
	pin := Pin(ca)
	if !strings.HasPrefix(pin, "sha256:") || len(pin) != len("sha256:")+64 {
		t.Fatalf("Pin = %q", pin)
	}
	again, _ := NewCA("other name", key, testNow.Add(time.Hour))
	if Pin(again) != pin {
		t.Error("pin changed for the same CA key")
	}
	other, _ := newTestCA(t)
	if Pin(other) == pin {
		t.Error("two CA keys share a pin")
	}
}
