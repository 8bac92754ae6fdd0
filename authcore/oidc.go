package authcore

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/bulwark-auth/bulwark/fsm"
)

// The OpenID Connect provider's domain (api serves the protocol on
// zitadel/oidc's op package). An authorization code redeemed starts a
// bulwark session: the access token is the API's own JWT, so /v1/me
// accepts it and revoking it is revoking the session; the refresh token is
// the session's, so it rotates and a reuse revokes the grant exactly as on
// /v1/auth/refresh. ID tokens are signed by the node's signing key (the
// TokenSigner, a crypto.Signer underneath: TPM-resident keys included).

// Lifetimes of the authorization code flow.
const (
	// AuthRequestTTL is how long a user has to sign in for a request.
	AuthRequestTTL = 10 * time.Minute
	// CodeTTL is how long a code may be redeemed (RFC 6749 4.1.2:
	// short-lived, 10 minutes at most).
	CodeTTL = time.Minute
	// codeKeep is how long a code is remembered after it was issued, so
	// that a replay still revokes what it issued.
	codeKeep = 10 * time.Minute
)

const (
	codePrefix         = "bwc_"
	clientSecretPrefix = "bws_"
	// ccSidPrefix is the sid of a client_credentials access token: it
	// names no session, so /v1/me refuses the token (it is a client's,
	// not a user's), and revoking it records its jti.
	ccSidPrefix = "client:"
)

// Errors of the provider, besides ErrInvalidGrant and ErrInvalidToken.
var (
	// ErrInvalidClient: an unknown client, or a wrong secret.
	ErrInvalidClient = errors.New("invalid client")
	// ErrClientExists: a client with that name is registered already.
	ErrClientExists = fsm.ErrClientExists
	// ErrAuthRequestNotFound: an authorization request unknown, expired
	// or answered already.
	ErrAuthRequestNotFound = fsm.ErrAuthRequestNotFound
)

// OIDCClient is a registered relying party, without its secret.
type OIDCClient struct {
	ID           string    `json:"client_id"`
	Public       bool      `json:"public"`
	RedirectURIs []string  `json:"redirect_uris"`
	CreatedAt    time.Time `json:"created_at"`
	// IDTokenAlg is the algorithm of its ID tokens (ES256 by default).
	IDTokenAlg string `json:"id_token_alg"`
	// ConsentRequired: its users are asked once per scopes (a
	// third-party client); first-party clients skip the step.
	ConsentRequired bool `json:"consent_required"`
}

func publicClient(c *fsm.OIDCClient) OIDCClient {
	return OIDCClient{ID: c.ID, Public: c.Public, RedirectURIs: slices.Clone(c.RedirectURIs), CreatedAt: c.CreatedAt,
		IDTokenAlg: clientIDTokenAlg(c), ConsentRequired: c.ConsentRequired}
}

// clientIDTokenAlg is the algorithm c's ID tokens are signed in.
func clientIDTokenAlg(c *fsm.OIDCClient) string {
	if c.IDTokenAlg == "" {
		return AlgES256
	}
	return c.IDTokenAlg
}

// NewClient is a request to register a client.
type NewClient struct {
	Name         string
	RedirectURIs []string
	Public       bool
	// IDTokenAlg: ES256 (also when empty), EdDSA or RS256.
	IDTokenAlg string
	// ConsentRequired asks each user's consent once per scopes.
	ConsentRequired bool
}

// validClientName: client ids are names an operator types, 1 to 64 of
// [A-Za-z0-9._-]; so one never looks like an issuer URL (a token's aud).
func validClientName(n string) bool {
	if n == "" || len(n) > 64 {
		return false
	}
	for _, c := range n {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// checkRedirectURI accepts an absolute https URI, or http to a loopback
// host (native apps, RFC 8252 7.3), without a fragment (RFC 6749 3.1.2).
func checkRedirectURI(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || len(raw) > 2048 || u.Host == "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%w: redirect URI %q must be an absolute URL without a fragment", ErrInvalidInput, raw)
	}
	switch h := u.Hostname(); {
	case u.Scheme == "https":
	case u.Scheme == "http" && (h == "localhost" || h == "127.0.0.1" || h == "::1"):
	default:
		return fmt.Errorf("%w: redirect URI %q must be https (or http to a loopback address)", ErrInvalidInput, raw)
	}
	return nil
}

