package authcore

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// SecretBox keeps secrets of the replicated state under the cluster data
// key, the one key every member shares (DESIGN.md, "Keys and sealing"):
// a TOTP secret or a WebAuthn credential is sealed before it is proposed,
// so neither the Raft log, snapshots, state.db nor backups hold it in
// plain form; and tokens any member must verify (an mfa_token, a WebAuthn
// ceremony) and recovery-code hashes are MACs under it, so a copy of
// state.db without the key gives an attacker nothing to guess against
// offline. Each purpose uses its own key, derived with HKDF-SHA256.
type SecretBox struct {
	keys map[string][]byte
}

// Purposes of the SecretBox's keys. A sealed value or MAC of one purpose
// never verifies as another's.
const (
	purposeTOTP     = "totp secret"
	purposeWebAuthn = "webauthn credential"
	purposeTicket   = "mfa ticket"
	purposeRecovery = "recovery code"
	purposeCeremony = "webauthn ceremony"
	purposePoW      = "pow challenge"
	purposeDevice   = "device token"
	// purposeClientSecret MACs OpenID Connect client secrets (oidc.go).
	purposeClientSecret = "oidc client secret"
	// purposeRefresh MACs refresh tokens that name their session
	// (refresh_token.go).
	purposeRefresh = "refresh token"
)

var purposes = []string{purposeTOTP, purposeWebAuthn, purposeTicket, purposeRecovery, purposeCeremony, purposePoW, purposeDevice,
	purposeClientSecret, purposeRefresh}

// sealVersion is the first byte of a sealed value: AES-256-GCM with a
// random 96-bit nonce under the purpose's key.
const sealVersion = 1

// errSealed: a sealed value that does not open (another key, altered).
var errSealed = errors.New("authcore: sealed value does not open under the cluster data key")

// NewSecretBox derives the purposes' keys from the cluster data key
// (32 bytes); the caller may clear dataKey afterwards.
func NewSecretBox(dataKey []byte) (*SecretBox, error) {
	if len(dataKey) != 32 {
		return nil, fmt.Errorf("authcore: the data key is %d bytes, want 32", len(dataKey))
	}
	b := &SecretBox{keys: make(map[string][]byte, len(purposes))}
	for _, p := range purposes {
		k, err := hkdf.Key(sha256.New, dataKey, nil, "bulwark "+p, 32)
		if err != nil {
			return nil, err
		}
		b.keys[p] = k
	}
	return b, nil
}

func (b *SecretBox) aead(purpose string) (cipher.AEAD, error) {
	k, ok := b.keys[purpose]
	if !ok {
		return nil, fmt.Errorf("authcore: no key for %q", purpose)
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal encrypts plaintext for purpose, bound to ad (the owner's user id):
// a value copied to another user does not open.
func (b *SecretBox) seal(purpose string, ad, plaintext []byte) ([]byte, error) {
	g, err := b.aead(purpose)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+g.NonceSize(), 1+g.NonceSize()+len(plaintext)+g.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, err
	}
	return g.Seal(out, out[1:], plaintext, ad), nil
}

// open reverses seal.
func (b *SecretBox) open(purpose string, ad, sealed []byte) ([]byte, error) {
	g, err := b.aead(purpose)
	if err != nil {
		return nil, err
	}
	if len(sealed) < 1+g.NonceSize()+g.Overhead() || sealed[0] != sealVersion {
		return nil, errSealed
	}
	n := 1 + g.NonceSize()
	pt, err := g.Open(nil, sealed[1:n], sealed[n:], ad)
	if err != nil {
		return nil, errSealed
	}
	return pt, nil
}

// mac is HMAC-SHA256 of msg under purpose's key.
func (b *SecretBox) mac(purpose string, msg []byte) []byte {
	h := hmac.New(sha256.New, b.keys[purpose])
	h.Write(msg)
	return h.Sum(nil)
}
