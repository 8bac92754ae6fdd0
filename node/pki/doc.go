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
