package authcore

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/clock"
)

// KeyVault is where this node's private signing keys live: the sealed
// keystore. Keys never leave it; only their public halves are published.
type KeyVault interface {
	PrivateKey(name string) (crypto.Signer, bool)
	Put(name string, key crypto.Signer) error
	Secret(name string) ([]byte, bool)
	PutSecret(name string, b []byte) error
}

// KeyGenerator is a KeyVault that makes its signing keys itself, such as
// one whose keys are made in a TPM and never leave it (tpm.ResidentKeys).
// A new generation is then GenerateKey(name, alg), which must store the
// key under name, rather than a software key passed to Put. LoadKey
// returns a key it made, an error wrapping fs.ErrNotExist when it made
// none under that name, or another error when it cannot load the one it
// made: the current generation is then loaded through LoadKey, and one
// this vault never made (the keys were kept in the keystore before) is
// succeeded by a generation it makes (loadSigner).
type KeyGenerator interface {
	GenerateKey(name, alg string) (crypto.Signer, error)
	LoadKey(name string) (crypto.Signer, error)
}

// Keystore names: generation n of the signing key is "signing/<n>"; the
// secret "signing/current" holds the current n in decimal.
const currentKeyName = "signing/current"

func keyName(gen int) string { return "signing/" + strconv.Itoa(gen) }

// GenerateSigningKey makes a new private key for a JOSE algorithm.
func GenerateSigningKey(alg string) (crypto.Signer, error) {
	switch alg {
	case AlgES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case AlgEdDSA:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	case AlgRS256:
		return rsa.GenerateKey(rand.Reader, 3072)
	case AlgMLDSA65:
		_, k, err := mldsa65.GenerateKey(rand.Reader) // the keystore keeps its seed
		return k, err
	}
	return nil, fmt.Errorf("%w: signing algorithm %q; use ES256, EdDSA, RS256 or ML-DSA-65", ErrInvalidInput, alg)
}

// currentGen reads the current generation from the vault (0: none yet).
func currentGen(v KeyVault) (int, error) {
	b, ok := v.Secret(currentKeyName)
	if !ok {
		return 0, nil
	}
	n, err := strconv.Atoi(string(b))
	if err != nil || n < 1 {
		return 0, fmt.Errorf("authcore: keystore entry %s is %q, not a generation", currentKeyName, b)
	}
	return n, nil
}

// loadSigner returns the vault's current signing key. With none, with a
// current key of another algorithm than alg (the operator changed
// tokens.algorithm), or with one a KeyGenerator vault did not make (the
// operator moved the keys into the TPM), it creates the next generation
// for alg and makes it current; PublishSigningKey then publishes it and
// retires the others.
func loadSigner(v KeyVault, alg string, log *slog.Logger) (*Signer, int, error) {
	gen, err := currentGen(v)
	if err != nil {
		return nil, 0, err
	}
	if gen > 0 {
		key, err := currentKey(v, gen)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			log.Warn("the current signing key is not held by the vault that makes the keys (the TPM); making the next generation there",
				"generation", gen, "next", gen+1)
		case err != nil:
			return nil, 0, err
		default:
			sig, err := NewSigner(key, signerAlg(key, alg))
			if err != nil {
				return nil, 0, err
			}
			if sig.Alg() == alg {
				return sig, gen, nil
			}
		}
	}
	sig, err := newGeneration(v, gen+1, alg)
	if err != nil {
		return nil, 0, err
	}
	if err := v.PutSecret(currentKeyName, []byte(strconv.Itoa(gen+1))); err != nil {
		return nil, 0, err
	}
	return sig, gen + 1, nil
}

// currentKey returns generation gen's key: from a KeyGenerator through
// LoadKey (an error wrapping fs.ErrNotExist when it did not make it), from
// any other vault through PrivateKey.
func currentKey(v KeyVault, gen int) (crypto.Signer, error) {
	if g, ok := v.(KeyGenerator); ok {
		return g.LoadKey(keyName(gen))
	}
	key, ok := v.PrivateKey(keyName(gen))
	if !ok {
		return nil, fmt.Errorf("authcore: keystore names signing key %d as current but does not hold it", gen)
	}
	return key, nil
}

// signerAlg is the algorithm a stored key signs with: its type decides,
// except that alg is taken when it fits (all ECDSA P-256 keys are ES256).
func signerAlg(key crypto.Signer, alg string) string {
	switch key.Public().(type) {
	case *ecdsa.PublicKey:
		return AlgES256
	case ed25519.PublicKey:
		return AlgEdDSA
	case *rsa.PublicKey:
		return AlgRS256
	case *mldsa65.PublicKey:
		return AlgMLDSA65
	}
	return alg
}

