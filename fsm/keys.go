package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TypeKeyPublish publishes the public half of a node's signing key, or
// marks an already published key as rotated out (v1: KeyPublish without
// Issuer; v2, level 3: with it).
const TypeKeyPublish Type = "key.publish"

// Limits of a published key.
const (
	maxKidLen = 128
	// MaxJWKBytes bounds a published public JWK (an ML-DSA-65 public key
	// is about 2.6 KB in base64url).
	MaxJWKBytes = 8 << 10
)

// Signing algorithms a key may be published for (the JWS "alg" values).
var keyAlgs = map[string]bool{"ES256": true, "EdDSA": true, "RS256": true, "ML-DSA-65": true}

// JWK members that belong to a private or symmetric key (RFC 7518 §6.2.2,
// §6.3.2, §6.4; RFC 8037 §2). A public key store must never hold one: it
// is replicated to every node and written to state.db unencrypted.
var privateJWKMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k", "priv"}

// KeyPublish publishes a node's public signing key. Signing keys are born
// in one node's sealed keystore and never leave it; their public halves go
// through the log so that every node serves the same JWKS. Rotation is two
// publishes: the new key (NotAfter 0), then the old kid again with NotAfter
// and Retire set, so the old key stays in the JWKS until its last token
// has expired.
type KeyPublish struct {
	Kid  string `json:"kid"`  // RFC 7638 thumbprint; 1 to 128 printable ASCII bytes
	Node string `json:"node"` // the node whose keystore holds the private half
	Alg  string `json:"alg"`  // ES256, EdDSA, RS256 or ML-DSA-65
	// JWK is the public JWK, a JSON object of at most MaxJWKBytes whose
	// "kid" and "alg" members equal Kid and Alg.
	JWK json.RawMessage `json:"jwk"`
	// NotAfter is when the key stops signing, Unix nanoseconds; 0 means it
	// is its node's current key. Once set it cannot be cleared.
	NotAfter int64 `json:"not_after,omitempty"`
	// Retire is when the key leaves the JWKS, Unix nanoseconds; 0 means
	// never. Non-zero only together with NotAfter, and not before it.
	Retire int64 `json:"retire,omitempty"`
	// Issuer (v2 only, and required there) is the iss of the tokens the
	// key's node signs: an https URL of at most MaxIssuerBytes. A v2
	// republish may change it (the node's URL changed, its key did not);
	// a v1 republish keeps the recorded one.
	Issuer string `json:"issuer,omitempty"`
}

// PublicKey is a published signing key as stored under its kid.
type PublicKey struct {
	Kid         string          `json:"kid"`
	Node        string          `json:"node"`
	Alg         string          `json:"alg"`
	JWK         json.RawMessage `json:"jwk"` // compact public JWK
	PublishedAt time.Time       `json:"published_at"`
	NotAfter    time.Time       `json:"not_after,omitzero"` // zero: still signing
	Retire      time.Time       `json:"retire,omitzero"`    // zero: published for ever
	Issuer      string          `json:"issuer,omitempty"`   // "": published by v1, no issuer known
}

// Signing reports whether the key may still sign at t.
func (k *PublicKey) Signing(t time.Time) bool {
	return k.NotAfter.IsZero() || t.Before(k.NotAfter)
}

// Published reports whether the key belongs in the JWKS at t.
func (k *PublicKey) Published(t time.Time) bool {
	return k.Retire.IsZero() || t.Before(k.Retire)
}

// keyCommands are the signing-key commands' rows of the dispatch table.
var keyCommands = []CommandSpec{
	{Type: TypeKeyPublish, Version: 1, Level: 1, Apply: applyKeyPublish, Result: reflect.TypeFor[*PublicKey]()},
	{Type: TypeKeyPublish, Version: 2, Level: 3, Apply: applyKeyPublish, Result: reflect.TypeFor[*PublicKey]()}, // v1 with Issuer
}

func applyKeyPublish(t txn, c Command) (any, error) {
	var p KeyPublish
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	jwk, err := checkKeyPublish(&p)
	if err == nil {
		err = checkKeyIssuer(c.Version, p.Issuer)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: key.publish: %v", ErrInvalidCommand, err)
	}
	k, err := getPublicKey(t.tx, p.Kid)
	switch {
	case errors.Is(err, ErrKeyNotFound):
		k = &PublicKey{Kid: p.Kid, Node: p.Node, Alg: p.Alg, JWK: jwk,
			PublishedAt: time.Unix(0, c.Time).UTC()}
	case err != nil:
		return nil, err
	default:
		// A republish marks the key; it never changes what the key is.
		if k.Node != p.Node || k.Alg != p.Alg || !bytes.Equal(k.JWK, jwk) {
			return nil, fmt.Errorf("%w: key.publish: kid %q is already published with another node, alg or JWK",
				ErrInvalidCommand, p.Kid)
		}
		if !k.NotAfter.IsZero() && p.NotAfter == 0 {
			return nil, fmt.Errorf("%w: key.publish: kid %q has stopped signing and cannot become current again",
				ErrInvalidCommand, p.Kid)
		}
	}
	k.NotAfter, k.Retire = unixNanoOrZero(p.NotAfter), unixNanoOrZero(p.Retire)
	if p.Issuer != "" {
		k.Issuer = p.Issuer
	}
	b, err := json.Marshal(k)
	if err != nil {
		return nil, err
	}
	if err := t.tx.Bucket(bucketKeys).Put([]byte(k.Kid), b); err != nil {
		return nil, err
	}
	return k, nil
}

