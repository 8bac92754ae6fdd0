package authcore

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/golang-jwt/jwt/v5"

	"github.com/bulwark-auth/bulwark/fsm"
)

// JWS algorithms bulwark signs access tokens with ([tokens] algorithm).
const (
	AlgES256 = "ES256" // ECDSA P-256 with SHA-256 (the default)
	AlgEdDSA = "EdDSA" // Ed25519 (RFC 8037)
	AlgRS256 = "RS256" // RSASSA-PKCS1-v1_5 with SHA-256, 2048 to 8192 bits
	// AlgMLDSA65 is ML-DSA-65 (FIPS 204) as RFC 9964 puts it in JOSE; see mldsa.go.
	AlgMLDSA65 = "ML-DSA-65"
)

const (
	minRSABits = 2048
	maxRSABits = 8192 // bounds the cost of verifying a forged token's key
	// maxTokenBytes bounds a presented token before any decoding (an
	// ML-DSA-65 signature alone is 4.4 KB in base64url).
	maxTokenBytes = 16 << 10
	maxKidLen     = 128
)

// TokenSigner signs access tokens with one key. Kid and Alg go into the
// JWS header; the JWKS carries the matching public key.
type TokenSigner interface {
	Kid() string
	Alg() string
	Sign(claims jwt.Claims) (string, error)
	// PublicJWK is the public key as published in the JWKS.
	PublicJWK() ([]byte, error)
}

// AccessClaims are the claims of an access token (API.md): iss, sub (the
// user id), aud, exp, iat, nbf, jti, sid (the session id), amr, roles and
// auth_time (Unix seconds of the login).
type AccessClaims struct {
	jwt.RegisteredClaims
	Sid      string   `json:"sid"`
	Amr      []string `json:"amr"`
	Roles    []string `json:"roles"`
	AuthTime int64    `json:"auth_time"`
}

// MarshalJSON writes empty amr and roles as [] rather than null, so
// clients can treat them as lists without a check.
func (c AccessClaims) MarshalJSON() ([]byte, error) {
	type plain AccessClaims
	p := plain(c)
	if p.Amr == nil {
		p.Amr = []string{}
	}
	if p.Roles == nil {
		p.Roles = []string{}
	}
	return json.Marshal(p)
}

// Validate is called by the jwt parser after the registered claims have
// been checked: an access token without a subject, a session or an id is
// not one bulwark issued.
func (c *AccessClaims) Validate() error {
	switch {
	case c.Subject == "":
		return errors.New("no sub claim")
	case c.Sid == "":
		return errors.New("no sid claim")
	case c.ID == "":
		return errors.New("no jti claim")
	}
	return nil
}

// Signer signs with a crypto.Signer, so that a key held by a TPM (or any
// other device that never hands out its private half) can replace the
// software key without changing callers.
type Signer struct {
	key    crypto.Signer
	alg    string
	kid    string
	jwk    []byte
	method signerMethod
}

var _ TokenSigner = (*Signer)(nil)

// NewSigner wraps key for alg: ES256 needs an ECDSA P-256 key, EdDSA an
// Ed25519 key, RS256 an RSA key of 2048 to 8192 bits, ML-DSA-65 a key whose
// public half is a *mldsa65.PublicKey. The kid is the key's
// RFC 7638 thumbprint. NewSigner signs and verifies once, so a signer whose
// private half does not match its public half fails here rather than at
// the first login.
func NewSigner(key crypto.Signer, alg string) (*Signer, error) {
	if key == nil {
		return nil, fmt.Errorf("%w: no key", ErrInvalidKey)
	}
	pub := key.Public()
	jwk, kid, err := JWKFromPublic(pub, alg)
	if err != nil {
		return nil, err
	}
	s := &Signer{key: key, alg: alg, kid: kid, jwk: jwk, method: signerMethod{alg}}
	const probe = "bulwark signer self-test"
	sig, err := s.method.Sign(probe, key)
	if err == nil {
		err = s.method.Verify(probe, sig, pub)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s self-test: %v", ErrInvalidKey, alg, err)
	}
	return s, nil
}

