package authcore

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/descope/virtualwebauthn"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/passkeytest"
)

// The relying party newAuthService's issuer makes: its host and origin.
var testRP = virtualwebauthn.RelyingParty{Name: "bulwark", ID: "bulwark.test", Origin: "https://bulwark.test:8443"}

// passkey is a software authenticator holding one credential.
type passkey struct {
	auth virtualwebauthn.Authenticator
	cred virtualwebauthn.Credential
}

func newPasskey(userID string) *passkey {
	return &passkey{auth: virtualwebauthn.NewAuthenticatorWithOptions(virtualwebauthn.AuthenticatorOptions{UserHandle: []byte(userID)}),
		cred: passkeytest.NewEC2Credential()}
}

func optionsJSON(t testing.TB, c WebAuthnCeremony) string {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// attest answers a registration ceremony as the browser would, for rp.
func (k *passkey) attest(t testing.TB, rp virtualwebauthn.RelyingParty, c WebAuthnCeremony) []byte {
	t.Helper()
	o, err := virtualwebauthn.ParseAttestationOptions(optionsJSON(t, c))
	if err != nil {
		t.Fatal(err)
	}
	return []byte(virtualwebauthn.CreateAttestationResponse(rp, k.auth, k.cred, *o))
}

// assert answers an assertion ceremony for rp.
func (k *passkey) assert(t testing.TB, rp virtualwebauthn.RelyingParty, c WebAuthnCeremony) []byte {
	t.Helper()
	o, err := virtualwebauthn.ParseAssertionOptions(optionsJSON(t, c))
	if err != nil {
		t.Fatal(err)
	}
	return []byte(virtualwebauthn.CreateAssertionResponse(rp, k.auth, k.cred, *o))
}

func (k *passkey) id() string { return base64.RawURLEncoding.EncodeToString(k.cred.ID) }

// registerPasskey registers a new passkey for p's user.
func registerPasskey(t *testing.T, s *Service, p *Principal, name string) (*passkey, WebAuthnRegistered) {
	t.Helper()
	k := newPasskey(p.UserID)
	c, err := s.BeginWebAuthnRegistration(fromAddr, p, name)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := s.FinishWebAuthnRegistration(fromAddr, p, c.ChallengeID, k.attest(t, testRP, c))
	if err != nil {
		t.Fatal(err)
	}
	if reg.ID != k.id() || reg.Name != name {
		t.Fatalf("registered %+v, want id %s", reg, k.id())
	}
	return k, reg
}

// passkeyLogin signs alice in with her password and k as second factor.
func passkeyLogin(t *testing.T, s *Service, k *passkey) (Tokens, error) {
	t.Helper()
	c, err := s.BeginWebAuthnLogin(fromAddr, mfaLogin(t, s).Token)
	if err != nil {
		t.Fatal(err)
	}
	return s.FinishWebAuthnLogin(fromAddr, c.ChallengeID, k.assert(t, testRP, c))
}

func signCount(t *testing.T, s *Service, userID string) uint32 {
	t.Helper()
	m, err := s.factorsOf(userID)
	if err != nil || len(m.WebAuthn) != 1 {
		t.Fatalf("factors %+v, %v", m, err)
	}
	return m.WebAuthn[0].SignCount
}

// A passkey registered as the first factor comes with recovery codes and
// works as the second factor of a password login; the session's amr says
// so, and an assertion is good once.
func TestPasskeySecondFactor(t *testing.T) {
	s, _ := newAuthService(t, Config{})
	p := principalOf(t, s, login(t, s))
	k, reg := registerPasskey(t, s, p, "yubikey")
	if len(reg.RecoveryCodes) != recoveryCount {
		t.Fatalf("the first factor came with %d recovery codes", len(reg.RecoveryCodes))
	}
	ch := mfaLogin(t, s)
	if strings.Join(ch.Methods, " ") != "webauthn recovery_code" {
		t.Fatalf("methods %v", ch.Methods)
	}
	c, err := s.BeginWebAuthnLogin(fromAddr, ch.Token)
	if err != nil {
		t.Fatal(err)
	}
	if o := optionsJSON(t, c); !strings.Contains(o, k.id()) || !strings.Contains(o, `"rpId":"bulwark.test"`) {
		t.Fatalf("request options %s do not allow the passkey for bulwark.test", o)
	}
	k.cred.Counter = 1
	assertion := k.assert(t, testRP, c)
	tok, err := s.FinishWebAuthnLogin(fromAddr, c.ChallengeID, assertion)
	if err != nil {
		t.Fatal(err)
	}
	if amr := strings.Join(principalOf(t, s, tok).Claims.Amr, " "); amr != "pwd hwk mfa" {
		t.Fatalf("amr %q", amr)
	}
	if n := signCount(t, s, p.UserID); n != 1 {
		t.Fatalf("sign count %d after an assertion counting 1", n)
	}
	// The same assertion again: the ceremony's ticket is spent.
	if _, err := s.FinishWebAuthnLogin(fromAddr, c.ChallengeID, assertion); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("a replayed assertion: %v", err)
	}
	// A fresh ceremony, but a counter that did not grow: a clone.
	if _, err := passkeyLogin(t, s, k); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("an assertion whose counter did not grow: %v", err)
	}
	k.cred.Counter = 2
	if _, err := passkeyLogin(t, s, k); err != nil {
		t.Fatalf("the next assertion: %v", err)
	}
	info, err := s.MFAStatus(fromAddr, p)
	if err != nil || len(info.WebAuthn) != 1 || info.WebAuthn[0].Name != "yubikey" || info.WebAuthn[0].LastUsedAt == nil {
		t.Fatalf("status %+v, %v", info, err)
	}
	// The TOTP route does not take the mfa_token a passkey spent.
	if _, err := s.VerifyMFA(fromAddr, ch.Token, "recovery_code", reg.RecoveryCodes[0]); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("an mfa_token spent by a passkey, used again: %v", err)
	}
}

