package tpm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"

	"github.com/bulwark-auth/bulwark/tpm/atomicfile"
)

// Files under the data directory, relative to it.
const (
	KeystoreFile = "keystore.sealed"
	KEKFile      = "tpm/kek.sealed"
)

// Keystore file format, version 1:
//
//	"BWKS" | 0x01 | 12-byte nonce | AES-256-GCM(KEK) ciphertext and tag
//
// authenticated with keystoreAAD | "BWKS" | 0x01. The plaintext is the JSON
// payload below, whose own "v" must equal keystoreVersion.
const (
	keystoreMagic   = "BWKS"
	keystoreVersion = 1
	keystoreAAD     = "bulwark-keystore-v1"
	kekSize         = 32
	maxNameLen      = 128
	maxSecretLen    = 64 << 10
	minRSABits      = 2048
)

// Entry types inside the payload.
const (
	entryPKCS8  = "pkcs8"  // a private key as PKCS#8 DER
	entrySecret = "secret" // raw symmetric secret bytes
	// entryMLDSA65Seed is an ML-DSA-65 key (circl sign/mldsa/mldsa65) as
	// its 32-byte FIPS 204 seed, from which the key is derived again on
	// open: crypto/x509 cannot marshal ML-DSA as PKCS#8.
	entryMLDSA65Seed = "mldsa65-seed"
)

type payload struct {
	V       int              `json:"v"`
	Entries map[string]entry `json:"entries"`
}

type entry struct {
	Type string `json:"type"`
	Data []byte `json:"data"`
}

// Keystore holds this node's private keys and symmetric secrets, encrypted
// under the KEK in <dataDir>/keystore.sealed. Keys and secrets share one
// namespace ("tls", "ca", "signing/<kid>", "cluster-data-key"). Every change
// rewrites the whole file atomically. A Keystore is safe for concurrent use.
type Keystore struct {
	mode string
	path string // <dataDir>/keystore.sealed

	mu      sync.RWMutex
	kek     []byte
	keys    map[string]crypto.Signer
	secrets map[string][]byte

	// write persists the encrypted store; tests replace it to inject faults.
	write func(path string, data []byte, perm os.FileMode) error
}

// OpenKeystore opens the keystore in dataDir, unsealing its KEK with s.
//
// If neither keystore.sealed nor tpm/kek.sealed exists it creates both: a
// fresh random KEK sealed by s, and an empty store. If both exist it unseals
// the KEK and decrypts the store; on failure it returns an error wrapping
// ErrUnseal that names the seal mode and the file, and changes nothing on
// disk. If exactly one exists it returns an error wrapping ErrIncompleteState
// and changes nothing.
func OpenKeystore(dataDir string, s Sealer) (*Keystore, error) {
	return openKeystore(dataDir, s, atomicfile.WriteFile)
}

func openKeystore(dataDir string, s Sealer, write func(string, []byte, os.FileMode) error) (*Keystore, error) {
	if dataDir == "" {
		return nil, errors.New("tpm: keystore: empty data directory")
	}
	ksPath := filepath.Join(dataDir, KeystoreFile)
	kekPath := filepath.Join(dataDir, filepath.FromSlash(KEKFile))
	ksExists, err := exists(ksPath)
	if err != nil {
		return nil, err
	}
	kekExists, err := exists(kekPath)
	if err != nil {
		return nil, err
	}
	ks := &Keystore{
		mode:    s.Mode(),
		path:    ksPath,
		keys:    map[string]crypto.Signer{},
		secrets: map[string][]byte{},
		write:   write,
	}
	switch {
	case ksExists && kekExists:
		if err := ks.open(kekPath, s); err != nil {
			return nil, err
		}
		return ks, nil
	case !ksExists && !kekExists:
		if err := ks.create(dataDir, kekPath, s); err != nil {
			return nil, err
		}
		return ks, nil
	default:
		present, missing := KeystoreFile, KEKFile
		if kekExists {
			present, missing = missing, present
		}
		return nil, fmt.Errorf("%w: %s exists in %s but %s does not; refusing to create new keys over existing state "+
			"(restore the missing file from backup, or, on a node that never finished its first start, remove %s)",
			ErrIncompleteState, present, dataDir, missing, present)
	}
}

func exists(path string) (bool, error) {
	_, err := os.Lstat(path)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, fmt.Errorf("tpm: keystore: %w", err)
}

func (ks *Keystore) open(kekPath string, s Sealer) error {
	blob, err := os.ReadFile(kekPath)
	if err != nil {
		return fmt.Errorf("tpm: keystore: %w", err)
	}
	kek, err := s.Unseal(blob)
	if err == nil && len(kek) != kekSize {
		err = fmt.Errorf("unsealed KEK is %d bytes, want %d", len(kek), kekSize)
	}
	if err != nil {
		return unsealError(fmt.Sprintf("cannot unseal %s with the %s sealer", KEKFile, s.Mode()), err)
	}
	data, err := os.ReadFile(ks.path)
	if err != nil {
		clear(kek)
		return fmt.Errorf("tpm: keystore: %w", err)
	}
	keys, secrets, err := decodeKeystore(kek, data)
	if err != nil {
		clear(kek)
		if errors.Is(err, ErrUnseal) {
			return fmt.Errorf("cannot decrypt %s with the KEK unsealed by the %s sealer: %w", KeystoreFile, s.Mode(), err)
		}
		return fmt.Errorf("%s: %w", KeystoreFile, err)
	}
	ks.kek, ks.keys, ks.secrets = kek, keys, secrets
	return nil
}

