package tpm

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/bulwark-auth/bulwark/tpm/atomicfile"
)

// Software sealing blob format, version 1:
//
//	"BWSS" | 0x01 | 12-byte nonce | AES-256-GCM ciphertext and tag
//
// The AAD is softwareAAD followed by the 5 header bytes, so a blob cannot be
// replayed as another format or version.
const (
	softwareMagic   = "BWSS"
	softwareVersion = 1
	softwareAAD     = "bulwark-kek-v1"
	gcmNonceLen     = 12
	gcmTagLen       = 16

	// SoftwareKeySize is the size in bytes of the wrapping key file.
	SoftwareKeySize = 32
)

// SoftwareSealer seals with AES-256-GCM under a random wrapping key kept in a
// file. It is the explicit, weaker fallback for machines without a TPM: anyone
// who can read both the key file and the data directory can unseal the KEK.
type SoftwareSealer struct {
	mu  sync.RWMutex
	key []byte // nil after Close
}

var _ Sealer = (*SoftwareSealer)(nil)

// NewSoftwareSealer loads the 32-byte wrapping key from keyFile, creating it
// (mode 0600, in a 0700 directory if the directory is missing) with fresh
// random bytes if it does not exist. It refuses an existing key file that is
// not a regular file, is accessible by group or others, or is not exactly 32
// bytes long, with an error wrapping ErrInsecureKeyFile.
func NewSoftwareSealer(keyFile string) (*SoftwareSealer, error) {
	if keyFile == "" {
		return nil, errors.New("tpm: software sealer: empty key file path")
	}
	key, err := readKeyFile(keyFile)
	if errors.Is(err, fs.ErrNotExist) {
		key, err = createKeyFile(keyFile)
	}
	if err != nil {
		return nil, err
	}
	return &SoftwareSealer{key: key}, nil
}

func readKeyFile(keyFile string) ([]byte, error) {
	f, err := os.OpenFile(keyFile, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("%w: %s is a symbolic link", ErrInsecureKeyFile, keyFile)
		}
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	switch {
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrInsecureKeyFile, keyFile)
	case fi.Mode().Perm()&0o077 != 0:
		return nil, fmt.Errorf("%w: %s has mode %#o; it must not be accessible by group or others (chmod 600 %s)",
			ErrInsecureKeyFile, keyFile, fi.Mode().Perm(), keyFile)
	case fi.Size() != SoftwareKeySize:
		return nil, fmt.Errorf("%w: %s is %d bytes, want %d", ErrInsecureKeyFile, keyFile, fi.Size(), SoftwareKeySize)
	}
	key := make([]byte, SoftwareKeySize)
	if _, err := io.ReadFull(f, key); err != nil {
		return nil, fmt.Errorf("read %s: %w", keyFile, err)
	}
	return key, nil
}

func createKeyFile(keyFile string) ([]byte, error) {
	if err := atomicfile.MkdirPrivate(filepath.Dir(keyFile)); err != nil {
		return nil, fmt.Errorf("tpm: software sealer: %w", err)
	}
	key := make([]byte, SoftwareKeySize)
	rand.Read(key)
	err := atomicfile.CreateExclusive(keyFile, key, 0o600)
	if errors.Is(err, fs.ErrExist) {
		// Another process created it first; use theirs.
		return readKeyFile(keyFile)
	}
	if err != nil {
		return nil, fmt.Errorf("tpm: software sealer: create key file: %w", err)
	}
	return key, nil
}

// Mode returns ModeSoftware.
func (s *SoftwareSealer) Mode() string { return ModeSoftware }

func (s *SoftwareSealer) aead() (cipher.AEAD, error) {
	if s.key == nil {
		return nil, ErrClosed
	}
	return newGCM(s.key)
}

// Seal encrypts secret under the wrapping key.
func (s *SoftwareSealer) Seal(secret []byte) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	aead, err := s.aead()
	if err != nil {
		return nil, err
	}
	return gcmSeal(aead, softwareMagic, softwareVersion, softwareAAD, secret), nil
}

// Unseal decrypts a blob made by Seal with the same wrapping key. A wrong key,
// a tampered or truncated blob or an unknown version yields an error wrapping
// ErrUnseal.
func (s *SoftwareSealer) Unseal(blob []byte) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	aead, err := s.aead()
	if err != nil {
		return nil, err
	}
	return gcmOpen(aead, softwareMagic, softwareVersion, softwareAAD, blob)
}

// Close forgets the wrapping key. Later calls to Seal and Unseal return
// ErrClosed.
func (s *SoftwareSealer) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.key)
	s.key = nil
	return nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// gcmSeal returns magic | version | nonce | ciphertext, authenticated with
// aad | magic | version.
func gcmSeal(aead cipher.AEAD, magic string, version byte, aad string, plaintext []byte) []byte {
	hdrLen := len(magic) + 1
	out := make([]byte, hdrLen+gcmNonceLen, hdrLen+gcmNonceLen+len(plaintext)+aead.Overhead())
	copy(out, magic)
	out[len(magic)] = version
	rand.Read(out[hdrLen:])
	nonce := out[hdrLen : hdrLen+gcmNonceLen]
	return aead.Seal(out, nonce, plaintext, append([]byte(aad), out[:hdrLen]...))
}

// gcmOpen reverses gcmSeal; every failure wraps ErrUnseal.
func gcmOpen(aead cipher.AEAD, magic string, version byte, aad string, blob []byte) ([]byte, error) {
	hdrLen := len(magic) + 1
	if len(blob) < hdrLen+gcmNonceLen+gcmTagLen {
		return nil, fmt.Errorf("%w: blob is %d bytes, too short", ErrUnseal, len(blob))
	}
	if string(blob[:len(magic)]) != magic {
		return nil, fmt.Errorf("%w: not a %s blob", ErrUnseal, magic)
	}
	if v := blob[len(magic)]; v != version {
		return nil, fmt.Errorf("%w: unsupported %s blob version %d (want %d)", ErrUnseal, magic, v, version)
	}
	nonce := blob[hdrLen : hdrLen+gcmNonceLen]
	pt, err := aead.Open(nil, nonce, blob[hdrLen+gcmNonceLen:], append([]byte(aad), blob[:hdrLen]...))
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed (wrong key or tampered data)", ErrUnseal)
	}
	return pt, nil
}