// A synced passkey (backup eligible: its key leaves the device) is a
// software-secured key in amr.
func TestPasskeySyncedIsSWK(t *testing.T) {
	s, _ := newAuthService(t, Config{})
	p := principalOf(t, s, login(t, s))
	k := newPasskey(p.UserID)
	k.auth.Options.BackupEligible, k.auth.Options.BackupState = true, true
	c, err := s.BeginWebAuthnRegistration(fromAddr, p, "icloud")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.FinishWebAuthnRegistration(fromAddr, p, c.ChallengeID, k.attest(t, testRP, c)); err != nil {
		t.Fatal(err)
	}
	tok, err := passkeyLogin(t, s, k)
	if err != nil {
		t.Fatal(err)
	}
	if amr := strings.Join(principalOf(t, s, tok).Claims.Amr, " "); amr != "pwd swk mfa" {
		t.Fatalf("amr %q", amr)
	}
}

// A discoverable passkey that verifies its user signs in without a
// password, and counts as a second factor.
func TestPasskeyPasswordless(t *testing.T) {
	s, clk := newAuthService(t, Config{RequireMFAForAdmin: true})
	p := principalOf(t, s, login(t, s))
	k, _ := registerPasskey(t, s, p, "phone")
	clk.Advance(time.Minute)

	c, err := s.BeginWebAuthnLogin(fromAddr, "")
	if err != nil {
		t.Fatal(err)
	}
	if o := optionsJSON(t, c); strings.Contains(o, "allowCredentials") || !strings.Contains(o, `"userVerification":"required"`) {
		t.Fatalf("passwordless options %s", o)
	}
	assertion := k.assert(t, testRP, c)
	tok, err := s.FinishWebAuthnLogin(fromAddr, c.ChallengeID, assertion)
	if err != nil {
		t.Fatal(err)
	}
	q := principalOf(t, s, tok)
	if amr := strings.Join(q.Claims.Amr, " "); amr != "hwk user mfa" || !q.IsAdmin() || s.StepUp(q) != nil {
		t.Fatalf("amr %q, admin %v", amr, q.IsAdmin())
	}
	// The ceremony is spent: the same assertion again is refused, and
	// counted (the counter of this authenticator stays 0).
	if _, err := s.FinishWebAuthnLogin(fromAddr, c.ChallengeID, assertion); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("a replayed passwordless assertion: %v", err)
	}
	// Without user verification: refused.
	c, err = s.BeginWebAuthnLogin(fromAddr, "")
	if err != nil {
		t.Fatal(err)
	}
	k.auth.Options.UserNotVerified = true
	if _, err := s.FinishWebAuthnLogin(fromAddr, c.ChallengeID, k.assert(t, testRP, c)); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("a passwordless assertion without UV: %v", err)
	}
	k.auth.Options.UserNotVerified = false
	// A credential nobody registered: refused, nothing recorded.
	stranger := newPasskey(p.UserID)
	if _, err := s.FinishWebAuthnLogin(fromAddr, c.ChallengeID, stranger.assert(t, testRP, c)); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("an unknown credential: %v", err)
	}
	// A user handle that is not the credential's owner: refused.
	k2 := *k
	k2.auth.Options.UserHandle = []byte("someone-else")
	if _, err := s.FinishWebAuthnLogin(fromAddr, c.ChallengeID, k2.assert(t, testRP, c)); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("another user handle: %v", err)
	}
	if _, err := s.FinishWebAuthnLogin(fromAddr, c.ChallengeID, k.assert(t, testRP, c)); err != nil {
		t.Fatalf("the passkey, after the refusals: %v", err)
	}
}

