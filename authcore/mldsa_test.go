package authcore

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/golang-jwt/jwt/v5"
)

// The ML-DSA-65 example of draft-ietf-cose-dilithium (RFC 9964), from
// examples/jose/examples/ML_DSA_65.jose.json in the cose-wg repository:
// the key of the all-zero seed, its kid, and a JWS over a fixed signing
// input. ML-DSA signing as circl's crypto.Signer does it is deterministic,
// so the same key signs that input to the example's own signature; its
// SHA-256 is pinned here (the signature begins "zmO9_0bLgJAegoVN" and ends
// "AAAAAABgwVHCUv", as the example's does).
const (
	exampleMLDSA65Kid   = "Suiu29qbfuaBaR4Ats-c6XQBePB_OpAxAwcTR_0KXVM"
	exampleMLDSA65Input = "eyJhbGciOiJNTC1EU0EtNjUiLCJraWQiOiJTdWl1MjlxYmZ1YUJhUjRBdHMtYzZYUUJlUEJfT3BBeEF3Y1RSXzBLWFZNIn0" +
		".SXTigJlzIGEgZGFuZ2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IHlvdXIgZG9vci4"
	exampleMLDSA65SigSHA256 = "2d3d1ba6581e89392226d707e2fe24e3326f80b9f7c6865707be9bd6f89d6ec6"
)

func exampleMLDSA65Key() (*mldsa65.PublicKey, *mldsa65.PrivateKey) {
	var seed [mldsa65.SeedSize]byte
	return mldsa65.NewKeyFromSeed(&seed)
}

func TestMLDSA65Example(t *testing.T) {
	pub, priv := exampleMLDSA65Key()
	jwk, kid, err := JWKFromPublic(pub, AlgMLDSA65)
	if err != nil {
		t.Fatal(err)
	}
	if kid != exampleMLDSA65Kid {
		t.Fatalf("kid = %s, want %s", kid, exampleMLDSA65Kid)
	}
	p := base64.RawURLEncoding.EncodeToString(pub.Bytes())
	if want := `{"kty":"AKP","pub":"` + p + `","kid":"` + kid + `","alg":"ML-DSA-65","use":"sig"}`; string(jwk) != want {
		t.Errorf("jwk = %s\nwant %s", jwk, want)
	}
	// RFC 7638 §3.2 over the required members alg, kty, pub.
	sum := sha256.Sum256([]byte(`{"alg":"ML-DSA-65","kty":"AKP","pub":"` + p + `"}`))
	if got := base64.RawURLEncoding.EncodeToString(sum[:]); got != kid {
		t.Errorf("thumbprint by hand = %s, kid = %s", got, kid)
	}
	// The example's JWK as published (its "priv" left out) decodes to the same key.
	ex := `{"kid":"` + exampleMLDSA65Kid + `","kty":"AKP","alg":"ML-DSA-65","pub":"` + p + `"}`
	got, alg, gotKid, err := PublicFromJWK([]byte(ex))
	if err != nil || alg != AlgMLDSA65 || gotKid != kid || !pub.Equal(got) {
		t.Errorf("PublicFromJWK(example) = %T %s %s %v", got, alg, gotKid, err)
	}

	sig, err := SigningMethodMLDSA65.Sign(exampleMLDSA65Input, priv)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(sig)
	if hex.EncodeToString(h[:]) != exampleMLDSA65SigSHA256 {
		t.Errorf("signature of the example input differs from the example's: sha256 %x", h)
	}
	if err := SigningMethodMLDSA65.Verify(exampleMLDSA65Input, sig, pub); err != nil {
		t.Error(err)
	}
}

func TestMLDSA65Signer(t *testing.T) {
	l := testLookup(t)
	for name, key := range map[string]crypto.Signer{
		"mldsa65.PrivateKey": testKeys()[AlgMLDSA65],
		"opaque signer":      opaqueSigner{testKeys()[AlgMLDSA65]},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := NewSigner(key, AlgMLDSA65)
			if err != nil {
				t.Fatal(err)
			}
			if s.Kid() != testSigner(t, AlgMLDSA65).Kid() {
				t.Errorf("kid %s depends on the key's wrapper", s.Kid())
			}
			tok, err := s.Sign(testClaims())
			if err != nil {
				t.Fatal(err)
			}
			if len(tok) > maxTokenBytes {
				t.Fatalf("token of %d bytes is over maxTokenBytes", len(tok))
			}
			sig, err := base64.RawURLEncoding.DecodeString(tok[strings.LastIndexByte(tok, '.')+1:])
			if err != nil || len(sig) != mldsa65.SignatureSize {
				t.Fatalf("signature of %d bytes, want %d: %v", len(sig), mldsa65.SignatureSize, err)
			}
			if _, err := verify(tok, l); err != nil {
				t.Fatal(err)
			}
		})
	}
	if m := jwt.GetSigningMethod(AlgMLDSA65); m != SigningMethodMLDSA65 {
		t.Errorf("jwt.GetSigningMethod(%q) = %v", AlgMLDSA65, m)
	}
}

