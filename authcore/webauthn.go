package authcore

// Passkeys and security keys (WebAuthn, with github.com/go-webauthn/webauthn):
// registration by a signed-in user, and assertion as a second factor (after
// a password, bound to its mfa_token) or as a passwordless first factor
// (a discoverable credential that verified its user).
//
// Ceremony state lives in the ceremony's id, not on the node that began
// it: challenge_id is go-webauthn's SessionData, with the ceremony's kind,
// user, client address and expiry, sealed under the cluster data key
// (purposeCeremony). Any member opens it, so a ceremony begun on one node
// finishes on another, and nothing is written until it finishes. A sealed
// ceremony cannot be altered or forged; its single use is enforced by the
// log: an assertion's session.create v3 carries a ticket (the mfa_token's,
// or a hash of the ceremony's challenge) that Apply accepts once, and a
// registration's mfa.webauthn.add refuses a credential id already known.
//
// Authentication methods (RFC 8176) of a session begun with a passkey:
// "hwk" (proof of possession of a key held by an authenticator) or, when
// the authenticator says the credential is backed up (the BE flag: a
// synced passkey, whose private key leaves the device), "swk". Attestation
// is not asked for, so "hwk" is the authenticator's class, not a proven
// fact. As a second factor: pwd, hwk|swk, mfa. Passwordless, the assertion
// must carry the UV flag (the authenticator checked a PIN or biometric):
// hwk|swk, user, mfa. A user-verifying passkey is two factors in one
// (possession of the authenticator and the PIN or body that unlocks it;
// NIST SP 800-63B's multi-factor cryptographic authenticator), so such a
// session counts as a second factor for require_mfa_for_admin and step-up.
// RFC 8176 has no value for "PIN or biometric, not told which": "user" is
// the closest (the user took part in the authentication).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/bulwark-auth/bulwark/fsm"
)

// ceremonyTTL is how long a WebAuthn ceremony may take, begin to finish.
const ceremonyTTL = 5 * time.Minute

// ceremonyPrefix marks challenge ids.
const ceremonyPrefix = "bwc_"

// maxChallengeID bounds a challenge id (a sealed ceremony holds no list of
// credentials: it stays small) and maxCredentialJSON a client's
// credential response, before either is decoded.
const (
	maxChallengeID    = 2048
	maxCredentialJSON = 32 << 10
)

// rpDisplayName is the relying party's name authenticators show.
const rpDisplayName = "bulwark"

// Ceremony kinds: the AD of the sealed ceremony, so one kind never opens
// as another.
const (
	ceremonyRegister     = "register"
	ceremonySecond       = "second factor"
	ceremonyPasswordless = "passwordless"
)

// ceremony is the content of a challenge_id.
type ceremony struct {
	Kind    string `json:"k"`
	UserID  string `json:"u,omitempty"`
	Name    string `json:"nm,omitempty"` // registration: the new credential's name
	IP      string `json:"ip"`
	Expires int64  `json:"e"` // Unix ns
	// Second factor: the mfa_token's password generation, nonce and
	// expiry (the ticket the session spends).
	PwdGen        uint64               `json:"g,omitempty"`
	Nonce         string               `json:"n,omitempty"`
	TicketExpires int64                `json:"te,omitempty"`
	Session       webauthn.SessionData `json:"s"`
}

// WebAuthnCeremony answers a begin: the ceremony's id, to send back with
// the authenticator's response, and the options for
// navigator.credentials.create or .get.
type WebAuthnCeremony struct {
	ChallengeID string `json:"challenge_id"`
	PublicKey   any    `json:"publicKey"`
}

// WebAuthnRegistered answers a finished registration. RecoveryCodes is
// set when the passkey is the user's first second factor: they had none
// to stand in for it (shown once).
type WebAuthnRegistered struct {
	ID            string   `json:"id"`
	Name          string   `json:"name"`
	RecoveryCodes []string `json:"recovery_codes,omitempty"`
}