// Bad responses are refused and change nothing: no session, the sign
// counter as it was.
func TestPasskeyBadAssertions(t *testing.T) {
	s, clk := newAuthService(t, Config{MaxFailedAttempts: 50})
	p := principalOf(t, s, login(t, s))
	k, _ := registerPasskey(t, s, p, "key")
	k.cred.Counter = 7
	begin := func() WebAuthnCeremony {
		c, err := s.BeginWebAuthnLogin(fromAddr, mfaLogin(t, s).Token)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	other := begin()
	for _, tc := range []struct {
		name   string
		answer func(c WebAuthnCeremony) (string, []byte)
		want   error
	}{
		{"malformed JSON", func(c WebAuthnCeremony) (string, []byte) { return c.ChallengeID, []byte(`{"id":`) }, ErrInvalidInput},
		{"not a credential", func(c WebAuthnCeremony) (string, []byte) { return c.ChallengeID, []byte(`{}`) }, ErrInvalidInput},
		{"another origin", func(c WebAuthnCeremony) (string, []byte) {
			rp := testRP
			rp.Origin = "https://evil.test"
			return c.ChallengeID, k.assert(t, rp, c)
		}, ErrInvalidCredentials},
		{"another RP id", func(c WebAuthnCeremony) (string, []byte) {
			rp := testRP
			rp.ID = "evil.test"
			return c.ChallengeID, k.assert(t, rp, c)
		}, ErrInvalidCredentials},
		{"another ceremony's challenge", func(c WebAuthnCeremony) (string, []byte) {
			return c.ChallengeID, k.assert(t, testRP, other)
		}, ErrInvalidCredentials},
		{"an unknown credential", func(c WebAuthnCeremony) (string, []byte) {
			return c.ChallengeID, newPasskey(p.UserID).assert(t, testRP, c)
		}, ErrInvalidCredentials},
		{"a forged challenge id", func(c WebAuthnCeremony) (string, []byte) {
			id := []byte(c.ChallengeID)
			id[len(id)-3] ^= 1
			return string(id), k.assert(t, testRP, c)
		}, ErrInvalidInput},
		{"a registration's challenge id", func(c WebAuthnCeremony) (string, []byte) {
			r, err := s.BeginWebAuthnRegistration(fromAddr, principalOf(t, s, mustPasskeyLogin(t, s, k)), "second")
			if err != nil {
				t.Fatal(err)
			}
			return r.ChallengeID, k.assert(t, testRP, c)
		}, ErrInvalidInput},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, answer := tc.answer(begin())
			before := signCount(t, s, p.UserID)
			k.cred.Counter++
			tok, err := s.FinishWebAuthnLogin(fromAddr, id, answer)
			if !errors.Is(err, tc.want) || tok.AccessToken != "" {
				t.Fatalf("got %v, %+v; want %v", err, tok, tc.want)
			}
			if after := signCount(t, s, p.UserID); after != before {
				t.Fatalf("sign count %d → %d", before, after)
			}
		})
	}
	// Another client address, or too late: the ceremony is refused.
	c := begin()
	k.cred.Counter++
	elsewhere := WithRequestInfo(context.Background(), RequestInfo{IP: "198.51.100.1"})
	if _, err := s.FinishWebAuthnLogin(elsewhere, c.ChallengeID, k.assert(t, testRP, c)); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("a ceremony finished from another address: %v", err)
	}
	clk.Advance(ceremonyTTL)
	if _, err := s.FinishWebAuthnLogin(fromAddr, c.ChallengeID, k.assert(t, testRP, c)); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("an expired ceremony: %v", err)
	}
}

