package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/bulwark-auth/bulwark/authcore"
	"github.com/bulwark-auth/bulwark/authcore/altcha"
)

// Auth is what the login, session, self-service, key and audit routes
// need from the auth service (authcore.Service satisfies it). Errors are
// authcore's sentinels, mapped to their answers by writeError.
type Auth interface {
	Login(ctx context.Context, username, password string) (authcore.Tokens, error)
	LoginWith(ctx context.Context, req authcore.LoginRequest) (authcore.Tokens, error)
	NewChallenge() (altcha.Challenge, error)
	Refresh(ctx context.Context, refreshToken string) (authcore.Tokens, error)
	Authenticate(ctx context.Context, bearer string) (*authcore.Principal, error)
	Logout(ctx context.Context, p *authcore.Principal) error
	Sessions(ctx context.Context, p *authcore.Principal) ([]authcore.SessionInfo, error)
	RevokeSession(ctx context.Context, p *authcore.Principal, sid string) error
	ChangePassword(ctx context.Context, p *authcore.Principal, current, next string) (authcore.Tokens, error)
	Me(ctx context.Context, p *authcore.Principal) (authcore.User, error)
	JWKS() ([]byte, error)
	Unlock(ctx context.Context, username string) error
	RevokeUserSessions(ctx context.Context, nameOrID string) (int, error)
	Audit(ctx context.Context, after uint64, limit int) ([]authcore.AuditEntry, error)
	VerifyAudit(ctx context.Context) (count uint64, err error)
	SigningKeys(ctx context.Context) ([]authcore.KeyInfo, error)
	RotateSigningKey(ctx context.Context) (authcore.KeyRotation, error)
	MFA
	Incident
}

// ActorLocalAdmin is the RequestInfo.Actor of every call made through the
// admin socket.
const ActorLocalAdmin = "local-admin"

// jwksCacheControl lets relying parties cache the key set for five
// minutes: a new node's key is published well before it signs (see
// authcore.PublishSigningKey), and a retired key stays listed while its
// tokens live.
// It must match authcore.JWKSMaxAge, which scheduled rotation waits out.
const jwksCacheControl = "public, max-age=300"

// withRequestInfo returns r with an authcore.RequestInfo in its context:
// the client address as clientIP finds it with trusted, the User-Agent,
// and actor.
func withRequestInfo(r *http.Request, trusted []netip.Prefix, actor string) *http.Request {
	ri := requestInfoOf(r, trusted)
	ri.Actor = actor
	return r.WithContext(authcore.WithRequestInfo(r.Context(), ri))
}

// requestInfoOf is the RequestInfo of r (client address per trusted, its
// User-Agent) without an actor.
func requestInfoOf(r *http.Request, trusted []netip.Prefix) authcore.RequestInfo {
	ip := ""
	if a := clientIP(r, trusted); a.IsValid() {
		ip = a.String()
	}
	return authcore.RequestInfo{IP: ip, UserAgent: r.Header.Get("User-Agent")}
}

// principalHandler serves a request whose Bearer token checked out.
type principalHandler func(w http.ResponseWriter, r *http.Request, p *authcore.Principal)

// public serves h with the request's RequestInfo and no credentials.
func (a *apiHandlers) public(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h(w, withRequestInfo(r, a.opts.TrustedProxies, ""))
	}
}

// limited is public behind the per-address rate limit (every /v1/auth/
// route; API.md [auth.rate_limit]).
func (a *apiHandlers) limited(h http.HandlerFunc) http.HandlerFunc {
	if a.limit == nil {
		return a.public(h)
	}
	return a.public(a.limit.Middleware(h).ServeHTTP)
}

// bearer serves h once the request's Bearer access token names a live
// session of an enabled user; the RequestInfo's Actor is then that user.
//
// It copies the request once (public would copy it a second time): the
// token check gets the RequestInfo in its context alone, the handler the
// request with the caller as actor. /v1/me is most of the traffic.
func (a *apiHandlers) bearer(h principalHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, err := bearerToken(r)
		if err != nil {
			writeError(w, r, err)
			return
		}
		ri := requestInfoOf(r, a.opts.TrustedProxies)
		p, aerr := a.auth.Authenticate(authcore.WithRequestInfo(r.Context(), ri), tok)
		if aerr != nil {
			writeError(w, r, aerr)
			return
		}
		ri.Actor = p.UserID
		h(w, r.WithContext(authcore.WithRequestInfo(r.Context(), ri)), p)
	}
}