// newRelyingParty builds the WebAuthn relying party from cfg: the RP id
// and origins configured, or the issuer's host and origin. An RP id that
// was configured and does not work is an error; one that came from the
// issuer (an IP address, say) leaves passkeys off, with a warning.
func (s *Service) newRelyingParty() error {
	rpID, origins := s.cfg.WebAuthnRPID, s.cfg.WebAuthnOrigins
	if rpID == "" || len(origins) == 0 {
		u, err := url.Parse(s.cfg.Issuer)
		if err == nil && u.Hostname() != "" {
			rpID = cmpOr(rpID, strings.ToLower(u.Hostname()))
			if len(origins) == 0 {
				origins = []string{u.Scheme + "://" + u.Host}
			}
		}
	}
	rp, err := webauthn.New(&webauthn.Config{RPID: rpID, RPDisplayName: rpDisplayName, RPOrigins: origins,
		AttestationPreference: protocol.PreferNoAttestation})
	if err != nil {
		if s.cfg.WebAuthnRPID != "" {
			return fmt.Errorf("%w: mfa.webauthn_rp_id %q: %v", ErrInvalidInput, s.cfg.WebAuthnRPID, err)
		}
		s.log.Warn("passkeys are off: the issuer's host is no WebAuthn relying-party id; set mfa.webauthn_rp_id",
			"issuer", s.cfg.Issuer, "error", err)
		return nil
	}
	s.rp = rp
	return nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// passkeysReady refuses when passkeys cannot work on this node.
func (s *Service) passkeysReady() error {
	switch {
	case s.box == nil:
		return fmt.Errorf("%w: second factors need the cluster data key", ErrMFAUnavailable)
	case s.rp == nil:
		return fmt.Errorf("%w: set mfa.webauthn_rp_id", ErrPasskeysUnavailable)
	case !s.proposable(fsm.TypeWebAuthnAdd, 1):
		return fmt.Errorf("%w: the cluster is below feature level 4", ErrMFAUnavailable)
	}
	return nil
}

// waUser is a user as go-webauthn sees it: the user handle is the user id.
type waUser struct {
	u     *fsm.User
	creds []webauthn.Credential
}

func (w *waUser) WebAuthnID() []byte                         { return []byte(w.u.ID) }
func (w *waUser) WebAuthnName() string                       { return w.u.Username }
func (w *waUser) WebAuthnDisplayName() string                { return w.u.Username }
func (w *waUser) WebAuthnCredentials() []webauthn.Credential { return w.creds }

// credentialsOf opens a user's credentials for verifying, each with the
// sign counter the log holds (the sealed copy's is the one at
// registration).
func (s *Service) credentialsOf(userID string, m *fsm.MFA) []webauthn.Credential {
	var out []webauthn.Credential
	for _, w := range m.WebAuthn {
		pt, err := s.box.open(purposeWebAuthn, []byte(userID), w.Sealed)
		if err != nil {
			s.log.Error("a WebAuthn credential does not open under the data key", "user", userID, "credential", w.ID, "error", err)
			continue
		}
		var c webauthn.Credential
		if err := json.Unmarshal(pt, &c); err != nil {
			s.log.Error("a WebAuthn credential does not decode", "user", userID, "credential", w.ID, "error", err)
			continue
		}
		c.Authenticator.SignCount = w.SignCount
		out = append(out, c)
	}
	return out
}

// descriptors lists a user's credential ids for excludeCredentials or
// allowCredentials (no secret needed: the ids are in the log in clear).
func descriptors(m *fsm.MFA) []protocol.CredentialDescriptor {
	var out []protocol.CredentialDescriptor
	for _, w := range m.WebAuthn {
		id, err := base64.RawURLEncoding.DecodeString(w.ID)
		if err != nil {
			continue
		}
		out = append(out, protocol.CredentialDescriptor{Type: protocol.PublicKeyCredentialType, CredentialID: id})
	}
	return out
}

// sealCeremony makes a challenge id of c.
func (s *Service) sealCeremony(c ceremony) (string, error) {
	body, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	sealed, err := s.box.seal(purposeCeremony, []byte(c.Kind), body)
	if err != nil {
		return "", err
	}
	id := ceremonyPrefix + base64.RawURLEncoding.EncodeToString(sealed)
	if len(id) > maxChallengeID {
		return "", fmt.Errorf("authcore: a ceremony of %d bytes", len(id))
	}
	return id, nil
}

// openCeremony opens a challenge id of kind for the client ri: it must
// open under the data key, be unexpired and come from the address that
// began it.
func (s *Service) openCeremony(id, kind string, ri RequestInfo) (ceremony, error) {
	var c ceremony
	bad := fmt.Errorf("%w: the challenge_id is invalid, expired or from another client; begin again", ErrInvalidInput)
	rest, ok := strings.CutPrefix(id, ceremonyPrefix)
	if !ok || len(id) > maxChallengeID {
		return c, bad
	}
	sealed, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return c, bad
	}
	body, err := s.box.open(purposeCeremony, []byte(kind), sealed)
	if err != nil || json.Unmarshal(body, &c) != nil || c.Kind != kind {
		return c, bad
	}
	if s.now().UnixNano() >= c.Expires || c.IP != ri.IP {
		return c, bad
	}
	// The expiry that counts is ours, on the service's clock; go-webauthn
	// would read the wall clock.
	c.Session.Expires = time.Time{}
	return c, nil
}

