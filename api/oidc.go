package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/bulwark-auth/bulwark/authcore"
)

// The OpenID Connect provider. zitadel/oidc's op package does the
// protocol: routing, request parsing, the redirect_uri check before any
// redirect, error answers and redirects; bulwark answers each step
// through its op.Server implementation below, from authcore and the
// replicated state. The login step the authorization endpoint sends a
// browser to is in oidc_login.go.

// OIDC is what the provider needs from the auth service (authcore.Service
// satisfies it).
type OIDC interface {
	Issuer() string
	Client(id string) (authcore.OIDCClient, error)
	AuthenticateClient(id, secret string) (authcore.OIDCClient, error)
	StartAuthorization(ctx context.Context, req authcore.AuthorizationRequest) (string, error)
	PendingAuthorization(id string) (authcore.AuthorizationRequest, error)
	Authorize(ctx context.Context, req authcore.AuthorizationRequest, p *authcore.Principal) (string, error)
	RedeemCode(ctx context.Context, clientID, code, redirectURI, verifier string) (authcore.OIDCTokens, error)
	RefreshClient(ctx context.Context, clientID, refreshToken string) (authcore.OIDCTokens, error)
	ClientCredentialsToken(ctx context.Context, clientID string, scopes []string) (authcore.Tokens, error)
	UserInfo(ctx context.Context, bearer string) (map[string]any, error)
	Introspect(ctx context.Context, token string) (authcore.Introspection, error)
	RevokeToken(ctx context.Context, clientID, token string) error
	EndSession(ctx context.Context, browserToken, idTokenHint string) (string, error)
	// Consent (oidc_consent.go).
	ConsentNeeded(p *authcore.Principal, req authcore.AuthorizationRequest) (bool, error)
	GrantConsent(ctx context.Context, p *authcore.Principal, req authcore.AuthorizationRequest) error
	DenyConsent(ctx context.Context, p *authcore.Principal, req authcore.AuthorizationRequest) error
	Grants(ctx context.Context, p *authcore.Principal) ([]authcore.Grant, error)
	RevokeGrant(ctx context.Context, p *authcore.Principal, clientID string) (int, error)
	RevokeAllGrants(ctx context.Context, p *authcore.Principal) (authcore.RevokedGrants, error)
}

// Paths of the provider (API.md).
const (
	pathAuthorize  = "/oauth2/authorize"
	pathToken      = "/oauth2/token"
	pathUserinfo   = "/oauth2/userinfo"
	pathIntrospect = "/oauth2/introspect"
	pathRevoke     = "/oauth2/revoke"
	pathEndSession = "/oauth2/end_session"
	pathJWKS       = "/.well-known/jwks.json"
)

// newOIDCHandler returns the provider's handler for /oauth2/ and the
// discovery document.
func newOIDCHandler(a *apiHandlers, p OIDC) http.Handler {
	srv := &oidcServer{a: a, p: p}
	h := op.RegisterServer(srv, op.Endpoints{
		Authorization: op.NewEndpoint(pathAuthorize),
		Token:         op.NewEndpoint(pathToken),
		Introspection: op.NewEndpoint(pathIntrospect),
		Userinfo:      op.NewEndpoint(pathUserinfo),
		Revocation:    op.NewEndpoint(pathRevoke),
		EndSession:    op.NewEndpoint(pathEndSession),
		// The JWKS is the API's own route (every member's keys).
	}, op.WithServerCORSOptions(nil)) // no cross-origin credentials on any of these
	return a.public(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, scopeOf(r).maxBody)
		if r.URL.Path == pathAuthorize {
			ep := &authorizeErrorPage{ResponseWriter: w}
			h.ServeHTTP(ep, r)
			ep.finish()
			return
		}
		h.ServeHTTP(w, r)
	})
}

type oidcServer struct {
	op.UnimplementedServer
	a *apiHandlers
	p OIDC
}

// oidcClient adapts a registered client to op.Client.
type oidcClient struct{ c authcore.OIDCClient }

