// Package pki owns the cluster certificate authority and the node TLS
// certificates used for the API listener and for mutual TLS between nodes.
//
// The CA key and the node key live in the node's keystore (package tpm),
// reached through the small KeyStore interface declared here; only
// certificates are written to disk: <dataDir>/ca.pem and
// <dataDir>/tls/node.pem.
//
// Package pki uses only the standard library and tpm/atomicfile. It is
// imported by node and cmd/bulwark; layering_test.go, at the module root,
// holds it to node's rules (no api, authcore, cmd or net/http).
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
