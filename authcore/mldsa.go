package authcore

import (
	"crypto"
	"crypto/rand"
	"fmt"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/golang-jwt/jwt/v5"
)

// ML-DSA-65 (FIPS 204) for JOSE, as RFC 9964 (draft-ietf-cose-dilithium)
// defines it: the JWS signature is ML-DSA.Sign over the JWS signing input
// with an empty context string, and the JWK is
//
//	{"kty":"AKP","alg":"ML-DSA-65","pub":"<base64url of the 1952-byte key>"}
//
// whose RFC 7638 thumbprint covers alg, kty and pub. The private member
// "priv" (the seed) is never published: PublicFromJWK refuses it.

// SigningMethodMLDSA65 is the jwt.SigningMethod for alg "ML-DSA-65". It is
// registered with jwt so that its parser can look the alg up; as for the
// built-in methods, VerifyAccessToken accepts it only for a kid whose
// published alg is ML-DSA-65.
var SigningMethodMLDSA65 jwt.SigningMethod = mldsa65Method{}

func init() {
	jwt.RegisterSigningMethod(AlgMLDSA65, func() jwt.SigningMethod { return SigningMethodMLDSA65 })
}

type mldsa65Method struct{}

func (mldsa65Method) Alg() string { return AlgMLDSA65 }

// Verify checks sig over signingString with key, a *mldsa65.PublicKey.
func (mldsa65Method) Verify(signingString string, sig []byte, key any) error {
	pub, ok := key.(*mldsa65.PublicKey)
	if !ok || pub == nil {
		return fmt.Errorf("%w: %s needs a *mldsa65.PublicKey, not %T", jwt.ErrInvalidKeyType, AlgMLDSA65, key)
	}
	if len(sig) != mldsa65.SignatureSize || !mldsa65.Verify(pub, []byte(signingString), nil, sig) {
		return jwt.ErrSignatureInvalid
	}
	return nil
}

// Sign signs signingString with key, a crypto.Signer whose public half is
// a *mldsa65.PublicKey (circl's *mldsa65.PrivateKey, or a key held
// elsewhere). crypto.Hash(0) asks for ML-DSA over the message itself
// with an empty context, which is what circl's Signer does.
func (mldsa65Method) Sign(signingString string, key any) ([]byte, error) {
	k, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: %T is not a crypto.Signer", ErrInvalidKey, key)
	}
	if _, ok := k.Public().(*mldsa65.PublicKey); !ok {
		return nil, fmt.Errorf("%w: %s needs an ML-DSA-65 key, not %T", ErrInvalidKey, AlgMLDSA65, k.Public())
	}
	sig, err := k.Sign(rand.Reader, []byte(signingString), crypto.Hash(0))
	if err != nil {
		return nil, err
	}
	if len(sig) != mldsa65.SignatureSize {
		return nil, fmt.Errorf("%w: %s signature of %d bytes", ErrInvalidKey, AlgMLDSA65, len(sig))
	}
	return sig, nil
}

// mldsa65Public decodes the "pub" member of an AKP JWK.
func mldsa65Public(b []byte) (*mldsa65.PublicKey, error) {
	if len(b) != mldsa65.PublicKeySize {
		return nil, fmt.Errorf("member \"pub\" is not %d base64url bytes", mldsa65.PublicKeySize)
	}
	pub := new(mldsa65.PublicKey)
	if err := pub.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	return pub, nil
}
