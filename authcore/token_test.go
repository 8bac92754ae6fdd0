package authcore

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/golang-jwt/jwt/v5"
)

const (
	testIssuer   = "https://auth.example.com:8443"
	testAudience = "bulwark"
)

var tokNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// Keys are made once per test binary: RSA generation is slow under -race.
var testKeys = sync.OnceValue(func() map[string]crypto.Signer {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	rs, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	_, ml, err := mldsa65.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return map[string]crypto.Signer{AlgES256: ec, AlgEdDSA: ed, AlgRS256: rs, AlgMLDSA65: ml}
})

// testAlgs are the algorithms bulwark signs with, one test key each.
var testAlgs = []string{AlgES256, AlgEdDSA, AlgRS256, AlgMLDSA65}

func testSigner(t testing.TB, alg string) *Signer {
	t.Helper()
	s, err := NewSigner(testKeys()[alg], alg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// jwksLookup is a KeyLookup over published JWKs, as the daemon's is.
type jwksLookup map[string][]byte

func (l jwksLookup) PublicKey(kid string) (crypto.PublicKey, string, error) {
	jwk, ok := l[kid]
	if !ok {
		return nil, "", errors.New("unknown kid")
	}
	pub, alg, _, err := PublicFromJWK(jwk)
	return pub, alg, err
}

func testLookup(t testing.TB) jwksLookup {
	t.Helper()
	l := jwksLookup{}
	for _, alg := range testAlgs {
		s := testSigner(t, alg)
		jwk, err := s.PublicJWK()
		if err != nil {
			t.Fatal(err)
		}
		l[s.Kid()] = jwk
	}
	return l
}

func testClaims() *AccessClaims {
	return &AccessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    testIssuer,
			Subject:   "0123456789abcdef0123456789abcdef",
			Audience:  jwt.ClaimStrings{testAudience},
			ExpiresAt: jwt.NewNumericDate(tokNow.Add(time.Hour)),
			IssuedAt:  jwt.NewNumericDate(tokNow),
			NotBefore: jwt.NewNumericDate(tokNow),
			ID:        "jti-1",
		},
		Sid:      "sess-1",
		Amr:      []string{"pwd", "otp"},
		Roles:    []string{"admin"},
		AuthTime: tokNow.Add(-time.Minute).Unix(),
	}
}

func verify(tok string, l KeyLookup) (*AccessClaims, error) {
	return VerifyAccessToken(tok, l, testIssuer, testAudience, tokNow, time.Minute)
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSignVerifyRoundTrip(t *testing.T) {
	l := testLookup(t)
	for _, alg := range testAlgs {
		t.Run(alg, func(t *testing.T) {
			s := testSigner(t, alg)
			want := testClaims()
			tok, err := s.Sign(want)
			if err != nil {
				t.Fatal(err)
			}
			got, err := verify(tok, l)
			if err != nil {
				t.Fatal(err)
			}
			if g, w := mustJSON(t, got), mustJSON(t, want); g != w {
				t.Errorf("claims\n got %s\nwant %s", g, w)
			}
			h := header(t, tok)
			if h["alg"] != alg || h["kid"] != s.Kid() || h["typ"] != "JWT" {
				t.Errorf("header = %v", h)
			}
		})
	}
}

func TestClaimsJSON(t *testing.T) {
	c := testClaims()
	c.Amr, c.Roles = nil, nil
	var m map[string]any
	if err := json.Unmarshal([]byte(mustJSON(t, c)), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "sid", "amr", "roles", "auth_time"} {
		if _, ok := m[k]; !ok {
			t.Errorf("claim %q missing from %v", k, m)
		}
	}
	if fmt.Sprint(m["amr"], m["roles"]) != "[] []" {
		t.Errorf("empty amr, roles = %v, %v; want [] []", m["amr"], m["roles"])
	}
}

func header(t testing.TB, tok string) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// RFC 7638 §3.1: the example RSA key and its published thumbprint.
const (
	rfc7638N   = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
	rfc7638Kid = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
)

func TestThumbprintRFC7638(t *testing.T) {
	n, err := base64.RawURLEncoding.DecodeString(rfc7638N)
	if err != nil {
		t.Fatal(err)
	}
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537}
	jwk, kid, err := JWKFromPublic(pub, AlgRS256)
	if err != nil {
		t.Fatal(err)
	}
	if kid != rfc7638Kid {
		t.Fatalf("kid = %s, want %s", kid, rfc7638Kid)
	}
	want := `{"kty":"RSA","n":"` + rfc7638N + `","e":"AQAB","kid":"` + rfc7638Kid + `","alg":"RS256","use":"sig"}`
	if string(jwk) != want {
		t.Errorf("jwk = %s\nwant %s", jwk, want)
	}
	// The RFC's own JWK (with its extra members, spaced) decodes to the same kid.
	rfc := `{"kty": "RSA", "n": "` + rfc7638N + `", "e": "AQAB", "alg": "RS256", "kid": "` + rfc7638Kid + `"}`
	if _, alg, kid, err := PublicFromJWK([]byte(rfc)); err != nil || kid != rfc7638Kid || alg != AlgRS256 {
		t.Errorf("PublicFromJWK(RFC example) = %s %s %v", alg, kid, err)
	}
}