func mustPasskeyLogin(t *testing.T, s *Service, k *passkey) Tokens {
	t.Helper()
	k.cred.Counter++
	tok, err := passkeyLogin(t, s, k)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Failed assertions count toward the second factor's lockout.
func TestPasskeyFailuresLockTheSecondFactor(t *testing.T) {
	s, _ := newAuthService(t, Config{MaxFailedAttempts: 2})
	p := principalOf(t, s, login(t, s))
	k, _ := registerPasskey(t, s, p, "key")
	bad := testRP
	bad.Origin = "https://evil.test"
	for range 2 {
		c, err := s.BeginWebAuthnLogin(fromAddr, mfaLogin(t, s).Token)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.FinishWebAuthnLogin(fromAddr, c.ChallengeID, k.assert(t, bad, c)); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("a bad assertion: %v", err)
		}
	}
	k.cred.Counter++
	if _, err := passkeyLogin(t, s, k); !errors.Is(err, ErrTooManyAttempts) {
		t.Fatalf("a good assertion after 2 bad ones: %v, want locked", err)
	}
}

// Registration: a second passkey needs a recent second factor, a
// credential registers once, and rename and removal work (removal with
// step-up); the credential is sealed in the log.
func TestPasskeyRegistration(t *testing.T) {
	s, clk := newAuthService(t, Config{StepUpWindow: 10 * time.Minute})
	plain := principalOf(t, s, login(t, s))
	k, _ := registerPasskey(t, s, plain, "first")

	if _, err := s.BeginWebAuthnRegistration(fromAddr, plain, "thief"); !errors.Is(err, ErrStepUpRequired) {
		t.Fatalf("a password-only session adding a passkey: %v", err)
	}
	if _, err := s.BeginWebAuthnRegistration(fromAddr, plain, ""); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("an empty name: %v", err)
	}
	fresh := principalOf(t, s, mustPasskeyLogin(t, s, k))
	c, err := s.BeginWebAuthnRegistration(fromAddr, fresh, "again")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(optionsJSON(t, c), k.id()) {
		t.Fatal("the registration options do not exclude the registered passkey")
	}
	// The same authenticator again (a client ignoring the exclusion).
	if _, err := s.FinishWebAuthnRegistration(fromAddr, fresh, c.ChallengeID, k.attest(t, testRP, c)); !errors.Is(err, ErrConflict) {
		t.Fatalf("a credential registered twice: %v", err)
	}
	// Another origin; another challenge; malformed.
	k2 := newPasskey(fresh.UserID)
	evil := testRP
	evil.Origin = "https://evil.test"
	if _, err := s.FinishWebAuthnRegistration(fromAddr, fresh, c.ChallengeID, k2.attest(t, evil, c)); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("an attestation for another origin: %v", err)
	}
	c2, err := s.BeginWebAuthnRegistration(fromAddr, fresh, "again")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.FinishWebAuthnRegistration(fromAddr, fresh, c.ChallengeID, k2.attest(t, testRP, c2)); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("an attestation for another challenge: %v", err)
	}
	if _, err := s.FinishWebAuthnRegistration(fromAddr, fresh, c.ChallengeID, []byte("[1,2")); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("malformed: %v", err)
	}
	// Another user's session finishing alice's ceremony.
	if _, err := s.CreateUser(fromAddr, NewUser{Username: "bob", Password: pw}); err != nil {
		t.Fatal(err)
	}
	bobTok, err := s.Login(fromAddr, "bob", pw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.FinishWebAuthnRegistration(fromAddr, principalOf(t, s, bobTok), c2.ChallengeID, k2.attest(t, testRP, c2)); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("bob finishing alice's registration: %v", err)
	}
	reg, err := s.FinishWebAuthnRegistration(fromAddr, fresh, c2.ChallengeID, k2.attest(t, testRP, c2))
	if err != nil || reg.RecoveryCodes != nil {
		t.Fatalf("a second passkey: %+v, %v (no new recovery codes)", reg, err)
	}

	if err := s.RenameWebAuthn(fromAddr, plain, reg.ID, "laptop"); err != nil {
		t.Fatal(err)
	}
	if err := s.RenameWebAuthn(fromAddr, plain, "nope", "laptop"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("renaming an unknown passkey: %v", err)
	}
	if err := s.RemoveWebAuthn(fromAddr, plain, reg.ID); !errors.Is(err, ErrStepUpRequired) {
		t.Fatalf("a password-only session removing a passkey: %v", err)
	}
	clk.Advance(11 * time.Minute)
	if err := s.RemoveWebAuthn(fromAddr, fresh, reg.ID); !errors.Is(err, ErrStepUpRequired) {
		t.Fatalf("a stale second factor removing a passkey: %v", err)
	}
	fresh = principalOf(t, s, mustPasskeyLogin(t, s, k))
	if err := s.RemoveWebAuthn(fromAddr, fresh, reg.ID); err != nil {
		t.Fatal(err)
	}
	info, err := s.MFAStatus(fromAddr, fresh)
	if err != nil || len(info.WebAuthn) != 1 || info.WebAuthn[0].ID != k.id() {
		t.Fatalf("after removal: %+v, %v", info, err)
	}
	// The credential's public key is not in the record in plain form.
	m, err := s.factorsOf(fresh.UserID)
	if err != nil {
		t.Fatal(err)
	}
	if pub := k.cred.Key.AttestationData(); bytes.Contains(m.WebAuthn[0].Sealed, pub) {
		t.Fatal("the stored credential holds its public key in plain form")
	}
	// Audited: add, rename, remove.
	var types []string
	if err := s.store.View(func(r fsm.Reader) error {
		return r.AuditAfter(0, 1000, func(e *fsm.AuditEntry) bool {
			if strings.HasPrefix(e.Type, "mfa.webauthn.") {
				types = append(types, e.Type)
			}
			return true
		})
	}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(types, " "); got != "mfa.webauthn.add mfa.webauthn.add mfa.webauthn.rename mfa.webauthn.remove" {
		t.Fatalf("audit %q", got)
	}
}

