package authcore

// Second factors: TOTP (RFC 6238) and recovery codes here, WebAuthn in
// webauthn.go; the replicated records and their re-checks in fsm/mfa.go.
//
// A login whose password checks out for a user with a second factor
// starts no session: it answers an mfa_token, a MAC'd ticket any member
// verifies (it names the user, the password generation checked, the
// client address and an expiry). POST /v1/auth/mfa then reserves an
// attempt against the user's second-factor counter ("mfa " + user id,
// a name no username can be: PRECIS refuses spaces) through the log
// before the code is checked, exactly as a password is, so failed codes
// lock the second factor and never the password, and the other way round
// (keycloak#46164). A good code becomes a session.create v3 carrying its
// proof, which Apply re-checks: the step not used before, the recovery
// code unspent, the ticket never exchanged.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"slices"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/bulwark-auth/bulwark/fsm"
)

// TOTP parameters: what every authenticator app supports (RFC 6238's
// defaults; Google Authenticator ignores others).
const (
	totpPeriod     = 30
	totpDigits     = otp.DigitsSix
	totpSecretSize = 20 // bytes: 160 bits, RFC 4226's recommendation
	// totpSkew is how many steps either side of now a code may be from:
	// one, for a phone's clock that drifts.
	totpSkew = 1
)

// Recovery codes: recoveryCount codes of recoveryChars base32 characters
// (60 bits each), shown once and stored as MACs under the data key.
const (
	recoveryCount = 10
	recoveryChars = 12
)

// mfaTicketTTL is how long an mfa_token stays good (API.md: 5 minutes).
const mfaTicketTTL = 5 * time.Minute

// mfaTicketPrefix marks mfa_tokens for secret scanners.
const mfaTicketPrefix = "bwm_"

// MFAChallenge is the answer to a password login that needs a second
// factor: no session exists yet.
type MFAChallenge struct {
	Token     string   `json:"mfa_token"`
	Methods   []string `json:"mfa_methods"`
	ExpiresIn int      `json:"expires_in"`
}

// StepUpError says the action needs a second factor within MaxAge
// (RFC 9470): sign in again with one.
type StepUpError struct{ MaxAge time.Duration }

func (e *StepUpError) Error() string {
	return fmt.Sprintf("this action needs a second factor used within the last %s: sign in again with it", e.MaxAge)
}

// Unwrap makes errors.Is(err, ErrStepUpRequired) true.
func (e *StepUpError) Unwrap() error { return ErrStepUpRequired }

// WithSecretBox sets the keys under the cluster data key that seal second
// factors and sign mfa_tokens. Without it, second factors are off: a user
// who has one cannot sign in (fail closed) and none can be enrolled.
func WithSecretBox(b *SecretBox) Option { return func(s *Service) { s.box = b } }

// mfaLockName is the lockout counter of a user's second factor.
func mfaLockName(userID string) string { return "mfa " + userID }

// methodsOf lists what a user can sign in with as a second factor.
func methodsOf(m *fsm.MFA) []string {
	var out []string
	if m.TOTP != nil {
		out = append(out, fsm.FactorTOTP)
	}
	if len(m.WebAuthn) > 0 {
		out = append(out, fsm.FactorWebAuthn)
	}
	if len(m.Recovery) > 0 {
		out = append(out, fsm.FactorRecovery)
	}
	return out
}

// secondFactorSlot reserves a slot of userID's second-factor budget
// (mfaLockName: failed second factors lock on their own) and reads their
// factors; a read that fails gives the slot back.
func (s *Service) secondFactorSlot(ctx context.Context, userID string, ri RequestInfo) (int64, *fsm.MFA, error) {
	lock := mfaLockName(userID)
	slot, err := s.attempt(ctx, lock, ri, nil)
	if err != nil {
		return 0, nil, err
	}
	m, err := s.factorsOf(userID)
	if err != nil {
		s.releaseSlot(ctx, lock, slot)
		return 0, nil, err
	}
	return slot, m, nil
}

func (s *Service) factorsOf(userID string) (*fsm.MFA, error) {
	var m *fsm.MFA
	err := s.store.View(func(r fsm.Reader) error {
		var err error
		m, err = r.MFA(userID)
		return err
	})
	return m, err
}

// mfaTicket is the content of an mfa_token.
type mfaTicket struct {
	UserID  string   `json:"u"`
	PwdGen  uint64   `json:"g"`
	IP      string   `json:"ip"`
	Expires int64    `json:"e"` // Unix seconds
	Nonce   string   `json:"n"`
	AMR     []string `json:"a"`
}