// secretHash is what the state keeps of a client secret: HMAC-SHA256
// under the cluster data key. The secret is 256 random bits, so a slow
// hash (argon2id) would add no strength against guessing, only tens of
// milliseconds of CPU to every token request, a lever for a flood; the
// MAC's key, which only members hold, means a copy of state.db or a
// backup gives nothing to test guesses against at all.
func (s *Service) secretHash(secret string) string {
	return hex.EncodeToString(s.box.mac(purposeClientSecret, []byte(secret)))
}

// CreateClient registers a client and returns it with its secret, shown
// this once; a public client has none.
func (s *Service) CreateClient(ctx context.Context, req NewClient) (OIDCClient, string, error) {
	name, redirectURIs, public := req.Name, req.RedirectURIs, req.Public
	if req.IDTokenAlg != "" && !slices.Contains(IDTokenAlgs, req.IDTokenAlg) {
		return OIDCClient{}, "", fmt.Errorf("%w: id_token_alg must be one of %s", ErrInvalidInput, strings.Join(IDTokenAlgs, ", "))
	}
	if req.IDTokenAlg == AlgES256 {
		req.IDTokenAlg = "" // the default, as a level-4 client's
	}
	if !validClientName(name) {
		return OIDCClient{}, "", fmt.Errorf("%w: a client name is 1 to 64 letters, digits, '.', '_' or '-'", ErrInvalidInput)
	}
	if len(redirectURIs) == 0 || len(redirectURIs) > 16 {
		return OIDCClient{}, "", fmt.Errorf("%w: a client needs 1 to 16 redirect URIs", ErrInvalidInput)
	}
	for _, u := range redirectURIs {
		if err := checkRedirectURI(u); err != nil {
			return OIDCClient{}, "", err
		}
	}
	if !s.proposable(fsm.TypeOIDCClientPut, 1) {
		return OIDCClient{}, "", fmt.Errorf("%w: OpenID Connect clients need cluster feature level 4", ErrConflict)
	}
	version := uint16(1)
	if s.proposable(fsm.TypeOIDCClientPut, 2) {
		version = 2
	} else if req.IDTokenAlg != "" || req.ConsentRequired {
		return OIDCClient{}, "", fmt.Errorf("%w: a client's ID-token algorithm and consent need cluster feature level 5", ErrConflict)
	}
	c := fsm.OIDCClient{ID: name, Public: public, RedirectURIs: slices.Compact(slices.Clone(redirectURIs)),
		IDTokenAlg: req.IDTokenAlg, ConsentRequired: req.ConsentRequired}
	var secret string
	if !public {
		if s.box == nil {
			return OIDCClient{}, "", ErrMFAUnavailable
		}
		var err error
		if secret, err = randomToken(clientSecretPrefix); err != nil {
			return OIDCClient{}, "", err
		}
		c.SecretHash = s.secretHash(secret)
	}
	cmd, err := fsm.NewCommand(fsm.TypeOIDCClientPut, version, s.now().UnixNano(), fsm.OIDCClientPut{Client: c})
	if err != nil {
		return OIDCClient{}, "", err
	}
	kind := "confidential"
	if public {
		kind = "public"
	}
	details := map[string]string{"client_id": name, "type": kind, "id_token_alg": clientIDTokenAlg(&c)}
	if c.ConsentRequired {
		details["consent"] = "required"
	}
	if _, err := s.apply(ctx, cmd, s.adminEvent(ctx, "oidc.client_add", "", details)); err != nil {
		return OIDCClient{}, "", err
	}
	out, err := s.Client(name)
	return out, secret, err
}

// Clients lists the registered clients.
func (s *Service) Clients(ctx context.Context) ([]OIDCClient, error) {
	var out []OIDCClient
	err := s.store.View(func(r fsm.Reader) error {
		return r.OIDCClients(func(c *fsm.OIDCClient) { out = append(out, publicClient(c)) })
	})
	return out, err
}