// parseAssertion decodes a client's assertion (navigator.credentials.get's
// PublicKeyCredential as JSON); malformed input is ErrInvalidInput.
func parseAssertion(raw []byte) (*protocol.ParsedCredentialAssertionData, error) {
	if len(raw) == 0 || len(raw) > maxCredentialJSON {
		return nil, fmt.Errorf("%w: credential must be a PublicKeyCredential of at most %d bytes", ErrInvalidInput, maxCredentialJSON)
	}
	p, err := protocol.ParseCredentialRequestResponseBytes(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: credential is not a WebAuthn assertion: %s", ErrInvalidInput, waReason(err))
	}
	return p, nil
}

// parseAttestation decodes a client's new credential
// (navigator.credentials.create's PublicKeyCredential as JSON).
func parseAttestation(raw []byte) (*protocol.ParsedCredentialCreationData, error) {
	if len(raw) == 0 || len(raw) > maxCredentialJSON {
		return nil, fmt.Errorf("%w: credential must be a PublicKeyCredential of at most %d bytes", ErrInvalidInput, maxCredentialJSON)
	}
	p, err := protocol.ParseCredentialCreationResponseBytes(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: credential is not a WebAuthn attestation: %s", ErrInvalidInput, waReason(err))
	}
	return p, nil
}

// waReason is a go-webauthn error's reason, fit for a client.
func waReason(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) && pe.Details != "" {
		return fsm.CleanAuditText(pe.Details, 200)
	}
	return "it does not decode"
}

// validName checks a credential's name as mfa.webauthn.add will.
func validName(name string) error {
	if name == "" || len(name) > fsm.MaxFactorNameBytes || fsm.CleanAuditText(name, fsm.MaxFactorNameBytes) != name {
		return fmt.Errorf("%w: name must be 1 to %d printable bytes", ErrInvalidInput, fsm.MaxFactorNameBytes)
	}
	return nil
}

// registrationParams are the key types bulwark accepts: what every
// authenticator offers, and keys small enough to seal within
// fsm.MaxSealedBytes.
var registrationParams = []protocol.CredentialParameter{
	{Type: protocol.PublicKeyCredentialType, Algorithm: webauthncose.AlgES256},
	{Type: protocol.PublicKeyCredentialType, Algorithm: webauthncose.AlgEdDSA},
	{Type: protocol.PublicKeyCredentialType, Algorithm: webauthncose.AlgRS256},
}