// Kid is the key id: the RFC 7638 thumbprint of the public key.
func (s *Signer) Kid() string { return s.kid }

// Alg is the JWS algorithm.
func (s *Signer) Alg() string { return s.alg }

// Public is the public half of the key.
func (s *Signer) Public() crypto.PublicKey { return s.key.Public() }

// PublicJWK is the public key as a JWK with kid, alg and "use":"sig", as
// published through fsm.KeyPublish and served in the JWKS.
func (s *Signer) PublicJWK() ([]byte, error) { return bytes.Clone(s.jwk), nil }

// Sign returns the compact JWS of claims with typ, alg and kid in its header.
func (s *Signer) Sign(claims jwt.Claims) (string, error) {
	t := jwt.NewWithClaims(s.method, claims)
	t.Header["kid"] = s.kid
	tok, err := t.SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("authcore: sign %s token: %w", s.alg, err)
	}
	return tok, nil
}

// signerMethod is a jwt.SigningMethod that signs through crypto.Signer.
// It is not registered with jwt: verification uses jwt's own methods (and
// SigningMethodMLDSA65), which signerMethod.Verify delegates to.
type signerMethod struct{ alg string }

func (m signerMethod) Alg() string { return m.alg }

func (m signerMethod) Verify(signingString string, sig []byte, key any) error {
	v := builtinMethod(m.alg)
	if v == nil {
		return fmt.Errorf("%w: alg %q", ErrInvalidKey, m.alg)
	}
	return v.Verify(signingString, sig, key)
}

func (m signerMethod) Sign(signingString string, key any) ([]byte, error) {
	k, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: %T is not a crypto.Signer", ErrInvalidKey, key)
	}
	switch m.alg {
	case AlgES256:
		d := sha256.Sum256([]byte(signingString))
		der, err := k.Sign(rand.Reader, d[:], crypto.SHA256)
		if err != nil {
			return nil, err
		}
		// crypto.Signer gives ASN.1 DER; JWS wants r||s (RFC 7518 §3.4).
		return ecdsaDERToJWS(der, 32)
	case AlgEdDSA:
		return k.Sign(rand.Reader, []byte(signingString), crypto.Hash(0))
	case AlgRS256:
		d := sha256.Sum256([]byte(signingString))
		sig, err := k.Sign(rand.Reader, d[:], crypto.SHA256) // PKCS #1 v1.5
		if err != nil {
			return nil, err
		}
		if pub, ok := k.Public().(*rsa.PublicKey); !ok || len(sig) != pub.Size() {
			return nil, fmt.Errorf("%w: RS256 signature of %d bytes", ErrInvalidKey, len(sig))
		}
		return sig, nil
	case AlgMLDSA65:
		return SigningMethodMLDSA65.Sign(signingString, k)
	default:
		return nil, fmt.Errorf("%w: cannot sign with alg %q", ErrInvalidKey, m.alg)
	}
}

// builtinMethod is jwt's verifier for alg, or nil.
func builtinMethod(alg string) jwt.SigningMethod {
	switch alg {
	case AlgES256:
		return jwt.SigningMethodES256
	case AlgEdDSA:
		return jwt.SigningMethodEdDSA
	case AlgRS256:
		return jwt.SigningMethodRS256
	case AlgMLDSA65:
		return SigningMethodMLDSA65
	}
	return nil
}

// ecdsaDERToJWS turns an ASN.1 DER ECDSA signature into the fixed-size
// big-endian r||s form JWS uses, each half size bytes long.
func ecdsaDERToJWS(der []byte, size int) ([]byte, error) {
	var sig struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(der, &sig)
	if err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("%w: ECDSA signature is not ASN.1 DER", ErrInvalidKey)
	}
	if sig.R.Sign() <= 0 || sig.S.Sign() <= 0 || sig.R.BitLen() > 8*size || sig.S.BitLen() > 8*size {
		return nil, fmt.Errorf("%w: ECDSA signature out of range", ErrInvalidKey)
	}
	out := make([]byte, 2*size)
	sig.R.FillBytes(out[:size])
	sig.S.FillBytes(out[size:])
	return out, nil
}

