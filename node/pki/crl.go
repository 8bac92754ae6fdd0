package pki

// The cluster CA's certificate revocation list. Every certificate the CA
// issues names, as its CRL distribution point, CRLPath on the API
// listener of the node it certifies (CRLURL): a client that reached a
// node's API by one of its names reaches its list there too. What the
// list holds is node's and fsm's part (node/crl.go); this file makes
// and checks the URL and signs the list.

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// CRLPath is where every node serves the cluster CA's CRL (DER) on its
// API listener.
const CRLPath = "/pki/cluster-ca.crl"

// CRLURL is the CRL distribution point of a node whose API answers at
// host and port: https://host:port/pki/cluster-ca.crl.
func CRLURL(host, port string) string {
	return (&url.URL{Scheme: "https", Host: net.JoinHostPort(host, port), Path: CRLPath}).String()
}

// checkCRLURL accepts a CRL URL only as CRLURL makes it, for a host the
// certificate names (dns, ips): a node cannot have the CA point its
// certificate's relying parties elsewhere.
func checkCRLURL(s string, dns []string, ips []net.IP) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%w: CRL URL: %v", ErrInvalidHost, err)
	}
	port, perr := strconv.ParseUint(u.Port(), 10, 16)
	switch {
	case u.Scheme != "https" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return fmt.Errorf("%w: CRL URL %q: want https://host:port%s", ErrInvalidHost, s, CRLPath)
	case u.Path != CRLPath:
		return fmt.Errorf("%w: CRL URL %q: path must be %s", ErrInvalidHost, s, CRLPath)
	case perr != nil || port == 0:
		return fmt.Errorf("%w: CRL URL %q: no port", ErrInvalidHost, s)
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); ip != nil {
		if !slices.ContainsFunc(ips, ip.Equal) {
			return fmt.Errorf("%w: CRL URL %q: %s is not a host of the certificate", ErrInvalidHost, s, host)
		}
		return nil
	}
	if !slices.ContainsFunc(dns, func(d string) bool { return strings.EqualFold(d, host) }) {
		return fmt.Errorf("%w: CRL URL %q: %s is not a host of the certificate", ErrInvalidHost, s, host)
	}
	return nil
}

// Revoked is one certificate a CRL lists.
type Revoked struct {
	Serial    *big.Int
	RevokedAt time.Time
}

// NewCRL returns a CRL (DER) of the CA ca listing revoked, numbered
// number, signed by caKey (which may live in a TPM: only its Sign is
// used). thisUpdate is now less a minute of clock skew, nextUpdate now
// plus validity.
func NewCRL(ca *x509.Certificate, caKey crypto.Signer, revoked []Revoked, number *big.Int, now time.Time, validity time.Duration) ([]byte, error) {
	switch {
	case ca == nil || caKey == nil:
		return nil, errors.New("pki: NewCRL: nil CA or CA key")
	case number == nil || number.Sign() <= 0:
		return nil, errors.New("pki: NewCRL: the CRL number must be positive")
	case validity <= 0:
		return nil, fmt.Errorf("pki: NewCRL: validity %v is not positive", validity)
	case !SamePublicKey(caKey.Public(), ca.PublicKey):
		return nil, errors.New("pki: NewCRL: the key is not the CA's")
	}
	entries := make([]x509.RevocationListEntry, 0, len(revoked))
	for _, r := range revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: r.Serial, RevocationTime: r.RevokedAt.UTC()})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    number,
		ThisUpdate:                now.Add(-clockSkew).UTC(),
		NextUpdate:                now.Add(validity).UTC(),
		RevokedCertificateEntries: entries,
	}, ca, caKey)
	if err != nil {
		return nil, fmt.Errorf("pki: create CRL: %w", err)
	}
	return der, nil
}