// opaqueSigner hides the concrete key type, as a TPM-held key would.
type opaqueSigner struct{ crypto.Signer }

func TestES256SignatureIsRawRS(t *testing.T) {
	for name, key := range map[string]crypto.Signer{
		"ecdsa.PrivateKey": testKeys()[AlgES256],
		"opaque signer":    opaqueSigner{testKeys()[AlgES256]},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := NewSigner(key, AlgES256)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 20; i++ {
				tok, err := s.Sign(testClaims())
				if err != nil {
					t.Fatal(err)
				}
				parts := strings.Split(tok, ".")
				sig, err := base64.RawURLEncoding.DecodeString(parts[2])
				if err != nil {
					t.Fatal(err)
				}
				if len(sig) != 64 {
					t.Fatalf("ES256 signature is %d bytes, want 64 (r||s, RFC 7518 §3.4)", len(sig))
				}
				// jwt's own ES256 (r||s only) verifies it.
				if err := jwt.SigningMethodES256.Verify(parts[0]+"."+parts[1], sig, s.Public()); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestECDSADERToJWS(t *testing.T) {
	der := func(r, s *big.Int) []byte {
		b, err := asn1.Marshal(struct{ R, S *big.Int }{r, s})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	one, big256 := big.NewInt(1), new(big.Int).Lsh(big.NewInt(1), 255)
	out, err := ecdsaDERToJWS(der(one, big256), 32)
	if err != nil || len(out) != 64 || out[31] != 1 || out[32] != 0x80 {
		t.Fatalf("small r not left-padded: %x %v", out, err)
	}
	for name, b := range map[string][]byte{
		"r too large": der(new(big.Int).Lsh(one, 256), one),
		"zero s":      der(one, new(big.Int)),
		"trailing":    append(der(one, one), 0),
		"not DER":     {1, 2, 3},
	} {
		if _, err := ecdsaDERToJWS(b, 32); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestVerifyRefusals(t *testing.T) {
	l := testLookup(t)
	es, ed, rs := testSigner(t, AlgES256), testSigner(t, AlgEdDSA), testSigner(t, AlgRS256)
	sign := func(m jwt.SigningMethod, key any, kid string, c jwt.Claims) string {
		t.Helper()
		tk := jwt.NewWithClaims(m, c)
		if kid != "" {
			tk.Header["kid"] = kid
		}
		s, err := tk.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	claims := func(f func(*AccessClaims)) *AccessClaims { c := testClaims(); f(c); return c }
	good, err := es.Sign(testClaims())
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	rsPKIX, err := x509.MarshalPKIXPublicKey(rs.Public())
	if err != nil {
		t.Fatal(err)
	}
	rsPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsPKIX})
	rsJWK, _ := rs.PublicJWK()
	otherEC, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	flipped := []byte(parts[2])
	flipped[5] ^= 'A' ^ 'B'
	if flipped[5] == parts[2][5] {
		flipped[5] ^= 1
	}

	cases := map[string]string{
		"alg none":           sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, es.Kid(), testClaims()),
		"alg none no sig":    enc(`{"alg":"none","kid":"`+es.Kid()+`"}`) + "." + parts[1] + ".",
		"HS256 with PEM":     sign(jwt.SigningMethodHS256, rsPEM, rs.Kid(), testClaims()),
		"HS256 with DER":     sign(jwt.SigningMethodHS256, rsPKIX, rs.Kid(), testClaims()),
		"HS256 with JWK":     sign(jwt.SigningMethodHS256, rsJWK, rs.Kid(), testClaims()),
		"tampered payload":   parts[0] + "." + enc(strings.Replace(mustJSON(t, testClaims()), `"roles":["admin"]`, `"roles":["admin","root"]`, 1)) + "." + parts[2],
		"tampered header":    enc(`{"alg":"ES256","kid":"`+es.Kid()+`","typ":"JWT","x":1}`) + "." + parts[1] + "." + parts[2],
		"tampered sig":       parts[0] + "." + parts[1] + "." + string(flipped),
		"sig padded":         good + "=",
		"no sig":             parts[0] + "." + parts[1] + ".",
		"two segments":       parts[0] + "." + parts[1],
		"expired":            sign(es.method, es.key, es.Kid(), claims(func(c *AccessClaims) { c.ExpiresAt = jwt.NewNumericDate(tokNow.Add(-2 * time.Minute)) })),
		"no exp":             sign(es.method, es.key, es.Kid(), claims(func(c *AccessClaims) { c.ExpiresAt = nil })),
		"nbf in future":      sign(es.method, es.key, es.Kid(), claims(func(c *AccessClaims) { c.NotBefore = jwt.NewNumericDate(tokNow.Add(2 * time.Minute)) })),
		"iat in future":      sign(es.method, es.key, es.Kid(), claims(func(c *AccessClaims) { c.IssuedAt = jwt.NewNumericDate(tokNow.Add(2 * time.Minute)) })),
		"wrong iss":          sign(es.method, es.key, es.Kid(), claims(func(c *AccessClaims) { c.Issuer = "https://evil.example" })),
		"no iss":             sign(es.method, es.key, es.Kid(), claims(func(c *AccessClaims) { c.Issuer = "" })),
		"wrong aud":          sign(es.method, es.key, es.Kid(), claims(func(c *AccessClaims) { c.Audience = jwt.ClaimStrings{"other"} })),
		"no sid":             sign(es.method, es.key, es.Kid(), claims(func(c *AccessClaims) { c.Sid = "" })),
		"no sub":             sign(es.method, es.key, es.Kid(), claims(func(c *AccessClaims) { c.Subject = "" })),
		"unknown kid":        sign(es.method, es.key, "no-such-kid", testClaims()),
		"no kid":             sign(es.method, es.key, "", testClaims()),
		"other key, our kid": sign(es.method, otherEC, es.Kid(), testClaims()),
		"EdDSA kid, ES256":   sign(es.method, es.key, ed.Kid(), testClaims()),
		"ES256 kid, EdDSA":   sign(ed.method, ed.key, es.Kid(), testClaims()),
		"RS256 kid, PS256":   sign(jwt.SigningMethodPS256, rs.key, rs.Kid(), testClaims()),
		"ES256 kid, ES384":   sign(jwt.SigningMethodES384, mustEC384(t), es.Kid(), testClaims()),
		"crit header": func() string {
			tk := jwt.NewWithClaims(es.method, testClaims())
			tk.Header["kid"], tk.Header["crit"] = es.Kid(), []string{"exp"}
			s, _ := tk.SignedString(es.key)
			return s
		}(),
		"KID upper case": func() string {
			tk := jwt.NewWithClaims(es.method, testClaims())
			tk.Header["KID"] = es.Kid()
			s, _ := tk.SignedString(es.key)
			return s
		}(),
		"oversize": good + strings.Repeat("A", maxTokenBytes),
		"empty":    "",
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := verify(tok, l)
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("err = %v, claims = %+v; want ErrInvalidToken", err, c)
			}
			if c != nil {
				t.Fatalf("claims returned with an error: %+v", c)
			}
			t.Log(err)
		})
	}

	// Inside the leeway the same clock skews are accepted.
	for name, c := range map[string]*AccessClaims{
		"exp within leeway": claims(func(c *AccessClaims) { c.ExpiresAt = jwt.NewNumericDate(tokNow.Add(-30 * time.Second)) }),
		"nbf within leeway": claims(func(c *AccessClaims) { c.NotBefore = jwt.NewNumericDate(tokNow.Add(30 * time.Second)) }),
	} {
		if _, err := verify(sign(es.method, es.key, es.Kid(), c), l); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Errors keep jwt's reason for logs.
	if _, err := verify(cases["expired"], l); !errors.Is(err, jwt.ErrTokenExpired) {
		t.Errorf("expired: %v does not wrap jwt.ErrTokenExpired", err)
	}
	// A verifier must be told what to expect.
	if _, err := VerifyAccessToken(good, l, "", "", tokNow, 0); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("no issuer/audience: %v", err)
	}
}

func mustEC384(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestJWKRoundTrip(t *testing.T) {
	for _, alg := range testAlgs {
		t.Run(alg, func(t *testing.T) {
			pub := testKeys()[alg].Public()
			jwk, kid, err := JWKFromPublic(pub, alg)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(jwk, &m); err != nil {
				t.Fatal(err)
			}
			if m["kid"] != kid || m["alg"] != alg || m["use"] != "sig" {
				t.Errorf("jwk = %s", jwk)
			}
			got, gotAlg, gotKid, err := PublicFromJWK(jwk)
			if err != nil {
				t.Fatal(err)
			}
			eq, ok := got.(interface{ Equal(crypto.PublicKey) bool })
			if !ok || !eq.Equal(pub) || gotAlg != alg || gotKid != kid {
				t.Errorf("round trip: %T %s %s", got, gotAlg, gotKid)
			}
		})
	}
}

func TestPublicFromJWKRefusals(t *testing.T) {
	es := testSigner(t, AlgES256)
	jwk, _ := es.PublicJWK()
	edJWK, _ := testSigner(t, AlgEdDSA).PublicJWK()
	var m map[string]any
	if err := json.Unmarshal(jwk, &m); err != nil {
		t.Fatal(err)
	}
	with := func(f func(map[string]any)) []byte {
		c := map[string]any{}
		for k, v := range m {
			c[k] = v
		}
		f(c)
		b, _ := json.Marshal(c)
		return b
	}
	d := base64.RawURLEncoding.EncodeToString(testKeys()[AlgES256].(*ecdsa.PrivateKey).D.Bytes())
	cases := map[string][]byte{
		"private d":        with(func(c map[string]any) { c["d"] = d }),
		"private p":        with(func(c map[string]any) { c["p"] = "AQAB" }),
		"private q":        with(func(c map[string]any) { c["q"] = "AQAB" }),
		"symmetric k":      with(func(c map[string]any) { c["k"] = "c2VjcmV0" }),
		"other kid":        with(func(c map[string]any) { c["kid"] = "nope" }),
		"no kid":           with(func(c map[string]any) { delete(c, "kid") }),
		"no alg":           with(func(c map[string]any) { delete(c, "alg") }),
		"alg EdDSA on EC":  with(func(c map[string]any) { c["alg"] = "EdDSA" }),
		"alg HS256":        with(func(c map[string]any) { c["alg"] = "HS256" }),
		"alg ML-DSA-65":    with(func(c map[string]any) { c["alg"] = "ML-DSA-65" }),
		"use enc":          with(func(c map[string]any) { c["use"] = "enc" }),
		"P-384":            with(func(c map[string]any) { c["crv"] = "P-384" }),
		"point off curve":  with(func(c map[string]any) { c["y"] = c["x"] }),
		"short x":          with(func(c map[string]any) { c["x"] = "AQAB" }),
		"padded x":         with(func(c map[string]any) { c["x"] = c["x"].(string) + "=" }),
		"kty number":       with(func(c map[string]any) { c["kty"] = 1 }),
		"kty oct":          with(func(c map[string]any) { c["kty"] = "oct" }),
		"not an object":    []byte(`["x"]`),
		"null":             []byte(`null`),
		"Ed25519 as P-256": []byte(strings.Replace(string(edJWK), `"OKP"`, `"EC"`, 1)),
		"rsa 1024": func() []byte {
			k, err := rsa.GenerateKey(rand.Reader, 1024)
			if err != nil {
				t.Fatal(err)
			}
			p := k.PublicKey
			sum, _, _ := thumbprintUnchecked(&p)
			return []byte(fmt.Sprintf(`{"kty":"RSA","n":"%s","e":"AQAB","kid":"%s","alg":"RS256"}`,
				base64.RawURLEncoding.EncodeToString(p.N.Bytes()), sum))
		}(),
		"rsa leading zero": []byte(`{"kty":"RSA","n":"AA` + rfc7638N + `","e":"AQAB","kid":"` + rfc7638Kid + `","alg":"RS256"}`),
		"rsa private":      []byte(`{"kty":"RSA","n":"` + rfc7638N + `","e":"AQAB","d":"AQAB","kid":"` + rfc7638Kid + `","alg":"RS256"}`),
		"oversize":         append(append([]byte{}, jwk[:len(jwk)-1]...), []byte(`,"x5c":["`+strings.Repeat("A", 9000)+`"]}`)...),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if pub, alg, kid, err := PublicFromJWK(b); !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("accepted %s: %T %s %s %v", b, pub, alg, kid, err)
			} else {
				t.Log(err)
			}
		})
	}
}