// KeyLookup finds the public key and its alg for a kid; authcore's caller
// backs it with the replicated JWKS (fsm.Reader.PublicKey and
// PublicFromJWK). An unknown kid is an error.
type KeyLookup interface {
	PublicKey(kid string) (crypto.PublicKey, string, error)
}

// VerifyAccessToken checks tok and returns its claims. The kid in the
// header picks the key, and only that key's own alg is accepted, so "none",
// HS256 keyed with a public key, and an alg of another key type are all
// refused. iss and aud must match, exp must be present; exp, nbf and iat
// are checked against now with leeway. Every error wraps ErrInvalidToken.
func VerifyAccessToken(tok string, keys KeyLookup, issuer, audience string, now time.Time, leeway time.Duration) (*AccessClaims, error) {
	if issuer == "" || audience == "" {
		return nil, fmt.Errorf("%w: verifier has no issuer or audience", ErrInvalidToken)
	}
	c, _, err := verifySigned(tok, keys, now, leeway, jwt.WithIssuer(issuer), jwt.WithAudience(audience))
	return c, err
}

// verifySigned is VerifyAccessToken without the iss and aud checks, which
// claimChecks may add; it also returns the kid. A cluster's verifier holds
// iss and aud to the set of issuers its members sign with (issuer.go).
func verifySigned(tok string, keys KeyLookup, now time.Time, leeway time.Duration, claimChecks ...jwt.ParserOption) (*AccessClaims, string, error) {
	if len(tok) > maxTokenBytes {
		return nil, "", fmt.Errorf("%w: token is %d bytes", ErrInvalidToken, len(tok))
	}
	kid, err := tokenKid(tok)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	pub, alg, err := keys.PublicKey(kid)
	if err != nil {
		return nil, "", fmt.Errorf("%w: kid %q: %w", ErrInvalidToken, kid, err)
	}
	if err := checkKeyAlg(pub, alg); err != nil {
		return nil, "", fmt.Errorf("%w: kid %q: %w", ErrInvalidToken, kid, err)
	}
	p := jwt.NewParser(append([]jwt.ParserOption{
		jwt.WithValidMethods([]string{alg}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithLeeway(max(leeway, 0)),
		jwt.WithStrictDecoding(),
	}, claimChecks...)...)
	var c AccessClaims
	_, err = p.ParseWithClaims(tok, &c, func(t *jwt.Token) (any, error) {
		if k, _ := t.Header["kid"].(string); k != kid {
			return nil, errors.New("kid changed between reads")
		}
		return pub, nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	return &c, kid, nil
}

// tokenKid reads the kid from a compact JWS header before anything else
// is trusted. A header with "crit" is refused (RFC 7515 §4.1.11: bulwark
// understands no extensions).
func tokenKid(tok string) (string, error) {
	h, _, ok := strings.Cut(tok, ".")
	if !ok || strings.Count(tok, ".") != 2 {
		return "", errors.New("not a compact JWS")
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(h)
	if err != nil {
		return "", errors.New("header is not base64url")
	}
	var header map[string]any
	if err := json.Unmarshal(raw, &header); err != nil {
		return "", errors.New("header is not a JSON object")
	}
	if _, ok := header["crit"]; ok {
		return "", errors.New("header has crit")
	}
	kid, _ := header["kid"].(string)
	if !printable(kid, maxKidLen) {
		return "", errors.New("header has no usable kid")
	}
	return kid, nil
}

func printable(s string, max int) bool {
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

// checkKeyAlg checks that pub is a key bulwark accepts for alg.
func checkKeyAlg(pub crypto.PublicKey, alg string) error {
	switch alg {
	case AlgES256:
		if k, ok := pub.(*ecdsa.PublicKey); ok && k.Curve == elliptic.P256() {
			return nil
		}
		return fmt.Errorf("%w: ES256 needs an ECDSA P-256 key, not %T", ErrInvalidKey, pub)
	case AlgEdDSA:
		if k, ok := pub.(ed25519.PublicKey); ok && len(k) == ed25519.PublicKeySize {
			return nil
		}
		return fmt.Errorf("%w: EdDSA needs an Ed25519 key, not %T", ErrInvalidKey, pub)
	case AlgRS256:
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("%w: RS256 needs an RSA key, not %T", ErrInvalidKey, pub)
		}
		if n := k.N.BitLen(); n < minRSABits || n > maxRSABits || k.E < 3 || k.E%2 == 0 {
			return fmt.Errorf("%w: RS256 needs an RSA key of %d to %d bits with an odd exponent",
				ErrInvalidKey, minRSABits, maxRSABits)
		}
		return nil
	case AlgMLDSA65:
		if k, ok := pub.(*mldsa65.PublicKey); ok && k != nil {
			return nil
		}
		return fmt.Errorf("%w: ML-DSA-65 needs an ML-DSA-65 key, not %T", ErrInvalidKey, pub)
	default:
		return fmt.Errorf("%w: unknown alg %q", ErrInvalidKey, alg)
	}
}

// jwkJSON is a public JWK in the member order bulwark writes.
type jwkJSON struct {
	Kty string `json:"kty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	Pub string `json:"pub,omitempty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use,omitempty"`
}

// Members of private or symmetric JWKs (RFC 7518 §6.2.2, §6.3.2, §6.4;
// "priv" of RFC 9964's AKP keys). A JWK carrying any of them is refused.
var privateJWKMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k", "priv"}

var b64 = base64.RawURLEncoding.Strict()

// JWKFromPublic encodes pub as a public JWK for alg with "use":"sig" and
// returns it with its kid, the RFC 7638 SHA-256 thumbprint.
func JWKFromPublic(pub crypto.PublicKey, alg string) (jwk []byte, kid string, err error) {
	if err := checkKeyAlg(pub, alg); err != nil {
		return nil, "", err
	}
	var j jwkJSON
	var thumb string // RFC 7638 §3.2: required members, sorted, no whitespace
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		pt, err := k.Bytes() // 0x04 || x || y
		if err != nil {
			return nil, "", fmt.Errorf("%w: %v", ErrInvalidKey, err)
		}
		j = jwkJSON{Kty: "EC", Crv: "P-256", X: b64.EncodeToString(pt[1:33]), Y: b64.EncodeToString(pt[33:])}
		thumb = `{"crv":"P-256","kty":"EC","x":"` + j.X + `","y":"` + j.Y + `"}`
	case ed25519.PublicKey:
		j = jwkJSON{Kty: "OKP", Crv: "Ed25519", X: b64.EncodeToString(k)}
		thumb = `{"crv":"Ed25519","kty":"OKP","x":"` + j.X + `"}`
	case *rsa.PublicKey:
		j = jwkJSON{Kty: "RSA", N: b64.EncodeToString(k.N.Bytes()),
			E: b64.EncodeToString(big.NewInt(int64(k.E)).Bytes())}
		thumb = `{"e":"` + j.E + `","kty":"RSA","n":"` + j.N + `"}`
	case *mldsa65.PublicKey:
		// RFC 9964: an AKP key's thumbprint covers its alg too.
		j = jwkJSON{Kty: "AKP", Pub: b64.EncodeToString(k.Bytes())}
		thumb = `{"alg":"` + alg + `","kty":"AKP","pub":"` + j.Pub + `"}`
	default:
		return nil, "", fmt.Errorf("%w: %T", ErrInvalidKey, pub)
	}
	sum := sha256.Sum256([]byte(thumb))
	j.Kid, j.Alg, j.Use = b64.EncodeToString(sum[:]), alg, "sig"
	jwk, err = json.Marshal(j)
	if err != nil {
		return nil, "", err
	}
	return jwk, j.Kid, nil
}

// PublicFromJWK decodes a public JWK strictly: it must name its alg and
// kid, the alg must fit the key, the kid must be the key's RFC 7638
// thumbprint, "use" if present must be "sig", and no private member may be
// present. Other members are ignored (RFC 7517 §4). Errors wrap
// ErrInvalidKey.
func PublicFromJWK(jwk []byte) (pub crypto.PublicKey, alg string, kid string, err error) {
	fail := func(format string, a ...any) (crypto.PublicKey, string, string, error) {
		return nil, "", "", fmt.Errorf("%w: JWK: %s", ErrInvalidKey, fmt.Sprintf(format, a...))
	}
	if len(jwk) > fsm.MaxJWKBytes {
		return fail("%d bytes", len(jwk))
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(jwk, &members); err != nil || members == nil {
		return fail("not a JSON object")
	}
	for _, m := range privateJWKMembers {
		if _, ok := members[m]; ok {
			return fail("holds private member %q", m)
		}
	}
	// Members are read by their exact names (encoding/json would also
	// match "KID" to a struct field).
	get := func(name string) (string, bool) {
		raw, ok := members[name]
		if !ok {
			return "", false
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", false
		}
		return s, true
	}
	str := func(name string) string { s, _ := get(name); return s }
	for _, m := range []string{"kty", "kid", "alg"} {
		if s, ok := get(m); !ok || s == "" {
			return fail("needs a string %q", m)
		}
	}
	if use, ok := members["use"]; ok {
		if s, ok := get("use"); !ok || s != "sig" {
			return fail(`"use" is %s, not "sig"`, use)
		}
	}
	coord := func(name string, size int) ([]byte, error) {
		b, err := b64.DecodeString(str(name))
		if err != nil || (size > 0 && len(b) != size) {
			return nil, fmt.Errorf("member %q is not %d base64url bytes", name, size)
		}
		return b, nil
	}
	switch kty, crv := str("kty"), str("crv"); {
	case kty == "EC" && crv == "P-256":
		x, err := coord("x", 32)
		if err != nil {
			return fail("%v", err)
		}
		y, err := coord("y", 32)
		if err != nil {
			return fail("%v", err)
		}
		k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return fail("EC point: %v", err)
		}
		pub = k
	case kty == "OKP" && crv == "Ed25519":
		x, err := coord("x", ed25519.PublicKeySize)
		if err != nil {
			return fail("%v", err)
		}
		pub = ed25519.PublicKey(x)
	case kty == "RSA":
		n, err1 := b64.DecodeString(str("n"))
		e, err2 := b64.DecodeString(str("e"))
		if err1 != nil || err2 != nil || len(n) == 0 || n[0] == 0 || len(e) == 0 || e[0] == 0 || len(e) > 4 {
			return fail("RSA n and e must be minimal base64url integers")
		}
		ev := new(big.Int).SetBytes(e)
		if !ev.IsInt64() || ev.Int64() > 1<<31-1 {
			return fail("RSA exponent too large")
		}
		pub = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(ev.Int64())}
	case kty == "AKP":
		// An AKP key is read as its alg says (RFC 9964); only ML-DSA-65 is known.
		if a := str("alg"); a != AlgMLDSA65 {
			return fail("AKP key for alg %q", a)
		}
		b, err := b64.DecodeString(str("pub"))
		if err != nil {
			return fail("member \"pub\" is not base64url")
		}
		k, err := mldsa65Public(b)
		if err != nil {
			return fail("%v", err)
		}
		pub = k
	default:
		return fail("unsupported kty %q crv %q", kty, crv)
	}
	alg = str("alg")
	if err := checkKeyAlg(pub, alg); err != nil {
		return nil, "", "", err
	}
	_, kid, err = JWKFromPublic(pub, alg)
	if err != nil {
		return nil, "", "", err
	}
	if kid != str("kid") {
		return fail("kid %q is not the key's thumbprint %q", str("kid"), kid)
	}
	return pub, alg, kid, nil
}

// BuildJWKS returns the JWK Set {"keys":[...]} of keys, each compacted.
// An entry that is not a JSON object is left out, so the set stays valid.
func BuildJWKS(keys []json.RawMessage) []byte {
	var buf bytes.Buffer
	buf.WriteString(`{"keys":[`)
	n := 0
	for _, k := range keys {
		k = bytes.TrimSpace(k)
		if len(k) == 0 || k[0] != '{' || !json.Valid(k) {
			continue
		}
		if n > 0 {
			buf.WriteByte(',')
		}
		_ = json.Compact(&buf, k) // k is valid JSON: cannot fail
		n++
	}
	buf.WriteString(`]}`)
	return buf.Bytes()
}
