package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Session and refresh-token commands. Everything time-dependent is
// computed from the command's time and the limits the proposer copied from
// its configuration into the payload, never from a clock or config here.
const (
	TypeSessionCreate  Type = "session.create"
	TypeSessionRefresh Type = "session.refresh"
	TypeSessionRevoke  Type = "session.revoke"
	TypeUserRevoke     Type = "user.revoke_sessions"
	TypeUserPassword   Type = "user.set_password"
)

// Session is one authenticated session: the public id is the JWT's sid and
// the id of /v1/me/sessions. It is not a credential; the refresh token is,
// and only its SHA-256 hash is stored.
type Session struct {
	ID          string    `json:"id"`
	UserID      string    `json:"user_id"`
	CreatedAt   time.Time `json:"created_at"`
	LastSeenAt  time.Time `json:"last_seen_at"`
	AuthTime    time.Time `json:"auth_time"`
	ExpiresAt   time.Time `json:"expires_at"`   // absolute lifetime
	IdleTimeout int64     `json:"idle_timeout"` // nanoseconds
	IP          string    `json:"ip,omitempty"`
	UserAgent   string    `json:"user_agent,omitempty"`
	AMR         []string  `json:"amr,omitempty"`
	RefreshHash string    `json:"refresh_hash"` // hex SHA-256 of the live refresh token
	// ClientID and Scopes are set on a session an OpenID Connect client's
	// authorization code started (oidc.go, level 4): the client its
	// refresh token is bound to and the scopes granted.
	ClientID string   `json:"client_id,omitempty"`
	Scopes   []string `json:"scopes,omitempty"`
	// RefreshGen is the generation of the live refresh token, when it is
	// one that names its session and generation itself (level 5:
	// session.create v4 with RefreshMAC, oidc.code_redeem v2,
	// session.refresh v3, user.set_password v3): every token the session
	// handed out before it has a generation below, or this one and
	// another hash, so a dead token is known without a record of it.
	RefreshGen uint64 `json:"refresh_gen,omitempty"`
}

// Alive reports whether the session is neither past its absolute lifetime
// nor idle for longer than its idle timeout at t.
func (s *Session) Alive(t time.Time) bool {
	return t.Before(s.ExpiresAt) && (s.IdleTimeout <= 0 || t.Sub(s.LastSeenAt) < time.Duration(s.IdleTimeout))
}

// refreshRecord is a refresh token's hash → its session; Used marks a token
// already exchanged by session.refresh v1, kept to detect reuse. From v2
// on a token is dead when its session's RefreshHash is another one, and
// its record is never rewritten.
type refreshRecord struct {
	SessionID string `json:"sid"`
	Used      bool   `json:"used,omitempty"`
}

// SessionCreate starts a session after a successful authentication.
type SessionCreate struct {
	ID          string   `json:"id"`
	UserID      string   `json:"user_id"`
	RefreshHash string   `json:"refresh_hash"`
	Lifetime    int64    `json:"lifetime"`     // nanoseconds: refresh_token_expiry
	IdleTimeout int64    `json:"idle_timeout"` // nanoseconds
	MaxPerUser  int      `json:"max_per_user"`
	OnLimit     string   `json:"on_limit"` // "evict_oldest" | "deny"
	IP          string   `json:"ip,omitempty"`
	UserAgent   string   `json:"user_agent,omitempty"`
	AMR         []string `json:"amr,omitempty"`
	// ResetLockout, if set, clears that name's failed-attempt counter in
	// the same transaction (a successful login).
	ResetLockout string `json:"reset_lockout,omitempty"`
	// DuringLockdown: the proposer allows this session during an incident
	// lockdown (an administrator with a second factor, or an exempt
	// client). Without it, a session is refused while one is active
	// (incident.go). Level 4: no lockdown exists below.
	DuringLockdown bool `json:"during_lockdown,omitempty"`
}

