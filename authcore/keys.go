package authcore

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/bulwark-auth/bulwark/fsm"
)

// stateKeys looks signing keys up in the replicated state and keeps the
// parsed public keys, so a token check parses a JWK once per kid.
type stateKeys struct {
	store Store
	mu    sync.RWMutex
	cache map[string]parsedKey
}

type parsedKey struct {
	pub crypto.PublicKey
	alg string
}

// PublicKey implements KeyLookup. The key's lifecycle (NotAfter, Retire)
// is held against each token by checkWindow.
func (k *stateKeys) PublicKey(kid string) (crypto.PublicKey, string, error) {
	k.mu.RLock()
	pk, ok := k.cache[kid]
	k.mu.RUnlock()
	if ok {
		return pk.pub, pk.alg, nil
	}
	var stored *fsm.PublicKey
	err := k.store.View(func(r fsm.Reader) error {
		var err error
		stored, err = r.PublicKey(kid)
		return err
	})
	if err != nil {
		return nil, "", fmt.Errorf("%w: unknown key %q", ErrInvalidToken, kid)
	}
	pub, alg, gotKid, err := PublicFromJWK(stored.JWK)
	if err != nil || gotKid != kid {
		return nil, "", fmt.Errorf("%w: stored key %q does not parse", ErrInvalidToken, kid)
	}
	k.mu.Lock()
	k.cache[kid] = parsedKey{pub, alg}
	k.mu.Unlock()
	return pub, alg, nil
}

// checkWindow holds a verified token to its key's record: a key past its
// Retire time verifies nothing, a key that stopped signing (NotAfter) did
// not sign a token issued after, and no token lives longer than
// maxLifetime (jwt_expiry), so a leaked or removed node's key cannot mint
// tokens that outlive its retirement. The cache of verified tokens holds
// only tokens that passed, and each expires before its key retires.
func (k *stateKeys) checkWindow(kid string, c *AccessClaims, now time.Time, leeway, maxLifetime time.Duration) error {
	var stored *fsm.PublicKey
	if err := k.store.View(func(r fsm.Reader) error {
		var err error
		stored, err = r.PublicKey(kid)
		return err
	}); err != nil {
		return fmt.Errorf("%w: unknown key %q", ErrInvalidToken, kid)
	}
	if c.IssuedAt == nil || c.ExpiresAt == nil {
		return fmt.Errorf("%w: iat and exp are required", ErrInvalidToken)
	}
	iat, exp := c.IssuedAt.Time, c.ExpiresAt.Time
	switch {
	case !stored.Retire.IsZero() && !now.Before(stored.Retire):
		return fmt.Errorf("%w: key %q retired at %s", ErrInvalidToken, kid, stored.Retire.Format(time.RFC3339))
	case !stored.NotAfter.IsZero() && iat.After(stored.NotAfter.Add(leeway)):
		return fmt.Errorf("%w: issued after key %q stopped signing", ErrInvalidToken, kid)
	case maxLifetime > 0 && exp.Sub(iat) > maxLifetime+leeway:
		return fmt.Errorf("%w: lifetime %v exceeds jwt_expiry %v", ErrInvalidToken, exp.Sub(iat), maxLifetime)
	}
	return nil
}

// verifier checks access tokens against the replicated keys. A token whose
// signature and claims checked out is remembered, by its SHA-256, until it
// expires, so a client presenting the same token again costs a hash, not a
// signature check. Only the signature check is cached: the issuer
// (checkIssuer) and the session are looked up on every request.
type verifier struct {
	keys *stateKeys
	// issuer is the iss this node signs with; shared: it is tokens.issuer,
	// which every member shares. node is this node's name.
	issuer, node string
	shared       bool
	// audience is required in aud; empty: the token's own iss is (each
	// member's tokens are for its issuer).
	audience    string
	leeway      time.Duration
	maxLifetime time.Duration // jwt_expiry

	mu    sync.Mutex
	cache map[[32]byte]verified

	issuers atomic.Pointer[issuerSet] // derived from the keys; see issuer.go
}

// verified is a token whose signature and time claims checked out.
type verified struct {
	claims *AccessClaims
	kid    string
}

// maxVerified bounds the cache of checked tokens.
const maxVerified = 100_000