// BeginWebAuthnRegistration starts registering a passkey named name for
// the caller. A caller who already has a second factor needs a recent one,
// and one who has none a recent sign-in (StepUpToEnrol: a stolen session
// must not add the thief's key).
func (s *Service) BeginWebAuthnRegistration(ctx context.Context, p *Principal, name string) (WebAuthnCeremony, error) {
	if err := s.passkeysReady(); err != nil {
		return WebAuthnCeremony{}, err
	}
	if err := validName(name); err != nil {
		return WebAuthnCeremony{}, err
	}
	if err := s.StepUpToEnrol(p); err != nil {
		return WebAuthnCeremony{}, err
	}
	u, err := s.userByID(p.UserID)
	if err != nil {
		return WebAuthnCeremony{}, err
	}
	m, err := s.factorsOf(u.ID)
	if err != nil {
		return WebAuthnCeremony{}, err
	}
	if len(m.WebAuthn) >= fsm.MaxWebAuthnPerUser {
		return WebAuthnCeremony{}, fmt.Errorf("%w: at most %d passkeys per user; remove one first", ErrConflict, fsm.MaxWebAuthnPerUser)
	}
	creation, sd, err := s.rp.BeginRegistration(&waUser{u: u},
		webauthn.WithExclusions(descriptors(m)),
		webauthn.WithCredentialParameters(registrationParams),
		webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{UserVerification: protocol.VerificationPreferred}),
		webauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementPreferred))
	if err != nil {
		return WebAuthnCeremony{}, err
	}
	id, err := s.sealCeremony(ceremony{Kind: ceremonyRegister, UserID: u.ID, Name: name, IP: requestInfo(ctx).IP,
		Expires: s.now().Add(ceremonyTTL).UnixNano(), Session: *sd})
	if err != nil {
		return WebAuthnCeremony{}, err
	}
	return WebAuthnCeremony{ChallengeID: id, PublicKey: creation.Response}, nil
}

// FinishWebAuthnRegistration verifies the authenticator's new credential
// against the ceremony challengeID and registers it, sealed. The first
// second factor of a user comes with recovery codes.
func (s *Service) FinishWebAuthnRegistration(ctx context.Context, p *Principal, challengeID string, credential []byte) (WebAuthnRegistered, error) {
	if err := s.passkeysReady(); err != nil {
		return WebAuthnRegistered{}, err
	}
	parsed, err := parseAttestation(credential)
	if err != nil {
		return WebAuthnRegistered{}, err
	}
	ri := requestInfo(ctx)
	c, err := s.openCeremony(challengeID, ceremonyRegister, ri)
	if err != nil {
		return WebAuthnRegistered{}, err
	}
	if c.UserID != p.UserID {
		return WebAuthnRegistered{}, fmt.Errorf("%w: the challenge_id is another user's; begin again", ErrInvalidInput)
	}
	if err := s.StepUpToEnrol(p); err != nil { // a factor added since begin, or time gone by
		return WebAuthnRegistered{}, err
	}
	u, err := s.userByID(p.UserID)
	if err != nil {
		return WebAuthnRegistered{}, err
	}
	cred, err := s.rp.CreateCredential(&waUser{u: u}, c.Session, parsed)
	if err != nil {
		return WebAuthnRegistered{}, fmt.Errorf("%w: the new passkey does not verify: %s", ErrInvalidInput, waReason(err))
	}
	// What verifying an assertion needs; the attestation (certificates,
	// unchecked: none was asked for) stays out of the log.
	cred.Attestation = webauthn.CredentialAttestation{}
	data, err := json.Marshal(cred)
	if err != nil {
		return WebAuthnRegistered{}, err
	}
	sealed, err := s.box.seal(purposeWebAuthn, []byte(u.ID), data)
	clear(data)
	if err != nil {
		return WebAuthnRegistered{}, err
	}
	credID := base64.RawURLEncoding.EncodeToString(cred.ID)
	if len(sealed) > fsm.MaxSealedBytes || len(credID) > 2*fsm.MaxCredentialIDSize {
		return WebAuthnRegistered{}, fmt.Errorf("%w: the credential is too large", ErrInvalidInput)
	}
	m, err := s.factorsOf(u.ID)
	if err != nil {
		return WebAuthnRegistered{}, err
	}
	var codes, hashes []string
	if len(m.Recovery) == 0 {
		if codes, hashes, err = s.newRecoveryCodes(u.ID); err != nil {
			return WebAuthnRegistered{}, err
		}
	}
	cmd, err := fsm.NewCommand(fsm.TypeWebAuthnAdd, 1, s.now().UnixNano(), fsm.WebAuthnAdd{UserID: u.ID,
		Credential: fsm.WebAuthnCredential{ID: credID, Name: c.Name, Sealed: sealed, SignCount: cred.Authenticator.SignCount},
		Recovery:   hashes})
	if err != nil {
		return WebAuthnRegistered{}, err
	}
	details := map[string]string{"credential_id": credID, "name": c.Name}
	if codes != nil {
		details["recovery_codes"] = "issued"
	}
	after, err := applyAs[*fsm.MFA](ctx, s, cmd, fsm.AuditAppend{Type: "mfa.webauthn.add", Severity: fsm.AuditInfo,
		Actor: u.ID, Subject: u.ID, IP: ri.IP, UserAgent: ri.UserAgent, Details: details})
	if errors.Is(err, fsm.ErrFactorExists) {
		return WebAuthnRegistered{}, fmt.Errorf("%w: this passkey is registered already", ErrConflict)
	}
	if err != nil {
		return WebAuthnRegistered{}, err
	}
	out := WebAuthnRegistered{ID: credID, Name: c.Name}
	if codes != nil && slices.Equal(after.Recovery, hashes) { // not if a set appeared meanwhile
		out.RecoveryCodes = codes
	}
	return out, nil
}

