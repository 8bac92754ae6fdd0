package pki

import "errors"

// Sentinel errors, matched with errors.Is.
var (
	// ErrInvalidHost reports an empty or malformed host name or IP address
	// for a certificate's subject alternative names.
	ErrInvalidHost = errors.New("pki: invalid host")

	// ErrNoCertificate reports PEM input without a certificate, or with a
	// block that is not a certificate.
	ErrNoCertificate = errors.New("pki: no certificate")

	// ErrNoCAKey reports that the node certificate must be issued or
	// re-issued but this node's keystore does not hold the CA key (a node
	// that joined an existing cluster).
	ErrNoCAKey = errors.New("pki: CA key not in keystore")

	// ErrKeyMismatch reports a key that does not match its certificate.
	ErrKeyMismatch = errors.New("pki: key does not match certificate")
)
