package fsm

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"time"
)

// OpenID Connect provider state (level 4): registered clients, pending
// authorization requests, authorization codes and revoked client
// credentials tokens. A code redeemed becomes a session like any other
// (sessions.go): its refresh token is a session's refresh token, with the
// same rotation and reuse detection, and revoking the grant is revoking
// that session. Codes are stored by the SHA-256 of the code, client
// secrets as a MAC under the cluster data key: neither is a credential
// here.
const (
	TypeOIDCClientPut    Type = "oidc.client_put"
	TypeOIDCClientDelete Type = "oidc.client_delete"
	TypeOIDCAuthRequest  Type = "oidc.auth_request"
	TypeOIDCAuthorize    Type = "oidc.authorize"
	TypeOIDCCodeRedeem   Type = "oidc.code_redeem"
	TypeOIDCTokenRevoke  Type = "oidc.token_revoke"
)

// Expiry index kinds of this file (expiry.go).
const (
	expiryAuthRequest byte = 'r' // bucketAuthRequests, at the request's KeepUntil
	expiryCode        byte = 'c' // bucketCodes, at the code's KeepUntil
	expiryRevokedJTI  byte = 'j' // bucketRevokedTokens, at the token's expiry
)

// OIDCClient is a registered relying party. Its id is its name.
type OIDCClient struct {
	ID           string    `json:"id"`
	SecretHash   string    `json:"secret_hash,omitempty"` // hex MAC of the secret; empty for a public client
	Public       bool      `json:"public,omitempty"`
	RedirectURIs []string  `json:"redirect_uris"`
	CreatedAt    time.Time `json:"created_at"`
	// IDTokenAlg is the JWS algorithm of the client's ID tokens (ES256,
	// EdDSA or RS256; empty: ES256). Level 5 (oidc.client_put v2).
	IDTokenAlg string `json:"id_token_alg,omitempty"`
	// ConsentRequired: a user is asked once per scopes before the client
	// gets a code (oidc_grants.go). Level 5 (oidc.client_put v2).
	ConsentRequired bool `json:"consent_required,omitempty"`
}

// ID-token algorithms a client may ask for (OIDCClient.IDTokenAlg).
var OIDCIDTokenAlgs = []string{"ES256", "EdDSA", "RS256"}

// OIDCAuthRequest is an authorization request waiting for its user, then
// (once Authorized) the grant its code stands for.
type OIDCAuthRequest struct {
	ID                  string   `json:"id"`
	ClientID            string   `json:"client_id"`
	RedirectURI         string   `json:"redirect_uri"`
	Scopes              []string `json:"scopes"`
	State               string   `json:"state,omitempty"`
	Nonce               string   `json:"nonce,omitempty"`
	CodeChallenge       string   `json:"code_challenge,omitempty"`
	CodeChallengeMethod string   `json:"code_challenge_method,omitempty"`
	// MaxAge, when set, is max_age in seconds (prompt=login makes it 0).
	MaxAge    *int64    `json:"max_age,omitempty"`
	Prompt    []string  `json:"prompt,omitempty"`
	ExpiresAt time.Time `json:"expires_at"` // the user must sign in before
	KeepUntil time.Time `json:"keep_until"` // the sweep deletes it then

	// Set by oidc.authorize.
	UserID       string    `json:"user_id,omitempty"`
	LoginSession string    `json:"login_session,omitempty"` // the browser's session the user signed in with
	AuthTime     time.Time `json:"auth_time,omitzero"`
	AMR          []string  `json:"amr,omitempty"`
}

// OIDCCode is an authorization code (stored under its hash).
type OIDCCode struct {
	RequestID string    `json:"request_id"`
	ClientID  string    `json:"client_id"`
	ExpiresAt time.Time `json:"expires_at"` // redeemable before
	KeepUntil time.Time `json:"keep_until"` // a replay still revokes until then
	// SessionID is the session the code was redeemed for; set once used.
	SessionID string `json:"session_id,omitempty"`
}

// OIDCClientPut registers a client; one with the same id is refused.
type OIDCClientPut struct {
	Client OIDCClient `json:"client"`
}

// OIDCClientDelete removes a client.
type OIDCClientDelete struct {
	ID string `json:"id"`
}

// OIDCAuthRequestPut stores a validated authorization request.
type OIDCAuthRequestPut struct {
	Request OIDCAuthRequest `json:"request"`
}