// A ceremony begun on one member finishes on another: the second holds
// the same data key and store, and nothing of the first's memory.
func TestPasskeyCeremonyAcrossMembers(t *testing.T) {
	s, clk := newAuthService(t, Config{})
	p := principalOf(t, s, login(t, s))
	k, _ := registerPasskey(t, s, p, "key")
	other, err := New(s.store, s.cfg, WithClock(clk), WithSigner(s.currentSigner()), WithSecretBox(testBox(t)))
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.BeginWebAuthnLogin(fromAddr, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.FinishWebAuthnLogin(fromAddr, c.ChallengeID, k.assert(t, testRP, c)); err != nil {
		t.Fatalf("finishing on another member: %v", err)
	}
	// A member with another data key opens nothing.
	box, err := NewSecretBox(bytes.Repeat([]byte{8}, 32))
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := New(s.store, s.cfg, WithClock(clk), WithSigner(s.currentSigner()), WithSecretBox(box))
	if err != nil {
		t.Fatal(err)
	}
	c, err = s.BeginWebAuthnLogin(fromAddr, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stranger.FinishWebAuthnLogin(fromAddr, c.ChallengeID, k.assert(t, testRP, c)); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("a ceremony opened under another key: %v", err)
	}
}

// FuzzWebAuthnFinish feeds raw bytes to what a finish decodes from the
// client before anything else: the credential (as an assertion and as an
// attestation) and the challenge_id. No panic; a refusal is ErrInvalidInput
// (a 400).
func FuzzWebAuthnFinish(f *testing.F) {
	s := &Service{box: testBox(f), clock: newClock()}
	f.Add([]byte(`{}`))
	f.Add([]byte(ceremonyPrefix + "AQID"))
	// Well-formed answers of the software authenticator.
	k := newPasskey("user")
	challenge := bytes.Repeat([]byte{1}, 32)
	f.Add([]byte(virtualwebauthn.CreateAttestationResponse(testRP, k.auth, k.cred,
		virtualwebauthn.AttestationOptions{Challenge: challenge, RelyingPartyID: testRP.ID, UserID: "user"})))
	f.Add([]byte(virtualwebauthn.CreateAssertionResponse(testRP, k.auth, k.cred,
		virtualwebauthn.AssertionOptions{Challenge: challenge, RelyingPartyID: testRP.ID})))
	f.Add([]byte(`{"id":"AA","rawId":"AA","type":"public-key","response":{"clientDataJSON":"e30","authenticatorData":"AA","signature":"AA"}}`))
	f.Add([]byte(`{"id":"AA","rawId":"AA","type":"public-key","response":{"clientDataJSON":"e30","attestationObject":"oA"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if p, err := parseAssertion(b); err == nil && p == nil {
			t.Fatal("parseAssertion: nil and no error")
		} else if err != nil && !errors.Is(err, ErrInvalidInput) {
			t.Fatalf("parseAssertion: %v", err)
		}
		if p, err := parseAttestation(b); err == nil && p == nil {
			t.Fatal("parseAttestation: nil and no error")
		} else if err != nil && !errors.Is(err, ErrInvalidInput) {
			t.Fatalf("parseAttestation: %v", err)
		}
		if _, err := s.openCeremony(string(b), ceremonyPasswordless, RequestInfo{}); !errors.Is(err, ErrInvalidInput) {
			t.Fatalf("openCeremony: %v", err)
		}
	})
}

// The relying party: configured, or the issuer's host and origin; an
// issuer on an IP address leaves passkeys off (a clear 503), a bad
// configured RP id stops the service from starting.
func TestPasskeyRelyingPartyConfig(t *testing.T) {
	s, _ := newAuthService(t, Config{})
	if s.rp == nil || s.rp.Config.RPID != "bulwark.test" || !slices.Equal(s.rp.Config.RPOrigins, []string{"https://bulwark.test:8443"}) {
		t.Fatalf("default relying party %+v", s.rp)
	}
	cfg := s.cfg
	cfg.Issuer, cfg.Audience = "https://127.0.0.1:8443", ""
	ip, err := New(s.store, cfg, WithSecretBox(testBox(t)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ip.BeginWebAuthnLogin(fromAddr, ""); !errors.Is(err, ErrPasskeysUnavailable) {
		t.Fatalf("passkeys on an IP issuer without webauthn_rp_id: %v", err)
	}
	cfg.WebAuthnRPID, cfg.WebAuthnOrigins = "id.example.com", []string{"https://id.example.com"}
	set, err := New(s.store, cfg, WithSecretBox(testBox(t)))
	if err != nil || set.rp.Config.RPID != "id.example.com" || !slices.Equal(set.rp.Config.RPOrigins, cfg.WebAuthnOrigins) {
		t.Fatalf("configured relying party: %v", err)
	}
	cfg.WebAuthnRPID = "10.0.0.1"
	if _, err := New(s.store, cfg, WithSecretBox(testBox(t))); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("an IP address as webauthn_rp_id: %v", err)
	}
}

// Sudo mode: a user without factors adds a first passkey only from a
// recent sign-in.
func TestPasskeyFirstFactorNeedsRecentSignIn(t *testing.T) {
	s, clk := newAuthService(t, Config{StepUpWindow: 10 * time.Minute})
	old := principalOf(t, s, login(t, s))
	clk.Advance(11 * time.Minute)
	if _, err := s.BeginWebAuthnRegistration(fromAddr, old, "key"); !errors.Is(err, ErrStepUpRequired) {
		t.Fatalf("a first passkey from an 11-minute-old sign-in: %v", err)
	}
	registerPasskey(t, s, principalOf(t, s, login(t, s)), "key")
}

// During an incident lockdown a passkey signs in an administrator (it is
// a second factor) and nobody else.
func TestPasskeyDuringLockdown(t *testing.T) {
	s, _ := newAuthService(t, Config{})
	admin := principalOf(t, s, login(t, s)) // alice is an admin
	k, _ := registerPasskey(t, s, admin, "key")
	if _, err := s.CreateUser(fromAddr, NewUser{Username: "bob", Password: pw}); err != nil {
		t.Fatal(err)
	}
	bobTok, err := s.Login(fromAddr, "bob", pw)
	if err != nil {
		t.Fatal(err)
	}
	bob := principalOf(t, s, bobTok)
	kb, _ := registerPasskey(t, s, bob, "bob's key")
	if _, err := s.Lockdown(fromAddr, "test"); err != nil {
		t.Fatal(err)
	}
	passwordless := func(k *passkey) error {
		c, err := s.BeginWebAuthnLogin(fromAddr, "")
		if err != nil {
			t.Fatal(err)
		}
		k.cred.Counter++
		_, err = s.FinishWebAuthnLogin(fromAddr, c.ChallengeID, k.assert(t, testRP, c))
		return err
	}
	if err := passwordless(kb); !errors.Is(err, ErrLockedDown) {
		t.Fatalf("a user's passkey during a lockdown: %v", err)
	}
	if err := passwordless(k); err != nil {
		t.Fatalf("an administrator's passkey during a lockdown: %v", err)
	}
}