// challenge answers a first factor that checked out for u, who has the
// factors m: the password's slot is resolved (its counter reset, as a
// successful login does) with an audit entry, and an mfa_token issued.
func (s *Service) challenge(ctx context.Context, u *fsm.User, name string, m *fsm.MFA, ri RequestInfo) (Tokens, error) {
	if s.box == nil {
		return Tokens{}, fmt.Errorf("%w: second factors need the cluster data key", ErrMFAUnavailable)
	}
	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return Tokens{}, err
	}
	tk := mfaTicket{UserID: u.ID, PwdGen: u.PasswordGen, IP: ri.IP, Expires: s.now().Add(mfaTicketTTL).Unix(),
		Nonce: base64.RawURLEncoding.EncodeToString(nonce[:]), AMR: []string{"pwd"}}
	body, err := json.Marshal(tk)
	if err != nil {
		return Tokens{}, err
	}
	enc := base64.RawURLEncoding.EncodeToString(body)
	token := mfaTicketPrefix + enc + "." + base64.RawURLEncoding.EncodeToString(s.box.mac(purposeTicket, []byte(enc)))
	cmd, err := fsm.NewCommand(fsm.TypeLockoutReset, 1, s.now().UnixNano(), fsm.LockoutReset{Username: name})
	if err != nil {
		return Tokens{}, err
	}
	if _, err := s.apply(ctx, cmd, fsm.AuditAppend{Type: "mfa.challenge", Severity: fsm.AuditInfo, Actor: u.ID,
		Subject: u.ID, IP: ri.IP, UserAgent: ri.UserAgent,
		Details: map[string]string{"username": u.Username, "methods": strings.Join(methodsOf(m), " ")}}); err != nil {
		return Tokens{}, err
	}
	return Tokens{MFA: &MFAChallenge{Token: token, Methods: methodsOf(m), ExpiresIn: int(mfaTicketTTL / time.Second)}}, nil
}

// parseTicket checks an mfa_token's MAC, expiry and client address.
func (s *Service) parseTicket(token string, ri RequestInfo) (mfaTicket, error) {
	var tk mfaTicket
	bad := fmt.Errorf("%w; sign in again", ErrInvalidMFAToken)
	rest, ok := strings.CutPrefix(token, mfaTicketPrefix)
	if !ok || len(token) > 2048 || s.box == nil {
		return tk, bad
	}
	enc, sig, ok := strings.Cut(rest, ".")
	mac, err := base64.RawURLEncoding.DecodeString(sig)
	if !ok || err != nil || !hmacEqual(mac, s.box.mac(purposeTicket, []byte(enc))) {
		return tk, bad
	}
	body, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil || json.Unmarshal(body, &tk) != nil || tk.UserID == "" || tk.Nonce == "" {
		return tk, bad
	}
	if s.now().Unix() >= tk.Expires || tk.IP != ri.IP {
		return tk, bad
	}
	return tk, nil
}

func hmacEqual(a, b []byte) bool { return len(a) == len(b) && subtle.ConstantTimeCompare(a, b) == 1 }

// ticketHash is what the log remembers of a used ticket.
func ticketHash(nonce string) string {
	h := sha256.Sum256([]byte("mfa ticket " + nonce))
	return hex.EncodeToString(h[:])
}