// RenameWebAuthn renames one of the caller's passkeys.
func (s *Service) RenameWebAuthn(ctx context.Context, p *Principal, id, name string) error {
	if err := validName(name); err != nil {
		return err
	}
	return s.changeWebAuthn(ctx, p, fsm.TypeWebAuthnRename, fsm.WebAuthnRename{UserID: p.UserID, ID: id, Name: name},
		fsm.AuditInfo, map[string]string{"credential_id": id, "name": name})
}

// RemoveWebAuthn removes one of the caller's passkeys (step-up).
func (s *Service) RemoveWebAuthn(ctx context.Context, p *Principal, id string) error {
	if err := s.StepUp(p); err != nil {
		return err
	}
	return s.changeWebAuthn(ctx, p, fsm.TypeWebAuthnRemove, fsm.WebAuthnRename{UserID: p.UserID, ID: id},
		fsm.AuditWarning, map[string]string{"credential_id": id})
}

func (s *Service) changeWebAuthn(ctx context.Context, p *Principal, t fsm.Type, payload fsm.WebAuthnRename, sev string, details map[string]string) error {
	if payload.ID == "" || len(payload.ID) > 2*fsm.MaxCredentialIDSize {
		return ErrNotFound
	}
	if !s.proposable(t, 1) {
		return fmt.Errorf("%w: the cluster is below feature level 4", ErrMFAUnavailable)
	}
	cmd, err := fsm.NewCommand(t, 1, s.now().UnixNano(), payload)
	if err != nil {
		return err
	}
	ri := requestInfo(ctx)
	_, err = s.apply(ctx, cmd, fsm.AuditAppend{Type: string(t), Severity: sev, Actor: p.UserID, Subject: p.UserID,
		IP: ri.IP, UserAgent: ri.UserAgent, Details: details})
	if errors.Is(err, fsm.ErrFactorNotFound) {
		return ErrNotFound
	}
	return err
}