// DeleteClient removes a client: its codes can no longer be redeemed nor
// its refresh tokens used.
func (s *Service) DeleteClient(ctx context.Context, name string) error {
	cmd, err := fsm.NewCommand(fsm.TypeOIDCClientDelete, 1, s.now().UnixNano(), fsm.OIDCClientDelete{ID: name})
	if err != nil {
		return err
	}
	_, err = s.apply(ctx, cmd, s.adminEvent(ctx, "oidc.client_remove", "", map[string]string{"client_id": fsm.CleanAuditText(name, 64)}))
	if errors.Is(err, fsm.ErrClientNotFound) {
		return ErrNotFound
	}
	return err
}

// Client returns a registered client, or ErrNotFound.
func (s *Service) Client(id string) (OIDCClient, error) {
	var c *fsm.OIDCClient
	err := s.store.View(func(r fsm.Reader) error {
		var err error
		c, err = r.OIDCClient(id)
		return err
	})
	if errors.Is(err, fsm.ErrClientNotFound) {
		return OIDCClient{}, ErrNotFound
	}
	if err != nil {
		return OIDCClient{}, err
	}
	return publicClient(c), nil
}

// AuthenticateClient checks a confidential client's secret; a public
// client, an unknown one or a wrong secret is ErrInvalidClient.
func (s *Service) AuthenticateClient(id, secret string) (OIDCClient, error) {
	var c *fsm.OIDCClient
	err := s.store.View(func(r fsm.Reader) error {
		var err error
		c, err = r.OIDCClient(id)
		return err
	})
	if err != nil || c.Public || s.box == nil || !wellFormedToken(secret, clientSecretPrefix) {
		return OIDCClient{}, ErrInvalidClient
	}
	want, _ := hex.DecodeString(c.SecretHash)
	if !hmacEqual(s.box.mac(purposeClientSecret, []byte(secret)), want) {
		return OIDCClient{}, ErrInvalidClient
	}
	return publicClient(c), nil
}

// AuthorizationRequest is a validated /oauth2/authorize request.
type AuthorizationRequest struct {
	ID                  string
	ClientID            string
	RedirectURI         string
	Scopes              []string
	State, Nonce        string
	CodeChallenge       string
	CodeChallengeMethod string
	MaxAge              *int64
	Prompt              []string
	ExpiresAt           time.Time
}

func toAuthorizationRequest(r *fsm.OIDCAuthRequest) AuthorizationRequest {
	return AuthorizationRequest{ID: r.ID, ClientID: r.ClientID, RedirectURI: r.RedirectURI, Scopes: slices.Clone(r.Scopes),
		State: r.State, Nonce: r.Nonce, CodeChallenge: r.CodeChallenge, CodeChallengeMethod: r.CodeChallengeMethod,
		MaxAge: r.MaxAge, Prompt: slices.Clone(r.Prompt), ExpiresAt: r.ExpiresAt}
}

// StartAuthorization stores a request (validated by the caller against
// its client) while its user signs in, and returns its id.
func (s *Service) StartAuthorization(ctx context.Context, req AuthorizationRequest) (string, error) {
	if !s.proposable(fsm.TypeOIDCAuthRequest, 1) {
		return "", fmt.Errorf("%w: OpenID Connect needs cluster feature level 4", ErrConflict)
	}
	id, err := randomToken("")
	if err != nil {
		return "", err
	}
	now := s.now()
	r := fsm.OIDCAuthRequest{ID: id[:32], ClientID: req.ClientID, RedirectURI: req.RedirectURI, Scopes: req.Scopes,
		State: req.State, Nonce: req.Nonce, CodeChallenge: req.CodeChallenge, CodeChallengeMethod: req.CodeChallengeMethod,
		MaxAge: req.MaxAge, Prompt: req.Prompt, ExpiresAt: now.Add(AuthRequestTTL).UTC(), KeepUntil: now.Add(AuthRequestTTL + codeKeep).UTC()}
	cmd, err := fsm.NewCommand(fsm.TypeOIDCAuthRequest, 1, now.UnixNano(), fsm.OIDCAuthRequestPut{Request: r})
	if err != nil {
		return "", err
	}
	if _, err := s.propose(ctx, cmd); err != nil {
		if errors.Is(err, fsm.ErrInvalidCommand) {
			return "", fmt.Errorf("%w: %v", ErrInvalidInput, err)
		}
		return "", err
	}
	return r.ID, nil
}