// OIDCAuthorize binds a request to the user who signed in for it and
// issues its code (by hash). Apply refuses it if the request is gone,
// expired or authorized already, or the login session is not alive.
type OIDCAuthorize struct {
	RequestID     string    `json:"request_id"`
	CodeHash      string    `json:"code_hash"`
	UserID        string    `json:"user_id"`
	LoginSession  string    `json:"login_session"`
	AuthTime      time.Time `json:"auth_time"`
	AMR           []string  `json:"amr,omitempty"`
	CodeExpiresAt time.Time `json:"code_expires_at"`
	CodeKeepUntil time.Time `json:"code_keep_until"`
	// ConsentAfter (v2 only): when the request's client requires consent,
	// the user's grant (oidc_grants.go) must cover the request's scopes
	// and have been given at or after this instant (prompt=consent sets
	// it to the request's start; zero: any time).
	ConsentAfter time.Time `json:"consent_after,omitzero"`
}

// OIDCCodeRedeem exchanges a code for a new session (Session's fields
// but the user, the amr and the auth time, which come from the request).
// Apply checks the client, the redirect_uri, the expiry, that the code is
// unused and PKCE: PKCE is base64url(SHA-256(code_verifier)), which must
// equal the request's S256 code_challenge (RFC 7636 4.6); the verifier
// itself never enters the log. A used code presented again revokes the
// session it was redeemed for (RFC 6749 4.1.2) and answers Replayed.
type OIDCCodeRedeem struct {
	CodeHash    string        `json:"code_hash"`
	ClientID    string        `json:"client_id"`
	RedirectURI string        `json:"redirect_uri"`
	PKCE        string        `json:"pkce,omitempty"`
	Session     SessionCreate `json:"session"`
}

// OIDCCodeResult answers oidc.code_redeem.
type OIDCCodeResult struct {
	Session  *Session         `json:"session,omitempty"`
	User     *User            `json:"user,omitempty"`
	Request  *OIDCAuthRequest `json:"request,omitempty"`
	Replayed bool             `json:"replayed,omitempty"`
}

// OIDCTokenRevoke records a revoked access token that has no session (a
// client_credentials token) until it would have expired.
type OIDCTokenRevoke struct {
	JTI       string    `json:"jti"`
	ExpiresAt time.Time `json:"expires_at"`
}

var oidcCommands = []CommandSpec{
	{Type: TypeOIDCClientPut, Version: 1, Level: 4, Apply: applyOIDCClientPut, Result: nil},
	{Type: TypeOIDCClientDelete, Version: 1, Level: 4, Apply: applyOIDCClientDelete, Result: nil},
	{Type: TypeOIDCAuthRequest, Version: 1, Level: 4, Apply: applyOIDCAuthRequest, Result: nil},
	{Type: TypeOIDCAuthorize, Version: 1, Level: 4, Apply: applyOIDCAuthorize, Result: nil},
	{Type: TypeOIDCCodeRedeem, Version: 1, Level: 4, Apply: applyOIDCCodeRedeem, Result: reflect.TypeFor[OIDCCodeResult]()},
	{Type: TypeOIDCTokenRevoke, Version: 1, Level: 4, Apply: applyOIDCTokenRevoke, Result: nil},
	// Level 5: a client's ID-token algorithm and consent flag; the
	// authorization re-checks the user's consent.
	{Type: TypeOIDCClientPut, Version: 2, Level: 5, Apply: applyOIDCClientPut2, Result: nil},
	{Type: TypeOIDCAuthorize, Version: 2, Level: 5, Apply: applyOIDCAuthorize2, Result: nil},
	// oidc.code_redeem v2: v1's payload; the grant's refresh token names
	// its session and generation under a MAC, so no refresh record is
	// written (session.refresh v3).
	{Type: TypeOIDCCodeRedeem, Version: 2, Level: 5, Apply: applyOIDCCodeRedeem2, Result: reflect.TypeFor[OIDCCodeResult]()},
}

// The payloads of oidc.client_put v1 and oidc.authorize v1, as that
// version decodes them: strictly, without the fields v2 added, so a v1
// entry carrying one is refused by this binary as by those before it.
type (
	oidcClientV1 struct {
		ID           string    `json:"id"`
		SecretHash   string    `json:"secret_hash,omitempty"`
		Public       bool      `json:"public,omitempty"`
		RedirectURIs []string  `json:"redirect_uris"`
		CreatedAt    time.Time `json:"created_at"`
	}
	oidcClientPutV1 struct {
		Client oidcClientV1 `json:"client"`
	}
	oidcAuthorizeV1 struct {
		RequestID     string    `json:"request_id"`
		CodeHash      string    `json:"code_hash"`
		UserID        string    `json:"user_id"`
		LoginSession  string    `json:"login_session"`
		AuthTime      time.Time `json:"auth_time"`
		AMR           []string  `json:"amr,omitempty"`
		CodeExpiresAt time.Time `json:"code_expires_at"`
		CodeKeepUntil time.Time `json:"code_keep_until"`
	}
)

