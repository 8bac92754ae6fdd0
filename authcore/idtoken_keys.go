package authcore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/bulwark-auth/bulwark/fsm"
)

// ID-token keys. A client's ID tokens are signed in the algorithm it
// registered with (fsm.OIDCClient.IDTokenAlg: ES256 by default, EdDSA or
// RS256), what its relying party verifies. The node's signing key
// (tokens.algorithm) signs them when it is of that algorithm; for each
// other algorithm a client asks for, the node makes, on first use, an
// ID-token key of its own: born in this node's vault like the signing key,
// published through Raft before it signs anything (so every node's JWKS
// has it), rotated with the signing key, and retired like it.
//
// Where it lives: in the sealed keystore (AES-256-GCM under the
// TPM-sealed key-encryption key, or the explicit software one). With
// seal.signing = "tpm-resident" the ES256 signing key is made in the TPM;
// EdDSA and RS256 ID-token keys cannot be: TPM 2.0 has no Ed25519 in the
// profiles TPMs ship, and bulwark's TPM signer makes P-256 keys only, so
// they are software keys sealed in the keystore like every other key of a
// vault that is not TPM-resident.
//
// Keystore names: generation n of alg's key is "idtoken/<alg>/<n>"; the
// secret "idtoken/<alg>/current" holds the current n in decimal.

// IDTokenAlgs are the algorithms a client may ask its ID tokens in
// (discovery's id_token_signing_alg_values_supported).
var IDTokenAlgs = slices.Clone(fsm.OIDCIDTokenAlgs)

func idKeyName(alg string, gen int) string { return "idtoken/" + alg + "/" + strconv.Itoa(gen) }
func idCurrentName(alg string) string      { return "idtoken/" + alg + "/current" }

// idSigners is the current ID-token key of each algorithm this node made
// one for (not the signing key's), replaced whole on every change.
type idSigners map[string]TokenSigner

func (s *Service) idKeys() idSigners {
	if m := s.idSigners.Load(); m != nil {
		return *m
	}
	return nil
}

// loadIDKeys loads the vault's current ID-token keys, but the one of the
// signing key's algorithm, which the signing key stands for (a key left
// from another tokens.algorithm is retired by PublishSigningKey).
func (s *Service) loadIDKeys() error {
	out := idSigners{}
	for _, alg := range IDTokenAlgs {
		if alg == s.cfg.SigningAlg {
			continue
		}
		gen, err := idGen(s.vault, alg)
		if err != nil {
			return err
		}
		if gen == 0 {
			continue
		}
		key, ok := s.vault.PrivateKey(idKeyName(alg, gen))
		if !ok {
			return fmt.Errorf("authcore: keystore names ID-token key %s as current but does not hold it", idKeyName(alg, gen))
		}
		sig, err := NewSigner(key, alg)
		if err != nil {
			return err
		}
		out[alg] = sig
	}
	s.idSigners.Store(&out)
	return nil
}

func idGen(v KeyVault, alg string) (int, error) {
	b, ok := v.Secret(idCurrentName(alg))
	if !ok {
		return 0, nil
	}
	n, err := strconv.Atoi(string(b))
	if err != nil || n < 1 {
		return 0, fmt.Errorf("authcore: keystore entry %s is %q, not a generation", idCurrentName(alg), b)
	}
	return n, nil
}

// newIDGeneration makes and stores generation gen of alg's ID-token key (a
// software key: see above), not yet current.
func newIDGeneration(v KeyVault, alg string, gen int) (*Signer, error) {
	key, err := GenerateSigningKey(alg)
	if err != nil {
		return nil, err
	}
	if err := v.Put(idKeyName(alg, gen), key); err != nil {
		return nil, fmt.Errorf("store ID-token key: %w", err)
	}
	return NewSigner(key, alg)
}

// idTokenSigner returns the key to sign alg's ID tokens with: the signing
// key if it is of alg, else this node's ID-token key for alg, made and
// published (committed) now if there is none yet.
func (s *Service) idTokenSigner(ctx context.Context, alg string) (TokenSigner, error) {
	if !slices.Contains(IDTokenAlgs, alg) {
		return nil, fmt.Errorf("authcore: ID-token algorithm %q", alg)
	}
	if sig := s.currentSigner(); sig != nil && sig.Alg() == alg {
		return sig, nil
	}
	if sig, ok := s.idKeys()[alg]; ok {
		return sig, nil
	}
	if s.vault == nil {
		return nil, fmt.Errorf("authcore: no key vault to make a %s ID-token key in", alg)
	}
	s.rotateMu.Lock()
	defer s.rotateMu.Unlock()
	if sig, ok := s.idKeys()[alg]; ok { // made while this call waited
		return sig, nil
	}
	sig, gen, err := s.nextIDKey(ctx, alg)
	if err != nil {
		return nil, err
	}
	if err := s.vault.PutSecret(idCurrentName(alg), []byte(strconv.Itoa(gen))); err != nil {
		return nil, err
	}
	s.setIDKey(alg, sig)
	s.log.Info("made an ID-token key", "alg", alg, "kid", sig.Kid())
	return sig, nil
}

// nextIDKey makes alg's next ID-token key generation and publishes it
// (published before it signs anything); it answers the key and its
// generation, which the caller makes current.
func (s *Service) nextIDKey(ctx context.Context, alg string) (*Signer, int, error) {
	gen, err := idGen(s.vault, alg)
	if err != nil {
		return nil, 0, err
	}
	sig, err := newIDGeneration(s.vault, alg, gen+1)
	if err != nil {
		return nil, 0, err
	}
	if err := s.publish(ctx, sig, 0, 0, "key.publish"); err != nil {
		return nil, 0, fmt.Errorf("publish the %s ID-token key: %w", alg, err)
	}
	return sig, gen + 1, nil
}

func (s *Service) setIDKey(alg string, sig TokenSigner) {
	m := maps.Clone(s.idKeys())
	if m == nil {
		m = idSigners{}
	}
	m[alg] = sig
	s.idSigners.Store(&m)
}

// nextIDKeys makes and publishes the next generation of every current
// ID-token key (a rotation's first half); the caller holds rotateMu.
func (s *Service) nextIDKeys(ctx context.Context) (map[string]*Signer, error) {
	next := map[string]*Signer{}
	for _, alg := range slices.Sorted(maps.Keys(s.idKeys())) {
		sig, _, err := s.nextIDKey(ctx, alg)
		if err != nil {
			return nil, err
		}
		next[alg] = sig
	}
	return next, nil
}

// switchIDKeys makes next current (a rotation's second half) and retires
// the keys they succeed; the caller holds rotateMu.
func (s *Service) switchIDKeys(ctx context.Context, next map[string]*Signer) error {
	old := s.idKeys()
	var errs []error
	for _, alg := range slices.Sorted(maps.Keys(next)) {
		gen, err := idGen(s.vault, alg)
		if err == nil {
			err = s.vault.PutSecret(idCurrentName(alg), []byte(strconv.Itoa(gen+1)))
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.setIDKey(alg, next[alg])
		if o := old[alg]; o != nil {
			if _, err := s.retire(ctx, o); err != nil {
				errs = append(errs, err) // retired at the next start or rotation
			}
		}
	}
	return errors.Join(errs...)
}

// currentKids are the kids this node signs with now: its signing key and
// its ID-token keys.
func (s *Service) currentKids() []string {
	var out []string
	if sig := s.currentSigner(); sig != nil {
		out = append(out, sig.Kid())
	}
	for _, sig := range s.idKeys() {
		out = append(out, sig.Kid())
	}
	return out
}
