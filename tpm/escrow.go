package tpm

// The cluster data key and the ways it leaves a node without leaving in
// the clear: wrapped to a hybrid post-quantum KEM public key (escrow, and
// a joining node), or sealed under a secret (the recovery shares' pad,
// which node/escrow splits).
//
// KEM wrap, format version 1. The KEM is X25519MLKEM768 (circl kem/hybrid:
// ML-KEM-768 and X25519, shared secrets concatenated). For a public key pk:
//
//	ct, ss = Encapsulate(pk)
//	k      = HKDF-SHA256(ikm = ss, salt = SHA-256(pk) | SHA-256(ct),
//	                     info = "bulwark-kem-wrap-v1" 0x00 label)
//	blob   = "BWKW" | 0x01 | 12-byte nonce | AES-256-GCM(k, key)
//
// authenticated with "bulwark-kem-wrap-v1" 0x00 label 0x00 aad | "BWKW" |
// 0x01. The label says what the wrap is for ("escrow", "join"), the aad
// binds it to its context (the data key's and the public key's
// fingerprints), so a blob cannot be replayed elsewhere.
//
// Secret wrap (the recovery shares' pad), format version 1: the same blob
// under k = HKDF-SHA256(ikm = secret, salt = none, info =
// "bulwark-secret-wrap-v1" 0x00 label), magic "BWSW".

import (
	"bytes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"

	"github.com/cloudflare/circl/kem"
	"github.com/cloudflare/circl/kem/hybrid"
)

// The cluster data key: the one key every node shares. It encrypts secrets
// inside the replicated state; each node keeps it in its keystore.
const (
	DataKeyName = "cluster/data-key"
	DataKeySize = 32
)

// EscrowKEM names the KEM escrow keys and wrapped keys use.
const EscrowKEM = "X25519MLKEM768"

// Armor of escrow key files.
const (
	escrowPublicPEM  = "BULWARK ESCROW PUBLIC KEY"
	escrowPrivatePEM = "BULWARK ESCROW PRIVATE KEY"
)

const (
	kemWrapMagic    = "BWKW"
	kemWrapVersion  = 1
	kemWrapDomain   = "bulwark-kem-wrap-v1"
	secretMagic     = "BWSW"
	secretVersion   = 1
	secretDomain    = "bulwark-secret-wrap-v1"
	dataKeyDomain   = "bulwark-cluster-data-key-v1"
	escrowFPDomain  = "bulwark-escrow-public-key-v1"
	maxWrappedKey   = 4 << 10
	minShareSecret  = 16
	maxWrapLabelLen = 64
)

// Errors of escrow, matched with errors.Is. A wrapped key that does not
// open (wrong private key, tampered blob) wraps ErrUnseal.
func escrowScheme() kem.Scheme { return hybrid.X25519MLKEM768() }

// NewDataKey returns a fresh random data key.
func NewDataKey() []byte {
	k := make([]byte, DataKeySize)
	rand.Read(k)
	return k
}

// DataKeyFingerprint names a data key without revealing it: hex of
// SHA-256("bulwark-cluster-data-key-v1" 0x00 key). It is what the
// replicated state records and what operators compare.
func DataKeyFingerprint(key []byte) string {
	return fingerprint(dataKeyDomain, key)
}

// EscrowKeyFingerprint names an escrow public key (its binary form): hex of
// SHA-256("bulwark-escrow-public-key-v1" 0x00 pk).
func EscrowKeyFingerprint(publicKey []byte) string {
	return fingerprint(escrowFPDomain, publicKey)
}