// PendingAuthorization returns a request still waiting for its user.
func (s *Service) PendingAuthorization(id string) (AuthorizationRequest, error) {
	var r *fsm.OIDCAuthRequest
	err := s.store.View(func(rd fsm.Reader) error {
		var err error
		r, err = rd.OIDCAuthRequest(id)
		return err
	})
	if err != nil {
		return AuthorizationRequest{}, err
	}
	if r.UserID != "" || !s.now().Before(r.ExpiresAt) {
		return AuthorizationRequest{}, ErrAuthRequestNotFound
	}
	return toAuthorizationRequest(r), nil
}

// Authorize answers a request for the signed-in caller p (the browser's
// session): it is bound to p's user, session, auth time and amr, and its
// code returned. req is stored already (StartAuthorization), or is stored
// now when its ID is empty (a browser already signed in).
func (s *Service) Authorize(ctx context.Context, req AuthorizationRequest, p *Principal) (string, error) {
	if req.ID == "" {
		id, err := s.StartAuthorization(ctx, req)
		if err != nil {
			return "", err
		}
		req.ID = id
	}
	code, err := randomToken(codePrefix)
	if err != nil {
		return "", err
	}
	now := s.now()
	a := fsm.OIDCAuthorize{
		RequestID: req.ID, CodeHash: hashToken(code), UserID: p.UserID, LoginSession: p.SessionID,
		AuthTime: time.Unix(p.Claims.AuthTime, 0).UTC(), AMR: p.Claims.Amr,
		CodeExpiresAt: now.Add(CodeTTL).UTC(), CodeKeepUntil: now.Add(codeKeep).UTC()}
	version := uint16(1)
	if s.proposable(fsm.TypeOIDCAuthorize, 2) {
		// Apply checks the user's consent (a client that requires it).
		version, a.ConsentAfter = 2, consentAfter(req, now)
	}
	cmd, err := fsm.NewCommand(fsm.TypeOIDCAuthorize, version, now.UnixNano(), a)
	if err != nil {
		return "", err
	}
	if _, err := s.propose(ctx, cmd); err != nil {
		switch {
		case errors.Is(err, fsm.ErrSessionNotFound):
			return "", ErrInvalidToken
		case errors.Is(err, fsm.ErrConsentRequired):
			return "", ErrConsentRequired
		}
		return "", err
	}
	return code, nil
}

// OIDCTokens is a token endpoint answer.
type OIDCTokens struct {
	Tokens
	IDToken string
	Scopes  []string
}

// pkceS256 is the S256 transform of a code_verifier (RFC 7636 4.2), what
// Apply compares with the stored challenge; "" for no verifier. A
// verifier of the wrong form is ErrInvalidGrant.
func pkceS256(verifier string) (string, error) {
	if verifier == "" {
		return "", nil
	}
	if len(verifier) < 43 || len(verifier) > 128 {
		return "", fmt.Errorf("%w: code_verifier must be 43 to 128 characters", ErrInvalidGrant)
	}
	for _, c := range verifier {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return "", fmt.Errorf("%w: code_verifier has a character RFC 7636 does not allow", ErrInvalidGrant)
		}
	}
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}

