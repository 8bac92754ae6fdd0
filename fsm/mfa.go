package fsm

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Second factors (level 4). A user's factors are one record in bucketMFA,
// keyed by user id: a TOTP secret (pending until confirmed with a first
// code), the hashes of one set of recovery codes, and WebAuthn
// credentials. Secrets arrive sealed: the proposer encrypts a TOTP secret
// and a credential's data with the cluster data key before proposing, so
// neither the log nor state.db holds them in plain form; recovery codes
// arrive as hashes. Apply never sees a secret.
//
// A second factor is used by session.create v3 (FactorProof): the
// proposer checked the code or assertion, and Apply re-checks, in the
// same transaction that creates the session, that the factor is still
// the user's and has not been used since: a TOTP time step at or below
// the last accepted one, a recovery code already spent, a WebAuthn sign
// counter that did not grow, or an mfa_token already exchanged is
// refused. Two nodes that accepted the same code at once thus start one
// session between them.
const (
	TypeMFATOTPEnroll  Type = "mfa.totp.enroll"
	TypeMFATOTPConfirm Type = "mfa.totp.confirm"
	TypeMFATOTPRemove  Type = "mfa.totp.remove"
	TypeMFARecoverySet Type = "mfa.recovery.set"
	TypeMFAReset       Type = "mfa.reset"
	TypeWebAuthnAdd    Type = "mfa.webauthn.add"
	TypeWebAuthnRename Type = "mfa.webauthn.rename"
	TypeWebAuthnRemove Type = "mfa.webauthn.remove"
)

// Bounds Apply enforces on factor records.
const (
	MaxSealedBytes      = 4096 // a sealed TOTP secret or credential
	MaxRecoveryCodes    = 32
	MaxWebAuthnPerUser  = 32
	MaxFactorNameBytes  = 64
	MaxCredentialIDSize = 1023 // WebAuthn: credential ids are at most 1023 bytes
)

// MFA is a user's second factors.
type MFA struct {
	TOTP        *TOTPFactor `json:"totp,omitempty"`         // confirmed
	PendingTOTP *TOTPFactor `json:"pending_totp,omitempty"` // enrolled, not yet confirmed
	// Recovery holds the hex SHA-256 of each unused recovery code.
	Recovery []string             `json:"recovery,omitempty"`
	WebAuthn []WebAuthnCredential `json:"webauthn,omitempty"`
}

// Enabled reports whether the user has a second factor to sign in with.
func (m *MFA) Enabled() bool { return m != nil && (m.TOTP != nil || len(m.WebAuthn) > 0) }

// TOTPFactor is an RFC 6238 secret, sealed with the data key.
type TOTPFactor struct {
	Sealed    []byte    `json:"sealed"`
	CreatedAt time.Time `json:"created_at"`
	// LastStep is the time step of the last code accepted: no code of a
	// step at or below it is accepted again (RFC 6238, section 5.2).
	LastStep int64 `json:"last_step,omitempty"`
}