func (c oidcClient) GetID() string                    { return c.c.ID }
func (c oidcClient) RedirectURIs() []string           { return c.c.RedirectURIs }
func (c oidcClient) PostLogoutRedirectURIs() []string { return c.c.RedirectURIs }
func (c oidcClient) ApplicationType() op.ApplicationType {
	return op.ApplicationTypeWeb // exact match, https or loopback http (authcore checks them at registration)
}
func (c oidcClient) AuthMethod() oidc.AuthMethod {
	if c.c.Public {
		return oidc.AuthMethodNone
	}
	return oidc.AuthMethodBasic
}
func (c oidcClient) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c oidcClient) GrantTypes() []oidc.GrantType {
	g := []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
	if !c.c.Public {
		g = append(g, oidc.GrantTypeClientCredentials)
	}
	return g
}
func (c oidcClient) LoginURL(id string) string {
	return loginPath + "?auth_request=" + url.QueryEscape(id)
}
func (c oidcClient) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeJWT }
func (c oidcClient) IDTokenLifetime() time.Duration       { return time.Hour }
func (c oidcClient) DevMode() bool                        { return false }
func (c oidcClient) IsScopeAllowed(string) bool           { return false }
func (c oidcClient) IDTokenUserinfoClaimsAssertion() bool { return false }
func (c oidcClient) ClockSkew() time.Duration             { return 0 }
func (c oidcClient) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c oidcClient) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

// Health and Ready are the API's own /healthz and /readyz.

func (s *oidcServer) Discovery(ctx context.Context, _ *op.Request[struct{}]) (*op.Response, error) {
	iss := strings.TrimSuffix(s.p.Issuer(), "/") // the endpoints' base
	basicPost := []oidc.AuthMethod{oidc.AuthMethodBasic, oidc.AuthMethodPost}
	return op.NewResponse(&oidc.DiscoveryConfiguration{
		Issuer:                                    s.p.Issuer(), // exactly the iss of the tokens this node signs
		AuthorizationEndpoint:                     iss + pathAuthorize,
		TokenEndpoint:                             iss + pathToken,
		IntrospectionEndpoint:                     iss + pathIntrospect,
		UserinfoEndpoint:                          iss + pathUserinfo,
		RevocationEndpoint:                        iss + pathRevoke,
		EndSessionEndpoint:                        iss + pathEndSession,
		JwksURI:                                   iss + pathJWKS,
		ScopesSupported:                           []string{oidc.ScopeOpenID, oidc.ScopeProfile, oidc.ScopeEmail, oidc.ScopeOfflineAccess},
		ResponseTypesSupported:                    []string{string(oidc.ResponseTypeCode)},
		ResponseModesSupported:                    []string{"query"},
		GrantTypesSupported:                       []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken, oidc.GrantTypeClientCredentials},
		SubjectTypesSupported:                     []string{"public"},
		IDTokenSigningAlgValuesSupported:          slices.Clone(authcore.IDTokenAlgs), // each client's is its own
		TokenEndpointAuthMethodsSupported:         append(slices.Clone(basicPost), oidc.AuthMethodNone),
		RevocationEndpointAuthMethodsSupported:    append(slices.Clone(basicPost), oidc.AuthMethodNone),
		IntrospectionEndpointAuthMethodsSupported: basicPost,
		ClaimsSupported: []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "amr", "sid", "azp", "at_hash",
			"preferred_username", "name", "email", "email_verified"},
		CodeChallengeMethodsSupported: []oidc.CodeChallengeMethod{oidc.CodeChallengeMethodS256},
	}), nil
}

func (s *oidcServer) VerifyAuthRequest(ctx context.Context, r *op.Request[oidc.AuthRequest]) (*op.ClientRequest[oidc.AuthRequest], error) {
	if r.Data.ClientID == "" {
		return nil, oidc.ErrInvalidRequest().WithDescription("client_id is missing")
	}
	c, err := s.p.Client(r.Data.ClientID)
	if err != nil {
		// Never redirected: the redirect_uri of an unknown client is
		// not one anyone vouched for.
		return nil, oidc.ErrInvalidRequestRedirectURI().WithDescription("unknown client_id")
	}
	return &op.ClientRequest[oidc.AuthRequest]{Request: r, Client: oidcClient{c}}, nil
}