// RedeemCode exchanges an authorization code for tokens: the client must
// be the request's, the redirect_uri the same and the PKCE verifier match
// its challenge, all checked in Apply against the replicated state (so a
// node behind on the log cannot skip a check). A code presented a second time revokes the tokens it
// issued (the session) and is ErrInvalidGrant, as is every other refusal.
func (s *Service) RedeemCode(ctx context.Context, clientID, code, redirectURI, verifier string) (OIDCTokens, error) {
	if !wellFormedToken(code, codePrefix) {
		return OIDCTokens{}, ErrInvalidGrant
	}
	pkce, err := pkceS256(verifier)
	if err != nil {
		return OIDCTokens{}, err
	}
	signer, err := s.clientSigner(ctx, clientID)
	if err != nil {
		return OIDCTokens{}, err
	}
	sid, err := NewSessionID(s.now())
	if err != nil {
		return OIDCTokens{}, err
	}
	level := s.clusterLevel()
	refresh, err := s.newRefresh(sid, level)
	if err != nil {
		return OIDCTokens{}, err
	}
	// v2 (level 5) keeps no record of a refresh token that names its session.
	version := uint16(1)
	if s.macRefresh(level) {
		version = 2
	}
	ri := requestInfo(ctx)
	cmd, err := fsm.NewCommand(fsm.TypeOIDCCodeRedeem, version, s.now().UnixNano(), fsm.OIDCCodeRedeem{
		CodeHash: hashToken(code), ClientID: clientID, RedirectURI: redirectURI, PKCE: pkce,
		Session: fsm.SessionCreate{ID: sid, RefreshHash: hashToken(refresh),
			Lifetime: int64(s.cfg.RefreshTTL), IdleTimeout: int64(s.cfg.IdleTimeout),
			MaxPerUser: s.cfg.MaxSessionsPerUser, OnLimit: s.cfg.OnLimit, IP: ri.IP, UserAgent: ri.UserAgent}})
	if err != nil {
		return OIDCTokens{}, err
	}
	res, err := proposeAs[fsm.OIDCCodeResult](ctx, s, cmd)
	switch {
	case errors.Is(err, fsm.ErrInvalidCode), errors.Is(err, fsm.ErrUserDisabled), errors.Is(err, fsm.ErrUserNotFound):
		return OIDCTokens{}, ErrInvalidGrant
	case err != nil:
		return OIDCTokens{}, err
	case res.Replayed:
		s.logAudit([]fsm.AuditAppend{{Type: "oidc.code_replay", Severity: fsm.AuditCritical, IP: ri.IP,
			Details: map[string]string{"client_id": clientID}}}, nil)
		return OIDCTokens{}, fmt.Errorf("%w: the code was used already; what it issued is revoked", ErrInvalidGrant)
	}
	s.audit(ctx, fsm.AuditAppend{Type: "oidc.token", Severity: fsm.AuditInfo, Actor: res.User.ID, Subject: res.User.ID,
		IP: ri.IP, UserAgent: ri.UserAgent, Details: map[string]string{"client_id": clientID, "session_id": sid, "grant": "authorization_code"}})
	tok, err := s.issue(res.Session, res.User, refresh)
	if err != nil {
		return OIDCTokens{}, err
	}
	idt, err := s.idToken(signer, res.Session, res.User, clientID, res.Request.Scopes, res.Request.Nonce, tok.AccessToken)
	if err != nil {
		return OIDCTokens{}, err
	}
	return OIDCTokens{Tokens: tok, IDToken: idt, Scopes: res.Request.Scopes}, nil
}

// RefreshClient is Refresh for a client's refresh token: the token must
// have been issued to clientID; it rotates, and a reuse revokes the
// session (Refresh). The answer carries a fresh ID token.
func (s *Service) RefreshClient(ctx context.Context, clientID, refreshToken string) (OIDCTokens, error) {
	if !refreshShaped(refreshToken) {
		return OIDCTokens{}, ErrInvalidGrant
	}
	var owner string
	s.store.View(func(r fsm.Reader) error {
		if sess, _, err := s.sessionOfRefresh(r, refreshToken); err == nil {
			owner = sess.ClientID
		}
		return nil
	})
	if owner != clientID {
		return OIDCTokens{}, ErrInvalidGrant // unknown, or another client's (or the API's)
	}
	signer, err := s.clientSigner(ctx, clientID) // ErrInvalidGrant: the client is gone
	if err != nil {
		return OIDCTokens{}, err
	}
	tok, err := s.Refresh(ctx, refreshToken)
	if err != nil {
		return OIDCTokens{}, err
	}
	var sess *fsm.Session
	var u *fsm.User
	err = s.store.View(func(r fsm.Reader) error {
		var err error
		if sess, err = r.Session(tok.SessionID); err != nil {
			return err
		}
		u, err = r.UserByID(sess.UserID)
		return err
	})
	if err != nil {
		return OIDCTokens{}, ErrInvalidGrant
	}
	idt, err := s.idToken(signer, sess, u, clientID, sess.Scopes, "", tok.AccessToken)
	if err != nil {
		return OIDCTokens{}, err
	}
	return OIDCTokens{Tokens: tok, IDToken: idt, Scopes: sess.Scopes}, nil
}