// VerifyMFA completes a login with its second factor: method "totp" with
// a 6-digit code, or "recovery_code" with one of the user's recovery
// codes. The attempt is counted against the user's second-factor counter
// before the code is checked; the session exists only once the code
// checks out and Apply has re-checked it.
func (s *Service) VerifyMFA(ctx context.Context, mfaToken, method, code string) (Tokens, error) {
	code, err := normalizeCode(method, code)
	if err != nil {
		return Tokens{}, err
	}
	ri := requestInfo(ctx)
	tk, err := s.parseTicket(mfaToken, ri)
	if err != nil {
		return Tokens{}, err
	}
	ctx, cancel := s.detach(ctx)
	defer cancel()
	u, err := s.userByID(tk.UserID)
	if err != nil || u.Disabled || u.PasswordGen != tk.PwdGen {
		return Tokens{}, fmt.Errorf("%w; sign in again", ErrInvalidMFAToken)
	}
	lock := mfaLockName(u.ID)
	slot, m, err := s.secondFactorSlot(ctx, u.ID, ri)
	if err != nil {
		return Tokens{}, err
	}
	proof, ok := s.checkCode(u.ID, m, method, code)
	if !ok {
		s.mfaFailed(ctx, u, ri, slot, method, "wrong_code")
		return Tokens{}, ErrInvalidCredentials
	}
	proof.Ticket, proof.TicketExpires = ticketHash(tk.Nonce), time.Unix(tk.Expires, 0).UnixNano()
	gen := tk.PwdGen
	tok, err := s.startSessionWith(ctx, u, lock, ri, []string{"pwd", "otp", "mfa"}, sessionProof{pwdGen: &gen, factor: proof})
	if err == nil {
		tok.DeviceToken = s.issueDevice(u.Username)
	}
	switch {
	case errors.Is(err, fsm.ErrFactorReplayed), errors.Is(err, fsm.ErrFactorNotFound):
		// Used meanwhile (the same code on another node, or the ticket
		// exchanged already): a failure of the second factor.
		s.mfaFailed(ctx, u, ri, slot, method, "replayed")
		return Tokens{}, ErrInvalidCredentials
	case errors.Is(err, fsm.ErrLockedDown):
		s.releaseSlot(ctx, lock, slot)
		return Tokens{}, err
	case errors.Is(err, fsm.ErrCredentialChanged), errors.Is(err, fsm.ErrUserDisabled), errors.Is(err, fsm.ErrUserNotFound):
		s.releaseSlot(ctx, lock, slot)
		return Tokens{}, fmt.Errorf("%w: the account changed since the password was checked; sign in again", ErrInvalidMFAToken)
	}
	return tok, err
}

// normalizeCode checks a code's form before anything is counted: input
// validation, not a failed attempt.
func normalizeCode(method, code string) (string, error) {
	switch method {
	case fsm.FactorTOTP:
		if len(code) != int(totpDigits) || strings.Trim(code, "0123456789") != "" {
			return "", fmt.Errorf("%w: a TOTP code is %d digits", ErrInvalidInput, int(totpDigits))
		}
		return code, nil
	case fsm.FactorRecovery:
		c := strings.ToLower(strings.NewReplacer("-", "", " ", "").Replace(code))
		if len(c) != recoveryChars || strings.Trim(c, "abcdefghijklmnopqrstuvwxyz234567") != "" {
			return "", fmt.Errorf("%w: a recovery code is %d letters and digits 2-7, as xxxx-xxxx-xxxx", ErrInvalidInput, recoveryChars)
		}
		return c, nil
	}
	return "", fmt.Errorf("%w: method must be %q or %q", ErrInvalidInput, fsm.FactorTOTP, fsm.FactorRecovery)
}

// checkCode checks a normalised code against the user's factors and
// returns the proof Apply re-checks.
func (s *Service) checkCode(userID string, m *fsm.MFA, method, code string) (*fsm.FactorProof, bool) {
	switch method {
	case fsm.FactorTOTP:
		if m.TOTP == nil {
			return nil, false
		}
		step, ok := s.totpStep(userID, m.TOTP, code)
		return &fsm.FactorProof{Method: fsm.FactorTOTP, Step: step}, ok
	case fsm.FactorRecovery:
		h := s.recoveryHash(userID, code)
		return &fsm.FactorProof{Method: fsm.FactorRecovery, RecoveryHash: h}, m.Enabled() && slices.Contains(m.Recovery, h)
	}
	return nil, false
}