const (
	maxOIDCRedirectURIs = 16
	maxOIDCURI          = 2048
	maxOIDCScopes       = 32
	maxOIDCParam        = 512 // state, nonce, code_challenge, a scope
)

func validOIDCClient(c *OIDCClient) bool {
	if !validID(c.ID) || len(c.RedirectURIs) == 0 || len(c.RedirectURIs) > maxOIDCRedirectURIs ||
		c.Public != (c.SecretHash == "") || (c.SecretHash != "" && len(c.SecretHash) != 64) {
		return false
	}
	for _, u := range c.RedirectURIs {
		if u == "" || len(u) > maxOIDCURI {
			return false
		}
	}
	return true
}

func applyOIDCClientPut(t txn, c Command) (any, error) {
	var p oidcClientPutV1
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	v1 := p.Client
	return putOIDCClient(t, c, OIDCClient{ID: v1.ID, SecretHash: v1.SecretHash, Public: v1.Public,
		RedirectURIs: v1.RedirectURIs, CreatedAt: v1.CreatedAt})
}

// applyOIDCClientPut2 is v1 with the client's ID-token algorithm and
// consent flag.
func applyOIDCClientPut2(t txn, c Command) (any, error) {
	var p OIDCClientPut
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if p.Client.IDTokenAlg != "" && !slices.Contains(OIDCIDTokenAlgs, p.Client.IDTokenAlg) {
		return nil, fmt.Errorf("%w: oidc.client_put id_token_alg", ErrInvalidCommand)
	}
	return putOIDCClient(t, c, p.Client)
}

func putOIDCClient(t txn, c Command, cl OIDCClient) (any, error) {
	if !validOIDCClient(&cl) {
		return nil, fmt.Errorf("%w: oidc.client_put payload", ErrInvalidCommand)
	}
	if t.tx.Bucket(bucketClients).Get([]byte(cl.ID)) != nil {
		return nil, ErrClientExists
	}
	cl.CreatedAt = time.Unix(0, c.Time).UTC()
	return nil, t.putJSON(bucketClients, cl.ID, cl)
}

func applyOIDCClientDelete(t txn, c Command) (any, error) {
	var p OIDCClientDelete
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if t.tx.Bucket(bucketClients).Get([]byte(p.ID)) == nil {
		return nil, ErrClientNotFound
	}
	return nil, t.tx.Bucket(bucketClients).Delete([]byte(p.ID))
}

func applyOIDCAuthRequest(t txn, c Command) (any, error) {
	var p OIDCAuthRequestPut
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	r := &p.Request
	if !validID(r.ID) || r.RedirectURI == "" || len(r.RedirectURI) > maxOIDCURI || len(r.Scopes) == 0 ||
		len(r.Scopes) > maxOIDCScopes || len(r.State) > maxOIDCParam || len(r.Nonce) > maxOIDCParam ||
		len(r.CodeChallenge) > maxOIDCParam || len(r.Prompt) > 4 || r.UserID != "" || r.LoginSession != "" ||
		r.KeepUntil.Before(r.ExpiresAt) {
		return nil, fmt.Errorf("%w: oidc.auth_request payload", ErrInvalidCommand)
	}
	if t.tx.Bucket(bucketClients).Get([]byte(r.ClientID)) == nil {
		return nil, ErrClientNotFound
	}
	if t.tx.Bucket(bucketAuthRequests).Get([]byte(r.ID)) != nil {
		return nil, fmt.Errorf("%w: auth request id reused", ErrInvalidCommand)
	}
	if err := t.putJSON(bucketAuthRequests, r.ID, r); err != nil {
		return nil, err
	}
	return nil, t.index(r.KeepUntil.UnixNano(), expiryAuthRequest, r.ID)
}

func applyOIDCAuthorize(t txn, c Command) (any, error) {
	var v1 oidcAuthorizeV1
	if err := decodePayload(c, &v1); err != nil {
		return nil, err
	}
	return authorizeOIDC(t, c, OIDCAuthorize{RequestID: v1.RequestID, CodeHash: v1.CodeHash, UserID: v1.UserID,
		LoginSession: v1.LoginSession, AuthTime: v1.AuthTime, AMR: v1.AMR, CodeExpiresAt: v1.CodeExpiresAt,
		CodeKeepUntil: v1.CodeKeepUntil}, false)
}

