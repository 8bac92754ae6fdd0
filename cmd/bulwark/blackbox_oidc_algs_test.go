package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/bulwark-auth/bulwark/internal/waitfor"
	"github.com/bulwark-auth/bulwark/tpm/swtpmtest"
)

// addClient registers a confidential client over the admin socket (once
// the cluster's level allows it) and returns its secret.
func (n *testNode) addClient(name string, flags ...string) string {
	n.t.Helper()
	var out struct {
		Secret string `json:"client_secret"`
	}
	args := append([]string{"client", "add", name, "--redirect-uri", rpCallback, "--json"}, flags...)
	waitfor.True(n.t, "client add "+name, 10*time.Second, 100*time.Millisecond, func() bool {
		o, _, code := n.cli("", args...)
		return code == 0 && json.Unmarshal([]byte(o), &out) == nil
	})
	return out.Secret
}

// redirected: the provider's redirects are 302 (op's) or 303 (the forms').
func redirected(code int) bool { return code == http.StatusFound || code == http.StatusSeeOther }

// jwsAlg is the alg of a compact JWS's header.
func jwsAlg(t *testing.T, tok string) (alg, kid string) {
	t.Helper()
	h, _, _ := strings.Cut(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(h)
	var hdr struct{ Alg, Kid string }
	if err != nil || json.Unmarshal(b, &hdr) != nil {
		t.Fatalf("JWS header of %.40s…", tok)
	}
	return hdr.Alg, hdr.Kid
}

// Each client's ID tokens are in the algorithm it registered with, and a
// relying party on coreos/go-oidc verifies each against discovery and the
// JWKS (signature, iss, aud, exp, nonce, at_hash); a verifier that allows
// only another algorithm refuses it. The keys survive a restart.
func TestBlackBoxOIDCIDTokenAlgs(t *testing.T) {
	n := newTestNode(t)
	n.start()
	n.addUser("alice", "correct horse battery", false)
	clients := []struct{ name, flag, alg string }{{"es", "", "ES256"}, {"ed", "EdDSA", "EdDSA"}, {"rs", "RS256", "RS256"}}
	secrets := map[string]string{}
	for _, c := range clients {
		var flags []string
		if c.flag != "" {
			flags = []string{"--id-token-alg", c.flag}
		}
		secrets[c.name] = n.addClient(c.name, flags...)
	}
	if _, _, code := n.cli("", "client", "add", "hs", "--redirect-uri", rpCallback, "--id-token-alg", "HS256"); code == 0 {
		t.Fatal("client add --id-token-alg HS256 succeeded")
	}
	if out, _, _ := n.cli("", "client", "list"); !strings.Contains(out, "EdDSA") || !strings.Contains(out, "RS256") {
		t.Fatalf("client list:\n%s", out)
	}

	ctx := oidc.ClientContext(context.Background(), n.client())
	provider, err := oidc.NewProvider(ctx, n.url(""))
	if err != nil {
		t.Fatal(err)
	}
	var disc struct {
		Algs []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := provider.Claims(&disc); err != nil || !slices.Equal(disc.Algs, []string{"ES256", "EdDSA", "RS256"}) {
		t.Fatalf("discovery's id_token_signing_alg_values_supported: %v %v", disc.Algs, err)
	}

	br := n.browser()
	kids := map[string]string{}
	run := func(c struct{ name, flag, alg string }) {
		t.Helper()
		kid := br.idTokenFlow(ctx, provider, c.name, secrets[c.name], c.alg)
		if old, ok := kids[c.name]; ok && old != kid {
			t.Fatalf("%s: signed by %s after the restart, by %s before", c.name, kid, old)
		}
		kids[c.name] = kid
	}
	for _, c := range clients {
		run(c)
	}
	if !strings.Contains(n.jwksKids(), kids["ed"]) || !strings.Contains(n.jwksKids(), kids["rs"]) {
		t.Fatalf("JWKS %s lacks the ID-token keys %v", n.jwksKids(), kids)
	}

	// The keys are in the sealed keystore: the same ones after a restart.
	n.stop()
	n.start()
	br = n.browser()
	for _, c := range clients {
		run(c)
	}
}

// consentPage follows an authorization to the consent page and returns it.
func (b *browser) consentPage(code int, loc *url.URL, page string) url.Values {
	t := b.t
	t.Helper()
	if code != http.StatusOK || !strings.Contains(page, "Allow") || !strings.Contains(page, `name="decision"`) {
		t.Fatalf("no consent page: %d %v %.300s", code, loc, page)
	}
	return fields(page)
}

// A client registered with --consent gets a code only after the user
// allowed it on the consent page (CSRF-checked; Deny answers
// access_denied on its redirect_uri); once per scopes; prompt=none then
// answers consent_required; the user lists and revokes the grant through
// /v1/me/grants, which ends the client's refresh token and asks again. A
// first-party client never asks.
func TestBlackBoxOIDCConsent(t *testing.T) {
	n := newTestNode(t)
	n.start()
	n.addUser("alice", "correct horse battery", false)
	third := n.addClient("third", "--consent")
	first := n.addClient("first")
	if out, _, _ := n.cli("", "client", "list"); !strings.Contains(out, "required") {
		t.Fatalf("client list does not show the consent flag:\n%s", out)
	}
	ctx := oidc.ClientContext(context.Background(), n.client())
	provider, err := oidc.NewProvider(ctx, n.url(""))
	if err != nil {
		t.Fatal(err)
	}
	cfg := oauth2.Config{ClientID: "third", ClientSecret: third, Endpoint: provider.Endpoint(), RedirectURL: rpCallback,
		Scopes: []string{oidc.ScopeOpenID, "email"}}
	pkce := oauth2.GenerateVerifier()
	authURL := func(state string, opts ...oauth2.AuthCodeOption) string {
		return cfg.AuthCodeURL(state, append(opts, oauth2.S256ChallengeOption(pkce))...)
	}

	// Sign in: the consent page comes before any code.
	br := n.browser()
	_, _, page := br.authorize(authURL("s1"))
	form := fields(page)
	form.Set("username", "alice")
	form.Set("password", "correct horse battery")
	form = br.consentPage(br.post("/login", form))
	if form.Get("auth_request") == "" || form.Get("csrf_token") == "" {
		t.Fatalf("consent form fields %v", form)
	}
	// Without the CSRF token: refused, nothing recorded.
	noCSRF := url.Values{"auth_request": {form.Get("auth_request")}, "decision": {"allow"}}
	if code, _, _ := br.post("/consent", noCSRF); code != http.StatusForbidden {
		t.Fatalf("consent without CSRF: %d", code)
	}
	// Deny: access_denied, with the state, on the redirect_uri.
	form.Set("decision", "deny")
	code, loc, _ := br.post("/consent", form)
	if code != http.StatusSeeOther || loc.Host != "app.example" || loc.Query().Get("error") != "access_denied" || loc.Query().Get("state") != "s1" {
		t.Fatalf("deny: %d %v", code, loc)
	}
	// prompt=none while consent is missing: consent_required.
	code, loc, _ = br.authorize(authURL("s2", oauth2.SetAuthURLParam("prompt", "none")))
	if !redirected(code) || loc.Query().Get("error") != "consent_required" {
		t.Fatalf("prompt=none without consent: %d %v", code, loc)
	}
	// Allow: the code, and tokens.
	form = br.consentPage(br.authorize(authURL("s3")))
	form.Set("decision", "allow")
	code, loc, _ = br.post("/consent", form)
	if code != http.StatusSeeOther || loc.Host != "app.example" || loc.Query().Get("state") != "s3" || loc.Query().Get("code") == "" {
		t.Fatalf("allow: %d %v", code, loc)
	}
	tok, err := cfg.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(pkce))
	if err != nil {
		t.Fatal(err)
	}
	// Once per scopes: the same scopes go straight back; a new one asks.
	if code, loc, _ := br.authorize(authURL("s4")); !redirected(code) || loc.Query().Get("code") == "" {
		t.Fatalf("second authorization with the scopes allowed: %d %v", code, loc)
	}
	br.consentPage(br.authorize(authURL("s5", oauth2.SetAuthURLParam("scope", "openid email profile"))))
	// A first-party client does not ask.
	fc := oauth2.Config{ClientID: "first", ClientSecret: first, Endpoint: provider.Endpoint(), RedirectURL: rpCallback, Scopes: []string{"openid"}}
	if code, loc, _ := br.authorize(fc.AuthCodeURL("f1", oauth2.S256ChallengeOption(pkce))); !redirected(code) || loc.Query().Get("code") == "" {
		t.Fatalf("first-party client: %d %v", code, loc)
	}

	// The user's grants, through the API.
	api := n.loginOK("alice", "correct horse battery")
	code, body, _ := n.apiCall("GET", "/v1/me/grants", api, nil)
	grants, _ := body["grants"].([]any)
	if code != 200 || len(grants) != 1 || grants[0].(map[string]any)["client_id"] != "third" {
		t.Fatalf("GET /v1/me/grants: %d %v", code, body)
	}
	if code, _, _ := n.apiCall("DELETE", "/v1/me/grants/third", api, nil); code != http.StatusNoContent {
		t.Fatalf("DELETE /v1/me/grants/third: %d", code)
	}
	if code, _, _ := n.apiCall("DELETE", "/v1/me/grants/third", api, nil); code != http.StatusNotFound {
		t.Fatalf("DELETE a revoked grant: %d", code)
	}
	if _, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Hour)}).Token(); !isOAuthError(err, "invalid_grant") {
		t.Fatalf("the client's refresh token after the grant was revoked: %v", err)
	}
	br.consentPage(br.authorize(authURL("s6")))
}