// WebAuthnCredential is a registered passkey or security key. ID is the
// credential id, base64url without padding; Sealed is the credential's
// data (public key, flags, transports), sealed with the data key.
type WebAuthnCredential struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Sealed     []byte     `json:"sealed"`
	SignCount  uint32     `json:"sign_count"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
}

// MFATOTPEnroll stores a pending TOTP secret (replacing a pending one).
type MFATOTPEnroll struct {
	UserID string `json:"user_id"`
	Sealed []byte `json:"sealed"`
}

// MFATOTPConfirm makes the pending secret the user's, its first code's
// step the last accepted, and Recovery the user's recovery codes (the old
// set dies).
type MFATOTPConfirm struct {
	UserID   string   `json:"user_id"`
	Step     int64    `json:"step"`
	Recovery []string `json:"recovery"`
}

// MFAUser names the user of mfa.totp.remove and mfa.reset.
type MFAUser struct {
	UserID string `json:"user_id"`
}

// MFARecoverySet replaces the user's recovery codes.
type MFARecoverySet struct {
	UserID   string   `json:"user_id"`
	Recovery []string `json:"recovery"`
}

// WebAuthnAdd registers a credential; Recovery, if the user has no
// recovery codes yet, becomes their set.
type WebAuthnAdd struct {
	UserID     string             `json:"user_id"`
	Credential WebAuthnCredential `json:"credential"`
	Recovery   []string           `json:"recovery,omitempty"`
}

// WebAuthnRename renames one of the user's credentials; WebAuthnRemove
// (Name empty) removes it.
type WebAuthnRename struct {
	UserID string `json:"user_id"`
	ID     string `json:"id"`
	Name   string `json:"name,omitempty"`
}

// FactorProof is the second factor a session.create v3 was decided on.
type FactorProof struct {
	Method string `json:"method"` // FactorTOTP, FactorRecovery or FactorWebAuthn
	// Step is the TOTP time step of the code accepted.
	Step int64 `json:"step,omitempty"`
	// RecoveryHash is the hex SHA-256 of the recovery code used.
	RecoveryHash string `json:"recovery_hash,omitempty"`
	// CredentialID and SignCount: the WebAuthn credential and the counter
	// its assertion carried.
	CredentialID string `json:"credential_id,omitempty"`
	SignCount    uint32 `json:"sign_count,omitempty"`
	// Ticket is the hex SHA-256 of the mfa_token's nonce (or of a
	// WebAuthn ceremony's challenge): good for one session, remembered
	// until TicketExpires (Unix ns).
	Ticket        string `json:"ticket,omitempty"`
	TicketExpires int64  `json:"ticket_expires,omitempty"`
}

// Second-factor methods.
const (
	FactorTOTP     = "totp"
	FactorRecovery = "recovery_code"
	FactorWebAuthn = "webauthn"
)

// SessionCreateV3 is session.create v3: v2, plus the second factor used.
type SessionCreateV3 struct {
	SessionCreateV2
	Factor *FactorProof `json:"factor,omitempty"`
}

// SessionCreateV4 is session.create v4's payload (level 5): v3's, plus
// RefreshMAC: the refresh token names the session and its generation (0)
// under a MAC, so no refresh record is written (session.refresh v3).
type SessionCreateV4 struct {
	SessionCreateV3
	RefreshMAC bool `json:"refresh_mac,omitempty"`
}

var mfaCommands = []CommandSpec{
	{Type: TypeMFATOTPEnroll, Version: 1, Level: 4, Apply: applyTOTPEnroll, Result: reflect.TypeFor[*MFA]()},
	{Type: TypeMFATOTPConfirm, Version: 1, Level: 4, Apply: applyTOTPConfirm, Result: reflect.TypeFor[*MFA]()},
	{Type: TypeMFATOTPRemove, Version: 1, Level: 4, Apply: applyTOTPRemove, Result: reflect.TypeFor[*MFA]()},
	{Type: TypeMFARecoverySet, Version: 1, Level: 4, Apply: applyRecoverySet, Result: reflect.TypeFor[*MFA]()},
	{Type: TypeMFAReset, Version: 1, Level: 4, Apply: applyMFAReset, Result: reflect.TypeFor[int]()},
	{Type: TypeWebAuthnAdd, Version: 1, Level: 4, Apply: applyWebAuthnAdd, Result: reflect.TypeFor[*MFA]()},
	{Type: TypeWebAuthnRename, Version: 1, Level: 4, Apply: applyWebAuthnRename, Result: reflect.TypeFor[*MFA]()},
	{Type: TypeWebAuthnRemove, Version: 1, Level: 4, Apply: applyWebAuthnRemove, Result: reflect.TypeFor[*MFA]()},
	{Type: TypeSessionCreate, Version: 3, Level: 4, Apply: applySessionCreateV3, Result: reflect.TypeFor[*Session]()},
	{Type: TypeSessionCreate, Version: 4, Level: 5, Apply: applySessionCreateV4, Result: reflect.TypeFor[*Session]()},
}

func validSealed(b []byte) bool { return len(b) > 0 && len(b) <= MaxSealedBytes }

func validHashes(hs []string, atLeast int) bool {
	if len(hs) < atLeast || len(hs) > MaxRecoveryCodes {
		return false
	}
	for _, h := range hs {
		if !validHexHash(h) {
			return false
		}
	}
	return true
}

func validHexHash(h string) bool {
	if len(h) != 64 {
		return false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// mfaOf reads a user's factors for a write: the user must exist.
func (t txn) mfaOf(userID string) (*MFA, error) {
	if _, err := getUser(t.tx, userID); err != nil {
		return nil, err
	}
	m := &MFA{}
	if v := t.tx.Bucket(bucketMFA).Get([]byte(userID)); v != nil {
		if err := json.Unmarshal(v, m); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (t txn) putMFA(userID string, m *MFA) error {
	if m.TOTP == nil && m.PendingTOTP == nil && len(m.WebAuthn) == 0 {
		return t.tx.Bucket(bucketMFA).Delete([]byte(userID)) // nothing left: recovery codes go too
	}
	if !m.Enabled() {
		m.Recovery = nil // recovery codes only stand in for a factor the user has
	}
	return t.putJSON(bucketMFA, userID, m)
}

func applyTOTPEnroll(t txn, c Command) (any, error) {
	var p MFATOTPEnroll
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if !validID(p.UserID) || !validSealed(p.Sealed) {
		return nil, fmt.Errorf("%w: mfa.totp.enroll needs user_id and a sealed secret", ErrInvalidCommand)
	}
	m, err := t.mfaOf(p.UserID)
	if err != nil {
		return nil, err
	}
	if m.TOTP != nil {
		return nil, ErrFactorExists
	}
	m.PendingTOTP = &TOTPFactor{Sealed: p.Sealed, CreatedAt: time.Unix(0, c.Time).UTC()}
	return m, t.putMFA(p.UserID, m)
}

func applyTOTPConfirm(t txn, c Command) (any, error) {
	var p MFATOTPConfirm
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if !validID(p.UserID) || p.Step <= 0 || !validHashes(p.Recovery, 1) {
		return nil, fmt.Errorf("%w: mfa.totp.confirm needs user_id, step and recovery hashes", ErrInvalidCommand)
	}
	m, err := t.mfaOf(p.UserID)
	if err != nil {
		return nil, err
	}
	if m.TOTP != nil {
		return nil, ErrFactorExists
	}
	if m.PendingTOTP == nil {
		return nil, ErrFactorNotFound
	}
	m.TOTP, m.PendingTOTP = m.PendingTOTP, nil
	m.TOTP.LastStep = p.Step
	m.TOTP.CreatedAt = time.Unix(0, c.Time).UTC()
	m.Recovery = slices.Clone(p.Recovery)
	return m, t.putMFA(p.UserID, m)
}

func applyTOTPRemove(t txn, c Command) (any, error) {
	var p MFAUser
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	m, err := t.mfaOf(p.UserID)
	if err != nil {
		return nil, err
	}
	if m.TOTP == nil && m.PendingTOTP == nil {
		return nil, ErrFactorNotFound
	}
	m.TOTP, m.PendingTOTP = nil, nil
	return m, t.putMFA(p.UserID, m)
}

func applyRecoverySet(t txn, c Command) (any, error) {
	var p MFARecoverySet
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if !validHashes(p.Recovery, 1) {
		return nil, fmt.Errorf("%w: mfa.recovery.set needs 1 to %d hashes", ErrInvalidCommand, MaxRecoveryCodes)
	}
	m, err := t.mfaOf(p.UserID)
	if err != nil {
		return nil, err
	}
	if !m.Enabled() {
		return nil, ErrFactorNotFound
	}
	m.Recovery = slices.Clone(p.Recovery)
	return m, t.putMFA(p.UserID, m)
}

// applyMFAReset removes every factor of a user and ends their sessions
// (an administrator's recovery of an account); the result is how many
// sessions ended.
func applyMFAReset(t txn, c Command) (any, error) {
	var p MFAUser
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	m, err := t.mfaOf(p.UserID)
	if err != nil {
		return nil, err
	}
	if err := t.dropWebAuthnIndex(p.UserID, m.WebAuthn); err != nil {
		return nil, err
	}
	if err := t.tx.Bucket(bucketMFA).Delete([]byte(p.UserID)); err != nil {
		return nil, err
	}
	return t.revokeUserSessions(p.UserID, "")
}

func applyWebAuthnAdd(t txn, c Command) (any, error) {
	var p WebAuthnAdd
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	cred := p.Credential
	if !validID(p.UserID) || cred.ID == "" || len(cred.ID) > 2*MaxCredentialIDSize || !validSealed(cred.Sealed) ||
		!validFactorName(cred.Name) || (len(p.Recovery) > 0 && !validHashes(p.Recovery, 1)) {
		return nil, fmt.Errorf("%w: mfa.webauthn.add needs user_id, an id, a name and sealed data", ErrInvalidCommand)
	}
	m, err := t.mfaOf(p.UserID)
	if err != nil {
		return nil, err
	}
	if t.tx.Bucket(bucketWebAuthn).Get([]byte(cred.ID)) != nil {
		return nil, ErrFactorExists // registered already, by this user or another
	}
	if len(m.WebAuthn) >= MaxWebAuthnPerUser {
		return nil, fmt.Errorf("%w: at most %d credentials per user", ErrInvalidCommand, MaxWebAuthnPerUser)
	}
	cred.CreatedAt, cred.LastUsedAt = time.Unix(0, c.Time).UTC(), nil
	m.WebAuthn = append(m.WebAuthn, cred)
	if len(m.Recovery) == 0 {
		m.Recovery = slices.Clone(p.Recovery)
	}
	if err := t.tx.Bucket(bucketWebAuthn).Put([]byte(cred.ID), []byte(p.UserID)); err != nil {
		return nil, err
	}
	return m, t.putMFA(p.UserID, m)
}

func validFactorName(s string) bool {
	return s != "" && len(s) <= MaxFactorNameBytes && CleanAuditText(s, MaxFactorNameBytes) == s
}

func applyWebAuthnRename(t txn, c Command) (any, error) {
	var p WebAuthnRename
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if !validFactorName(p.Name) {
		return nil, fmt.Errorf("%w: mfa.webauthn.rename needs a name of 1 to %d printable bytes", ErrInvalidCommand, MaxFactorNameBytes)
	}
	m, err := t.mfaOf(p.UserID)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(m.WebAuthn, func(w WebAuthnCredential) bool { return w.ID == p.ID })
	if i < 0 {
		return nil, ErrFactorNotFound
	}
	m.WebAuthn[i].Name = p.Name
	return m, t.putMFA(p.UserID, m)
}

func applyWebAuthnRemove(t txn, c Command) (any, error) {
	var p WebAuthnRename
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	m, err := t.mfaOf(p.UserID)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(m.WebAuthn, func(w WebAuthnCredential) bool { return w.ID == p.ID })
	if i < 0 {
		return nil, ErrFactorNotFound
	}
	if err := t.dropWebAuthnIndex(p.UserID, m.WebAuthn[i:i+1]); err != nil {
		return nil, err
	}
	m.WebAuthn = slices.Delete(m.WebAuthn, i, i+1)
	return m, t.putMFA(p.UserID, m)
}

func (t txn) dropWebAuthnIndex(userID string, creds []WebAuthnCredential) error {
	idx := t.tx.Bucket(bucketWebAuthn)
	for _, w := range creds {
		if string(idx.Get([]byte(w.ID))) == userID {
			if err := idx.Delete([]byte(w.ID)); err != nil {
				return err
			}
		}
	}
	return nil
}

// applySessionCreateV3 is session.create v3 as it shipped (level 4): a
// refusal can leave writes behind. A second factor's ticket is spent
// before the factor is checked, and the factor before the id and session
// limit checks; replaying the log needs them kept. v4 refuses first.
func applySessionCreateV3(t txn, c Command) (any, error) {
	var p SessionCreateV3
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	return sessionCreateWithFactor(t, c, p, sessionStart{})
}

// applySessionCreateV4 is session.create v4: v3's payload, every check
// made before anything is written, so that a refused login (a replayed
// TOTP step, a session limit with on_limit deny) spends no ticket or
// factor; with RefreshMAC, no refresh record is written.
func applySessionCreateV4(t txn, c Command) (any, error) {
	var p SessionCreateV4
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	return sessionCreateWithFactor(t, c, p.SessionCreateV3, sessionStart{limitsFirst: true, noRecord: p.RefreshMAC})
}

func sessionCreateWithFactor(t txn, c Command, p SessionCreateV3, how sessionStart) (any, error) {
	checkFirst := how.limitsFirst
	if p.Rehash != "" && (p.PasswordGen == nil || len(p.Rehash) > 512) {
		return nil, fmt.Errorf("%w: session.create rehash needs password_gen", ErrInvalidCommand)
	}
	f := p.Factor
	if f != nil && f.Ticket != "" && (!validHexHash(f.Ticket) || f.TicketExpires <= c.Time) {
		return nil, fmt.Errorf("%w: session.create ticket", ErrInvalidCommand)
	}
	return startSession(t, c, p.SessionCreate, func(u *User) error {
		if p.PasswordGen != nil && u.PasswordGen != *p.PasswordGen {
			return ErrCredentialChanged
		}
		if f != nil {
			if err := t.useFactor(u.ID, f, c.Time, checkFirst); err != nil {
				return err
			}
		}
		if p.Rehash != "" {
			u.PasswordHash = p.Rehash
			return t.putUser(u)
		}
		return nil
	}, how)
}

// useFactor spends the second factor f for userID at now, or refuses it:
// ErrFactorNotFound when the factor is not (or no longer) the user's,
// ErrFactorReplayed when it was used already. With checkFirst it writes
// nothing unless it accepts; without (session.create v3, as shipped) the
// ticket is spent before the factor is checked.
func (t txn) useFactor(userID string, f *FactorProof, now int64, checkFirst bool) error {
	spendTicket := func() error {
		if err := t.tx.Bucket(bucketMFAUsed).Put([]byte(f.Ticket), nil); err != nil {
			return err
		}
		return t.index(f.TicketExpires, expiryTicket, f.Ticket)
	}
	if f.Ticket != "" {
		if t.tx.Bucket(bucketMFAUsed).Get([]byte(f.Ticket)) != nil {
			return ErrFactorReplayed
		}
		if !checkFirst {
			if err := spendTicket(); err != nil {
				return err
			}
		}
	}
	m, err := t.mfaOf(userID)
	if err != nil {
		return err
	}
	if err := spendFactor(m, f, now); err != nil {
		return err
	}
	if checkFirst && f.Ticket != "" {
		if err := spendTicket(); err != nil {
			return err
		}
	}
	return t.putMFA(userID, m)
}

// spendFactor checks f against m and marks it used in m (in memory).
func spendFactor(m *MFA, f *FactorProof, now int64) error {
	switch f.Method {
	case FactorTOTP:
		if m.TOTP == nil {
			return ErrFactorNotFound
		}
		if f.Step <= m.TOTP.LastStep {
			return ErrFactorReplayed
		}
		m.TOTP.LastStep = f.Step
	case FactorRecovery:
		i := slices.Index(m.Recovery, f.RecoveryHash)
		if i < 0 || !m.Enabled() {
			return ErrFactorNotFound // unknown, or spent (alike: a spent code is no code)
		}
		m.Recovery = slices.Delete(m.Recovery, i, i+1)
	case FactorWebAuthn:
		i := slices.IndexFunc(m.WebAuthn, func(w WebAuthnCredential) bool { return w.ID == f.CredentialID })
		if i < 0 {
			return ErrFactorNotFound
		}
		w := &m.WebAuthn[i]
		// A counter that does not grow means a cloned authenticator or a
		// replayed assertion (WebAuthn §6.1.1); authenticators that keep
		// no counter send 0 every time.
		if (f.SignCount != 0 || w.SignCount != 0) && f.SignCount <= w.SignCount {
			return ErrFactorReplayed
		}
		w.SignCount = f.SignCount
		at := time.Unix(0, now).UTC()
		w.LastUsedAt = &at
	default:
		return fmt.Errorf("%w: unknown second-factor method %q", ErrInvalidCommand, f.Method)
	}
	return nil
}

// MFA returns a user's factors (an empty record if none).
func (r Reader) MFA(userID string) (*MFA, error) {
	m := &MFA{}
	v := r.tx.Bucket(bucketMFA).Get([]byte(userID))
	if v == nil {
		return m, nil
	}
	return m, json.Unmarshal(v, m)
}

// WebAuthnOwner returns the user id a credential id is registered to.
func (r Reader) WebAuthnOwner(credentialID string) (string, bool) {
	v := r.tx.Bucket(bucketWebAuthn).Get([]byte(credentialID))
	return string(v), v != nil
}

func deleteMFA(tx *bolt.Tx, userID string) error {
	t := txn{tx: tx}
	v := tx.Bucket(bucketMFA).Get([]byte(userID))
	if v == nil {
		return nil
	}
	var m MFA
	if err := json.Unmarshal(v, &m); err == nil {
		if err := t.dropWebAuthnIndex(userID, m.WebAuthn); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketMFA).Delete([]byte(userID))
}