// anyPrincipal adapts a handler that does not need the caller.
func anyPrincipal(h http.HandlerFunc) principalHandler {
	return func(w http.ResponseWriter, r *http.Request, _ *authcore.Principal) { h(w, r) }
}

// admin is bearer for callers holding the admin role; others get 403.
func (a *apiHandlers) admin(h principalHandler) http.HandlerFunc {
	return a.bearer(func(w http.ResponseWriter, r *http.Request, p *authcore.Principal) {
		if why := p.AdminRefusal(); why != "" {
			a.auth.AdminForbidden(r.Context(), p, r.Pattern) // detached: counted whatever the client does
			writeError(w, r, &Error{Status: http.StatusForbidden, Code: CodeForbidden, Description: why})
			return
		}
		h(w, r, p)
	})
}

// bearerToken reads the access token from exactly one "Authorization:
// Bearer <token>" header (the scheme in any case, RFC 7235 2.1; the token
// a b64token, RFC 6750 2.1). Tokens in the query or the body are not
// accepted. A request without the header gets the bare realm challenge;
// anything malformed is invalid_token.
func bearerToken(r *http.Request) (string, *Error) {
	vals := r.Header.Values("Authorization")
	if len(vals) == 0 {
		return "", &Error{Status: http.StatusUnauthorized, Code: CodeInvalidToken,
			Description: `this route needs an access token ("Authorization: Bearer <token>")`,
			Challenge:   challengeRealm}
	}
	if len(vals) > 1 {
		return "", errInvalidToken("more than one Authorization header")
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || !isB64Token(tok) {
		return "", errInvalidToken(`the Authorization header must be "Bearer <token>"`)
	}
	return tok, nil
}

// isB64Token reports whether s is 1*( ALPHA / DIGIT / "-" / "." / "_" /
// "~" / "+" / "/" ) *"=" (RFC 6750 2.1).
func isB64Token(s string) bool {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		if !b64TokenChar[body[i]] {
			return false
		}
	}
	return true
}

// b64TokenChar is the b64token alphabet (without "="), looked up per byte:
// every Bearer request checks its whole token (about 700 bytes), and the
// chain of comparisons cost 1.5% of the node's CPU at /v1/me.
var b64TokenChar = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
	}
	return t
}()

// writeTokens writes a token answer (RFC 6749 5.1: never cached).
func writeTokens(w http.ResponseWriter, r *http.Request, tok authcore.Tokens) {
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, r, http.StatusOK, tok)
}