// Authorize runs once op has matched the redirect_uri exactly against
// the client's: every refusal from here is redirected to it.
func (s *oidcServer) Authorize(ctx context.Context, r *op.ClientRequest[oidc.AuthRequest]) (*op.Redirect, error) {
	d := r.Data
	if d.RequestParam != "" {
		return nil, oidc.ErrRequestNotSupported()
	}
	client := r.Client.(oidcClient).c
	switch {
	case d.CodeChallenge == "" && client.Public:
		return nil, oidc.ErrInvalidRequest().WithDescription("a public client must use PKCE (code_challenge with S256)")
	case d.CodeChallenge != "" && d.CodeChallengeMethod != oidc.CodeChallengeMethodS256:
		return nil, oidc.ErrInvalidRequest().WithDescription("code_challenge_method must be S256")
	case len(d.CodeChallenge) > 128, len(d.State) > 512, len(d.Nonce) > 512:
		return nil, oidc.ErrInvalidRequest().WithDescription("state, nonce or code_challenge too long")
	case d.ResponseMode != "" && d.ResponseMode != "query":
		return nil, oidc.ErrInvalidRequest().WithDescription("response_mode must be query")
	}
	req := authcore.AuthorizationRequest{ClientID: client.ID, RedirectURI: d.RedirectURI, Scopes: d.Scopes,
		State: d.State, Nonce: d.Nonce, CodeChallenge: d.CodeChallenge, CodeChallengeMethod: string(d.CodeChallengeMethod),
		Prompt: d.Prompt}
	if d.MaxAge != nil {
		m := int64(*d.MaxAge)
		req.MaxAge = &m
	}
	// A browser signed in already, recently enough, goes straight back,
	// unless the client needs the user's consent first.
	if p := s.a.browserPrincipal(ctx, r.Header); p != nil && !slices.Contains(d.Prompt, oidc.PromptLogin) && fresh(p, req.MaxAge) {
		need, err := s.p.ConsentNeeded(p, req)
		if err != nil {
			return nil, oidc.ErrServerError().WithParent(err)
		}
		if !need {
			code, err := s.p.Authorize(ctx, req, p)
			if err == nil {
				return op.NewRedirect(codeRedirect(req, code, s.p.Issuer())), nil
			}
			if !errors.Is(err, authcore.ErrConsentRequired) {
				return nil, oidc.ErrServerError().WithParent(err)
			}
		}
		if slices.Contains(d.Prompt, oidc.PromptNone) {
			return nil, &oidc.Error{ErrorType: "consent_required", Description: "the user has not allowed this application these scopes"} // OIDC Core 3.1.2.6
		}
		id, err := s.p.StartAuthorization(ctx, req)
		if err != nil {
			return nil, oidc.ErrServerError().WithParent(err)
		}
		return op.NewRedirect(consentPath + "?auth_request=" + url.QueryEscape(id)), nil
	}
	if slices.Contains(d.Prompt, oidc.PromptNone) {
		return nil, oidc.ErrLoginRequired()
	}
	id, err := s.p.StartAuthorization(ctx, req)
	if err != nil {
		if errors.Is(err, authcore.ErrInvalidInput) {
			return nil, oidc.ErrInvalidRequest().WithDescription("%s", err.Error())
		}
		return nil, oidc.ErrServerError().WithParent(err)
	}
	return op.NewRedirect(oidcClient{client}.LoginURL(id)), nil
}

// fresh reports whether p's sign-in is within max_age seconds.
func fresh(p *authcore.Principal, maxAge *int64) bool {
	if maxAge == nil {
		return true
	}
	return time.Since(time.Unix(p.Claims.AuthTime, 0)) <= time.Duration(*maxAge)*time.Second
}

// codeRedirect is the authorization response: the code, the state, and
// the issuer (RFC 9207) on the request's redirect_uri.
func codeRedirect(req authcore.AuthorizationRequest, code, issuer string) string {
	u, _ := url.Parse(req.RedirectURI) // registered, and matched exactly
	q := u.Query()
	q.Set("code", code)
	if req.State != "" {
		q.Set("state", req.State)
	}
	q.Set("iss", issuer)
	u.RawQuery = q.Encode()
	return u.String()
}

