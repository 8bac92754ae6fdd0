package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/bulwark-auth/bulwark/internal/waitfor"
)

// The relying party's callback: never reached, the browser stops at it.
const rpCallback = "https://app.example/cb"

// browser is a user agent with a cookie jar that follows redirects on
// the node and stops at the relying party's.
type browser struct {
	t *testing.T
	n *testNode
	c *http.Client
}

func (n *testNode) browser() *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		n.t.Fatal(err)
	}
	c := n.client()
	c.Jar = jar
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Host != strings.TrimPrefix(n.url(""), "https://") || len(via) > 5 {
			return http.ErrUseLastResponse
		}
		return nil
	}
	return &browser{t: n.t, n: n, c: c}
}

// get fetches u and returns the status, the Location and the body.
func (b *browser) do(req *http.Request) (int, *url.URL, string) {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	loc, _ := resp.Location()
	return resp.StatusCode, loc, string(body)
}

func (b *browser) get(u string) (int, *url.URL, string) {
	b.t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	return b.do(req)
}

func (b *browser) post(path string, form url.Values) (int, *url.URL, string) {
	b.t.Helper()
	req, _ := http.NewRequest("POST", b.n.url(path), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var hiddenField = regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`)

// fields are the hidden fields of a page's form.
func fields(page string) url.Values {
	v := url.Values{}
	for _, m := range hiddenField.FindAllStringSubmatch(page, -1) {
		v.Set(m[1], m[2])
	}
	return v
}

// signIn drives the login form of an authorization request page and
// returns the relying party's callback URL the browser was sent to.
func (b *browser) signIn(page, user, password string, second func(form url.Values) url.Values) *url.URL {
	b.t.Helper()
	form := fields(page)
	form.Set("username", user)
	form.Set("password", password)
	code, loc, body := b.post("/login", form)
	if second != nil {
		if code != 200 || !strings.Contains(body, `name="mfa_token"`) {
			b.t.Fatalf("password of a TOTP user: %d, no second-factor form: %.300s", code, body)
		}
		code, loc, body = b.post("/login/mfa", second(fields(body)))
	}
	if code != http.StatusSeeOther || loc == nil || loc.Host != "app.example" {
		b.t.Fatalf("sign-in: %d %v %.300s", code, loc, body)
	}
	return loc
}

// authorize starts an authorization request and returns the page shown.
func (b *browser) authorize(u string) (int, *url.URL, string) {
	b.t.Helper()
	return b.get(u)
}

func TestBlackBoxOIDC(t *testing.T) {
	n := newTestNode(t)
	n.start()
	n.addUser("alice", "correct horse battery", false)
	if _, e, code := n.cli("new password\n", "user", "add", "bob", "--email", "bob@example.com", "--password-stdin"); code != 0 {
		t.Fatal(e)
	}

	// Clients, over the admin socket; the secret shown once.
	var app struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	waitfor.True(t, "client add (level 4)", 10*time.Second, 100*time.Millisecond, func() bool {
		out, _, code := n.cli("", "client", "add", "app", "--redirect-uri", rpCallback, "--json")
		return code == 0 && json.Unmarshal([]byte(out), &app) == nil
	})
	if app.ID != "app" || !strings.HasPrefix(app.Secret, "bws_") {
		t.Fatalf("client add --json: %+v", app)
	}
	out, errOut, code := n.cli("", "client", "add", "spa", "--redirect-uri", "http://127.0.0.1:9/cb", "--public", "--json")
	if code != 0 || strings.Contains(out, "client_secret") {
		t.Fatalf("public client add: %d %s %s", code, out, errOut)
	}
	if _, _, code := n.cli("", "client", "add", "app", "--redirect-uri", rpCallback); code != 1 {
		t.Fatalf("a second client called app: exit %d", code)
	}
	if out, _, _ := n.cli("", "client", "list"); !strings.Contains(out, "app") || !strings.Contains(out, "spa") || strings.Contains(out, app.Secret) {
		t.Fatalf("client list:\n%s", out)
	}

	ctx := oidc.ClientContext(context.Background(), n.client())
	issuer := n.url("")
	provider, err := oidc.NewProvider(ctx, issuer) // checks discovery's issuer is this URL
	if err != nil {
		t.Fatal(err)
	}
	cfg := oauth2.Config{ClientID: app.ID, ClientSecret: app.Secret, Endpoint: provider.Endpoint(),
		RedirectURL: rpCallback, Scopes: []string{oidc.ScopeOpenID, "profile", "email"}}
	idv := provider.Verifier(&oidc.Config{ClientID: app.ID})

	// One authorization code + PKCE flow through the login form.
	br := n.browser()
	flow := func(b *browser, user, password string, second func(url.Values) url.Values) (*oauth2.Token, *oidc.IDToken, string) {
		t.Helper()
		pkce, state, nonce := oauth2.GenerateVerifier(), oauth2.GenerateVerifier()[:20], oauth2.GenerateVerifier()[:20]
		code, loc, page := b.authorize(cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(pkce), oidc.Nonce(nonce)))
		if second != nil || user != "" {
			if code != 200 || !strings.Contains(page, `name="csrf_token"`) {
				t.Fatalf("authorize: %d %v, no login form: %.300s", code, loc, page)
			}
			loc = b.signIn(page, user, password, second)
		} else if code != http.StatusFound || loc == nil || loc.Host != "app.example" {
			t.Fatalf("authorize with a signed-in browser: %d %v %.200s", code, loc, page)
		}
		q := loc.Query()
		if q.Get("state") != state || q.Get("iss") != issuer || q.Get("code") == "" {
			t.Fatalf("callback %v", loc)
		}
		// Refused, and the code left for its client: a wrong verifier,
		// another client's credentials, another redirect_uri.
		if _, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(oauth2.GenerateVerifier())); !isOAuthError(err, "invalid_grant") {
			t.Fatalf("code exchange with another PKCE verifier: %v", err)
		}
		spa := oauth2.Config{ClientID: "spa", Endpoint: provider.Endpoint(), RedirectURL: rpCallback}
		if _, err := spa.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(pkce)); !isOAuthError(err, "invalid_grant") {
			t.Fatalf("app's code exchanged by spa: %v", err)
		}
		tok, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(pkce))
		if err != nil {
			t.Fatalf("code exchange: %v", err)
		}
		raw, _ := tok.Extra("id_token").(string)
		idt, err := idv.Verify(ctx, raw) // signature (JWKS), iss, aud, exp
		if err != nil {
			t.Fatalf("ID token: %v", err)
		}
		if idt.Nonce != nonce {
			t.Fatalf("nonce %q, sent %q", idt.Nonce, nonce)
		}
		return tok, idt, q.Get("code")
	}

	// The login form refuses a POST without the CSRF field, and a wrong
	// password, without saying which part was wrong.
	_, _, page := br.authorize(cfg.AuthCodeURL("s1", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	form := fields(page)
	form.Set("username", "alice")
	form.Set("password", "correct horse battery")
	noCSRF := url.Values{"auth_request": {form.Get("auth_request")}, "username": {"alice"}, "password": {"correct horse battery"}}
	if code, loc, _ := br.post("/login", noCSRF); code != http.StatusForbidden || loc != nil {
		t.Fatalf("login form without csrf_token: %d %v", code, loc)
	}
	bad := url.Values{}
	for k, v := range form {
		bad[k] = v
	}
	bad.Set("csrf_token", strings.Repeat("A", 43))
	if code, _, _ := br.post("/login", bad); code != http.StatusForbidden {
		t.Fatalf("login form with a wrong csrf_token: %d", code)
	}
	bad.Set("csrf_token", form.Get("csrf_token"))
	bad.Set("password", "wrong")
	if code, loc, body := br.post("/login", bad); code != http.StatusUnauthorized || loc != nil || !strings.Contains(body, "username or password is wrong") {
		t.Fatalf("wrong password: %d %v", code, loc)
	}

	tok, idt, usedCode := flow(br, "alice", "correct horse battery", nil)
	code, me, _ := n.apiCall("GET", "/v1/me", tok.AccessToken, nil)
	if code != 200 || idt.Subject != me["id"] || idt.Issuer != issuer {
		t.Fatalf("/v1/me with the OIDC access token: %d %v; ID token sub %q iss %q", code, me, idt.Subject, idt.Issuer)
	}
	var claims struct {
		Username string `json:"preferred_username"`
	}
	if err := idt.Claims(&claims); err != nil || claims.Username != "alice" {
		t.Fatalf("profile claims %+v %v", claims, err)
	}

	// userinfo
	ui, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil || ui.Subject != idt.Subject {
		t.Fatalf("userinfo: %+v %v", ui, err)
	}
	var uic struct {
		Username string `json:"preferred_username"`
	}
	ui.Claims(&uic)
	if uic.Username != "alice" {
		t.Fatalf("userinfo preferred_username %q", uic.Username)
	}

	// Refresh rotates; the old refresh token presented again revokes the
	// grant (RFC 9700 4.14.2): the new tokens die with it.
	old := tok.RefreshToken
	fresh, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: old, Expiry: time.Now().Add(-time.Hour)}).Token()
	if err != nil || fresh.RefreshToken == "" || fresh.RefreshToken == old {
		t.Fatalf("refresh: %v %v", fresh, err)
	}
	if code, _, _ := n.apiCall("GET", "/v1/me", fresh.AccessToken, nil); code != 200 {
		t.Fatalf("/v1/me after refresh: %d", code)
	}
	if _, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: old, Expiry: time.Now().Add(-time.Hour)}).Token(); !isOAuthError(err, "invalid_grant") {
		t.Fatalf("a reused refresh token: %v", err)
	}
	if code, _, _ := n.apiCall("GET", "/v1/me", fresh.AccessToken, nil); code != 401 {
		t.Fatalf("/v1/me after refresh-token reuse: %d, want 401", code)
	}

	// The browser is signed in: the next request comes straight back
	// (SSO). Its code replayed revokes what it issued.
	tok2, _, code2 := flow(br, "", "", nil)
	if _, err := cfg.Exchange(ctx, code2); !isOAuthError(err, "invalid_grant") {
		t.Fatalf("a code redeemed twice: %v", err)
	}
	if code, _, _ := n.apiCall("GET", "/v1/me", tok2.AccessToken, nil); code != 401 {
		t.Fatalf("/v1/me after the code's replay: %d, want 401", code)
	}
	if _, err := cfg.Exchange(ctx, usedCode); !isOAuthError(err, "invalid_grant") {
		t.Fatalf("the first code replayed: %v", err)
	}

	// prompt=login and max_age=0 ask a signed-in browser to sign in again.
	for _, p := range []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("prompt", "login"), oauth2.SetAuthURLParam("max_age", "0")} {
		waitfor.True(t, "a second passed since the sign-in", 3*time.Second, 100*time.Millisecond, func() bool { return time.Since(idt.IssuedAt) > time.Second })
		if code, loc, page := br.authorize(cfg.AuthCodeURL("s5", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), p)); code != 200 || !strings.Contains(page, `name="password"`) {
			t.Fatalf("authorize with %v: %d %v, no login form", p, code, loc)
		}
	}

	// Introspection (confidential clients, HTTP Basic) and revocation of
	// an access token.
	tok3, _, _ := flow(br, "", "", nil)
	if in := introspect(t, n, app.ID, app.Secret, tok3.AccessToken); in["active"] != true || in["sub"] != idt.Subject || in["client_id"] != "app" {
		t.Fatalf("introspect: %v", in)
	}
	if in := introspect(t, n, app.ID, app.Secret, tok3.RefreshToken); in["active"] != true || in["token_type"] != "refresh_token" {
		t.Fatalf("introspect a refresh token: %v", in)
	}
	if code := postForm(t, n, "/oauth2/introspect", "", "", url.Values{"token": {tok3.AccessToken}}); code != 400 && code != 401 {
		t.Fatalf("introspect without client authentication: %d", code)
	}
	if code := postForm(t, n, "/oauth2/introspect", app.ID, "bws_wrong", url.Values{"token": {tok3.AccessToken}}); code != 401 {
		t.Fatalf("introspect with a wrong secret: %d", code)
	}
	if code := postForm(t, n, "/oauth2/revoke", app.ID, app.Secret, url.Values{"token": {tok3.AccessToken}}); code != 200 {
		t.Fatalf("revoke: %d", code)
	}
	if in := introspect(t, n, app.ID, app.Secret, tok3.AccessToken); in["active"] != false || len(in) != 1 {
		t.Fatalf("introspect a revoked token: %v", in)
	}
	if code, _, _ := n.apiCall("GET", "/v1/me", tok3.AccessToken, nil); code != 401 {
		t.Fatalf("/v1/me with a revoked access token: %d", code)
	}

	// client_credentials, client_secret_post, and its revocation.
	cc := clientcredentials.Config{ClientID: app.ID, ClientSecret: app.Secret, TokenURL: provider.Endpoint().TokenURL,
		Scopes: []string{"api"}, AuthStyle: oauth2.AuthStyleInParams}
	ctok, err := cc.Token(ctx)
	if err != nil {
		t.Fatalf("client_credentials: %v", err)
	}
	if in := introspect(t, n, app.ID, app.Secret, ctok.AccessToken); in["active"] != true || in["sub"] != "app" {
		t.Fatalf("introspect a client_credentials token: %v", in)
	}
	if code, _, _ := n.apiCall("GET", "/v1/me", ctok.AccessToken, nil); code != 401 {
		t.Fatalf("/v1/me with a client's token: %d", code)
	}
	postForm(t, n, "/oauth2/revoke", app.ID, app.Secret, url.Values{"token": {ctok.AccessToken}})
	if in := introspect(t, n, app.ID, app.Secret, ctok.AccessToken); in["active"] != false {
		t.Fatalf("introspect a revoked client_credentials token: %v", in)
	}
	pub := clientcredentials.Config{ClientID: "spa", TokenURL: provider.Endpoint().TokenURL}
	if _, err := pub.Token(ctx); err == nil {
		t.Fatal("client_credentials for a public client")
	}

	// end_session: the grant and the browser's sign-in end; back to a
	// registered URI with the state; prompt=none then needs a login.
	tok4, _, _ := flow(br, "", "", nil)
	hint, _ := tok4.Extra("id_token").(string)
	es := n.url("/oauth2/end_session?" + url.Values{"id_token_hint": {hint}, "post_logout_redirect_uri": {rpCallback}, "state": {"bye"}}.Encode())
	if code, loc, _ := br.get(es); code != http.StatusFound || loc == nil || loc.Host != "app.example" || loc.Query().Get("state") != "bye" {
		t.Fatalf("end_session: %d %v", code, loc)
	}
	if code, _, _ := n.apiCall("GET", "/v1/me", tok4.AccessToken, nil); code != 401 {
		t.Fatalf("/v1/me after end_session: %d", code)
	}
	code, loc, _ := br.authorize(cfg.AuthCodeURL("s2", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("prompt", "none")))
	if code != http.StatusFound || loc == nil || loc.Host != "app.example" || loc.Query().Get("error") != "login_required" || loc.Query().Get("code") != "" {
		t.Fatalf("prompt=none after end_session: %d %v", code, loc)
	}

	// A public client without PKCE is refused (on its own redirect URI).
	spa := oauth2.Config{ClientID: "spa", Endpoint: provider.Endpoint(), RedirectURL: "http://127.0.0.1:9/cb", Scopes: []string{"openid"}}
	code, loc, _ = br.authorize(spa.AuthCodeURL("s3"))
	if code != http.StatusFound || loc == nil || loc.Query().Get("error") != "invalid_request" || loc.Query().Get("code") != "" {
		t.Fatalf("public client without PKCE: %d %v", code, loc)
	}

	// An unregistered redirect_uri gets an error page, never a redirect.
	evil := cfg
	evil.RedirectURL = "https://evil.example/cb"
	code, loc, body := br.authorize(evil.AuthCodeURL("s4", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	if code != http.StatusBadRequest || loc != nil || !strings.Contains(body, "<html") || strings.Contains(body, "evil.example") {
		t.Fatalf("unregistered redirect_uri: %d %v %.300s", code, loc, body)
	}

	// A user with TOTP is asked for the second factor in the flow.
	secret, _ := n.enrolTOTP("bob", "new password")
	fresh2 := n.browser()
	_, idt5, _ := flow(fresh2, "bob", "new password", func(f url.Values) url.Values {
		f.Set("method", "totp")
		f.Set("code", totpCode(t, secret, time.Now().Add(30*time.Second)))
		return f
	})
	var amr struct {
		AMR   []string `json:"amr"`
		Email string   `json:"email"`
	}
	idt5.Claims(&amr)
	if !strings.Contains(strings.Join(amr.AMR, " "), "otp") || amr.Email != "bob@example.com" {
		t.Fatalf("TOTP flow ID token: %+v", amr)
	}

	// client remove: its codes and refresh tokens stop working.
	if _, e, code := n.cli("", "client", "remove", "app"); code != 0 {
		t.Fatal(e)
	}
	if _, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: tok3.RefreshToken, Expiry: time.Now().Add(-time.Hour)}).Token(); err == nil {
		t.Fatal("a removed client's refresh token worked")
	}
}

func isOAuthError(err error, code string) bool {
	var re *oauth2.RetrieveError
	return errors.As(err, &re) && re.ErrorCode == code
}

func postForm(t *testing.T, n *testNode, path, id, secret string, form url.Values) int {
	t.Helper()
	req, _ := http.NewRequest("POST", n.url(path), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(id, secret)
	}
	resp, err := n.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func introspect(t *testing.T, n *testNode, id, secret, token string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest("POST", n.url("/oauth2/introspect"), strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	resp, err := n.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]any{}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&out) != nil {
		t.Fatalf("introspect: %d", resp.StatusCode)
	}
	return out
}

// TestBlackBoxOIDCCluster: one cluster, one issuer. Behind tokens.issuer
// every member's discovery names it; a code obtained through one member
// is exchanged at another, its ID token verified with a third's JWKS,
// refreshed and revoked at the third; the revocation reaches the first.
func TestBlackBoxOIDCCluster(t *testing.T) {
	node1 := newClusterNode(t, "node1")
	node1.start()
	node2 := newClusterNode(t, "node2")
	node2.startJoin(node1.joinToken())
	node3 := newClusterNode(t, "node3")
	node3.startJoin(node1.joinToken())
	nodes := []*testNode{node1, node2, node3}
	node1.addUser("alice", "correct horse battery", false)
	var app struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	waitfor.True(t, "client add (level 4)", 20*time.Second, 200*time.Millisecond, func() bool {
		out, _, code := node2.cli("", "client", "add", "app", "--redirect-uri", rpCallback, "--json")
		return code == 0 && json.Unmarshal([]byte(out), &app) == nil
	})

	for _, n := range nodes {
		var d struct {
			Issuer string `json:"issuer"`
			Token  string `json:"token_endpoint"`
			JWKS   string `json:"jwks_uri"`
		}
		resp, err := n.client().Get(n.url("/.well-known/openid-configuration"))
		if err != nil {
			t.Fatal(err)
		}
		json.NewDecoder(resp.Body).Decode(&d)
		resp.Body.Close()
		if d.Issuer != clusterIssuer || d.Token != clusterIssuer+"/oauth2/token" || d.JWKS != clusterIssuer+"/.well-known/jwks.json" {
			t.Fatalf("discovery on %s: %+v", n.dir, d)
		}
	}

	cfg := oauth2.Config{ClientID: app.ID, ClientSecret: app.Secret, RedirectURL: rpCallback, Scopes: []string{"openid"},
		Endpoint: oauth2.Endpoint{AuthURL: node1.url("/oauth2/authorize"), TokenURL: node2.url("/oauth2/token")}}
	pkce, nonce := oauth2.GenerateVerifier(), "n-cluster"
	br := node1.browser()
	_, _, page := br.authorize(cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(pkce), oidc.Nonce(nonce)))
	cb := br.signIn(page, "alice", "correct horse battery", nil)
	if cb.Query().Get("iss") != clusterIssuer {
		t.Fatalf("callback %v", cb)
	}
	ctx2 := oidc.ClientContext(context.Background(), node2.client())
	tok, err := cfg.Exchange(ctx2, cb.Query().Get("code"), oauth2.VerifierOption(pkce))
	if err != nil {
		t.Fatalf("code from node1 exchanged at node2: %v", err)
	}
	ctx3 := oidc.ClientContext(context.Background(), node3.client())
	keys := oidc.NewRemoteKeySet(ctx3, node3.url("/.well-known/jwks.json"))
	idt, err := oidc.NewVerifier(clusterIssuer, keys, &oidc.Config{ClientID: app.ID, SupportedSigningAlgs: []string{"ES256"}}).Verify(ctx3, tok.Extra("id_token").(string))
	if err != nil || idt.Nonce != nonce {
		t.Fatalf("ID token against node3's JWKS: %v %+v", err, idt)
	}
	cfg3 := cfg
	cfg3.Endpoint.TokenURL = node3.url("/oauth2/token")
	fresh, err := cfg3.TokenSource(ctx3, &oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Hour)}).Token()
	if err != nil {
		t.Fatalf("refresh at node3: %v", err)
	}
	if code, me, _ := node2.apiCall("GET", "/v1/me", fresh.AccessToken, nil); code != 200 || me["id"] != idt.Subject {
		t.Fatalf("/v1/me on node2: %d %v (sub %s)", code, me, idt.Subject)
	}
	if code := postForm(t, node3, "/oauth2/revoke", app.ID, app.Secret, url.Values{"token": {fresh.AccessToken}}); code != 200 {
		t.Fatalf("revoke at node3: %d", code)
	}
	waitfor.True(t, "the revocation reaches node1", 5*time.Second, 20*time.Millisecond, func() bool {
		code, _, _ := node1.apiCall("GET", "/v1/me", fresh.AccessToken, nil)
		return code == 401
	})
}