// jwks serves the cluster's signing keys, cacheable unlike every other
// answer.
func (a *apiHandlers) jwks(w http.ResponseWriter, r *http.Request) {
	b, err := a.auth.JWKS()
	if err != nil {
		writeError(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", jwksCacheControl)
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	// Altcha is a solved proof-of-work challenge (base64 JSON), once one
	// is asked for (428 challenge_required).
	Altcha string `json:"altcha,omitempty"`
	// DeviceToken is the device_token an earlier login answered (OWASP's
	// device cookie): its own budget while the name is locked.
	DeviceToken string `json:"device_token,omitempty"`
}

// login serves POST /v1/auth/login.
//
// The per-username limit is charged by failed logins only: a name whose
// bucket is empty is refused before its password is checked, and a login
// that fails with invalid_credentials takes a token. Successful logins
// cost the name nothing, so an operator's scripts logging in as one
// account are bounded by the per-address limit alone (API.md: bursts of
// 30 and 60 a minute are served), while guessing at one name, from any
// number of addresses, is slowed here and stopped by the cluster-wide
// lockout. A refusal answers exactly as the lockout does. Requests
// refused by input validation (the body, the username's form, an empty
// password) are not failures and charge nothing.
func (a *apiHandlers) login(w http.ResponseWriter, r *http.Request) {
	var req loginRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	tok, err := a.passwordLogin(r.Context(), authcore.LoginRequest{Username: req.Username, Password: req.Password,
		Altcha: req.Altcha, DeviceToken: req.DeviceToken})
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeLogin(w, r, tok)
}

// passwordLogin is a password login behind the per-username limit, for
// the API and the sign-in page alike: a name whose bucket is empty is
// refused (as a lock) before anything is checked, and a wrong password
// takes a token.
func (a *apiHandlers) passwordLogin(ctx context.Context, req authcore.LoginRequest) (authcore.Tokens, error) {
	// A name that does not normalise is refused by Login with a 400
	// before anything is counted; it needs no bucket.
	name, nameErr := authcore.NormalizeUsername(req.Username)
	perName := a.limit != nil && nameErr == nil
	if perName {
		if limited, wait := a.limit.UsernameLimited(name); limited {
			return authcore.Tokens{}, errTooManyAttempts(wait)
		}
	}
	tok, err := a.auth.LoginWith(ctx, req)
	if err != nil && perName && errors.Is(err, authcore.ErrInvalidCredentials) {
		a.limit.AllowUsername(name) // the charge; the refusal, if any, comes next time
	}
	return tok, err
}

type refreshRequest struct {
	RefreshToken string `json:"refresh_token"`
}

func (a *apiHandlers) refresh(w http.ResponseWriter, r *http.Request) {
	var req refreshRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	tok, err := a.auth.Refresh(r.Context(), req.RefreshToken)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeTokens(w, r, tok)
}

func (a *apiHandlers) logout(w http.ResponseWriter, r *http.Request, p *authcore.Principal) {
	if err := a.auth.Logout(r.Context(), p); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// meBody is GET /v1/me. mfa lists the second factors the user has set up.
type meBody struct {
	ID       string   `json:"id"`
	Username string   `json:"username"`
	Email    string   `json:"email"`
	Roles    []string `json:"roles"`
	MFA      meMFA    `json:"mfa"`
}

type meMFA struct {
	Enabled       bool `json:"enabled"`
	TOTP          bool `json:"totp"`
	WebAuthn      int  `json:"webauthn"`
	RecoveryCodes int  `json:"recovery_codes_left"`
}

func (a *apiHandlers) me(w http.ResponseWriter, r *http.Request, p *authcore.Principal) {
	u, err := a.auth.Me(r.Context(), p)
	if err != nil {
		writeError(w, r, err)
		return
	}
	roles := u.Roles
	if roles == nil {
		roles = []string{}
	}
	info, err := a.auth.MFAStatus(r.Context(), p)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, meBody{ID: u.ID, Username: u.Username, Email: u.Email, Roles: roles,
		MFA: meMFA{Enabled: info.TOTP.Enabled || len(info.WebAuthn) > 0, TOTP: info.TOTP.Enabled,
			WebAuthn: len(info.WebAuthn), RecoveryCodes: info.RecoveryCodesLeft}})
}

func (a *apiHandlers) mySessions(w http.ResponseWriter, r *http.Request, p *authcore.Principal) {
	ss, err := a.auth.Sessions(r.Context(), p)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if ss == nil {
		ss = []authcore.SessionInfo{}
	}
	writeJSON(w, r, http.StatusOK, map[string]any{"sessions": ss})
}

// revokeMySession ends one of the caller's sessions; another user's
// session id is 404, the same as an unknown one.
func (a *apiHandlers) revokeMySession(w http.ResponseWriter, r *http.Request, p *authcore.Principal) {
	if err := a.auth.RevokeSession(r.Context(), p, r.PathValue("id")); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type changePasswordRequest struct {
	CurrentPassword string `json:"current_password"`
	NewPassword     string `json:"new_password"`
}

func (a *apiHandlers) changePassword(w http.ResponseWriter, r *http.Request, p *authcore.Principal) {
	var req changePasswordRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	tok, err := a.auth.ChangePassword(r.Context(), p, req.CurrentPassword, req.NewPassword)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeTokens(w, r, tok)
}

// The admin routes. {id} is a user id or a username, as on the socket.

// patchUserRequest is PATCH /v1/admin/users/{id}: the members present are
// changed, the rest left alone (RFC 7396 style, sent as application/json).
// "disabled" and "flagged" (only false: clearing the flag repeated
// admin-route refusals set; true is 400) exist so far; changing email and
// roles needs authcore support and comes later, and until then naming
// them is 400 like any unknown member.
type patchUserRequest struct {
	Disabled *bool `json:"disabled"`
	Flagged  *bool `json:"flagged"`
}

func (a *apiHandlers) adminPatchUser(w http.ResponseWriter, r *http.Request, _ *authcore.Principal) {
	var req patchUserRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	if req.Flagged != nil && *req.Flagged {
		writeError(w, r, fmt.Errorf("%w: flagged can only be set to false (accounts are flagged by the detection rules)", authcore.ErrInvalidInput))
		return
	}
	var (
		u   authcore.User
		err error
	)
	if req.Flagged != nil {
		u, err = a.users.Unflag(r.Context(), r.PathValue("user"))
	}
	if err == nil && req.Disabled != nil {
		u, err = a.users.SetDisabled(r.Context(), r.PathValue("user"), *req.Disabled)
	}
	if err == nil && req.Disabled == nil && req.Flagged == nil { // nothing to change: answer the user as it is
		u, err = a.users.User(r.Context(), r.PathValue("user"))
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, u)
}

// adminUnlockUser clears the failed attempts of an existing user's name
// (lockout counts names; the socket's unlock takes any name).
func (a *apiHandlers) adminUnlockUser(w http.ResponseWriter, r *http.Request, _ *authcore.Principal) {
	u, err := a.users.User(r.Context(), r.PathValue("user"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	if err := a.auth.Unlock(r.Context(), u.Username); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *apiHandlers) adminRevokeUserSessions(w http.ResponseWriter, r *http.Request, _ *authcore.Principal) {
	n, err := a.auth.RevokeUserSessions(r.Context(), r.PathValue("user"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, map[string]int{"revoked": n})
}

// serveAudit answers GET …/audit?after=SEQ&limit=N with {"entries":[…]},
// on the API and the admin socket alike.
func serveAudit(w http.ResponseWriter, r *http.Request, auth Auth) {
	after, limit, qerr := auditQuery(r.URL.Query())
	if qerr != nil {
		writeError(w, r, qerr)
		return
	}
	es, err := auth.Audit(r.Context(), after, limit)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if es == nil {
		es = []authcore.AuditEntry{}
	}
	writeJSON(w, r, http.StatusOK, map[string]any{"entries": es})
}

// auditQuery reads after (a seq, default 0: from the start) and limit
// (1 to authcore.MaxAuditLimit, default authcore.DefaultAuditLimit). An
// empty value counts as absent; a repeated or malformed one is a 400.
// Other parameters are ignored.
func auditQuery(q url.Values) (after uint64, limit int, err *Error) {
	one := func(name string) (string, *Error) {
		vs := q[name]
		if len(vs) > 1 {
			return "", badRequest(fmt.Sprintf("query parameter %q is given more than once", name))
		}
		if len(vs) == 0 {
			return "", nil
		}
		return vs[0], nil
	}
	s, err := one("after")
	if err != nil {
		return 0, 0, err
	}
	if s != "" {
		v, perr := strconv.ParseUint(s, 10, 64)
		if perr != nil {
			return 0, 0, badRequest("query parameter \"after\" must be a sequence number (0 or more)")
		}
		after = v
	}
	limit = authcore.DefaultAuditLimit
	if s, err = one("limit"); err != nil {
		return 0, 0, err
	}
	if s != "" {
		v, perr := strconv.Atoi(s)
		if perr != nil || v < 1 || v > authcore.MaxAuditLimit {
			return 0, 0, badRequest(fmt.Sprintf("query parameter \"limit\" must be 1 to %d", authcore.MaxAuditLimit))
		}
		limit = v
	}
	return after, limit, nil
}

// challenge serves GET /v1/auth/challenge: a fresh proof-of-work
// challenge for the login page's widget (never cached).
func (a *apiHandlers) challenge(w http.ResponseWriter, r *http.Request) {
	ch, err := a.auth.NewChallenge()
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, ch)
}
