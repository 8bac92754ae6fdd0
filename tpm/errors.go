package tpm

import "errors"

// Sentinel errors, matched with errors.Is.
var (
	// ErrUnseal reports that a sealed blob or the keystore could not be
	// unsealed or decrypted: wrong sealer or key, another machine's TPM, or
	// a tampered or truncated file.
	ErrUnseal = errors.New("tpm: unseal failed")

	// ErrIncompleteState reports that exactly one of keystore.sealed and
	// tpm/kek.sealed exists. Nothing is regenerated over existing state.
	ErrIncompleteState = errors.New("tpm: incomplete keystore state")

	// ErrCorrupt reports a keystore payload that decrypted correctly but
	// cannot be decoded (unknown format version, bad key encoding).
	ErrCorrupt = errors.New("tpm: keystore payload is malformed")

	// ErrInsecureKeyFile reports a software wrapping-key file that is group-
	// or world-accessible, not a regular file, or of the wrong size.
	ErrInsecureKeyFile = errors.New("tpm: unsafe software key file")

	// ErrUnsupportedKey reports a private key type the keystore cannot hold.
	ErrUnsupportedKey = errors.New("tpm: unsupported private key type")

	// ErrInvalidName reports a keystore entry name that is empty, too long
	// or uses characters outside [A-Za-z0-9._:/-].
	ErrInvalidName = errors.New("tpm: invalid keystore entry name")

	// ErrNameTaken reports a Put of a key under a name that holds a secret,
	// or of a secret under a name that holds a key.
	ErrNameTaken = errors.New("tpm: keystore name holds another kind of entry")

	// ErrInvalidDevice reports a TPM device string ParseDevice rejects.
	ErrInvalidDevice = errors.New("tpm: invalid TPM device")

	// ErrClosed reports use of a Sealer after Close.
	ErrClosed = errors.New("tpm: sealer closed")

	// ErrEscrowKey reports an escrow key file that is not one: wrong
	// armor, another KEM, a bad length or a fingerprint that does not match.
	ErrEscrowKey = errors.New("tpm: invalid escrow key")
)