// unsealError prefixes err with context and makes sure it wraps ErrUnseal.
func unsealError(context string, err error) error {
	if errors.Is(err, ErrUnseal) {
		return fmt.Errorf("%s: %w", context, err)
	}
	return fmt.Errorf("%s: %w: %w", context, ErrUnseal, err)
}

func (ks *Keystore) create(dataDir, kekPath string, s Sealer) error {
	if err := atomicfile.MkdirPrivate(filepath.Dir(kekPath)); err != nil {
		return fmt.Errorf("tpm: keystore: %w", err)
	}
	kek := make([]byte, kekSize)
	rand.Read(kek)
	blob, err := s.Seal(kek)
	if err != nil {
		return fmt.Errorf("tpm: keystore: seal KEK with the %s sealer: %w", s.Mode(), err)
	}
	// Prove the blob opens before anything depends on it.
	check, err := s.Unseal(blob)
	if err == nil && !bytes.Equal(check, kek) {
		err = errors.New("unsealed KEK differs from the sealed one")
	}
	clear(check)
	if err != nil {
		return unsealError(fmt.Sprintf("tpm: keystore: the %s sealer cannot unseal the KEK it just sealed", s.Mode()), err)
	}
	if err := atomicfile.WriteFile(kekPath, blob, 0o600); err != nil {
		return fmt.Errorf("tpm: keystore: write %s: %w", KEKFile, err)
	}
	data, err := encodeKeystore(kek, ks.keys, ks.secrets)
	if err == nil {
		err = ks.write(ks.path, data, 0o600)
	}
	if err != nil {
		// Nothing can depend on the KEK yet: remove it so that the next
		// start creates both files instead of refusing half a keystore.
		os.Remove(kekPath)
		return fmt.Errorf("tpm: keystore: write %s: %w", KeystoreFile, err)
	}
	ks.kek = kek
	return nil
}

// Mode returns the mode of the sealer that protects the KEK.
func (ks *Keystore) Mode() string { return ks.mode }

// PrivateKey returns the private key stored under name.
func (ks *Keystore) PrivateKey(name string) (crypto.Signer, bool) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	k, ok := ks.keys[name]
	return k, ok
}

// Put stores key under name, replacing any key of that name, and persists the
// store. Supported: *ecdsa.PrivateKey, ed25519.PrivateKey, *rsa.PrivateKey
// (2048 bits or more), and *mldsa65.PrivateKey that still holds its seed
// (as mldsa65.GenerateKey and NewKeyFromSeed make it).
func (ks *Keystore) Put(name string, key crypto.Signer) error {
	if err := checkName(name); err != nil {
		return err
	}
	e, err := marshalKey(key)
	if err != nil {
		return err
	}
	stored, err := parseKey(e)
	clear(e.Data)
	if err != nil {
		return err
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if _, ok := ks.secrets[name]; ok {
		return fmt.Errorf("%w: %q holds a secret", ErrNameTaken, name)
	}
	keys := maps.Clone(ks.keys)
	keys[name] = stored
	if err := ks.persist(keys, ks.secrets); err != nil {
		return err
	}
	ks.keys = keys
	return nil
}

// Secret returns a copy of the symmetric secret stored under name.
func (ks *Keystore) Secret(name string) ([]byte, bool) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	b, ok := ks.secrets[name]
	return bytes.Clone(b), ok
}