// BeginWebAuthnLogin starts an assertion: with an mfa_token, the second
// factor of the login that issued it (the user's passkeys allowed);
// without, a passwordless sign-in with a discoverable credential that
// must verify its user.
func (s *Service) BeginWebAuthnLogin(ctx context.Context, mfaToken string) (WebAuthnCeremony, error) {
	if err := s.passkeysReady(); err != nil {
		return WebAuthnCeremony{}, err
	}
	ri := requestInfo(ctx)
	c := ceremony{Kind: ceremonyPasswordless, IP: ri.IP, Expires: s.now().Add(ceremonyTTL).UnixNano()}
	opts := []webauthn.LoginOption{webauthn.WithUserVerification(protocol.VerificationRequired)}
	var wu *waUser
	if mfaToken != "" {
		tk, err := s.parseTicket(mfaToken, ri)
		if err != nil {
			return WebAuthnCeremony{}, err
		}
		u, err := s.userByID(tk.UserID)
		if err != nil || u.Disabled || u.PasswordGen != tk.PwdGen {
			return WebAuthnCeremony{}, fmt.Errorf("%w; sign in again", ErrInvalidMFAToken)
		}
		m, err := s.factorsOf(u.ID)
		if err != nil {
			return WebAuthnCeremony{}, err
		}
		if len(m.WebAuthn) == 0 {
			return WebAuthnCeremony{}, fmt.Errorf("%w: the user has no passkey; use another method of mfa_methods", ErrInvalidInput)
		}
		c = ceremony{Kind: ceremonySecond, UserID: u.ID, IP: ri.IP, PwdGen: tk.PwdGen, Nonce: tk.Nonce,
			TicketExpires: time.Unix(tk.Expires, 0).UnixNano(),
			Expires:       min(s.now().Add(ceremonyTTL).UnixNano(), time.Unix(tk.Expires, 0).UnixNano())}
		// Only the ids are needed to begin: nothing is opened.
		wu = &waUser{u: u}
		for _, d := range descriptors(m) {
			wu.creds = append(wu.creds, webauthn.Credential{ID: d.CredentialID})
		}
		opts = []webauthn.LoginOption{webauthn.WithUserVerification(protocol.VerificationPreferred)}
	}
	var (
		assertion *protocol.CredentialAssertion
		sd        *webauthn.SessionData
		err       error
	)
	if wu == nil {
		assertion, sd, err = s.rp.BeginDiscoverableLogin(opts...)
	} else {
		assertion, sd, err = s.rp.BeginLogin(wu, opts...)
	}
	if err != nil {
		return WebAuthnCeremony{}, err
	}
	// The allowed credentials are filled in at finish from the user's
	// current ones: the challenge_id stays small however many they have.
	sd.AllowedCredentialIDs = nil
	c.Session = *sd
	id, err := s.sealCeremony(c)
	if err != nil {
		return WebAuthnCeremony{}, err
	}
	return WebAuthnCeremony{ChallengeID: id, PublicKey: assertion.Response}, nil
}