// idTokenFlow runs an authorization code flow for a confidential client
// with the browser (signing alice in if it is not yet), has go-oidc
// verify the ID token (signature against the JWKS, iss, aud, exp, nonce,
// at_hash), checks it is in alg and that a verifier allowing only another
// algorithm refuses it, and returns its kid.
func (br *browser) idTokenFlow(ctx context.Context, provider *oidc.Provider, client, secret, alg string) string {
	t := br.t
	t.Helper()
	cfg := oauth2.Config{ClientID: client, ClientSecret: secret, Endpoint: provider.Endpoint(),
		RedirectURL: rpCallback, Scopes: []string{oidc.ScopeOpenID, "profile"}}
	pkce, nonce := oauth2.GenerateVerifier(), "nonce-"+client
	code, loc, page := br.authorize(cfg.AuthCodeURL("st-"+client, oauth2.S256ChallengeOption(pkce), oidc.Nonce(nonce)))
	if code == http.StatusOK {
		loc = br.signIn(page, "alice", "correct horse battery", nil)
	} else if !redirected(code) || loc == nil || loc.Host != "app.example" {
		t.Fatalf("%s: a signed-in browser's authorization: %d %v", client, code, loc)
	}
	tok, err := cfg.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(pkce))
	if err != nil {
		t.Fatalf("%s: exchange: %v", client, err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := provider.Verifier(&oidc.Config{ClientID: client}).Verify(ctx, raw)
	if err != nil {
		t.Fatalf("%s: go-oidc refuses the ID token: %v", client, err)
	}
	if idt.Nonce != nonce || idt.VerifyAccessToken(tok.AccessToken) != nil {
		t.Fatalf("%s: nonce %q, at_hash: %v", client, idt.Nonce, idt.VerifyAccessToken(tok.AccessToken))
	}
	got, kid := jwsAlg(t, raw)
	if got != alg {
		t.Fatalf("%s: ID token in %s, want %s", client, got, alg)
	}
	other := "RS256"
	if alg == "RS256" {
		other = "ES256"
	}
	if _, err := provider.Verifier(&oidc.Config{ClientID: client, SupportedSigningAlgs: []string{other}}).Verify(ctx, raw); err == nil {
		t.Fatalf("%s: a verifier for %s only accepted a %s ID token", client, other, alg)
	}
	return kid
}

// With seal.signing = "tpm-resident", ES256 ID tokens are signed by the
// TPM-resident signing key, and an EdDSA client's by an ID-token key
// sealed in the keystore (TPMs make no Ed25519 keys): never in plain form
// on disk, the same after a restart.
func TestBlackBoxTPMResidentIDTokenKeys(t *testing.T) {
	swtpmtest.Require(t)
	tpmA := swtpmtest.Start(t, t.TempDir())
	n := newTestNode(t)
	setSeal(t, n, tpmA.Device())
	appendConfig(t, n, `signing = "tpm-resident"`+"\n") // lands in [seal], the last table
	n.start()
	n.addUser("alice", "correct horse battery", false)
	es, ed := n.addClient("es"), n.addClient("ed", "--id-token-alg", "EdDSA")
	ctx := oidc.ClientContext(context.Background(), n.client())
	provider, err := oidc.NewProvider(ctx, n.url(""))
	if err != nil {
		t.Fatal(err)
	}
	br := n.browser()
	esKid := br.idTokenFlow(ctx, provider, "es", es, "ES256")
	_, tok := n.login("alice", "correct horse battery")
	if _, accessKid := jwsAlg(t, tok["access_token"].(string)); accessKid != esKid {
		t.Fatalf("the ES256 ID token's key %s is not the TPM-resident signing key %s", esKid, accessKid)
	}
	edKid := br.idTokenFlow(ctx, provider, "ed", ed, "EdDSA")
	n.stop()
	scanForKeyMaterial(t, n.dataDir(), n.logs.String())
	n.start()
	br = n.browser()
	if kid := br.idTokenFlow(ctx, provider, "ed", ed, "EdDSA"); kid != edKid {
		t.Fatalf("the EdDSA key after a restart: %s, before: %s", kid, edKid)
	}
}