// PutSecret stores a copy of b (at most 64 KiB) under name, replacing any
// secret of that name, and persists the store.
func (ks *Keystore) PutSecret(name string, b []byte) error {
	if err := checkName(name); err != nil {
		return err
	}
	if len(b) == 0 || len(b) > maxSecretLen {
		return fmt.Errorf("tpm: keystore: secret %q is %d bytes, want 1-%d", name, len(b), maxSecretLen)
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if _, ok := ks.keys[name]; ok {
		return fmt.Errorf("%w: %q holds a private key", ErrNameTaken, name)
	}
	secrets := maps.Clone(ks.secrets)
	secrets[name] = bytes.Clone(b)
	if err := ks.persist(ks.keys, secrets); err != nil {
		return err
	}
	ks.secrets = secrets
	return nil
}

// Names returns the sorted names of all keys and secrets.
func (ks *Keystore) Names() []string {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	names := slices.Collect(maps.Keys(ks.keys))
	names = slices.AppendSeq(names, maps.Keys(ks.secrets))
	slices.Sort(names)
	return names
}

// persist encrypts and writes the given state. Callers hold ks.mu.
func (ks *Keystore) persist(keys map[string]crypto.Signer, secrets map[string][]byte) error {
	data, err := encodeKeystore(ks.kek, keys, secrets)
	if err != nil {
		return err
	}
	if err := ks.write(ks.path, data, 0o600); err != nil {
		return fmt.Errorf("tpm: keystore: write %s: %w", KeystoreFile, err)
	}
	return nil
}

func checkName(name string) error {
	if name == "" || len(name) > maxNameLen {
		return fmt.Errorf("%w: %q: want 1-%d characters", ErrInvalidName, name, maxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-' || c == '/' || c == ':') {
			return fmt.Errorf("%w: %q: only [A-Za-z0-9._:/-] allowed", ErrInvalidName, name)
		}
	}
	return nil
}

// marshalKey returns key as a key entry: PKCS#8 DER, or an ML-DSA-65 seed.
func marshalKey(key crypto.Signer) (entry, error) {
	switch k := key.(type) {
	case *ecdsa.PrivateKey, ed25519.PrivateKey:
	case *rsa.PrivateKey:
		if k.N == nil || k.N.BitLen() < minRSABits {
			return entry{}, fmt.Errorf("%w: RSA keys must have at least %d bits", ErrUnsupportedKey, minRSABits)
		}
	case *mldsa65.PrivateKey:
		seed := k.Seed() // a copy; nil for a key unpacked from its expanded form
		if len(seed) != mldsa65.SeedSize {
			return entry{}, fmt.Errorf("%w: ML-DSA-65 key without its seed", ErrUnsupportedKey)
		}
		return entry{Type: entryMLDSA65Seed, Data: seed}, nil
	default:
		return entry{}, fmt.Errorf("%w: %T", ErrUnsupportedKey, key)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return entry{}, fmt.Errorf("%w: %w", ErrUnsupportedKey, err)
	}
	return entry{Type: entryPKCS8, Data: der}, nil
}

// parseKey decodes a key entry.
func parseKey(e entry) (crypto.Signer, error) {
	switch e.Type {
	case entryPKCS8:
		k, err := x509.ParsePKCS8PrivateKey(e.Data)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		switch k := k.(type) {
		case *ecdsa.PrivateKey, ed25519.PrivateKey, *rsa.PrivateKey:
			return k.(crypto.Signer), nil
		default:
			return nil, fmt.Errorf("%w: PKCS#8 key of type %T", ErrUnsupportedKey, k)
		}
	case entryMLDSA65Seed:
		if len(e.Data) != mldsa65.SeedSize {
			return nil, fmt.Errorf("%w: ML-DSA-65 seed of %d bytes, want %d", ErrCorrupt, len(e.Data), mldsa65.SeedSize)
		}
		var seed [mldsa65.SeedSize]byte
		copy(seed[:], e.Data)
		_, k := mldsa65.NewKeyFromSeed(&seed)
		clear(seed[:])
		return k, nil
	default:
		return nil, fmt.Errorf("%w: unknown entry type %q", ErrCorrupt, e.Type)
	}
}

// encodeKeystore serializes and encrypts the store under kek.
func encodeKeystore(kek []byte, keys map[string]crypto.Signer, secrets map[string][]byte) ([]byte, error) {
	p := payload{V: keystoreVersion, Entries: make(map[string]entry, len(keys)+len(secrets))}
	defer func() {
		for _, e := range p.Entries {
			clear(e.Data)
		}
	}()
	for name, k := range keys {
		e, err := marshalKey(k)
		if err != nil {
			return nil, err
		}
		p.Entries[name] = e
	}
	for name, b := range secrets {
		p.Entries[name] = entry{Type: entrySecret, Data: bytes.Clone(b)}
	}
	plain, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	aead, err := newGCM(kek)
	if err != nil {
		return nil, err
	}
	return gcmSeal(aead, keystoreMagic, keystoreVersion, keystoreAAD, plain), nil
}

// decodeKeystore decrypts and parses a keystore file. A wrong KEK or a
// tampered file wraps ErrUnseal; a bad payload wraps ErrCorrupt or
// ErrUnsupportedKey.
func decodeKeystore(kek, data []byte) (map[string]crypto.Signer, map[string][]byte, error) {
	aead, err := newGCM(kek)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrUnseal, err)
	}
	plain, err := gcmOpen(aead, keystoreMagic, keystoreVersion, keystoreAAD, data)
	if err != nil {
		return nil, nil, err
	}
	defer clear(plain)
	return decodePayload(plain)
}

func decodePayload(plain []byte) (map[string]crypto.Signer, map[string][]byte, error) {
	var p payload
	if err := json.Unmarshal(plain, &p); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if p.V != keystoreVersion {
		return nil, nil, fmt.Errorf("%w: payload version %d, want %d", ErrCorrupt, p.V, keystoreVersion)
	}
	keys := map[string]crypto.Signer{}
	secrets := map[string][]byte{}
	for name, e := range p.Entries {
		if err := checkName(name); err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		if e.Type == entrySecret {
			secrets[name] = bytes.Clone(e.Data)
			continue
		}
		k, err := parseKey(e)
		if err != nil {
			return nil, nil, fmt.Errorf("entry %q: %w", name, err)
		}
		keys[name] = k
	}
	return keys, secrets, nil
}