// ClientCredentialsToken signs an access token for a confidential client
// itself (RFC 6749 4.4): sub is the client id; it names no session.
func (s *Service) ClientCredentialsToken(ctx context.Context, clientID string, scopes []string) (Tokens, error) {
	signer := s.currentSigner()
	if signer == nil {
		return Tokens{}, errors.New("authcore: no signing key")
	}
	jti, err := randomToken("")
	if err != nil {
		return Tokens{}, err
	}
	now := s.now()
	claims := AccessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: s.cfg.Issuer, Subject: clientID, Audience: jwt.ClaimStrings{s.cfg.Audience},
			ExpiresAt: jwt.NewNumericDate(now.Add(s.cfg.AccessTTL)), IssuedAt: jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now), ID: jti[:22],
		},
		Sid: ccSidPrefix + clientID, AuthTime: now.Unix(),
	}
	at, err := signer.Sign(claims)
	if err != nil {
		return Tokens{}, err
	}
	ri := requestInfo(ctx)
	s.audit(ctx, fsm.AuditAppend{Type: "oidc.token", Severity: fsm.AuditInfo, Actor: fsm.CleanAuditText(clientID, 64), IP: ri.IP,
		Details: map[string]string{"client_id": clientID, "grant": "client_credentials", "scope": fsm.CleanAuditText(strings.Join(scopes, " "), 256)}})
	return Tokens{AccessToken: at, TokenType: "Bearer", ExpiresIn: int(s.cfg.AccessTTL / time.Second)}, nil
}

// clientSigner is the key clientID's ID tokens are signed with, in its
// algorithm (made and published now if it is the first): asked for
// before a code or refresh token is spent, so a key that cannot be had
// spends nothing.
func (s *Service) clientSigner(ctx context.Context, clientID string) (TokenSigner, error) {
	alg := AlgES256
	if err := s.store.View(func(r fsm.Reader) error {
		c, err := r.OIDCClient(clientID)
		if err == nil {
			alg = clientIDTokenAlg(c)
		}
		return err
	}); err != nil {
		return nil, ErrInvalidGrant // no such client (removed meanwhile)
	}
	return s.idTokenSigner(ctx, alg)
}

// idToken signs an ID token for a session with signer (clientSigner): sub
// is the user id (the API tokens' sub), aud the client, with the scopes'
// claims (profile: preferred_username and name; email: email and
// email_verified, which is false: bulwark does not verify addresses).
func (s *Service) idToken(signer TokenSigner, sess *fsm.Session, u *fsm.User, clientID string, scopes []string, nonce, accessToken string) (string, error) {
	now := s.now()
	jti, err := randomToken("")
	if err != nil {
		return "", err
	}
	c := jwt.MapClaims{
		"iss": s.cfg.Issuer, "sub": u.ID, "aud": clientID, "azp": clientID,
		"exp": now.Add(s.cfg.AccessTTL).Unix(), "iat": now.Unix(), "nbf": now.Unix(), "jti": jti[:22],
		"auth_time": sess.AuthTime.Unix(), "sid": sess.ID, "amr": sess.AMR,
	}
	if sess.AMR == nil {
		c["amr"] = []string{}
	}
	if nonce != "" {
		c["nonce"] = nonce
	}
	if accessToken != "" {
		// at_hash: the left half of the hash the JWS algorithm uses
		// (OIDC Core 3.1.3.6); SHA-512 for Ed25519, as RFC 8037's EdDSA
		// signs with it.
		var h hash.Hash = sha256.New()
		if signer.Alg() == AlgEdDSA {
			h = sha512.New()
		}
		h.Write([]byte(accessToken))
		c["at_hash"] = base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:h.Size()/2])
	}
	for k, v := range scopeClaims(u, scopes) {
		c[k] = v
	}
	return signer.Sign(c)
}

