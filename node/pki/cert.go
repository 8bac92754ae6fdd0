package pki

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

const (
	// CAValidity is the lifetime of a cluster CA certificate.
	CAValidity = 10 * 365 * 24 * time.Hour
	// clockSkew backdates NotBefore so that peers with slightly slow clocks
	// accept a fresh certificate.
	clockSkew = time.Minute
	// maxCommonName is ub-common-name from RFC 5280.
	maxCommonName = 64
)

// NewCA returns a self-signed cluster CA certificate for key (callers pass an
// ECDSA P-256 key): valid from now-1m for 10 years, path length 0 (it signs
// only leaves), key usages CertSign and CRLSign, a random 128-bit serial and a
// SubjectKeyId derived from the public key.
func NewCA(clusterName string, key crypto.Signer, now time.Time) (*x509.Certificate, error) {
	cn := clusterName + " CA"
	if err := checkName("cluster name", clusterName, cn); err != nil {
		return nil, err
	}
	if key == nil {
		return nil, errors.New("pki: NewCA: nil key")
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	skid, err := subjectKeyID(key.Public())
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"bulwark"}, CommonName: cn},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(CAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		SubjectKeyId:          skid,
	}
	return create(tmpl, tmpl, key.Public(), key)
}

// IssueNodeCert issues a leaf certificate for pub signed by the CA, for both
// TLS server and client authentication (the API listener and cluster mTLS).
// Its subject alternative names are hosts (an IP address if it parses as one,
// else a DNS name) plus "localhost", 127.0.0.1 and ::1, without duplicates.
// It is valid from now-1m for ttl, but never past the CA's NotAfter.
// crlURL, when not empty, is its CRL distribution point: an https URL of
// CRLPath at one of hosts (CRLURL; crl.go), where the node serves the
// cluster CA's revocation list.
func IssueNodeCert(ca *x509.Certificate, caKey crypto.Signer, pub crypto.PublicKey, nodeName string, hosts []string, crlURL string, now time.Time, ttl time.Duration) (*x509.Certificate, error) {
	if err := checkName("node name", nodeName, nodeName); err != nil {
		return nil, err
	}
	switch {
	case ca == nil || caKey == nil || pub == nil:
		return nil, errors.New("pki: IssueNodeCert: nil CA, CA key or public key")
	case !ca.IsCA:
		return nil, errors.New("pki: IssueNodeCert: issuer is not a CA certificate")
	case ttl <= 0:
		return nil, fmt.Errorf("pki: IssueNodeCert: ttl %v is not positive", ttl)
	case !now.Before(ca.NotAfter):
		return nil, fmt.Errorf("pki: IssueNodeCert: CA certificate expired at %s", ca.NotAfter.UTC().Format(time.RFC3339))
	}
	dns, ips, err := sanHosts(hosts)
	if err != nil {
		return nil, err
	}
	var dps []string
	if crlURL != "" {
		if err := checkCRLURL(crlURL, dns, ips); err != nil {
			return nil, err
		}
		dps = []string{crlURL}
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	skid, err := subjectKeyID(pub)
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(ttl)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	usage := x509.KeyUsageDigitalSignature
	if _, ok := pub.(*rsa.PublicKey); ok {
		usage |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"bulwark"}, CommonName: nodeName},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		KeyUsage:              usage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:              dns,
		IPAddresses:           ips,
		SubjectKeyId:          skid,
		CRLDistributionPoints: dps,
	}
	return create(tmpl, ca, pub, caKey)
}

func create(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("pki: create certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// defaultHosts are in every node certificate, so local tools and health
// checks can connect by loopback.
var defaultHosts = []string{"localhost", "127.0.0.1", "::1"}

// sanHosts validates hosts and returns them, with defaultHosts appended, as
// deduplicated DNS names (lower case) and IP addresses.
func sanHosts(hosts []string) ([]string, []net.IP, error) {
	var dns []string
	var ips []net.IP
	for _, h := range slices.Concat(hosts, defaultHosts) {
		if ip := net.ParseIP(h); ip != nil {
			if ip.IsUnspecified() {
				return nil, nil, fmt.Errorf("%w: %q is the unspecified address; list the addresses clients use", ErrInvalidHost, h)
			}
			if v4 := ip.To4(); v4 != nil {
				ip = v4
			}
			if !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
			continue
		}
		if !validHostname(h) {
			return nil, nil, fmt.Errorf("%w: %q is neither an IP address nor a valid DNS name", ErrInvalidHost, h)
		}
		h = strings.ToLower(h)
		if !slices.Contains(dns, h) {
			dns = append(dns, h)
		}
	}
	return dns, ips, nil
}

// validHostname reports whether h is a DNS host name: dot-separated labels of
// 1-63 letters, digits and inner hyphens, 253 bytes at most. Wildcards and
// trailing dots are refused.
func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// covers reports whether cert's SANs include every host (after defaults are
// added).
func covers(cert *x509.Certificate, hosts []string) bool {
	dns, ips, err := sanHosts(hosts)
	if err != nil {
		return false
	}
	for _, d := range dns {
		if !slices.ContainsFunc(cert.DNSNames, func(n string) bool { return strings.EqualFold(n, d) }) {
			return false
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

func checkName(what, name, cn string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return fmt.Errorf("pki: empty %s", what)
	case !utf8.ValidString(name) || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("pki: %s %q contains invalid characters", what, name)
	case len(cn) > maxCommonName:
		return fmt.Errorf("pki: %s %q is too long", what, name)
	}
	return nil
}

func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, err
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// subjectKeyID is the leftmost 160 bits of the SHA-256 of the
// subjectPublicKey bit string (RFC 7093, section 2, method 1).
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	sum := sha256.Sum256(spki.PublicKey.Bytes)
	return sum[:20], nil
}

// EncodeCertPEM returns certs as concatenated "CERTIFICATE" PEM blocks.
func EncodeCertPEM(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

// ParseCertPEM parses one or more "CERTIFICATE" PEM blocks. Any other block
// (a private key in particular), trailing data or input without a
// certificate is an error.
func ParseCertPEM(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := b
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%w: unexpected PEM block %q", ErrNoCertificate, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("pki: certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: data that is not PEM after certificate %d", ErrNoCertificate, len(certs))
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: no CERTIFICATE PEM block", ErrNoCertificate)
	}
	return certs, nil
}

// Pin returns "sha256:" and the hex SHA-256 of the CA's
// SubjectPublicKeyInfo. It identifies the CA key, so it survives re-issuing
// the CA certificate with the same key; join tokens carry it.
func Pin(ca *x509.Certificate) string {
	sum := sha256.Sum256(ca.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}
