// Package passkeytest makes software passkeys for tests.
package passkeytest

import (
	"crypto/ecdsa"
	"crypto/x509"

	"github.com/descope/virtualwebauthn"
)

// NewEC2Credential is virtualwebauthn.NewCredential(KeyTypeEC2) with
// coordinates of full length. The library encodes a P-256 key's x and y
// without their leading zero bytes (big.Int.Bytes), so about one key in
// 128 reaches the relying party 31 bytes long and is rightly refused
// ("EC2 key x or y coordinate has invalid length"); a test that drew one
// would fail by chance. An authenticator that follows the spec always
// sends 32 bytes.
func NewEC2Credential() virtualwebauthn.Credential {
	for {
		c := virtualwebauthn.NewCredential(virtualwebauthn.KeyTypeEC2)
		k, err := x509.ParsePKCS8PrivateKey(c.Key.Data)
		if err != nil {
			panic("passkeytest: the library's own key does not parse: " + err.Error())
		}
		pub := k.(*ecdsa.PrivateKey).PublicKey
		if len(pub.X.Bytes()) == 32 && len(pub.Y.Bytes()) == 32 { //nolint:staticcheck // the library encodes the coordinates so
			return c
		}
	}
}