// applyOIDCAuthorize2 is v1 that, for a client that requires consent,
// also requires the user's grant to cover the request's scopes
// (ErrConsentRequired), given at or after ConsentAfter: the check the
// proposer made is made again on the committed state.
func applyOIDCAuthorize2(t txn, c Command) (any, error) {
	var p OIDCAuthorize
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	return authorizeOIDC(t, c, p, true)
}

func authorizeOIDC(t txn, c Command, p OIDCAuthorize, consent bool) (any, error) {
	if len(p.CodeHash) != 64 || p.UserID == "" || !p.CodeKeepUntil.After(p.CodeExpiresAt) {
		return nil, fmt.Errorf("%w: oidc.authorize payload", ErrInvalidCommand)
	}
	at := time.Unix(0, c.Time).UTC()
	r, err := getAuthRequest(t, p.RequestID)
	if err != nil {
		return nil, err
	}
	if r.UserID != "" || !at.Before(r.ExpiresAt) {
		return nil, ErrAuthRequestNotFound // answered once, or too late
	}
	if consent {
		if err := t.checkConsent(p.UserID, r, p.ConsentAfter); err != nil {
			return nil, err
		}
	}
	s, err := getSession(t.tx, p.LoginSession)
	if err != nil || s.UserID != p.UserID || !s.Alive(at) {
		return nil, ErrSessionNotFound
	}
	if t.tx.Bucket(bucketCodes).Get([]byte(p.CodeHash)) != nil {
		return nil, fmt.Errorf("%w: code reused", ErrInvalidCommand)
	}
	r.UserID, r.LoginSession, r.AuthTime, r.AMR = p.UserID, p.LoginSession, p.AuthTime.UTC(), p.AMR
	if err := t.putJSON(bucketAuthRequests, r.ID, r); err != nil {
		return nil, err
	}
	code := OIDCCode{RequestID: r.ID, ClientID: r.ClientID, ExpiresAt: p.CodeExpiresAt, KeepUntil: p.CodeKeepUntil}
	if err := t.putJSON(bucketCodes, p.CodeHash, code); err != nil {
		return nil, err
	}
	return nil, t.index(p.CodeKeepUntil.UnixNano(), expiryCode, p.CodeHash)
}

func applyOIDCCodeRedeem(t txn, c Command) (any, error) {
	return redeemCode(t, c, sessionStart{})
}

func applyOIDCCodeRedeem2(t txn, c Command) (any, error) {
	return redeemCode(t, c, sessionStart{noRecord: true})
}

func redeemCode(t txn, c Command, how sessionStart) (any, error) {
	var p OIDCCodeRedeem
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if len(p.CodeHash) != 64 || p.Session.UserID != "" || len(p.Session.AMR) != 0 || p.Session.ResetLockout != "" {
		return nil, fmt.Errorf("%w: oidc.code_redeem payload", ErrInvalidCommand)
	}
	at := time.Unix(0, c.Time).UTC()
	code, err := getJSON[OIDCCode](t.tx, bucketCodes, p.CodeHash, ErrInvalidCode)
	if err != nil {
		return nil, err
	}
	if code.ClientID != p.ClientID {
		return nil, ErrInvalidCode // another client's code: it stays redeemable by its own
	}
	if code.SessionID != "" {
		// RFC 6749 4.1.2: a code used twice; revoke what it issued.
		if s, err := getSession(t.tx, code.SessionID); err == nil {
			if err := t.deleteSession(s); err != nil {
				return nil, err
			}
			ev := AuditAppend{Type: "oidc.code_replay", Severity: AuditCritical, Actor: s.UserID, Subject: s.UserID,
				Details: map[string]string{"client_id": code.ClientID, "session_id": s.ID, "action": "session revoked"}}
			if _, err := appendAudit(t, c.Time, ev); err != nil {
				return nil, err
			}
		}
		return OIDCCodeResult{Replayed: true}, nil
	}
	if !at.Before(code.ExpiresAt) {
		return nil, ErrInvalidCode
	}
	r, err := getAuthRequest(t, code.RequestID)
	if err != nil || r.RedirectURI != p.RedirectURI || r.ClientID != p.ClientID {
		return nil, ErrInvalidCode
	}
	// PKCE: a challenge needs its verifier; a verifier without a
	// challenge is refused too (RFC 9700 2.1.1).
	if p.PKCE != r.CodeChallenge || (r.CodeChallenge != "" && r.CodeChallengeMethod != "S256") {
		return nil, ErrInvalidCode
	}
	if t.tx.Bucket(bucketClients).Get([]byte(r.ClientID)) == nil {
		return nil, ErrInvalidCode // the client was removed meanwhile
	}
	// The grant lives only while the sign-in it came from does: a
	// password change, a revocation or a disable since ends it here.
	if ls, err := getSession(t.tx, r.LoginSession); err != nil || !ls.Alive(at) {
		return nil, ErrInvalidCode
	}
	sc := p.Session
	sc.UserID, sc.AMR = r.UserID, slices.Clone(r.AMR)
	v2, err := startSession(t, c, sc, nil, how)
	if err != nil {
		return nil, err
	}
	s := v2.(*Session)
	s.AuthTime, s.ClientID, s.Scopes = r.AuthTime, r.ClientID, slices.Clone(r.Scopes)
	if err := t.putJSON(bucketSessions, s.ID, s); err != nil {
		return nil, err
	}
	code.SessionID = s.ID
	if err := t.putJSON(bucketCodes, p.CodeHash, code); err != nil {
		return nil, err
	}
	u, err := getUser(t.tx, s.UserID)
	if err != nil {
		return nil, err
	}
	return OIDCCodeResult{Session: s, User: u, Request: r}, nil
}