// FinishWebAuthnLogin completes an assertion ceremony and starts the
// session. An attempt is reserved on the user's second-factor counter
// before the assertion is verified, as for a TOTP code; Apply then
// re-checks the credential is still the user's, its counter grew, and the
// ceremony's ticket was never spent.
func (s *Service) FinishWebAuthnLogin(ctx context.Context, challengeID string, credential []byte) (Tokens, error) {
	if err := s.passkeysReady(); err != nil {
		return Tokens{}, err
	}
	parsed, err := parseAssertion(credential)
	if err != nil {
		return Tokens{}, err
	}
	ri := requestInfo(ctx)
	kind := ceremonySecond
	if !strings.HasPrefix(challengeID, ceremonyPrefix) {
		return Tokens{}, fmt.Errorf("%w: the challenge_id is invalid; begin again", ErrInvalidInput)
	}
	c, err := s.openCeremony(challengeID, kind, ri)
	if err != nil {
		kind = ceremonyPasswordless
		if c, err = s.openCeremony(challengeID, kind, ri); err != nil {
			return Tokens{}, err
		}
	}
	ctx, cancel := s.detach(ctx)
	defer cancel()

	var u *fsm.User
	if kind == ceremonySecond {
		u, err = s.userByID(c.UserID)
		if err != nil || u.Disabled || u.PasswordGen != c.PwdGen {
			return Tokens{}, fmt.Errorf("%w; sign in again", ErrInvalidMFAToken)
		}
	} else {
		// The credential names its user (the user handle is the user id);
		// the index says whose the credential is. Nothing is recorded for
		// a credential nobody registered: there is no user to count for.
		credID := base64.RawURLEncoding.EncodeToString(parsed.RawID)
		var owner string
		var ok bool
		if err := s.store.View(func(r fsm.Reader) error { owner, ok = r.WebAuthnOwner(credID); return nil }); err != nil {
			return Tokens{}, err
		}
		if !ok || owner != string(parsed.Response.UserHandle) {
			return Tokens{}, ErrInvalidCredentials
		}
		if u, err = s.userByID(owner); err != nil || u.Disabled {
			return Tokens{}, ErrInvalidCredentials
		}
	}
	lock := mfaLockName(u.ID)
	slot, m, err := s.secondFactorSlot(ctx, u.ID, ri)
	if err != nil {
		return Tokens{}, err
	}
	wu := &waUser{u: u, creds: s.credentialsOf(u.ID, m)}
	var cred *webauthn.Credential
	if kind == ceremonySecond {
		for _, k := range wu.creds {
			c.Session.AllowedCredentialIDs = append(c.Session.AllowedCredentialIDs, k.ID)
		}
		cred, err = s.rp.ValidateLogin(wu, c.Session, parsed)
	} else {
		_, cred, err = s.rp.ValidatePasskeyLogin(func(rawID, userHandle []byte) (webauthn.User, error) {
			if !bytes.Equal(userHandle, wu.WebAuthnID()) {
				return nil, errors.New("another user's credential")
			}
			return wu, nil
		}, c.Session, parsed)
		if err == nil && !parsed.Response.AuthenticatorData.Flags.HasUserVerified() {
			err = errors.New("a passwordless sign-in needs user verification")
		}
	}
	if err != nil {
		s.log.Info("a WebAuthn assertion does not verify", "user", u.ID, "reason", waReason(err), "error", err)
		s.mfaFailed(ctx, u, ri, slot, fsm.FactorWebAuthn, "bad_assertion")
		return Tokens{}, ErrInvalidCredentials
	}
	flags := parsed.Response.AuthenticatorData.Flags
	key := "hwk"
	if flags.HasBackupEligible() {
		key = "swk"
	}
	proof := &fsm.FactorProof{Method: fsm.FactorWebAuthn, CredentialID: base64.RawURLEncoding.EncodeToString(cred.ID),
		SignCount: parsed.Response.AuthenticatorData.Counter}
	var sp sessionProof
	var amr []string
	if kind == ceremonySecond {
		proof.Ticket, proof.TicketExpires = ticketHash(c.Nonce), c.TicketExpires+int64(ceremonyTTL)
		gen := c.PwdGen
		sp, amr = sessionProof{pwdGen: &gen, factor: proof}, []string{"pwd", key, "mfa"}
	} else {
		proof.Ticket, proof.TicketExpires = challengeTicket(c.Session.Challenge), c.Expires+int64(ceremonyTTL)
		sp, amr = sessionProof{factor: proof}, []string{key, "user", "mfa"}
	}
	// The log remembers the ticket past the last moment the ceremony (or
	// mfa_token) opens: an assertion checked just before that moment is
	// still proposed with a ticket Apply keeps.
	tok, err := s.startSessionWith(ctx, u, lock, ri, amr, sp)
	switch {
	case errors.Is(err, fsm.ErrFactorReplayed), errors.Is(err, fsm.ErrFactorNotFound):
		// A counter that did not grow (a replayed assertion, a cloned
		// authenticator), a ceremony or mfa_token spent already, or the
		// passkey removed meanwhile: a failure of the second factor.
		s.mfaFailed(ctx, u, ri, slot, fsm.FactorWebAuthn, "replayed")
		return Tokens{}, ErrInvalidCredentials
	case errors.Is(err, fsm.ErrLockedDown):
		// An incident lockdown: only an administrator signing in with a
		// second factor (a passkey is one) or an exempt client goes on.
		s.releaseSlot(ctx, lock, slot)
		return Tokens{}, err
	case errors.Is(err, fsm.ErrCredentialChanged), errors.Is(err, fsm.ErrUserDisabled), errors.Is(err, fsm.ErrUserNotFound):
		s.releaseSlot(ctx, lock, slot)
		if kind == ceremonySecond {
			return Tokens{}, fmt.Errorf("%w: the account changed since the password was checked; sign in again", ErrInvalidMFAToken)
		}
		return Tokens{}, ErrInvalidCredentials
	}
	return tok, err
}

// challengeTicket is what the log remembers of a spent passwordless
// ceremony: its challenge, hashed.
func challengeTicket(challenge string) string {
	h := sha256.Sum256([]byte("webauthn challenge " + challenge))
	return hex.EncodeToString(h[:])
}