// verify checks tok's signature and time claims, and returns its claims
// and the kid that signed it; the caller holds iss and aud to the cluster
// with checkIssuer.
func (v *verifier) verify(tok string, now time.Time) (*AccessClaims, string, error) {
	if tok == "" || len(tok) > 16<<10 {
		return nil, "", fmt.Errorf("%w: missing or oversize token", ErrInvalidToken)
	}
	key := sha256.Sum256([]byte(tok))
	v.mu.Lock()
	e, ok := v.cache[key]
	v.mu.Unlock()
	if ok {
		c := e.claims
		if c.ExpiresAt.Time.Add(v.leeway).After(now) && !c.NotBefore.Time.After(now.Add(v.leeway)) {
			return c, e.kid, nil
		}
		v.mu.Lock()
		delete(v.cache, key)
		v.mu.Unlock()
	}
	c, kid, err := verifySigned(tok, v.keys, now, v.leeway)
	if err != nil {
		return nil, "", err
	}
	if err := v.keys.checkWindow(kid, c, now, v.leeway, v.maxLifetime); err != nil {
		return nil, "", err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cache == nil {
		v.cache = map[[32]byte]verified{}
	}
	if len(v.cache) >= maxVerified {
		v.evict(now)
	}
	v.cache[key] = verified{c, kid}
	return c, kid, nil
}

// evict drops expired tokens, and if that is not enough, half the rest
// (map order is random, so which half is arbitrary).
func (v *verifier) evict(now time.Time) {
	for k, e := range v.cache {
		if !e.claims.ExpiresAt.Time.Add(v.leeway).After(now) {
			delete(v.cache, k)
		}
	}
	for k := range v.cache {
		if len(v.cache) < maxVerified/2 {
			break
		}
		delete(v.cache, k)
	}
}

// PublishSigningKey makes this node's current signing key part of the
// replicated JWKS, unless it already is, and retires this node's other keys
// still marked as signing (left so by a crash mid-rotation or by a change
// of tokens.algorithm). Call it once the node can write.
//
// From feature level 3 it first holds this node's issuer to its cluster's
// (RecordIssuer: an *IssuerConflictError when they differ, and nothing is
// published), and publishes the key with the issuer it signs with, again
// when that changed. Below level 3 it publishes the key alone and returns
// ErrIssuerNotRecorded: call it again later.
func (s *Service) PublishSigningKey(ctx context.Context) error {
	sig := s.currentSigner()
	if sig == nil {
		return errors.New("authcore: no signing key")
	}
	s.rotateMu.Lock()
	defer s.rotateMu.Unlock()
	withIssuer := s.proposable(fsm.TypeTokensIssuer, 1)
	if withIssuer {
		if err := s.RecordIssuer(ctx); err != nil {
			return err
		}
	}
	// The signing key and the ID-token keys (idtoken_keys.go) are this
	// node's current keys; its others still marked as signing are stale.
	current := map[string]TokenSigner{sig.Kid(): sig}
	for _, k := range s.idKeys() {
		current[k.Kid()] = k
	}
	known := map[string]bool{}
	var stale []*fsm.PublicKey
	if err := s.store.View(func(r fsm.Reader) error {
		return r.PublicKeys(func(k *fsm.PublicKey) bool {
			switch {
			case current[k.Kid] != nil:
				// A key that stopped signing (its node was removed) cannot
				// be published as current again, issuer or not.
				known[k.Kid] = !withIssuer || k.Issuer == s.cfg.Issuer || !k.NotAfter.IsZero()
			case k.Node == s.cfg.NodeID && k.NotAfter.IsZero():
				stale = append(stale, k)
			}
			return true
		})
	}); err != nil {
		return err
	}
	for _, kid := range slices.Sorted(maps.Keys(current)) {
		if !known[kid] {
			if err := s.publish(ctx, current[kid], 0, 0, "key.publish"); err != nil {
				return err
			}
		}
	}
	for _, k := range stale {
		pub, alg, _, err := PublicFromJWK(k.JWK)
		if err != nil {
			return err
		}
		if _, err := s.retire(ctx, publicOnly{kid: k.Kid, alg: alg, jwk: k.JWK, pub: pub}); err != nil {
			return err
		}
	}
	if !withIssuer {
		return ErrIssuerNotRecorded
	}
	return nil
}

// publicOnly stands for a key of which only the public half is at hand,
// to republish it with new dates. It cannot sign.
type publicOnly struct {
	kid, alg string
	jwk      []byte
	pub      crypto.PublicKey
}

func (p publicOnly) Kid() string                { return p.kid }
func (p publicOnly) Alg() string                { return p.alg }
func (p publicOnly) PublicJWK() ([]byte, error) { return p.jwk, nil }
func (p publicOnly) Sign(jwt.Claims) (string, error) {
	return "", errors.New("authcore: a published public key cannot sign")
}

// JWKS returns every published signing key of every node, as served at
// /.well-known/jwks.json.
func (s *Service) JWKS() ([]byte, error) {
	now := s.now()
	var keys []json.RawMessage
	err := s.store.View(func(r fsm.Reader) error {
		return r.PublicKeys(func(k *fsm.PublicKey) bool {
			if k.Published(now) {
				keys = append(keys, k.JWK)
			}
			return true
		})
	})
	if err != nil {
		return nil, err
	}
	return BuildJWKS(keys), nil
}