// SessionCreateV2 is session.create v2: v1's fields, plus what the
// authentication was checked against, re-checked in Apply so that nothing
// decided on a stale read survives the change that made it stale.
type SessionCreateV2 struct {
	SessionCreate
	// PasswordGen, when set, is the user's password generation the
	// password was verified against; Apply refuses the session
	// (ErrCredentialChanged) if the password has changed since.
	PasswordGen *uint64 `json:"password_gen,omitempty"`
	// Rehash, when set (with PasswordGen), replaces the user's password
	// hash with the same password under the current cost: an upgrade on a
	// successful login. The generation stays.
	Rehash string `json:"rehash,omitempty"`
}

// UserSetPasswordV2 is user.set_password v2: v1's fields, plus the
// generation the current password was verified against. Apply refuses
// the change if the password changed meanwhile, and bumps the generation.
type UserSetPasswordV2 struct {
	UserSetPassword
	PasswordGen uint64 `json:"password_gen"`
}

// SessionRefreshV3 is session.refresh v3 (level 5): the exchange of a
// refresh token that names its session and generation, under a MAC the
// proposer checked. Nothing is stored per token: the token is the
// session's live one when Generation and OldHash are the session's; it
// is a dead one (reuse) when Generation is below, or equal with another
// hash; a Generation above was never handed out. The new token's
// generation is Generation+1.
type SessionRefreshV3 struct {
	SessionID  string `json:"session_id"`
	Generation uint64 `json:"generation"`
	SessionRefresh
}

// UserSetPasswordV3 is user.set_password v3 (level 5): v2, where the
// current session's new refresh token names its session and Generation
// (at least the session's, as the proposer read it) and no record per
// token is written.
type UserSetPasswordV3 struct {
	UserSetPasswordV2
	Generation uint64 `json:"generation"`
}

// SessionRefresh exchanges a refresh token for a new one (rotation).
type SessionRefresh struct {
	OldHash   string `json:"old_hash"`
	NewHash   string `json:"new_hash"`
	IP        string `json:"ip,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`
}

// RefreshResult answers a SessionRefresh. Reused means a dead token was
// presented and its whole session has been revoked.
type RefreshResult struct {
	Session *Session
	User    *User
	Reused  bool
}