// totpStep finds the step, within totpSkew of now and after the last one
// accepted, whose code is code.
func (s *Service) totpStep(userID string, f *fsm.TOTPFactor, code string) (int64, bool) {
	secret, err := s.box.open(purposeTOTP, []byte(userID), f.Sealed)
	if err != nil {
		s.log.Error("a TOTP secret does not open under the data key", "user", userID, "error", err)
		return 0, false
	}
	defer clear(secret)
	now := s.now().Unix() / totpPeriod
	found, match := int64(0), 0
	for step := now - totpSkew; step <= now+totpSkew; step++ {
		want, err := totp.GenerateCodeCustom(string(secret), time.Unix(step*totpPeriod, 0), totp.ValidateOpts{
			Period: totpPeriod, Digits: totpDigits, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			return 0, false
		}
		// Every step is compared, in constant time, whatever matched.
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 && step > f.LastStep {
			found, match = step, 1
		}
	}
	return found, match == 1
}

// recoveryHash is how a recovery code is stored: a MAC under the data
// key, bound to its user.
func (s *Service) recoveryHash(userID, code string) string {
	return hex.EncodeToString(s.box.mac(purposeRecovery, []byte(userID+"\x00"+code)))
}

// newRecoveryCodes makes a set of codes for userID and their hashes.
func (s *Service) newRecoveryCodes(userID string) (codes, hashes []string, err error) {
	enc := base32.StdEncoding.WithPadding(base32.NoPadding)
	for range recoveryCount {
		var b [recoveryChars * 5 / 8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, nil, err
		}
		c := strings.ToLower(enc.EncodeToString(b[:]))
		codes = append(codes, c[0:4]+"-"+c[4:8]+"-"+c[8:12])
		hashes = append(hashes, s.recoveryHash(userID, c))
	}
	return codes, hashes, nil
}

// mfaFailed turns a second-factor slot into a failure, which may lock the
// user's second factor (never their password); audited as mfa.failure.
func (s *Service) mfaFailed(ctx context.Context, u *fsm.User, ri RequestInfo, slot int64, method, reason string) {
	name := mfaLockName(u.ID)
	ev := fsm.AuditAppend{Type: "mfa.failure", Severity: fsm.AuditWarning, Subject: u.ID, IP: ri.IP, UserAgent: ri.UserAgent,
		Details: map[string]string{"username": u.Username, "method": method, "reason": reason}}
	cmd, err := fsm.NewCommand(fsm.TypeLoginFailure, 2, s.now().UnixNano(), fsm.LoginFailureV2{
		Username: name, Slot: slot, MaxAttempts: s.cfg.MaxFailedAttempts, Window: int64(s.cfg.LockoutDuration),
		PendingTTL: int64(pendingTTL), MaxNamesPerAddress: s.namesPerAddress(),
		Subject: u.ID, IP: ri.IP, UserAgent: ri.UserAgent})
	if err == nil {
		var res fsm.FailureResult
		res, err = proposeAs[fsm.FailureResult](ctx, s, cmd.WithAudit(ev))
		if err == nil && res.Locked {
			s.logAudit([]fsm.AuditAppend{{Type: "mfa.lockout", Severity: fsm.AuditWarning, Subject: u.ID, IP: ri.IP,
				Details: map[string]string{"username": u.Username}}}, nil)
		}
	}
	s.logAudit([]fsm.AuditAppend{ev}, err)
}

// MFAInfo is GET /v1/me/mfa: what second factors the caller has, no
// secret.
type MFAInfo struct {
	TOTP              TOTPInfo       `json:"totp"`
	WebAuthn          []WebAuthnInfo `json:"webauthn"`
	RecoveryCodesLeft int            `json:"recovery_codes_left"`
}

// TOTPInfo says whether TOTP is on (Pending: enrolled, not confirmed).
type TOTPInfo struct {
	Enabled bool `json:"enabled"`
	Pending bool `json:"pending,omitempty"`
}

// WebAuthnInfo is one passkey as its owner sees it.
type WebAuthnInfo struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
}

func mfaInfo(m *fsm.MFA) MFAInfo {
	info := MFAInfo{TOTP: TOTPInfo{Enabled: m.TOTP != nil, Pending: m.PendingTOTP != nil},
		WebAuthn: []WebAuthnInfo{}, RecoveryCodesLeft: len(m.Recovery)}
	for _, w := range m.WebAuthn {
		info.WebAuthn = append(info.WebAuthn, WebAuthnInfo{ID: w.ID, Name: w.Name, CreatedAt: w.CreatedAt, LastUsedAt: w.LastUsedAt})
	}
	return info
}

// MFAStatus lists the caller's second factors.
func (s *Service) MFAStatus(ctx context.Context, p *Principal) (MFAInfo, error) {
	m, err := s.factorsOf(p.UserID)
	if err != nil {
		return MFAInfo{}, err
	}
	return mfaInfo(m), nil
}

// TOTPEnrolment is a new TOTP secret, shown once: the secret in base32,
// its otpauth:// URI, and the URI as a QR code (a PNG data: URI).
type TOTPEnrolment struct {
	Secret     string `json:"secret"`
	OTPAuthURI string `json:"otpauth_uri"`
	QRCode     string `json:"qr_png"`
}

// TOTPIssuer is the issuer name authenticator apps show.
const TOTPIssuer = "bulwark"