func newGeneration(v KeyVault, gen int, alg string) (*Signer, error) {
	if g, ok := v.(KeyGenerator); ok {
		key, err := g.GenerateKey(keyName(gen), alg)
		if err != nil {
			return nil, fmt.Errorf("generate signing key %d: %w", gen, err)
		}
		return NewSigner(key, alg)
	}
	key, err := GenerateSigningKey(alg)
	if err != nil {
		return nil, err
	}
	if err := v.Put(keyName(gen), key); err != nil {
		return nil, fmt.Errorf("store signing key: %w", err)
	}
	return NewSigner(key, alg)
}

// KeyInfo describes a published signing key.
type KeyInfo struct {
	Kid         string    `json:"kid"`
	Node        string    `json:"node"`
	Alg         string    `json:"alg"`
	PublishedAt time.Time `json:"published_at"`
	NotAfter    time.Time `json:"not_after,omitzero"`
	Retire      time.Time `json:"retire,omitzero"`
	// Current is true for a key this node signs with now: its signing
	// key, or one of its ID-token keys (idtoken_keys.go).
	Current bool `json:"current"`
	// InJWKS is true while the key is served in the JWKS.
	InJWKS bool `json:"in_jwks"`
}

// SigningKeys lists every published key of every node.
func (s *Service) SigningKeys(ctx context.Context) ([]KeyInfo, error) {
	now := s.now()
	cur := s.currentKids()
	out := []KeyInfo{}
	err := s.store.View(func(r fsm.Reader) error {
		return r.PublicKeys(func(k *fsm.PublicKey) bool {
			out = append(out, KeyInfo{Kid: k.Kid, Node: k.Node, Alg: k.Alg, PublishedAt: k.PublishedAt,
				NotAfter: k.NotAfter, Retire: k.Retire, Current: slices.Contains(cur, k.Kid), InJWKS: k.Published(now)})
			return true
		})
	})
	return out, err
}

// KeyRotation reports a rotation.
type KeyRotation struct {
	OldKid string    `json:"old_kid"`
	NewKid string    `json:"new_kid"`
	Retire time.Time `json:"old_key_leaves_jwks_at"`
}

// JWKSMaxAge is how long relying parties may cache the JWKS (the api
// serves it with this max-age). A scheduled rotation publishes the next key
// this long before it signs, so no cached key set lacks it.
const JWKSMaxAge = 5 * time.Minute

// RotateSigningKey makes a new signing key current at once. The order keeps
// every token verifiable against the JWKS this cluster serves: the new key
// is published (committed) before anything is signed with it; only then
// does signing switch; the old key is then marked to stop signing now and
// to leave the JWKS once every token it signed has expired (jwt_expiry
// plus the verification leeway). Relying parties that cached the JWKS
// refetch it on an unknown kid; scheduled rotation also waits out the
// cache (see rotate).
func (s *Service) RotateSigningKey(ctx context.Context) (KeyRotation, error) {
	return s.rotate(ctx, 0)
}

// rotate publishes the next key, waits activateAfter, then switches.
func (s *Service) rotate(ctx context.Context, activateAfter time.Duration) (KeyRotation, error) {
	if s.vault == nil {
		return KeyRotation{}, errors.New("authcore: this service has no key vault; rotation needs one")
	}
	s.rotateMu.Lock()
	defer s.rotateMu.Unlock()
	old := s.currentSigner()
	gen, err := currentGen(s.vault)
	if err != nil {
		return KeyRotation{}, err
	}
	next, err := newGeneration(s.vault, gen+1, s.cfg.SigningAlg)
	if err != nil {
		return KeyRotation{}, err
	}
	if err := s.publish(ctx, next, 0, 0, "key.publish"); err != nil {
		return KeyRotation{}, fmt.Errorf("publish the new key: %w", err)
	}
	// The ID-token keys rotate with it: published now, current below.
	nextID, err := s.nextIDKeys(ctx)
	if err != nil {
		return KeyRotation{}, err
	}
	if activateAfter > 0 {
		t := s.clock.NewTimer(activateAfter)
		select {
		case <-ctx.Done():
			t.Stop()
			return KeyRotation{}, ctx.Err() // published, never current: retired at the next start
		case <-t.C():
		}
	}
	if err := s.vault.PutSecret(currentKeyName, []byte(strconv.Itoa(gen+1))); err != nil {
		return KeyRotation{}, err
	}
	s.signer.Store(&signerBox{next})
	res := KeyRotation{NewKid: next.Kid()}
	idErr := s.switchIDKeys(ctx, nextID)
	if old != nil {
		res.OldKid = old.Kid()
		res.Retire, err = s.retire(ctx, old)
		if err != nil {
			// The new key signs already; the old one stays published (and
			// is retired at the next start or rotation).
			return res, fmt.Errorf("rotated, but marking the old key failed: %w", err)
		}
	}
	if idErr != nil {
		return res, fmt.Errorf("rotated, but not every ID-token key: %w", idErr)
	}
	return res, nil
}

