package tpm

import (
	"crypto"
	"errors"
	"fmt"
	"io/fs"
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

// path is the key file of generation name ("signing/<n>").
func (v *ResidentKeys) path(name string) (string, bool) {
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

// PrivateKey returns generation name's TPM key, loading it on first use.
func (v *ResidentKeys) PrivateKey(name string) (crypto.Signer, bool) {
	k, err := v.LoadKey(name)
	return k, err == nil
}

// Put refuses: a TPM-resident vault makes its keys (GenerateKey).
func (v *ResidentKeys) Put(name string, _ crypto.Signer) error {
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
