package pki

import (
	"crypto/tls"
	"fmt"
	"os"
)

// ServerTLSConfig returns a server configuration presenting cert, accepting
// minVersion and later (0 means TLS 1.3). It leaves CurvePreferences unset so
// Go's default post-quantum hybrid key exchange, X25519MLKEM768, stays on.
func ServerTLSConfig(cert tls.Certificate, minVersion uint16) *tls.Config {
	if minVersion == 0 {
		minVersion = tls.VersionTLS13
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   minVersion,
		CipherSuites: tls12Suites,
	}
}

// tls12Suites are the TLS 1.2 suites served when TLS 1.2 is allowed:
// forward secret and AEAD only. Go's defaults add ECDHE with AES-CBC and
// SHA-1, which scanners (testssl.sh) flag as obsolete. TLS 1.3's suites
// are not configurable and all AEAD.
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// LoadOperatorCert loads an operator-provided PEM certificate chain and
// private key. Errors name the file at fault.
func LoadOperatorCert(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: TLS certificate file: %w", err)
	}
	if _, err := ParseCertPEM(certPEM); err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: TLS certificate file %s: %w", certFile, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: TLS key file: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	clear(keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: TLS key file %s (for certificate file %s): %w", keyFile, certFile, err)
	}
	return cert, nil
}