// thumbprintUnchecked is the RFC 7638 kid of an RSA key of any size.
func thumbprintUnchecked(k *rsa.PublicKey) (string, string, error) {
	n := base64.RawURLEncoding.EncodeToString(k.N.Bytes())
	e := base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.E)).Bytes())
	h := sha256.Sum256([]byte(`{"e":"` + e + `","kty":"RSA","n":"` + n + `"}`))
	return base64.RawURLEncoding.EncodeToString(h[:]), n, nil
}

type mismatchedSigner struct {
	crypto.Signer
	pub crypto.PublicKey
}

func (m mismatchedSigner) Public() crypto.PublicKey { return m.pub }

type failingSigner struct{ crypto.Signer }

func (failingSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("device gone")
}

func TestNewSignerRefusals(t *testing.T) {
	keys := testKeys()
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		key  crypto.Signer
		alg  string
	}{
		{"EC key for EdDSA", keys[AlgES256], AlgEdDSA},
		{"Ed25519 key for ES256", keys[AlgEdDSA], AlgES256},
		{"RSA key for ES256", keys[AlgRS256], AlgES256},
		{"P-384 for ES256", mustEC384(t), AlgES256},
		{"RSA 1024", small, AlgRS256},
		{"HS256", keys[AlgES256], "HS256"},
		{"none", keys[AlgES256], "none"},
		{"EC key for ML-DSA-65", keys[AlgES256], AlgMLDSA65},
		{"ML-DSA-65 key for EdDSA", keys[AlgMLDSA65], AlgEdDSA},
		{"private half does not match", mismatchedSigner{keys[AlgES256], other.Public()}, AlgES256},
		{"device fails", failingSigner{keys[AlgES256]}, AlgES256},
		{"nil", nil, AlgES256},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewSigner(tc.key, tc.alg); !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("err = %v, want ErrInvalidKey", err)
			}
		})
	}
}

