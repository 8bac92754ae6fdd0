package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/bulwark-auth/bulwark/tpm/atomicfile"
)

// Files under the data directory, relative to it, and keystore names.
const (
	CAFile       = "ca.pem"
	NodeCertFile = "tls/node.pem"
	CAKeyName    = "ca"
	NodeKeyName  = "tls"

	// ClusterName names the CA that Ensure creates.
	ClusterName = "bulwark"
	// NodeCertTTL is the lifetime of node certificates Ensure issues.
	NodeCertTTL = 365 * 24 * time.Hour
	// RenewBefore is how long before expiry Ensure re-issues a node
	// certificate.
	RenewBefore = 30 * 24 * time.Hour
)

// KeyStore is what pki needs from the node's keystore (*tpm.Keystore).
type KeyStore interface {
	PrivateKey(name string) (crypto.Signer, bool)
	Put(name string, key crypto.Signer) error
}

// Ensure returns this node's TLS certificate and a pool holding the cluster
// CA, creating or renewing what is missing.
//
// On first start it generates the CA key (keystore name "ca") and writes the
// CA certificate to <dataDir>/ca.pem, then generates the node key ("tls") and
// writes the node certificate, without its key, to <dataDir>/tls/node.pem.
// crlURL, when not empty, is the CRL distribution point its certificate
// names (IssueNodeCert).
// Later it reuses both, re-issuing the node certificate (same key) when it
// no longer verifies, names another node, or RenewalDue says so. Issuing
// needs the CA key: without it a certificate that is only due is returned
// as it is (the caller renews it through the cluster, node.RenewCertificate),
// and one that is unusable is an error wrapping ErrNoCAKey.
// If ca.pem is lost but the CA key is present, the CA certificate is
// re-created from the same key, so Pin and issued certificates stay valid.
func Ensure(dataDir string, ks KeyStore, nodeName string, hosts []string, crlURL string, now time.Time) (tls.Certificate, *x509.CertPool, error) {
	if err := checkName("node name", nodeName, nodeName); err != nil {
		return tls.Certificate{}, nil, err
	}
	dns, ips, err := sanHosts(hosts)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	if crlURL != "" {
		if err := checkCRLURL(crlURL, dns, ips); err != nil {
			return tls.Certificate{}, nil, err
		}
	}
	if err := os.MkdirAll(filepath.Join(dataDir, filepath.Dir(NodeCertFile)), 0o700); err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("pki: %w", err)
	}
	ca, caKey, err := ensureCA(dataDir, ks, now)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)

	nodeKey, haveNodeKey := ks.PrivateKey(NodeKeyName)
	certPath := filepath.Join(dataDir, filepath.FromSlash(NodeCertFile))
	var leaf *x509.Certificate
	var why error
	if haveNodeKey {
		var due string
		leaf, due, why = reusableLeaf(certPath, nodeKey, pool, nodeName, hosts, crlURL, now)
		if why == nil && due != "" && caKey != nil {
			why = errors.New(due)
		}
		// Without the CA key a valid certificate that is due serves on: the
		// running node renews it through a member that holds the key.
	} else {
		why = fmt.Errorf("keystore has no %q key", NodeKeyName)
	}
	if why != nil {
		if caKey == nil {
			return tls.Certificate{}, nil, fmt.Errorf("%w: cannot issue %s (%v)", ErrNoCAKey, NodeCertFile, why)
		}
		if !haveNodeKey {
			if nodeKey, err = newKey(ks, NodeKeyName); err != nil {
				return tls.Certificate{}, nil, err
			}
		}
		leaf, err = IssueNodeCert(ca, caKey, nodeKey.Public(), nodeName, hosts, crlURL, now, NodeCertTTL)
		if err != nil {
			return tls.Certificate{}, nil, err
		}
		if err := WriteNodeCert(dataDir, leaf); err != nil {
			return tls.Certificate{}, nil, err
		}
	}
	cert := tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: nodeKey, Leaf: leaf}
	return cert, pool, nil
}

// WriteNodeCert replaces <dataDir>/tls/node.pem with leaf, atomically.
func WriteNodeCert(dataDir string, leaf *x509.Certificate) error {
	path := filepath.Join(dataDir, filepath.FromSlash(NodeCertFile))
	if err := atomicfile.MkdirPrivate(filepath.Dir(path)); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := atomicfile.WriteFile(path, EncodeCertPEM(leaf), 0o644); err != nil {
		return fmt.Errorf("pki: write %s: %w", NodeCertFile, err)
	}
	return nil
}