// retire marks a key of this node as no longer signing and schedules it
// out of the JWKS after the longest lifetime of a token it signed.
func (s *Service) retire(ctx context.Context, sig TokenSigner) (time.Time, error) {
	now := s.now()
	retire := now.Add(s.cfg.AccessTTL + s.cfg.Leeway)
	return retire, s.publish(ctx, sig, now.UnixNano(), retire.UnixNano(), "key.retire")
}

func (s *Service) publish(ctx context.Context, sig TokenSigner, notAfter, retire int64, event string) error {
	jwk, err := sig.PublicJWK()
	if err != nil {
		return err
	}
	p, version := fsm.KeyPublish{Kid: sig.Kid(), Node: s.cfg.NodeID, Alg: sig.Alg(), JWK: jwk, NotAfter: notAfter, Retire: retire}, uint16(1)
	if s.proposable(fsm.TypeKeyPublish, 2) {
		p.Issuer, version = s.cfg.Issuer, 2 // every member applies it
	}
	cmd, err := fsm.NewCommand(fsm.TypeKeyPublish, version, s.now().UnixNano(), p)
	if err != nil {
		return err
	}
	details := map[string]string{"kid": sig.Kid(), "alg": sig.Alg()}
	if p.Issuer != "" {
		details["issuer"] = p.Issuer
	}
	if retire != 0 {
		details["leaves_jwks_at"] = time.Unix(0, retire).UTC().Format(time.RFC3339)
	}
	_, err = s.apply(ctx, cmd, fsm.AuditAppend{Type: event, Severity: fsm.AuditInfo, Actor: "node:" + s.cfg.NodeID,
		Details: details})
	return err
}

// RetireNodeKeys stops every signing key of node id (a node removed from
// the cluster): each stops signing now and leaves the JWKS once the tokens
// it signed have expired, so a removed node, or whoever holds its disk,
// cannot mint tokens the cluster accepts past that. actor is audited. It
// returns how many keys it retired; it changes nothing for a node without
// published keys.
func (s *Service) RetireNodeKeys(ctx context.Context, id, actor string) (int, error) {
	now := s.now()
	retire := now.Add(s.cfg.AccessTTL + s.cfg.Leeway)
	var keys []fsm.PublicKey
	err := s.store.View(func(r fsm.Reader) error {
		return r.PublicKeys(func(k *fsm.PublicKey) bool {
			if k.Node == id && (k.Retire.IsZero() || k.Retire.After(retire)) {
				keys = append(keys, *k)
			}
			return true
		})
	})
	if err != nil {
		return 0, err
	}
	if actor == "" {
		actor = "system"
	}
	for i, k := range keys {
		notAfter := now
		if !k.NotAfter.IsZero() && k.NotAfter.Before(now) {
			notAfter = k.NotAfter // already stopped: keep when
		}
		cmd, err := fsm.NewCommand(fsm.TypeKeyPublish, 1, now.UnixNano(), fsm.KeyPublish{
			Kid: k.Kid, Node: k.Node, Alg: k.Alg, JWK: k.JWK, NotAfter: notAfter.UnixNano(), Retire: retire.UnixNano()})
		if err != nil {
			return i, err
		}
		if _, err := s.apply(ctx, cmd, fsm.AuditAppend{Type: "key.retire", Severity: fsm.AuditWarning, Actor: actor,
			Subject: id, Details: map[string]string{"kid": k.Kid, "reason": "node removed",
				"leaves_jwks_at": retire.UTC().Format(time.RFC3339)}}); err != nil {
			return i, err
		}
	}
	return len(keys), nil
}

// RotateIfDue rotates when the current key was published rotate_every ago
// or longer. It reports whether it rotated.
func (s *Service) RotateIfDue(ctx context.Context, every time.Duration) (bool, error) {
	sig := s.currentSigner()
	if sig == nil || every <= 0 || s.vault == nil {
		return false, nil
	}
	var published time.Time
	err := s.store.View(func(r fsm.Reader) error {
		k, err := r.PublicKey(sig.Kid())
		if err == nil {
			published = k.PublishedAt
		}
		return err
	})
	if err != nil || s.now().Sub(published) < every {
		return false, nil // not yet published, or not yet due
	}
	_, err = s.rotate(ctx, s.cfg.KeyActivation)
	return err == nil, err
}

// RunKeyRotation checks every interval, by the service's clock, whether
// the key is due and rotates it. A follower's attempt fails to commit and
// is retried.
func (s *Service) RunKeyRotation(ctx context.Context, every, interval time.Duration) {
	clock.Every(ctx, s.clock, interval, func() {
		if rotated, err := s.RotateIfDue(ctx, every); err != nil {
			s.log.Warn("scheduled key rotation failed", "error", err)
		} else if rotated {
			s.log.Info("rotated the signing key", "kid", s.currentSigner().Kid())
		}
	})
}
