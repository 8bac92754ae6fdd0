// Package auditsig verifies the signatures of audit checkpoints
// (fsm.SignatureCheck): the one check the daemon (authcore) and the
// offline verifier (node) share, kept here because neither may import the
// other and fsm carries no ML-DSA.
package auditsig

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"

	"github.com/bulwark-auth/bulwark/fsm"
)

// Check verifies a checkpoint signature: ES256 as ASN.1 DER over the
// SHA-256 of msg with the key's P-256 SubjectPublicKeyInfo; ML-DSA-65
// over msg itself, empty context.
func Check(k *fsm.AuditPublicKey, msg, sig []byte) error {
	switch k.Alg {
	case fsm.AuditAlgES256:
		pub, err := x509.ParsePKIXPublicKey(k.Public)
		if err != nil {
			return fmt.Errorf("the recorded key does not parse: %w", err)
		}
		ec, ok := pub.(*ecdsa.PublicKey)
		if !ok || ec.Curve != elliptic.P256() {
			return fmt.Errorf("the recorded key is a %T, not P-256", pub)
		}
		sum := sha256.Sum256(msg)
		if !ecdsa.VerifyASN1(ec, sum[:], sig) {
			return errors.New("ECDSA verification failed")
		}
		return nil
	case fsm.AuditAlgMLDSA65:
		var pub mldsa65.PublicKey
		if err := pub.UnmarshalBinary(k.Public); err != nil {
			return fmt.Errorf("the recorded key does not parse: %w", err)
		}
		if len(sig) != mldsa65.SignatureSize || !mldsa65.Verify(&pub, msg, nil, sig) {
			return errors.New("ML-DSA-65 verification failed")
		}
		return nil
	}
	return fmt.Errorf("unknown algorithm %q", k.Alg)
}