func (s *oidcServer) VerifyClient(ctx context.Context, r *op.Request[op.ClientCredentials]) (op.Client, error) {
	cc := r.Data
	if cc.ClientAssertion != "" {
		return nil, oidc.ErrInvalidClient().WithDescription("client assertions are not supported")
	}
	if cc.ClientSecret != "" {
		c, err := s.p.AuthenticateClient(cc.ClientID, cc.ClientSecret)
		if err != nil {
			return nil, op.NewStatusError(oidc.ErrInvalidClient().WithDescription("client authentication failed"), http.StatusUnauthorized)
		}
		return oidcClient{c}, nil
	}
	c, err := s.p.Client(cc.ClientID)
	if err != nil || !c.Public {
		return nil, op.NewStatusError(oidc.ErrInvalidClient().WithDescription("client authentication failed"), http.StatusUnauthorized)
	}
	return oidcClient{c}, nil
}

func (s *oidcServer) CodeExchange(ctx context.Context, r *op.ClientRequest[oidc.AccessTokenRequest]) (*op.Response, error) {
	tok, err := s.p.RedeemCode(ctx, r.Client.GetID(), r.Data.Code, r.Data.RedirectURI, r.Data.CodeVerifier)
	if errors.Is(err, authcore.ErrInvalidGrant) {
		return nil, oidc.ErrInvalidGrant().WithDescription("the authorization code is unknown, expired, used, or not for this " +
			"client and redirect_uri, or the code_verifier does not match")
	}
	if err != nil {
		return nil, tokenError(err)
	}
	return tokenResponse(tok), nil
}

func (s *oidcServer) RefreshToken(ctx context.Context, r *op.ClientRequest[oidc.RefreshTokenRequest]) (*op.Response, error) {
	tok, err := s.p.RefreshClient(ctx, r.Client.GetID(), r.Data.RefreshToken)
	if err != nil {
		return nil, tokenError(err)
	}
	return tokenResponse(tok), nil
}

func (s *oidcServer) ClientCredentialsExchange(ctx context.Context, r *op.ClientRequest[oidc.ClientCredentialsRequest]) (*op.Response, error) {
	tok, err := s.p.ClientCredentialsToken(ctx, r.Client.GetID(), r.Data.Scope)
	if err != nil {
		return nil, tokenError(err)
	}
	resp := op.NewResponse(&oidc.AccessTokenResponse{AccessToken: tok.AccessToken, TokenType: oidc.BearerToken,
		ExpiresIn: uint64(tok.ExpiresIn), Scope: r.Data.Scope})
	resp.Header.Set("Pragma", "no-cache")
	return resp, nil
}

func tokenResponse(tok authcore.OIDCTokens) *op.Response {
	resp := op.NewResponse(&oidc.AccessTokenResponse{AccessToken: tok.AccessToken, TokenType: oidc.BearerToken,
		RefreshToken: tok.RefreshToken, ExpiresIn: uint64(tok.ExpiresIn), IDToken: tok.IDToken, Scope: tok.Scopes})
	resp.Header.Set("Pragma", "no-cache")
	return resp
}

// tokenError maps authcore's refusals to the token endpoint's errors
// (RFC 6749 5.2).
func tokenError(err error) error {
	switch {
	case errors.Is(err, authcore.ErrInvalidGrant):
		return oidc.ErrInvalidGrant().WithDescription("%s", err.Error())
	case errors.Is(err, authcore.ErrInvalidClient):
		return op.NewStatusError(oidc.ErrInvalidClient(), http.StatusUnauthorized)
	case errors.Is(err, authcore.ErrInvalidInput):
		return oidc.ErrInvalidRequest().WithDescription("%s", err.Error())
	}
	return oidc.ErrServerError().WithParent(err)
}

func (s *oidcServer) UserInfo(ctx context.Context, r *op.Request[oidc.UserInfoRequest]) (*op.Response, error) {
	claims, err := s.p.UserInfo(ctx, r.Data.AccessToken)
	if err != nil {
		if errors.Is(err, authcore.ErrInvalidToken) {
			resp := op.NewStatusError(oidc.ErrInvalidRequest().WithDescription("invalid_token"), http.StatusUnauthorized)
			return nil, resp
		}
		return nil, oidc.ErrServerError().WithParent(err)
	}
	return op.NewResponse(claims), nil
}

