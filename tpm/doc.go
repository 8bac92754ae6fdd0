// Package tpm owns the sealing of this node's key-encryption key (KEK) and the
// encrypted keystore that the KEK protects.
//
// A Sealer binds a small secret to something outside the data directory: the
// machine's TPM 2.0 (TPMSealer, on go-tpm), or, when an operator
// explicitly chooses seal.mode = "software", a wrapping key kept in a separate
// file (SoftwareSealer). The Keystore holds the node's private keys and
// symmetric secrets in <dataDir>/keystore.sealed, encrypted with AES-256-GCM
// under the KEK; the KEK itself exists on disk only as the sealed blob
// <dataDir>/tpm/kek.sealed.
//
// With seal.signing = "tpm-resident", TPMSealer also makes ES256 signing
// keys inside the TPM (TPMKey, <dataDir>/tpm/signing-<n>.key holds only the
// TPM-wrapped blob) and signs with TPM2_Sign; ResidentKeys is the signing
// key vault over them (authcore decides when a generation is made).
// escrow.go holds the cluster
// data key's helpers: its fingerprint, the hybrid X25519 + ML-KEM-768 wrap
// (to an operator's escrow key, or to a joining node) and the wrap under a
// secret (the recovery shares' pad; node/escrow splits it into shares).
//
// Package tpm is imported by node, node/escrow and cmd/bulwark. It imports
// only the standard library, go-tpm, golang.org/x/crypto, tpm/atomicfile,
// circl's ML-DSA (for ML-DSA signing keys, which crypto/x509 cannot store)
// and circl's hybrid KEM; layering_test.go, at the module root, checks
// that it reaches no other bulwark package, no bbolt, raft or net/http.
package tpm