// TestJWKSEveryAlgorithm publishes one key of each algorithm in one JWKS
// and verifies a token of each through a KeyLookup that reads only that
// JWKS document.
func TestJWKSEveryAlgorithm(t *testing.T) {
	var jwks []json.RawMessage
	signers := map[string]*Signer{}
	for _, alg := range testAlgs {
		s := testSigner(t, alg)
		jwk, err := s.PublicJWK()
		if err != nil {
			t.Fatal(err)
		}
		jwks = append(jwks, jwk)
		signers[alg] = s
	}
	doc := BuildJWKS(jwks)

	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != len(testAlgs) {
		t.Fatalf("JWKS has %d keys, want %d: %s", len(set.Keys), len(testAlgs), doc)
	}
	l := jwksLookup{}
	for _, k := range set.Keys {
		_, alg, kid, err := PublicFromJWK(k)
		if err != nil {
			t.Fatal(err)
		}
		if signers[alg] == nil || signers[alg].Kid() != kid {
			t.Fatalf("JWKS key %s for alg %s is not the signer's", kid, alg)
		}
		l[kid] = k
	}
	for _, alg := range testAlgs {
		t.Run(alg, func(t *testing.T) {
			tok, err := signers[alg].Sign(testClaims())
			if err != nil {
				t.Fatal(err)
			}
			c, err := verify(tok, l)
			if err != nil {
				t.Fatal(err)
			}
			if c.Subject != testClaims().Subject {
				t.Errorf("claims = %+v", c)
			}
		})
	}
}

func TestMLDSA65VerifyRefusals(t *testing.T) {
	l := testLookup(t)
	ml, es, ed := testSigner(t, AlgMLDSA65), testSigner(t, AlgES256), testSigner(t, AlgEdDSA)
	sign := func(m jwt.SigningMethod, key any, kid string) string {
		t.Helper()
		tk := jwt.NewWithClaims(m, testClaims())
		tk.Header["kid"] = kid
		s, err := tk.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good, err := ml.Sign(testClaims())
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	enc := base64.RawURLEncoding.EncodeToString
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	_, other, err := mldsa65.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// The same input signed under a non-empty context string.
	withCtx := make([]byte, mldsa65.SignatureSize)
	if err := mldsa65.SignTo(ml.key.(*mldsa65.PrivateKey), []byte(parts[0]+"."+parts[1]), []byte("bulwark"), true, withCtx); err != nil {
		t.Fatal(err)
	}
	flipped := append([]byte{}, sig...)
	flipped[100] ^= 1

	cases := map[string]string{
		"tampered payload":      parts[0] + "." + enc([]byte(strings.Replace(mustJSON(t, testClaims()), `"roles":["admin"]`, `"roles":["admin","root"]`, 1))) + "." + parts[2],
		"tampered sig":          parts[0] + "." + parts[1] + "." + enc(flipped),
		"truncated sig":         parts[0] + "." + parts[1] + "." + enc(sig[:len(sig)-1]),
		"sig with context":      parts[0] + "." + parts[1] + "." + enc(withCtx),
		"other key, our kid":    sign(ml.method, other, ml.Kid()),
		"ML-DSA-65 kid, ES256":  sign(es.method, es.key, ml.Kid()),
		"ML-DSA-65 kid, EdDSA":  sign(ed.method, ed.key, ml.Kid()),
		"ML-DSA-65 kid, HS256":  sign(jwt.SigningMethodHS256, []byte(ml.jwk), ml.Kid()),
		"ES256 kid, ML-DSA-65":  sign(ml.method, ml.key, es.Kid()),
		"EdDSA kid, ML-DSA-65":  sign(ml.method, ml.key, ed.Kid()),
		"ML-DSA-65 kid, no alg": enc([]byte(`{"alg":"none","kid":"`+ml.Kid()+`"}`)) + "." + parts[1] + ".",
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := verify(tok, l)
			if !errors.Is(err, ErrInvalidToken) || c != nil {
				t.Fatalf("err = %v, claims = %+v; want ErrInvalidToken", err, c)
			}
			t.Log(err)
		})
	}
}