// scopeClaims are the standard claims the scopes grant.
func scopeClaims(u *fsm.User, scopes []string) map[string]any {
	out := map[string]any{}
	if slices.Contains(scopes, "profile") {
		out["preferred_username"] = u.Username
		out["name"] = u.Username
	}
	if slices.Contains(scopes, "email") && u.Email != "" {
		out["email"] = u.Email
		out["email_verified"] = false
	}
	return out
}

// UserInfo answers /oauth2/userinfo for an access token: sub and the
// claims of the scopes its session was granted.
func (s *Service) UserInfo(ctx context.Context, bearer string) (map[string]any, error) {
	p, err := s.Authenticate(ctx, bearer)
	if err != nil {
		return nil, err
	}
	var scopes []string
	s.store.View(func(r fsm.Reader) error {
		if sess, err := r.Session(p.SessionID); err == nil {
			scopes = sess.Scopes
		}
		return nil
	})
	out := scopeClaims(p.user, scopes)
	out["sub"] = p.UserID
	return out, nil
}

// Introspection is an RFC 7662 answer; Active false says nothing else.
type Introspection struct {
	Active    bool
	Subject   string
	ClientID  string
	Username  string
	Scopes    []string
	TokenType string // "access_token" or "refresh_token"
	Expiry    time.Time
	IssuedAt  time.Time
	SessionID string
	Issuer    string
	Audience  []string
	JTI       string
}

// Introspect says whether token (an access or refresh token this cluster
// issued) is active now: signed and unexpired with a live session, or a
// live session's current refresh token; a revoked one is inactive.
func (s *Service) Introspect(ctx context.Context, token string) (Introspection, error) {
	if refreshShaped(token) {
		var out Introspection
		now := s.now()
		s.store.View(func(r fsm.Reader) error {
			sess, live, err := s.sessionOfRefresh(r, token)
			if err != nil || !live || !sess.Alive(now) {
				return nil
			}
			u, err := r.UserByID(sess.UserID)
			if err != nil || u.Disabled {
				return nil
			}
			out = Introspection{Active: true, Subject: u.ID, Username: u.Username, ClientID: sess.ClientID, Scopes: sess.Scopes,
				TokenType: "refresh_token", Expiry: sess.ExpiresAt, IssuedAt: sess.CreatedAt, SessionID: sess.ID, Issuer: s.cfg.Issuer}
			return nil
		})
		return out, nil
	}
	claims, kid, err := s.verifier.verify(token, s.now())
	if err != nil {
		return Introspection{}, nil
	}
	out := Introspection{Active: true, Subject: claims.Subject, TokenType: "access_token", Expiry: claims.ExpiresAt.Time,
		IssuedAt: claims.IssuedAt.Time, Issuer: claims.Issuer, Audience: claims.Audience, JTI: claims.ID}
	if client, ok := strings.CutPrefix(claims.Sid, ccSidPrefix); ok {
		var revoked, issErr bool
		s.store.View(func(r fsm.Reader) error {
			issErr = s.verifier.checkIssuer(r, claims, kid) != nil
			revoked = r.TokenRevoked(claims.ID)
			return nil
		})
		if revoked || issErr || client != claims.Subject {
			return Introspection{}, nil
		}
		out.ClientID = client
		return out, nil
	}
	p, err := s.Authenticate(ctx, token)
	if err != nil {
		return Introspection{}, nil
	}
	out.Username, out.SessionID = p.Username, p.SessionID
	s.store.View(func(r fsm.Reader) error {
		if sess, err := r.Session(p.SessionID); err == nil {
			out.ClientID, out.Scopes = sess.ClientID, sess.Scopes
		}
		return nil
	})
	return out, nil
}

