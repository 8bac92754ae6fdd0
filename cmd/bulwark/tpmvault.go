package main

import (
	"crypto"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strconv"
	"strings"
	"sync"

	"github.com/bulwark-auth/bulwark/authcore"
	"github.com/bulwark-auth/bulwark/tpm"
)

// tpmVault is the authcore.KeyVault of seal.signing = "tpm-resident": the
// signing keys are made in the TPM and never leave it (one file per
// generation, <data_dir>/tpm/signing-<n>.key); the generation counter,
// "signing/current", stays in the keystore.
type tpmVault struct {
	*tpm.Keystore // Secret and PutSecret
	sealer        *tpm.TPMSealer
	dataDir       string

	mu   sync.Mutex
	keys map[string]*tpm.TPMKey
}

var _ authcore.KeyGenerator = (*tpmVault)(nil)

// newTPMVault loads the current generation at once, so that a key file this
// TPM cannot load stops the node with the reason. When the current
// generation is no TPM key (seal.signing was "keystore", or its file is
// gone), it makes the next generation in the TPM and makes that current;
// PublishSigningKey then retires the old key.
func newTPMVault(ks *tpm.Keystore, s *tpm.TPMSealer, dataDir string, logger *slog.Logger) (*tpmVault, error) {
	v := &tpmVault{Keystore: ks, sealer: s, dataDir: dataDir, keys: map[string]*tpm.TPMKey{}}
	b, ok := ks.Secret("signing/current")
	if !ok {
		return v, nil // authcore makes generation 1 through GenerateKey
	}
	gen, err := strconv.Atoi(string(b))
	if err != nil || gen < 1 {
		return nil, fmt.Errorf("keystore entry signing/current is %q, not a generation", b)
	}
	k, err := s.LoadSigningKey(tpm.SigningKeyPath(dataDir, gen))
	switch {
	case err == nil:
		v.keys["signing/"+strconv.Itoa(gen)] = k
		return v, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("seal.signing = \"tpm-resident\": %w", err)
	}
	logger.Warn("the current signing key is not held by the TPM; making the next generation in the TPM",
		"generation", gen, "next", gen+1)
	if _, err := v.GenerateKey("signing/"+strconv.Itoa(gen+1), authcore.AlgES256); err != nil {
		return nil, err
	}
	if err := ks.PutSecret("signing/current", []byte(strconv.Itoa(gen+1))); err != nil {
		v.Close()
		return nil, err
	}
	return v, nil
}

func (v *tpmVault) path(name string) (string, bool) {
	n, err := strconv.Atoi(strings.TrimPrefix(name, "signing/"))
	if !strings.HasPrefix(name, "signing/") || err != nil || n < 1 {
		return "", false
	}
	return tpm.SigningKeyPath(v.dataDir, n), true
}

// PrivateKey returns generation name's TPM key, loading it on first use.
func (v *tpmVault) PrivateKey(name string) (crypto.Signer, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if k, ok := v.keys[name]; ok {
		return k, true
	}
	path, ok := v.path(name)
	if !ok {
		return nil, false
	}
	k, err := v.sealer.LoadSigningKey(path)
	if err != nil {
		return nil, false
	}
	v.keys[name] = k
	return k, true
}

// Put refuses: a TPM-resident vault makes its keys (GenerateKey).
func (v *tpmVault) Put(name string, _ crypto.Signer) error {
	return fmt.Errorf("seal.signing = \"tpm-resident\": %s: signing keys are made in the TPM, not stored", name)
}

// GenerateKey makes generation name in the TPM. A file left by a crash
// between making it and making it current is used again.
func (v *tpmVault) GenerateKey(name, alg string) (crypto.Signer, error) {
	if alg != authcore.AlgES256 {
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
func (v *tpmVault) Close() {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, k := range v.keys {
		k.Close()
	}
	clear(v.keys)
}