func fingerprint(domain string, b []byte) string {
	h := sha256.New()
	h.Write([]byte(domain))
	h.Write([]byte{0})
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// GenerateEscrowKey makes an escrow key pair and returns both halves in
// their armored file forms. The private half is for an offline place: it
// opens every escrow made to the public half.
func GenerateEscrowKey() (publicPEM, privatePEM []byte, err error) {
	pk, sk, err := escrowScheme().GenerateKeyPair()
	if err != nil {
		return nil, nil, fmt.Errorf("tpm: escrow key: %w", err)
	}
	pub, err := pk.MarshalBinary()
	if err != nil {
		return nil, nil, fmt.Errorf("tpm: escrow key: %w", err)
	}
	priv, err := sk.MarshalBinary()
	if err != nil {
		return nil, nil, fmt.Errorf("tpm: escrow key: %w", err)
	}
	defer clear(priv)
	hdr := map[string]string{"KEM": EscrowKEM, "Fingerprint": EscrowKeyFingerprint(pub)}
	return pem.EncodeToMemory(&pem.Block{Type: escrowPublicPEM, Headers: hdr, Bytes: pub}),
		pem.EncodeToMemory(&pem.Block{Type: escrowPrivatePEM, Headers: hdr, Bytes: priv}), nil
}

// ParseEscrowPublicKey reads an armored escrow public key and returns its
// binary form.
func ParseEscrowPublicKey(armored []byte) ([]byte, error) {
	b, err := decodeArmor(armored, escrowPublicPEM)
	if err != nil {
		return nil, err
	}
	if _, err := escrowScheme().UnmarshalBinaryPublicKey(b.Bytes); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrEscrowKey, escrowPublicPEM, err)
	}
	if err := checkFingerprintHeader(b, b.Bytes); err != nil {
		return nil, err
	}
	return b.Bytes, nil
}

// ParseEscrowPrivateKey reads an armored escrow private key and returns
// its binary form and the fingerprint of its public half.
func ParseEscrowPrivateKey(armored []byte) (privateKey []byte, publicFingerprint string, err error) {
	b, err := decodeArmor(armored, escrowPrivatePEM)
	if err != nil {
		return nil, "", err
	}
	sk, err := escrowScheme().UnmarshalBinaryPrivateKey(b.Bytes)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %s: %v", ErrEscrowKey, escrowPrivatePEM, err)
	}
	pub, err := sk.Public().MarshalBinary()
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrEscrowKey, err)
	}
	if err := checkFingerprintHeader(b, pub); err != nil {
		return nil, "", err
	}
	return b.Bytes, EscrowKeyFingerprint(pub), nil
}

func decodeArmor(armored []byte, typ string) (*pem.Block, error) {
	b, rest := pem.Decode(armored)
	switch {
	case b == nil:
		return nil, fmt.Errorf("%w: no %q block found", ErrEscrowKey, typ)
	case b.Type != typ:
		return nil, fmt.Errorf("%w: a %q block, want %q", ErrEscrowKey, b.Type, typ)
	case len(bytes.TrimSpace(rest)) != 0:
		return nil, fmt.Errorf("%w: data after the %q block", ErrEscrowKey, typ)
	}
	if k, ok := b.Headers["KEM"]; ok && k != EscrowKEM {
		return nil, fmt.Errorf("%w: KEM %q, want %s", ErrEscrowKey, k, EscrowKEM)
	}
	return b, nil
}

// checkFingerprintHeader catches a damaged file: the Fingerprint header,
// when present, must name the public key.
func checkFingerprintHeader(b *pem.Block, pub []byte) error {
	if fp, ok := b.Headers["Fingerprint"]; ok && fp != EscrowKeyFingerprint(pub) {
		return fmt.Errorf("%w: the key does not match its Fingerprint header (damaged file?)", ErrEscrowKey)
	}
	return nil
}

// WrappedKey is a key encrypted to a KEM public key.
type WrappedKey struct {
	KEMCiphertext []byte // the KEM encapsulation
	Ciphertext    []byte // "BWKW" | version | nonce | AES-256-GCM
}

// WrapKey encrypts key to publicKey (binary X25519MLKEM768). label names
// the purpose and aad the context; UnwrapKey needs both again.
func WrapKey(publicKey, key []byte, label string, aad []byte) (WrappedKey, error) {
	if err := checkWrapLabel(label); err != nil {
		return WrappedKey{}, err
	}
	pk, err := escrowScheme().UnmarshalBinaryPublicKey(publicKey)
	if err != nil {
		return WrappedKey{}, fmt.Errorf("%w: %v", ErrEscrowKey, err)
	}
	ct, ss, err := escrowScheme().Encapsulate(pk)
	if err != nil {
		return WrappedKey{}, fmt.Errorf("tpm: encapsulate: %w", err)
	}
	defer clear(ss)
	k, err := kemWrapKey(ss, publicKey, ct, label)
	if err != nil {
		return WrappedKey{}, err
	}
	defer clear(k)
	aead, err := newGCM(k)
	if err != nil {
		return WrappedKey{}, err
	}
	return WrappedKey{KEMCiphertext: ct,
		Ciphertext: gcmSeal(aead, kemWrapMagic, kemWrapVersion, wrapAAD(kemWrapDomain, label, aad), key)}, nil
}