// EnrollTOTP makes a new TOTP secret for the caller, pending until
// ConfirmTOTP. A caller who already has a second factor needs a recent
// one to add another, and one who has none a recent sign-in (a stolen,
// long-refreshed session must not add the thief's factor).
func (s *Service) EnrollTOTP(ctx context.Context, p *Principal) (TOTPEnrolment, error) {
	if s.box == nil {
		return TOTPEnrolment{}, ErrMFAUnavailable
	}
	if !s.proposable(fsm.TypeMFATOTPEnroll, 1) {
		return TOTPEnrolment{}, fmt.Errorf("%w: not every member of the cluster runs a version with second factors yet", ErrMFAUnavailable)
	}
	if err := s.StepUpToEnrol(p); err != nil {
		return TOTPEnrolment{}, err
	}
	key, err := totp.Generate(totp.GenerateOpts{Issuer: TOTPIssuer, AccountName: p.Username, Period: totpPeriod,
		SecretSize: totpSecretSize, Digits: totpDigits, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return TOTPEnrolment{}, err
	}
	sealed, err := s.box.seal(purposeTOTP, []byte(p.UserID), []byte(key.Secret()))
	if err != nil {
		return TOTPEnrolment{}, err
	}
	img, err := key.Image(256, 256)
	if err != nil {
		return TOTPEnrolment{}, err
	}
	var qr bytes.Buffer
	if err := png.Encode(&qr, img); err != nil {
		return TOTPEnrolment{}, err
	}
	cmd, err := fsm.NewCommand(fsm.TypeMFATOTPEnroll, 1, s.now().UnixNano(), fsm.MFATOTPEnroll{UserID: p.UserID, Sealed: sealed})
	if err != nil {
		return TOTPEnrolment{}, err
	}
	ri := requestInfo(ctx)
	if _, err := s.apply(ctx, cmd, fsm.AuditAppend{Type: "mfa.totp.enroll", Severity: fsm.AuditInfo, Actor: p.UserID,
		Subject: p.UserID, IP: ri.IP, UserAgent: ri.UserAgent}); err != nil {
		if errors.Is(err, fsm.ErrFactorExists) {
			return TOTPEnrolment{}, fmt.Errorf("%w: TOTP is already on; remove it first", ErrConflict)
		}
		return TOTPEnrolment{}, err
	}
	return TOTPEnrolment{Secret: key.Secret(), OTPAuthURI: key.URL(),
		QRCode: "data:image/png;base64," + base64.StdEncoding.EncodeToString(qr.Bytes())}, nil
}

// ConfirmTOTP turns the caller's pending secret on with a first code and
// returns a new set of recovery codes (shown once; the old set dies).
func (s *Service) ConfirmTOTP(ctx context.Context, p *Principal, code string) ([]string, error) {
	if s.box == nil {
		return nil, ErrMFAUnavailable
	}
	code, err := normalizeCode(fsm.FactorTOTP, code)
	if err != nil {
		return nil, err
	}
	m, err := s.factorsOf(p.UserID)
	if err != nil {
		return nil, err
	}
	if m.PendingTOTP == nil {
		return nil, fmt.Errorf("%w: no TOTP enrolment to confirm; start one with POST /v1/me/mfa/totp", ErrConflict)
	}
	step, ok := s.totpStep(p.UserID, m.PendingTOTP, code)
	if !ok {
		return nil, fmt.Errorf("%w: the code does not match; check the authenticator's clock", ErrInvalidCredentials)
	}
	codes, hashes, err := s.newRecoveryCodes(p.UserID)
	if err != nil {
		return nil, err
	}
	cmd, err := fsm.NewCommand(fsm.TypeMFATOTPConfirm, 1, s.now().UnixNano(), fsm.MFATOTPConfirm{UserID: p.UserID, Step: step, Recovery: hashes})
	if err != nil {
		return nil, err
	}
	ri := requestInfo(ctx)
	if _, err := s.apply(ctx, cmd, fsm.AuditAppend{Type: "mfa.totp.confirm", Severity: fsm.AuditInfo, Actor: p.UserID,
		Subject: p.UserID, IP: ri.IP, UserAgent: ri.UserAgent, Details: map[string]string{"recovery_codes": "issued"}}); err != nil {
		if errors.Is(err, fsm.ErrFactorExists) || errors.Is(err, fsm.ErrFactorNotFound) {
			return nil, fmt.Errorf("%w: the enrolment changed meanwhile", ErrConflict)
		}
		return nil, err
	}
	return codes, nil
}

// RemoveTOTP turns TOTP off for the caller (step-up).
func (s *Service) RemoveTOTP(ctx context.Context, p *Principal) error {
	if err := s.StepUp(p); err != nil {
		return err
	}
	cmd, err := fsm.NewCommand(fsm.TypeMFATOTPRemove, 1, s.now().UnixNano(), fsm.MFAUser{UserID: p.UserID})
	if err != nil {
		return err
	}
	ri := requestInfo(ctx)
	_, err = s.apply(ctx, cmd, fsm.AuditAppend{Type: "mfa.totp.remove", Severity: fsm.AuditWarning, Actor: p.UserID,
		Subject: p.UserID, IP: ri.IP, UserAgent: ri.UserAgent})
	if errors.Is(err, fsm.ErrFactorNotFound) {
		return ErrNotFound
	}
	return err
}

// RegenerateRecoveryCodes replaces the caller's recovery codes (step-up).
func (s *Service) RegenerateRecoveryCodes(ctx context.Context, p *Principal) ([]string, error) {
	if s.box == nil {
		return nil, ErrMFAUnavailable
	}
	if err := s.StepUp(p); err != nil {
		return nil, err
	}
	codes, hashes, err := s.newRecoveryCodes(p.UserID)
	if err != nil {
		return nil, err
	}
	cmd, err := fsm.NewCommand(fsm.TypeMFARecoverySet, 1, s.now().UnixNano(), fsm.MFARecoverySet{UserID: p.UserID, Recovery: hashes})
	if err != nil {
		return nil, err
	}
	ri := requestInfo(ctx)
	if _, err := s.apply(ctx, cmd, fsm.AuditAppend{Type: "mfa.recovery.regenerate", Severity: fsm.AuditWarning, Actor: p.UserID,
		Subject: p.UserID, IP: ri.IP, UserAgent: ri.UserAgent}); err != nil {
		if errors.Is(err, fsm.ErrFactorNotFound) {
			return nil, fmt.Errorf("%w: recovery codes stand in for a second factor; enrol one first", ErrConflict)
		}
		return nil, err
	}
	return codes, nil
}

// ResetMFA removes every second factor of a user and ends their sessions
// (an administrator's recovery of an account whose factors are lost);
// their second-factor counter is cleared too. It returns how many
// sessions ended.
func (s *Service) ResetMFA(ctx context.Context, nameOrID string) (int, error) {
	u, err := s.find(nameOrID)
	if err != nil {
		return 0, err
	}
	ri := requestInfo(ctx)
	cmd, err := fsm.NewCommand(fsm.TypeMFAReset, 1, s.now().UnixNano(), fsm.MFAUser{UserID: u.ID})
	if err != nil {
		return 0, err
	}
	n, err := applyAs[int](ctx, s, cmd, fsm.AuditAppend{Type: "mfa.reset", Severity: fsm.AuditWarning, Actor: ri.Actor,
		Subject: u.ID, IP: ri.IP, UserAgent: ri.UserAgent, Details: map[string]string{"username": u.Username, "sessions": "revoked"}})
	if err != nil {
		return 0, err
	}
	s.clearAttempts(ctx, mfaLockName(u.ID))
	return n, nil
}

// StepUpToEnrol is StepUp for adding a factor: a user with none needs a
// sign-in within StepUpWindow (GitHub's "sudo mode"), since the factor
// added guards the account from then on.
func (s *Service) StepUpToEnrol(p *Principal) error {
	if err := s.StepUp(p); err != nil {
		return err
	}
	if p.Claims != nil && s.now().Sub(time.Unix(p.Claims.AuthTime, 0)) > s.cfg.StepUpWindow {
		return &StepUpError{MaxAge: s.cfg.StepUpWindow}
	}
	return nil
}

// StepUp returns nil if p may do a sensitive action now (RFC 9470): its
// session's authentication included a second factor no older than
// StepUpWindow, or the user has no second factor to give. Else a
// *StepUpError. (An administrator who must have one, with
// require_mfa_for_admin, holds no admin role without it: IsAdmin.)
func (s *Service) StepUp(p *Principal) error {
	if p.Claims != nil && secondFactor(p.Claims.Amr) {
		if s.now().Sub(time.Unix(p.Claims.AuthTime, 0)) <= s.cfg.StepUpWindow {
			return nil
		}
		return &StepUpError{MaxAge: s.cfg.StepUpWindow}
	}
	m, err := s.factorsOf(p.UserID)
	if err != nil {
		return err
	}
	if m.Enabled() {
		return &StepUpError{MaxAge: s.cfg.StepUpWindow}
	}
	return nil
}
