package tpm

import (
	"crypto"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// ResidentKeys holds a node's signing keys for seal.signing =
// "tpm-resident": generation n is made in the TPM and never leaves it
// (SigningKeyPath: <dataDir>/tpm/signing-<n>.key holds only the
// TPM-wrapped blob); secrets, such as the generation counter, stay in the
// keystore. It is a key vault that makes its own keys (authcore's
// KeyGenerator), whose key-generation policy is authcore's.
type ResidentKeys struct {
	*Keystore // Secret and PutSecret
	sealer    *TPMSealer
	dataDir   string

	mu   sync.Mutex
	keys map[string]*TPMKey
}

// NewResidentKeys returns the TPM-resident vault over ks, making and
// loading keys with s under dataDir. Close unloads them.
func NewResidentKeys(ks *Keystore, s *TPMSealer, dataDir string) *ResidentKeys {
	return &ResidentKeys{Keystore: ks, sealer: s, dataDir: dataDir, keys: map[string]*TPMKey{}}
}

// AuditKeyName is the one key besides the signing generations that a
// TPM-resident vault makes in the TPM: the node's ES256 audit key, which
// signs the audit trail's checkpoints (authcore/checkpoint.go). Its file is
// <dataDir>/tpm/audit-es256.key.
const AuditKeyName = "audit/es256"

// path is the key file of a key the TPM makes: a generation
// ("signing/<n>") or the audit key.
func (v *ResidentKeys) path(name string) (string, bool) {
	if name == AuditKeyName {
		return filepath.Join(v.dataDir, "tpm", "audit-es256.key"), true
	}
	n, err := strconv.Atoi(strings.TrimPrefix(name, "signing/"))
	if !strings.HasPrefix(name, "signing/") || err != nil || n < 1 {
		return "", false
	}
	return SigningKeyPath(v.dataDir, n), true
}

// LoadKey returns generation name's TPM key, loading it on first use. An
// error wrapping fs.ErrNotExist says the TPM never made it (the key is
// held elsewhere: seal.signing was "keystore", or its file is gone);
// another, that its file is there but this TPM cannot load it.
func (v *ResidentKeys) LoadKey(name string) (crypto.Signer, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if k, ok := v.keys[name]; ok {
		return k, nil
	}
	path, ok := v.path(name)
	if !ok {
		return nil, fmt.Errorf("seal.signing = \"tpm-resident\": %q is not a signing key generation: %w", name, fs.ErrNotExist)
	}
	k, err := v.sealer.LoadSigningKey(path)
	if err != nil {
		return nil, fmt.Errorf("seal.signing = \"tpm-resident\": %w", err)
	}
	v.keys[name] = k
	return k, nil
}

// PrivateKey returns the TPM key name (a generation or the audit key),
// loading it on first use; a key of another name is the keystore's (the
// ML-DSA-65 audit key, which no TPM makes).
func (v *ResidentKeys) PrivateKey(name string) (crypto.Signer, bool) {
	if _, ok := v.path(name); !ok && !strings.HasPrefix(name, "signing/") {
		return v.Keystore.PrivateKey(name)
	}
	k, err := v.LoadKey(name)
	return k, err == nil
}

// Put refuses a key the TPM makes (GenerateKey) and stores any other in
// the keystore.
func (v *ResidentKeys) Put(name string, key crypto.Signer) error {
	if _, ok := v.path(name); !ok && !strings.HasPrefix(name, "signing/") {
		return v.Keystore.Put(name, key)
	}
	return fmt.Errorf("seal.signing = \"tpm-resident\": %s: signing keys are made in the TPM, not stored", name)
}

// GenerateKey makes generation name in the TPM; alg must be "ES256". A
// file left by a crash between making it and making it current is used
// again.
func (v *ResidentKeys) GenerateKey(name, alg string) (crypto.Signer, error) {
	if alg != "ES256" {
		return nil, fmt.Errorf("seal.signing = \"tpm-resident\" signs ES256 only, not %s", alg)
	}
	path, ok := v.path(name)
	if !ok {
		return nil, fmt.Errorf("tpm vault: %q is not a signing key generation", name)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	k, err := v.sealer.NewSigningKey(path)
	if errors.Is(err, fs.ErrExist) {
		k, err = v.sealer.LoadSigningKey(path)
	}
	if err != nil {
		return nil, err
	}
	v.keys[name] = k
	return k, nil
}

// Close unloads every key from the TPM; run it before the sealer's Close.
func (v *ResidentKeys) Close() {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, k := range v.keys {
		k.Close()
	}
	clear(v.keys)
}