func (s *oidcServer) Introspect(ctx context.Context, r *op.Request[op.IntrospectionRequest]) (*op.Response, error) {
	cc := r.Data.ClientCredentials
	if _, err := s.p.AuthenticateClient(cc.ClientID, cc.ClientSecret); err != nil {
		return nil, op.NewStatusError(oidc.ErrInvalidClient().WithDescription("client authentication failed"), http.StatusUnauthorized)
	}
	in, err := s.p.Introspect(ctx, r.Data.Token)
	if err != nil {
		return nil, oidc.ErrServerError().WithParent(err)
	}
	out := &oidc.IntrospectionResponse{Active: in.Active}
	if in.Active {
		out.Subject, out.ClientID, out.Username, out.Scope = in.Subject, in.ClientID, in.Username, in.Scopes
		out.TokenType, out.Issuer, out.Audience, out.JWTID = in.TokenType, in.Issuer, in.Audience, in.JTI
		out.Expiration, out.IssuedAt = oidc.FromTime(in.Expiry), oidc.FromTime(in.IssuedAt)
	}
	return op.NewResponse(out), nil
}

func (s *oidcServer) Revocation(ctx context.Context, r *op.ClientRequest[oidc.RevocationRequest]) (*op.Response, error) {
	if err := s.p.RevokeToken(ctx, r.Client.GetID(), r.Data.Token); err != nil {
		return nil, oidc.ErrServerError().WithParent(err)
	}
	return op.NewResponse(struct{}{}), nil
}

// EndSession ends the browser's session and the one the id_token_hint
// names, clears the cookie, and sends the browser to the
// post_logout_redirect_uri if it is one of the client's redirect URIs,
// else to the signed-out page.
func (s *oidcServer) EndSession(ctx context.Context, r *op.Request[oidc.EndSessionRequest]) (*op.Redirect, error) {
	browser := ""
	if c, err := (&http.Request{Header: r.Header}).Cookie(cookieSSO); err == nil {
		browser = c.Value
	}
	aud, err := s.p.EndSession(ctx, browser, r.Data.IdTokenHint)
	if errors.Is(err, authcore.ErrInvalidToken) {
		return nil, oidc.ErrInvalidRequest().WithDescription("id_token_hint is not a valid ID token of this provider")
	}
	if err != nil {
		return nil, oidc.ErrServerError().WithParent(err)
	}
	target := signedOutPath
	clientID := r.Data.ClientID
	if clientID == "" {
		clientID = aud
	}
	if u := r.Data.PostLogoutRedirectURI; u != "" && clientID != "" && (aud == "" || aud == clientID) {
		if c, err := s.p.Client(clientID); err == nil && slices.Contains(c.RedirectURIs, u) {
			target = u
			if r.Data.State != "" {
				pu, _ := url.Parse(u)
				q := pu.Query()
				q.Set("state", r.Data.State)
				pu.RawQuery = q.Encode()
				target = pu.String()
			}
		}
	}
	red := op.NewRedirect(target)
	red.Header.Add("Set-Cookie", clearCookie(cookieSSO).String())
	return red, nil
}

// finish writes the page of an error whose body never parsed.
func (w *authorizeErrorPage) finish() {
	if w.hold {
		w.hold = false
		renderError(w.ResponseWriter, w.status, "The sign-in request was refused", "Return to the application and try again.")
	}
}

// authorizeErrorPage turns an error the authorization endpoint answers
// itself (never redirected: an unknown client, an unregistered
// redirect_uri) into a page a person can read.
type authorizeErrorPage struct {
	http.ResponseWriter
	status int
	hold   bool
	body   []byte
}

func (w *authorizeErrorPage) WriteHeader(code int) {
	if code >= 400 && w.status == 0 {
		w.status, w.hold = code, true
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *authorizeErrorPage) Write(b []byte) (int, error) {
	if !w.hold {
		return w.ResponseWriter.Write(b)
	}
	if len(w.body) < 8<<10 {
		w.body = append(w.body, b...)
	}
	if json.Valid(w.body) {
		var e struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		json.Unmarshal(w.body, &e)
		w.hold = false
		renderError(w.ResponseWriter, w.status, "The sign-in request was refused",
			e.Description+" ("+e.Error+"). Return to the application and try again.")
	}
	return len(b), nil
}