// ensureCA loads or creates the CA certificate. caKey is nil on a node that
// does not hold the CA key.
func ensureCA(dataDir string, ks KeyStore, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	caPath := filepath.Join(dataDir, CAFile)
	caKey, haveKey := ks.PrivateKey(CAKeyName)
	b, err := os.ReadFile(caPath)
	switch {
	case err == nil:
		certs, err := ParseCertPEM(b)
		if err != nil {
			return nil, nil, fmt.Errorf("pki: %s: %w", caPath, err)
		}
		ca := certs[0]
		if !ca.IsCA {
			return nil, nil, fmt.Errorf("pki: %s is not a CA certificate", caPath)
		}
		if now.After(ca.NotAfter) {
			return nil, nil, fmt.Errorf("pki: CA certificate %s expired at %s", caPath, ca.NotAfter.UTC().Format(time.RFC3339))
		}
		if !haveKey {
			return ca, nil, nil
		}
		if !SamePublicKey(caKey.Public(), ca.PublicKey) {
			return nil, nil, fmt.Errorf("%w: keystore key %q does not match %s", ErrKeyMismatch, CAKeyName, caPath)
		}
		return ca, caKey, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, nil, fmt.Errorf("pki: %w", err)
	}
	if !haveKey {
		// A node key without a CA key means this node joined a cluster whose
		// CA is elsewhere; a new CA here would split it off.
		if _, ok := ks.PrivateKey(NodeKeyName); ok {
			return nil, nil, fmt.Errorf("%w: %s is missing and this node, which holds a node key, cannot re-create it; copy the cluster's ca.pem back", ErrNoCAKey, caPath)
		}
		if caKey, err = newKey(ks, CAKeyName); err != nil {
			return nil, nil, err
		}
	}
	ca, err := NewCA(ClusterName, caKey, now)
	if err != nil {
		return nil, nil, err
	}
	if err := atomicfile.WriteFile(caPath, EncodeCertPEM(ca), 0o644); err != nil {
		return nil, nil, fmt.Errorf("pki: write %s: %w", CAFile, err)
	}
	return ca, caKey, nil
}

// reusableLeaf returns the node certificate at path, or why it must be
// re-issued. due is set, with a nil error, when the certificate is valid
// but RenewalDue says it should be replaced.
func reusableLeaf(path string, key crypto.Signer, pool *x509.CertPool, nodeName string, hosts []string, crlURL string, now time.Time) (leaf *x509.Certificate, due string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	certs, err := ParseCertPEM(b)
	if err != nil {
		return nil, "", err
	}
	leaf = certs[0]
	_, err = leaf.Verify(x509.VerifyOptions{
		Roots:       pool,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	})
	switch {
	case err != nil:
		return nil, "", err
	case !SamePublicKey(key.Public(), leaf.PublicKey):
		return nil, "", fmt.Errorf("%w: keystore key %q", ErrKeyMismatch, NodeKeyName)
	case leaf.Subject.CommonName != nodeName:
		return nil, "", fmt.Errorf("certificate names node %q", leaf.Subject.CommonName)
	}
	return leaf, RenewalDue(leaf, hosts, crlURL, now), nil
}

// RenewalDue says why a valid node certificate should be replaced now: it
// expires within RenewBefore, does not cover hosts, or (crlURL not
// empty) does not name crlURL as its CRL distribution point. "" means
// it need not be.
func RenewalDue(leaf *x509.Certificate, hosts []string, crlURL string, now time.Time) string {
	switch {
	case leaf.NotAfter.Sub(now) < RenewBefore:
		return fmt.Sprintf("certificate expires at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	case !covers(leaf, hosts):
		return fmt.Sprintf("certificate does not cover hosts %q", hosts)
	case crlURL != "" && !slices.Equal(leaf.CRLDistributionPoints, []string{crlURL}):
		// A certificate from before the cluster published a CRL (or
		// with another API address): renewed early, so that an
		// upgraded cluster's certificates all name where to find it.
		return fmt.Sprintf("certificate's CRL distribution point is %q, not %q", leaf.CRLDistributionPoints, crlURL)
	}
	return ""
}

func newKey(ks KeyStore, name string) (crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := ks.Put(name, key); err != nil {
		return nil, fmt.Errorf("pki: store %q key: %w", name, err)
	}
	return key, nil
}

// SamePublicKey reports whether a and b are the same public key.
func SamePublicKey(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}