// UnwrapKey opens w with privateKey (binary X25519MLKEM768). A wrong key or
// a tampered w yields an error wrapping ErrUnseal.
func UnwrapKey(privateKey []byte, w WrappedKey, label string, aad []byte) ([]byte, error) {
	if err := checkWrapLabel(label); err != nil {
		return nil, err
	}
	if len(w.KEMCiphertext) != escrowScheme().CiphertextSize() || len(w.Ciphertext) > maxWrappedKey {
		return nil, fmt.Errorf("%w: wrapped key of the wrong size", ErrUnseal)
	}
	sk, err := escrowScheme().UnmarshalBinaryPrivateKey(privateKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrEscrowKey, err)
	}
	pub, err := sk.Public().MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrEscrowKey, err)
	}
	// ML-KEM decapsulation never fails on a wrong ciphertext: it returns a
	// pseudorandom secret, and the AEAD below refuses.
	ss, err := escrowScheme().Decapsulate(sk, w.KEMCiphertext)
	if err != nil {
		return nil, fmt.Errorf("%w: decapsulate: %v", ErrUnseal, err)
	}
	defer clear(ss)
	k, err := kemWrapKey(ss, pub, w.KEMCiphertext, label)
	if err != nil {
		return nil, err
	}
	defer clear(k)
	aead, err := newGCM(k)
	if err != nil {
		return nil, err
	}
	return gcmOpen(aead, kemWrapMagic, kemWrapVersion, wrapAAD(kemWrapDomain, label, aad), w.Ciphertext)
}

func kemWrapKey(ss, pub, ct []byte, label string) ([]byte, error) {
	hp, hc := sha256.Sum256(pub), sha256.Sum256(ct)
	salt := append(hp[:], hc[:]...)
	return hkdf.Key(sha256.New, ss, salt, kemWrapDomain+"\x00"+label, 32)
}

// SealWithSecret encrypts key under a key derived from secret (at least 16
// random bytes), for a wrap whose secret is kept elsewhere: the recovery
// shares' pad.
func SealWithSecret(secret, key []byte, label string, aad []byte) ([]byte, error) {
	aead, err := secretAEAD(secret, label)
	if err != nil {
		return nil, err
	}
	return gcmSeal(aead, secretMagic, secretVersion, wrapAAD(secretDomain, label, aad), key), nil
}

// OpenWithSecret reverses SealWithSecret; a wrong secret or tampered blob
// wraps ErrUnseal.
func OpenWithSecret(secret, blob []byte, label string, aad []byte) ([]byte, error) {
	if len(blob) > maxWrappedKey {
		return nil, fmt.Errorf("%w: wrapped key of %d bytes", ErrUnseal, len(blob))
	}
	aead, err := secretAEAD(secret, label)
	if err != nil {
		return nil, err
	}
	return gcmOpen(aead, secretMagic, secretVersion, wrapAAD(secretDomain, label, aad), blob)
}

func secretAEAD(secret []byte, label string) (cipher.AEAD, error) {
	if err := checkWrapLabel(label); err != nil {
		return nil, err
	}
	if len(secret) < minShareSecret {
		return nil, fmt.Errorf("tpm: wrap secret of %d bytes, want at least %d", len(secret), minShareSecret)
	}
	k, err := hkdf.Key(sha256.New, secret, nil, secretDomain+"\x00"+label, 32)
	if err != nil {
		return nil, err
	}
	defer clear(k)
	return newGCM(k)
}

func checkWrapLabel(label string) error {
	if label == "" || len(label) > maxWrapLabelLen || bytes.IndexByte([]byte(label), 0) >= 0 {
		return fmt.Errorf("tpm: wrap label %q: want 1-%d bytes without NUL", label, maxWrapLabelLen)
	}
	return nil
}

// wrapAAD is domain 0x00 label 0x00 aad: the label holds no NUL, so the
// encoding is unambiguous.
func wrapAAD(domain, label string, aad []byte) string {
	return domain + "\x00" + label + "\x00" + string(aad)
}