// SessionRevoke ends one session. UserID, when set, must own it.
type SessionRevoke struct {
	ID     string `json:"id"`
	UserID string `json:"user_id,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// UserRevokeSessions ends every session of a user but Except.
type UserRevokeSessions struct {
	UserID string `json:"user_id"`
	Except string `json:"except,omitempty"`
}

// UserSetPassword replaces a password hash, ends every other session and
// rotates the current session's refresh token.
type UserSetPassword struct {
	UserID       string `json:"user_id"`
	PasswordHash string `json:"password_hash"`
	SessionID    string `json:"session_id,omitempty"`
	NewHash      string `json:"new_refresh_hash,omitempty"`
}

var sessionCommands = []CommandSpec{
	{Type: TypeSessionCreate, Version: 1, Level: 1, Apply: applySessionCreate, Result: reflect.TypeFor[*Session]()},
	{Type: TypeSessionCreate, Version: 2, Level: 3, Apply: applySessionCreateV2, Result: reflect.TypeFor[*Session]()},
	{Type: TypeSessionRefresh, Version: 1, Level: 1, Apply: applySessionRefresh, Result: reflect.TypeFor[RefreshResult]()},
	{Type: TypeSessionRefresh, Version: 2, Level: 2, Apply: applySessionRefreshV2, Result: reflect.TypeFor[RefreshResult]()},
	{Type: TypeSessionRefresh, Version: 3, Level: 5, Apply: applySessionRefreshV3, Result: reflect.TypeFor[RefreshResult]()},
	{Type: TypeSessionRevoke, Version: 1, Level: 1, Apply: applySessionRevoke, Result: reflect.TypeFor[*Session]()},
	{Type: TypeUserRevoke, Version: 1, Level: 1, Apply: applyUserRevoke, Result: reflect.TypeFor[int]()},
	{Type: TypeUserPassword, Version: 1, Level: 1, Apply: applyUserPassword, Result: reflect.TypeFor[*Session]()},
	{Type: TypeUserPassword, Version: 2, Level: 3, Apply: applyUserPasswordV2, Result: reflect.TypeFor[*Session]()},
	{Type: TypeUserPassword, Version: 3, Level: 5, Apply: applyUserPasswordV3, Result: reflect.TypeFor[*Session]()},
}

func applySessionCreate(t txn, c Command) (any, error) {
	var p SessionCreate
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	return startSessionTx(t, c, p, nil)
}

func applySessionCreateV2(t txn, c Command) (any, error) {
	var p SessionCreateV2
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if p.Rehash != "" && (p.PasswordGen == nil || len(p.Rehash) > 512) {
		return nil, fmt.Errorf("%w: session.create rehash needs password_gen", ErrInvalidCommand)
	}
	return startSessionTx(t, c, p.SessionCreate, func(u *User) error {
		if p.PasswordGen == nil {
			return nil
		}
		if u.PasswordGen != *p.PasswordGen {
			return ErrCredentialChanged
		}
		if p.Rehash != "" {
			u.PasswordHash = p.Rehash
			return t.putUser(u)
		}
		return nil
	})
}

// startSessionTx starts the session p describes; check, if set, vets (and
// may update) the user first, in the same transaction.
func startSessionTx(t txn, c Command, p SessionCreate, check func(*User) error) (any, error) {
	return startSession(t, c, p, check, sessionStart{})
}

// sessionStart is how startSession differs between command versions.
type sessionStart struct {
	// limitsFirst makes the id and session limit checks before check,
	// which may write (session.create v4): a refused command then writes
	// nothing.
	limitsFirst bool
	// noRecord: the refresh token names its session and generation (0)
	// under a MAC (level 5), so no refresh record or index entry is
	// written for it.
	noRecord bool
}

func startSession(t txn, c Command, p SessionCreate, check func(*User) error, how sessionStart) (any, error) {
	if !validID(p.ID) || p.UserID == "" || len(p.RefreshHash) != 64 || p.Lifetime <= 0 || p.MaxPerUser < 1 ||
		(p.OnLimit != "evict_oldest" && p.OnLimit != "deny") {
		return nil, fmt.Errorf("%w: session.create payload", ErrInvalidCommand)
	}
	u, err := getUser(t.tx, p.UserID)
	if err != nil {
		return nil, err
	}
	if u.Disabled {
		return nil, ErrUserDisabled
	}
	if t.lockdown().Active && !p.DuringLockdown {
		return nil, ErrLockedDown
	}
	at := time.Unix(0, c.Time).UTC()
	var alive []*Session
	limits := func() error {
		if t.tx.Bucket(bucketSessions).Get([]byte(p.ID)) != nil || t.tx.Bucket(bucketRefresh).Get([]byte(p.RefreshHash)) != nil {
			return fmt.Errorf("%w: session or refresh token id reused", ErrInvalidCommand)
		}
		live, err := t.userSessions(p.UserID)
		if err != nil {
			return err
		}
		for _, s := range live {
			if s.Alive(at) && !endedByLockdown(Reader{tx: t.tx}, s) {
				alive = append(alive, s)
			}
		}
		if len(alive) >= p.MaxPerUser && p.OnLimit == "deny" {
			return ErrSessionLimit
		}
		return nil
	}
	if how.limitsFirst {
		if err := limits(); err != nil {
			return nil, err
		}
	}
	if check != nil {
		if err := check(u); err != nil {
			return nil, err
		}
	}
	if !how.limitsFirst {
		if err := limits(); err != nil {
			return nil, err
		}
	}
	if len(alive) >= p.MaxPerUser {
		sort.Slice(alive, func(i, j int) bool { return alive[i].CreatedAt.Before(alive[j].CreatedAt) })
		for _, s := range alive[:len(alive)-p.MaxPerUser+1] {
			if err := t.deleteSession(s); err != nil {
				return nil, err
			}
		}
	}
	s := &Session{ID: p.ID, UserID: p.UserID, CreatedAt: at, LastSeenAt: at, AuthTime: at,
		ExpiresAt: at.Add(time.Duration(p.Lifetime)), IdleTimeout: p.IdleTimeout,
		IP: p.IP, UserAgent: p.UserAgent, AMR: p.AMR, RefreshHash: p.RefreshHash}
	if err := t.putSession(s); err != nil {
		return nil, err
	}
	if err := t.indexSessionFrom(3, s); err != nil {
		return nil, err
	}
	if !how.noRecord {
		if err := t.putRefresh(p.RefreshHash, refreshRecord{SessionID: s.ID}); err != nil {
			return nil, err
		}
	}
	if p.ResetLockout != "" {
		if err := t.tx.Bucket(bucketLockout).Delete([]byte(p.ResetLockout)); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// applySessionRefresh is session.refresh v1: the exchanged token's record
// is rewritten with Used set.
func applySessionRefresh(t txn, c Command) (any, error) {
	return refreshSession(t, c, true)
}

// applySessionRefreshV2 is session.refresh v2: the same exchange, but the
// exchanged token's record is left as it is (one leaf page less per
// refresh on every node); a token whose session has moved on to another
// RefreshHash is dead, and presenting it again is reuse.
func applySessionRefreshV2(t txn, c Command) (any, error) {
	return refreshSession(t, c, false)
}

func refreshSession(t txn, c Command, markUsed bool) (any, error) {
	var p SessionRefresh
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if len(p.OldHash) != 64 || len(p.NewHash) != 64 || p.OldHash == p.NewHash {
		return nil, fmt.Errorf("%w: session.refresh payload", ErrInvalidCommand)
	}
	v := t.tx.Bucket(bucketRefresh).Get([]byte(p.OldHash))
	if v == nil {
		return nil, ErrInvalidGrant
	}
	var rec refreshRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return nil, err
	}
	s, err := getSession(t.tx, rec.SessionID)
	if err != nil || endedByLockdown(Reader{tx: t.tx}, s) {
		return nil, ErrInvalidGrant
	}
	// Dead: marked so by v1, or its session has moved on to another token
	// (v2 marks nothing). In a log of v1 entries alone the two are the
	// same (every move marks the old record), so v1's outcome is as it
	// always was; in a log that mixes versions, v1 sees v2's dead tokens.
	if rec.Used || s.RefreshHash != p.OldHash {
		return revokeForReuse(t, c, s, p)
	}
	at := time.Unix(0, c.Time).UTC()
	u, err := t.refreshableUser(s, at)
	if err != nil {
		return nil, err
	}
	if t.tx.Bucket(bucketRefresh).Get([]byte(p.NewHash)) != nil {
		return nil, fmt.Errorf("%w: refresh token id reused", ErrInvalidCommand)
	}
	if markUsed {
		if err := t.putRefresh(p.OldHash, refreshRecord{SessionID: s.ID, Used: true}); err != nil {
			return nil, err
		}
	}
	if err := t.putRefresh(p.NewHash, refreshRecord{SessionID: s.ID}); err != nil {
		return nil, err
	}
	s.RefreshHash = p.NewHash
	return t.rotated(s, u, at, p)
}

// applySessionRefreshV3 is session.refresh v3: rotation and reuse
// detection by the session's refresh generation, with no record per
// token read or written.
func applySessionRefreshV3(t txn, c Command) (any, error) {
	var p SessionRefreshV3
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if !validID(p.SessionID) || !validHexHash(p.OldHash) || !validHexHash(p.NewHash) || p.OldHash == p.NewHash ||
		p.Generation == math.MaxUint64 {
		return nil, fmt.Errorf("%w: session.refresh payload", ErrInvalidCommand)
	}
	s, err := getSession(t.tx, p.SessionID)
	if err != nil || endedByLockdown(Reader{tx: t.tx}, s) {
		return nil, ErrInvalidGrant
	}
	if p.Generation > s.RefreshGen {
		return nil, ErrInvalidGrant // never handed out
	}
	if p.Generation < s.RefreshGen || p.OldHash != s.RefreshHash {
		return revokeForReuse(t, c, s, p.SessionRefresh)
	}
	at := time.Unix(0, c.Time).UTC()
	u, err := t.refreshableUser(s, at)
	if err != nil {
		return nil, err
	}
	s.RefreshHash, s.RefreshGen = p.NewHash, p.Generation+1
	return t.rotated(s, u, at, p.SessionRefresh)
}

// refreshableUser returns the user of s, whose live refresh token was
// presented, if s is alive at at and the user enabled; otherwise it ends
// s and answers ErrInvalidGrant.
func (t txn) refreshableUser(s *Session, at time.Time) (*User, error) {
	u, err := getUser(t.tx, s.UserID)
	if !s.Alive(at) || err != nil || u.Disabled {
		if err := t.deleteSession(s); err != nil {
			return nil, err
		}
		return nil, ErrInvalidGrant
	}
	return u, nil
}

// rotated records on s, whose refresh token the caller has just moved on,
// the refresh at at from p's client, and writes it.
func (t txn) rotated(s *Session, u *User, at time.Time, p SessionRefresh) (any, error) {
	s.LastSeenAt = at
	if p.IP != "" {
		s.IP, s.UserAgent = p.IP, p.UserAgent
	}
	// The user's index entry is unchanged: rewrite only the record.
	if err := t.putJSON(bucketSessions, s.ID, s); err != nil {
		return nil, err
	}
	return RefreshResult{Session: s, User: u}, nil
}

// revokeForReuse ends session s, whose dead refresh token p presented,
// with a critical audit entry: RFC 9700 4.14.2, a refresh token used
// twice means one of the two holders is an attacker; end the session for
// both.
func revokeForReuse(t txn, c Command, s *Session, p SessionRefresh) (any, error) {
	ev := AuditAppend{Type: "refresh.reuse", Severity: AuditCritical,
		Actor: s.UserID, Subject: s.UserID, IP: asciiIP(p.IP), UserAgent: CleanAuditText(p.UserAgent, MaxAuditUserAgent),
		Details: map[string]string{"session_id": s.ID, "action": "session revoked"}}
	if err := ev.Validate(); err != nil {
		return nil, err
	}
	if err := t.deleteSession(s); err != nil {
		return nil, err
	}
	if _, err := appendAudit(t, c.Time, ev); err != nil {
		return nil, err
	}
	return RefreshResult{Session: s, Reused: true}, nil
}

func applySessionRevoke(t txn, c Command) (any, error) {
	var p SessionRevoke
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	s, err := getSession(t.tx, p.ID)
	if err != nil || (p.UserID != "" && s.UserID != p.UserID) {
		return nil, ErrSessionNotFound
	}
	return s, t.deleteSession(s)
}

func applyUserRevoke(t txn, c Command) (any, error) {
	var p UserRevokeSessions
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if _, err := getUser(t.tx, p.UserID); err != nil {
		return nil, err
	}
	n, err := t.revokeUserSessions(p.UserID, p.Except)
	return n, err
}

func applyUserPassword(t txn, c Command) (any, error) {
	var p UserSetPassword
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	return setPassword(t, c, p, nil, nil)
}

func applyUserPasswordV2(t txn, c Command) (any, error) {
	var p UserSetPasswordV2
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	return setPassword(t, c, p.UserSetPassword, &p.PasswordGen, nil)
}

// applyUserPasswordV3 is user.set_password v3: v2, the current session's
// new refresh token of generation p.Generation, and no refresh record.
func applyUserPasswordV3(t txn, c Command) (any, error) {
	var p UserSetPasswordV3
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if p.Generation == math.MaxUint64 {
		return nil, fmt.Errorf("%w: user.set_password generation", ErrInvalidCommand)
	}
	return setPassword(t, c, p.UserSetPassword, &p.PasswordGen, &p.Generation)
}

// setPassword applies a password change; with gen set, only if the
// password is still at that generation, and it moves to the next. With
// refreshGen set (v3), the current session's new refresh token is of that
// generation, which must be at least the session's (else
// ErrRefreshMoved), and no refresh record is written.
func setPassword(t txn, c Command, p UserSetPassword, gen, refreshGen *uint64) (any, error) {
	if p.PasswordHash == "" || (p.SessionID != "") != (len(p.NewHash) == 64) {
		return nil, fmt.Errorf("%w: user.set_password payload", ErrInvalidCommand)
	}
	u, err := getUser(t.tx, p.UserID)
	if err != nil {
		return nil, err
	}
	var cur *Session
	if p.SessionID != "" {
		if cur, err = getSession(t.tx, p.SessionID); err != nil || cur.UserID != u.ID {
			return nil, ErrSessionNotFound
		}
		if t.tx.Bucket(bucketRefresh).Get([]byte(p.NewHash)) != nil {
			return nil, fmt.Errorf("%w: refresh token id reused", ErrInvalidCommand)
		}
		if refreshGen != nil && (p.NewHash == cur.RefreshHash || *refreshGen < cur.RefreshGen) {
			if p.NewHash == cur.RefreshHash {
				return nil, fmt.Errorf("%w: refresh token id reused", ErrInvalidCommand)
			}
			return nil, ErrRefreshMoved
		}
	}
	if gen != nil {
		if u.PasswordGen != *gen {
			return nil, ErrCredentialChanged
		}
		u.PasswordGen++
	}
	u.PasswordHash = p.PasswordHash
	u.UpdatedAt = time.Unix(0, c.Time).UTC()
	if err := t.putUser(u); err != nil {
		return nil, err
	}
	if _, err := t.revokeUserSessions(u.ID, p.SessionID); err != nil {
		return nil, err
	}
	if cur == nil {
		return nil, nil
	}
	if refreshGen != nil {
		// v3: the old token is dead by its generation or hash, as after a
		// session.refresh v3; a token of the stored kind the session had
		// before keeps its record, dead because it is no longer the
		// session's.
		cur.RefreshHash, cur.RefreshGen = p.NewHash, *refreshGen
		cur.LastSeenAt = u.UpdatedAt
		return cur, t.putSession(cur)
	}
	// The current session continues with a fresh refresh token; the old
	// one is dead (and kept as used, for reuse detection).
	if err := t.putRefresh(cur.RefreshHash, refreshRecord{SessionID: cur.ID, Used: true}); err != nil {
		return nil, err
	}
	if err := t.putRefresh(p.NewHash, refreshRecord{SessionID: cur.ID}); err != nil {
		return nil, err
	}
	cur.RefreshHash = p.NewHash
	cur.LastSeenAt = u.UpdatedAt
	return cur, t.putSession(cur)
}

// asciiIP keeps an address only if it fits the audit trail's ip field.
func asciiIP(ip string) string {
	if len(ip) > MaxAuditIP {
		return ""
	}
	for i := 0; i < len(ip); i++ {
		if ip[i] < 0x21 || ip[i] > 0x7e {
			return ""
		}
	}
	return ip
}

// getJSON decodes the record stored under key in bucket; missing, if
// there is none (nil missing: nil record, no error).
func getJSON[T any](tx *bolt.Tx, bucket []byte, key string, missing error) (*T, error) {
	v := tx.Bucket(bucket).Get([]byte(key))
	if v == nil {
		return nil, missing
	}
	var rec T
	if err := json.Unmarshal(v, &rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

func (t txn) putJSON(bucket []byte, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return t.tx.Bucket(bucket).Put([]byte(key), b)
}

func (t txn) putSession(s *Session) error {
	if t.tx.Bucket(bucketSessions).Get([]byte(s.ID)) == nil {
		t.countSessions(1)
	}
	if err := t.putJSON(bucketSessions, s.ID, s); err != nil {
		return err
	}
	return t.tx.Bucket(bucketUserSessions).Put(userSessionKey(s.UserID, s.ID), nil)
}

// deleteSession removes a session, its index entries (by user, by expiry)
// and every refresh token that points to it.
func (t txn) deleteSession(s *Session) error {
	b := t.tx.Bucket(bucketSessions)
	if b.Get([]byte(s.ID)) != nil {
		t.countSessions(-1)
	}
	if err := b.Delete([]byte(s.ID)); err != nil {
		return err
	}
	if err := t.tx.Bucket(bucketUserSessions).Delete(userSessionKey(s.UserID, s.ID)); err != nil {
		return err
	}
	if err := t.tx.Bucket(bucketExpiry).Delete(expiryKey(s.ExpiresAt.UnixNano(), expirySession, s.ID)); err != nil {
		return err
	}
	return t.deleteRefreshOf(s.ID)
}

// deleteRefreshOf deletes every refresh token, live or used, of a session.
func (t txn) deleteRefreshOf(sid string) error {
	prefix := append([]byte(sid), 0)
	idx, b := t.tx.Bucket(bucketSessionRefresh), t.tx.Bucket(bucketRefresh)
	var keys [][]byte
	c := idx.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, append([]byte(nil), k...))
	}
	for _, k := range keys {
		if err := b.Delete(k[len(prefix):]); err != nil {
			return err
		}
		if err := idx.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// putRefresh stores a refresh token's record and indexes it under its
// session.
func (t txn) putRefresh(hash string, rec refreshRecord) error {
	if err := t.putJSON(bucketRefresh, hash, rec); err != nil {
		return err
	}
	return t.tx.Bucket(bucketSessionRefresh).Put(append(append([]byte(rec.SessionID), 0), hash...), nil)
}

func (t txn) userSessions(userID string) ([]*Session, error) {
	return listUserSessions(t.tx, userID)
}

func (t txn) revokeUserSessions(userID, except string) (int, error) {
	all, err := t.userSessions(userID)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range all {
		if s.ID == except {
			continue
		}
		if err := t.deleteSession(s); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func userSessionKey(userID, sid string) []byte {
	return append(append([]byte(userID), 0), sid...)
}

func listUserSessions(tx *bolt.Tx, userID string) ([]*Session, error) {
	prefix := append([]byte(userID), 0)
	var out []*Session
	c := tx.Bucket(bucketUserSessions).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		s, err := getSession(tx, string(k[len(prefix):]))
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// getSession reads a stored session, ended by a lockdown or not.
func getSession(tx *bolt.Tx, id string) (*Session, error) {
	return Reader{tx: tx}.sessionRecord(id) // no cache: Apply reads what it decodes
}

func (r Reader) sessionRecord(id string) (*Session, error) {
	return cachedRecord(r, bucketSessions, id, decodeSession, cloneSession, ErrSessionNotFound)
}

func decodeSession(v []byte) (*Session, error) {
	var s Session
	if err := json.Unmarshal(v, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Session returns a session by id, or ErrSessionNotFound.
func (r Reader) Session(id string) (*Session, error) {
	s, err := r.sessionRecord(id)
	if err == nil && endedByLockdown(r, s) {
		return nil, ErrSessionNotFound
	}
	return s, err
}

// UserSessions returns a user's stored sessions (some may be dead but not
// yet swept: check Alive).
func (r Reader) UserSessions(userID string) ([]*Session, error) {
	ss, err := listUserSessions(r.tx, userID)
	return slices.DeleteFunc(ss, func(s *Session) bool { return endedByLockdown(r, s) }), err
}