func TestBuildJWKS(t *testing.T) {
	a, _ := testSigner(t, AlgES256).PublicJWK()
	b, _ := testSigner(t, AlgEdDSA).PublicJWK()
	for _, tc := range []struct {
		keys []json.RawMessage
		want string
	}{
		{nil, `{"keys":[]}`},
		{[]json.RawMessage{a}, `{"keys":[` + string(a) + `]}`},
		{[]json.RawMessage{a, json.RawMessage(" {\n\"kty\": \"x\" } "), b}, `{"keys":[` + string(a) + `,{"kty":"x"},` + string(b) + `]}`},
		{[]json.RawMessage{json.RawMessage(`[1]`), a, json.RawMessage(`{bad`), nil}, `{"keys":[` + string(a) + `]}`},
	} {
		got := BuildJWKS(tc.keys)
		if string(got) != tc.want {
			t.Errorf("BuildJWKS = %s\nwant %s", got, tc.want)
		}
		if !json.Valid(got) {
			t.Errorf("invalid JSON: %s", got)
		}
	}
}

// BenchmarkSign and BenchmarkVerify measure one token per algorithm
// bulwark signs with.
func BenchmarkSign(b *testing.B) {
	for _, alg := range []string{AlgES256, AlgMLDSA65} {
		b.Run(alg, func(b *testing.B) {
			s := testSigner(b, alg)
			c := testClaims()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Sign(c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	for _, alg := range []string{AlgES256, AlgMLDSA65} {
		b.Run(alg, func(b *testing.B) {
			s := testSigner(b, alg)
			jwk, _ := s.PublicJWK()
			l := jwksLookup{s.Kid(): jwk}
			tok, err := s.Sign(testClaims())
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := verify(tok, l); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