func TestMLDSA65JWKRefusals(t *testing.T) {
	pub, priv := exampleMLDSA65Key()
	p := base64.RawURLEncoding.EncodeToString(pub.Bytes())
	jwk := func(members string) []byte {
		return []byte(`{"kty":"AKP","kid":"` + exampleMLDSA65Kid + `"` + members + `}`)
	}
	short := base64.RawURLEncoding.EncodeToString(pub.Bytes()[:mldsa65.PublicKeySize-1])
	long := base64.RawURLEncoding.EncodeToString(append(pub.Bytes(), 0))
	noAlgSum := sha256.Sum256([]byte(`{"kty":"AKP","pub":"` + p + `"}`))
	cases := map[string][]byte{
		"priv (seed)":        jwk(`,"alg":"ML-DSA-65","pub":"` + p + `","priv":"` + base64.RawURLEncoding.EncodeToString(priv.Seed()) + `"`),
		"priv empty":         jwk(`,"alg":"ML-DSA-65","pub":"` + p + `","priv":""`),
		"d":                  jwk(`,"alg":"ML-DSA-65","pub":"` + p + `","d":"AA"`),
		"no pub":             jwk(`,"alg":"ML-DSA-65"`),
		"pub short":          jwk(`,"alg":"ML-DSA-65","pub":"` + short + `"`),
		"pub long":           jwk(`,"alg":"ML-DSA-65","pub":"` + long + `"`),
		"pub padded":         jwk(`,"alg":"ML-DSA-65","pub":"` + p + `="`),
		"pub std base64":     jwk(`,"alg":"ML-DSA-65","pub":"` + base64.StdEncoding.EncodeToString(pub.Bytes()) + `"`),
		"pub number":         jwk(`,"alg":"ML-DSA-65","pub":1`),
		"no alg":             jwk(`,"pub":"` + p + `"`),
		"alg ML-DSA-44":      jwk(`,"alg":"ML-DSA-44","pub":"` + p + `"`),
		"alg ES256":          jwk(`,"alg":"ES256","pub":"` + p + `"`),
		"use enc":            jwk(`,"alg":"ML-DSA-65","pub":"` + p + `","use":"enc"`),
		"kid without alg":    []byte(`{"kty":"AKP","alg":"ML-DSA-65","pub":"` + p + `","kid":"` + base64.RawURLEncoding.EncodeToString(noAlgSum[:]) + `"}`),
		"kid of another key": []byte(strings.Replace(string(jwk(`,"alg":"ML-DSA-65","pub":"`+p+`"`)), exampleMLDSA65Kid, testSigner(t, AlgMLDSA65).Kid(), 1)),
		"kty OKP with pub":   []byte(`{"kty":"OKP","crv":"Ed25519","alg":"ML-DSA-65","pub":"` + p + `","kid":"` + exampleMLDSA65Kid + `"}`),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if pub, alg, kid, err := PublicFromJWK(b); !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("accepted: %T %s %s %v", pub, alg, kid, err)
			} else {
				t.Log(err)
			}
		})
	}
	if _, _, err := JWKFromPublic(pub, AlgEdDSA); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("JWKFromPublic(ML-DSA-65 key, EdDSA): %v", err)
	}
	if _, _, err := JWKFromPublic((*mldsa65.PublicKey)(nil), AlgMLDSA65); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("JWKFromPublic(nil key): %v", err)
	}
}

func TestMLDSA65MethodKeys(t *testing.T) {
	pub, priv := exampleMLDSA65Key()
	const in = "a.b"
	sig, err := SigningMethodMLDSA65.Sign(in, priv)
	if err != nil {
		t.Fatal(err)
	}
	for name, key := range map[string]any{
		"Ed25519 public key": testKeys()[AlgEdDSA].Public(),
		"private key":        priv,
		"public key value":   *pub,
		"nil":                nil,
	} {
		if err := SigningMethodMLDSA65.Verify(in, sig, key); !errors.Is(err, jwt.ErrInvalidKeyType) {
			t.Errorf("Verify with %s: %v", name, err)
		}
	}
	for name, key := range map[string]any{
		"Ed25519 key": testKeys()[AlgEdDSA],
		"public key":  pub,
		"raw bytes":   priv.Bytes(),
	} {
		if _, err := SigningMethodMLDSA65.Sign(in, key); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Sign with %s: %v", name, err)
		}
	}
	if _, err := SigningMethodMLDSA65.Sign(in, failingSigner{priv}); err == nil {
		t.Error("Sign with a failing device: no error")
	}
	if _, err := NewSigner(mismatchedSigner{priv, testKeys()[AlgMLDSA65].Public()}, AlgMLDSA65); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("NewSigner with mismatched halves: %v", err)
	}
}