// checkKeyPublish validates the payload and returns the JWK in compact form.
func checkKeyPublish(p *KeyPublish) (json.RawMessage, error) {
	if !printableASCII(p.Kid, maxKidLen) {
		return nil, fmt.Errorf("kid must be 1 to %d printable ASCII bytes", maxKidLen)
	}
	if !printableASCII(p.Node, maxKidLen) {
		return nil, fmt.Errorf("node must be 1 to %d printable ASCII bytes", maxKidLen)
	}
	if !keyAlgs[p.Alg] {
		return nil, fmt.Errorf("alg %q is not one of ES256, EdDSA, RS256, ML-DSA-65", p.Alg)
	}
	if p.NotAfter < 0 || p.Retire < 0 {
		return nil, fmt.Errorf("not_after and retire must not be negative")
	}
	if p.Retire != 0 && (p.NotAfter == 0 || p.Retire < p.NotAfter) {
		return nil, fmt.Errorf("retire needs not_after and must not precede it")
	}
	if len(p.JWK) > MaxJWKBytes {
		return nil, fmt.Errorf("jwk is %d bytes, more than %d", len(p.JWK), MaxJWKBytes)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, p.JWK); err != nil || buf.Len() == 0 || buf.Bytes()[0] != '{' {
		return nil, fmt.Errorf("jwk must be a JSON object")
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(buf.Bytes(), &members); err != nil {
		return nil, fmt.Errorf("jwk must be a JSON object")
	}
	for _, m := range privateJWKMembers {
		if _, ok := members[m]; ok {
			return nil, fmt.Errorf("jwk holds private member %q", m)
		}
	}
	for _, m := range [][2]string{{"kid", p.Kid}, {"alg", p.Alg}} {
		var got string
		if err := json.Unmarshal(members[m[0]], &got); err != nil || got != m[1] {
			return nil, fmt.Errorf("jwk member %q must be %q", m[0], m[1])
		}
	}
	var kty string
	if err := json.Unmarshal(members["kty"], &kty); err != nil || kty == "" {
		return nil, fmt.Errorf("jwk needs a kty")
	}
	return buf.Bytes(), nil
}

// MaxIssuerBytes bounds an issuer URL in the log.
const MaxIssuerBytes = 512

// checkKeyIssuer: v1 carries no issuer, v2 one that validIssuer accepts.
func checkKeyIssuer(version uint16, iss string) error {
	switch {
	case version == 1 && iss != "":
		return fmt.Errorf("v1 has no issuer")
	case version >= 2 && !validIssuer(iss):
		return fmt.Errorf("issuer must be an https URL of 1 to %d printable ASCII bytes", MaxIssuerBytes)
	}
	return nil
}

// validIssuer accepts what an iss claim of bulwark's may be: an https URL
// of printable ASCII. The proposer checked it properly (config); Apply
// only keeps the log's values bounded.
func validIssuer(s string) bool {
	return printableASCII(s, MaxIssuerBytes) && strings.HasPrefix(s, "https://") && len(s) > len("https://")
}

func printableASCII(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func unixNanoOrZero(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

func getPublicKey(tx *bolt.Tx, kid string) (*PublicKey, error) {
	v := tx.Bucket(bucketKeys).Get([]byte(kid))
	if v == nil {
		return nil, ErrKeyNotFound
	}
	var k PublicKey
	if err := json.Unmarshal(v, &k); err != nil {
		return nil, fmt.Errorf("fsm: stored signing key %q: %w", kid, err)
	}
	return &k, nil
}

// PublicKey returns the published key kid, or ErrKeyNotFound.
func (r Reader) PublicKey(kid string) (*PublicKey, error) { return getPublicKey(r.tx, kid) }

// PublicKeys calls fn for every published key, retired ones included, in
// kid order until fn returns false. Callers building the JWKS keep the
// keys that are Published at their time.
func (r Reader) PublicKeys(fn func(*PublicKey) bool) error {
	c := r.tx.Bucket(bucketKeys).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		var pk PublicKey
		if err := json.Unmarshal(v, &pk); err != nil {
			return fmt.Errorf("fsm: stored signing key %q: %w", k, err)
		}
		if !fn(&pk) {
			return nil
		}
	}
	return nil
}