// RevokeToken revokes a token clientID holds (RFC 7009): a refresh token
// or a user's access token ends its session (so the access token is
// refused by /v1/me and introspects inactive); a client_credentials token
// is recorded as revoked until it expires. A token that is unknown,
// invalid already or not clientID's changes nothing and is no error.
func (s *Service) RevokeToken(ctx context.Context, clientID, token string) error {
	// A token issued through another member a moment ago must not be
	// missed here: read after every acknowledged write.
	if err := s.ReadBarrier(ctx); err != nil {
		return err
	}
	var sid, owner, user string
	if refreshShaped(token) {
		s.store.View(func(r fsm.Reader) error {
			if sess, _, err := s.sessionOfRefresh(r, token); err == nil {
				sid, owner, user = sess.ID, sess.ClientID, sess.UserID
			}
			return nil
		})
	} else {
		claims, _, err := s.verifier.verify(token, s.now())
		if err != nil {
			return nil
		}
		if client, ok := strings.CutPrefix(claims.Sid, ccSidPrefix); ok {
			if client != clientID {
				return nil
			}
			cmd, err := fsm.NewCommand(fsm.TypeOIDCTokenRevoke, 1, s.now().UnixNano(),
				fsm.OIDCTokenRevoke{JTI: claims.ID, ExpiresAt: claims.ExpiresAt.Time.Add(s.cfg.Leeway)})
			if err != nil {
				return err
			}
			_, err = s.apply(ctx, cmd, fsm.AuditAppend{Type: "oidc.revoke", Severity: fsm.AuditInfo, Actor: fsm.CleanAuditText(clientID, 64),
				Details: map[string]string{"client_id": clientID, "jti": claims.ID}})
			return err
		}
		s.store.View(func(r fsm.Reader) error {
			if sess, err := r.Session(claims.Sid); err == nil && sess.UserID == claims.Subject {
				sid, owner, user = sess.ID, sess.ClientID, sess.UserID
			}
			return nil
		})
	}
	if sid == "" || owner != clientID {
		return nil
	}
	err := s.revokeSession(ctx, &Principal{UserID: user}, sid, "oidc.revoke")
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// EndSession ends the browser's session (its access token, from the
// login cookie) and, with a valid id_token_hint, the session that ID
// token was issued for; it returns the hint's client (aud), "" if none.
func (s *Service) EndSession(ctx context.Context, browserToken, idTokenHint string) (string, error) {
	if browserToken != "" {
		if p, err := s.Authenticate(ctx, browserToken); err == nil {
			if err := s.revokeSession(ctx, p, p.SessionID, "logout"); err != nil && !errors.Is(err, ErrNotFound) {
				return "", err
			}
		}
	}
	if idTokenHint == "" {
		return "", nil
	}
	c, err := s.verifyIDToken(idTokenHint)
	if err != nil {
		return "", err
	}
	var sid string
	s.store.View(func(r fsm.Reader) error {
		if sess, err := r.Session(c.Sid); err == nil && sess.UserID == c.Subject && sess.ClientID == c.Audience[0] {
			sid = sess.ID
		}
		return nil
	})
	if sid != "" {
		err := s.revokeSession(ctx, &Principal{UserID: c.Subject}, sid, "logout")
		if err != nil && !errors.Is(err, ErrNotFound) {
			return "", err
		}
	}
	return c.Audience[0], nil
}

// verifyIDToken checks an ID token this cluster signed (an
// id_token_hint): signature, time, iss, and one aud that is a client.
func (s *Service) verifyIDToken(tok string) (*AccessClaims, error) {
	c, kid, err := verifySigned(tok, s.verifier.keys, s.now(), s.cfg.Leeway)
	if err != nil {
		return nil, err
	}
	if len(c.Audience) != 1 || !validClientName(c.Audience[0]) {
		return nil, fmt.Errorf("%w: not an ID token", ErrInvalidToken)
	}
	var issErr error
	s.store.View(func(r fsm.Reader) error {
		// checkIssuer also holds aud to the cluster; an ID token's aud is
		// its client, so check iss with the cluster's audience put in.
		cc := *c
		cc.Audience = jwt.ClaimStrings{s.cfg.Audience, c.Issuer}
		issErr = s.verifier.checkIssuer(r, &cc, kid)
		return nil
	})
	if issErr != nil {
		return nil, issErr
	}
	return c, nil
}

// Issuer is the iss of the tokens this node signs: discovery's issuer.
func (s *Service) Issuer() string { return s.cfg.Issuer }