func applyOIDCTokenRevoke(t txn, c Command) (any, error) {
	var p OIDCTokenRevoke
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if !validID(p.JTI) {
		return nil, fmt.Errorf("%w: oidc.token_revoke payload", ErrInvalidCommand)
	}
	if err := t.tx.Bucket(bucketRevokedTokens).Put([]byte(p.JTI), nil); err != nil {
		return nil, err
	}
	return nil, t.index(p.ExpiresAt.UnixNano(), expiryRevokedJTI, p.JTI)
}

func getAuthRequest(t txn, id string) (*OIDCAuthRequest, error) {
	return Reader{tx: t.tx}.OIDCAuthRequest(id)
}

// sweepOIDC deletes the record a due index entry of this file names.
func (t txn) sweepOIDC(kind byte, id string) error {
	switch kind {
	case expiryAuthRequest:
		return t.tx.Bucket(bucketAuthRequests).Delete([]byte(id))
	case expiryCode:
		return t.tx.Bucket(bucketCodes).Delete([]byte(id))
	case expiryRevokedJTI:
		return t.tx.Bucket(bucketRevokedTokens).Delete([]byte(id))
	}
	return nil
}

// OIDCClient returns a registered client, or ErrClientNotFound.
func (r Reader) OIDCClient(id string) (*OIDCClient, error) {
	return getJSON[OIDCClient](r.tx, bucketClients, id, ErrClientNotFound)
}

// OIDCClients calls fn for every client in id order.
func (r Reader) OIDCClients(fn func(*OIDCClient)) error {
	return r.tx.Bucket(bucketClients).ForEach(func(k, v []byte) error {
		var c OIDCClient
		if err := json.Unmarshal(v, &c); err != nil {
			return err
		}
		fn(&c)
		return nil
	})
}

// OIDCAuthRequest returns a stored authorization request, or
// ErrAuthRequestNotFound.
func (r Reader) OIDCAuthRequest(id string) (*OIDCAuthRequest, error) {
	return getJSON[OIDCAuthRequest](r.tx, bucketAuthRequests, id, ErrAuthRequestNotFound)
}

// OIDCCode returns the code stored under hash, or ErrInvalidCode.
func (r Reader) OIDCCode(hash string) (*OIDCCode, error) {
	return getJSON[OIDCCode](r.tx, bucketCodes, hash, ErrInvalidCode)
}

// TokenRevoked reports whether a session-less access token was revoked.
func (r Reader) TokenRevoked(jti string) bool {
	return r.tx.Bucket(bucketRevokedTokens).Get([]byte(jti)) != nil
}

// SessionByRefresh returns the session a refresh token (by hash) belongs
// to, and whether that token is its live one.
func (r Reader) SessionByRefresh(hash string) (*Session, bool, error) {
	v := r.tx.Bucket(bucketRefresh).Get([]byte(hash))
	if v == nil {
		return nil, false, ErrInvalidGrant
	}
	var rec refreshRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return nil, false, err
	}
	s, err := r.Session(rec.SessionID)
	if err != nil {
		return nil, false, ErrInvalidGrant
	}
	return s, !rec.Used && s.RefreshHash == hash, nil
}
