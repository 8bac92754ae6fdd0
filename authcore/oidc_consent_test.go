package authcore

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// A client that requires consent gets no code until the user allowed it
// the request's scopes (once: the next request with them needs nothing),
// again for a scope it lacks, and again after a revocation, which also
// ends the sessions the client holds; a first-party client never asks.
func TestConsent(t *testing.T) {
	clk := newClock()
	s := oidcService(t, newLocalStore(t), newMemVault(), AlgES256, clk)
	ctx := context.Background()
	addClient(t, s, "third", "", true)
	addClient(t, s, "first", "", false)
	tok := login(t, s)
	p, err := s.Authenticate(ctx, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	start := func(client string, prompt []string, scopes ...string) AuthorizationRequest {
		t.Helper()
		challenge, _ := pkceS256(testVerifier)
		req := AuthorizationRequest{ClientID: client, RedirectURI: "https://" + client + ".example/cb", Scopes: scopes,
			CodeChallenge: challenge, CodeChallengeMethod: "S256", Prompt: prompt}
		if req.ID, err = s.StartAuthorization(ctx, req); err != nil {
			t.Fatal(err)
		}
		if req, err = s.PendingAuthorization(req.ID); err != nil {
			t.Fatal(err)
		}
		return req
	}
	need := func(req AuthorizationRequest) bool {
		t.Helper()
		n, err := s.ConsentNeeded(p, req)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if req := start("first", nil, "openid"); need(req) {
		t.Fatal("a first-party client asks for consent")
	}
	req := start("third", nil, "openid", "email")
	if !need(req) {
		t.Fatal("no consent asked for a client that requires it")
	}
	// Authorize refuses without it, whatever the caller checked.
	if _, err := s.Authorize(ctx, req, p); !errors.Is(err, ErrConsentRequired) {
		t.Fatalf("authorize without consent: %v", err)
	}
	if err := s.GrantConsent(ctx, p, req); err != nil {
		t.Fatal(err)
	}
	if need(req) {
		t.Fatal("consent asked again after it was given")
	}
	code, err := s.Authorize(ctx, req, p)
	if err != nil {
		t.Fatal(err)
	}
	issued, err := s.RedeemCode(ctx, "third", code, req.RedirectURI, testVerifier)
	if err != nil {
		t.Fatal(err)
	}
	if req := start("third", nil, "openid"); need(req) {
		t.Fatal("consent asked for scopes already allowed")
	}
	if req := start("third", nil, "openid", "profile"); !need(req) {
		t.Fatal("no consent asked for a new scope")
	}
	clk.Advance(time.Second)
	if req := start("third", []string{"consent"}, "openid"); !need(req) {
		t.Fatal("prompt=consent did not ask")
	}
	gs, err := s.Grants(ctx, p)
	if err != nil || len(gs) != 1 || gs[0].ClientID != "third" || strings.Join(gs[0].Scopes, " ") != "email openid" {
		t.Fatalf("grants %+v %v", gs, err)
	}
	n, err := s.RevokeGrant(ctx, p, "third")
	if err != nil || n != 1 {
		t.Fatalf("revoke: %d %v", n, err)
	}
	if _, err := s.RefreshClient(ctx, "third", issued.RefreshToken); !errors.Is(err, ErrInvalidGrant) {
		t.Fatalf("the client's refresh token after the consent was revoked: %v", err)
	}
	if _, err := s.RevokeGrant(ctx, p, "third"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke twice: %v", err)
	}
	if req := start("third", nil, "openid"); !need(req) {
		t.Fatal("no consent asked after it was revoked")
	}
	if _, err := s.Me(ctx, p); err != nil {
		t.Fatalf("the user's own session went with the grant: %v", err)
	}
}

// Below feature level 5 a client cannot ask for an ID-token algorithm or
// consent (members would not apply them), and no grant is recorded; a
// plain client is still registered the level-4 way.
func TestClientFeaturesNeedLevel5(t *testing.T) {
	s, _ := newAuthServiceAt(t, Config{}, 4)
	ctx := context.Background()
	for _, nc := range []NewClient{{Name: "ed", IDTokenAlg: AlgEdDSA}, {Name: "third", ConsentRequired: true}} {
		nc.RedirectURIs, nc.Public = []string{"https://x.example/cb"}, true
		if _, _, err := s.CreateClient(ctx, nc); !errors.Is(err, ErrConflict) {
			t.Fatalf("%+v at level 4: %v", nc, err)
		}
	}
	c, _, err := s.CreateClient(ctx, NewClient{Name: "plain", RedirectURIs: []string{"https://x.example/cb"}, Public: true, IDTokenAlg: AlgES256})
	if err != nil || c.IDTokenAlg != AlgES256 || c.ConsentRequired {
		t.Fatalf("a plain client at level 4: %+v %v", c, err)
	}
	if err := s.GrantConsent(ctx, &Principal{UserID: "u"}, AuthorizationRequest{ClientID: "plain", Scopes: []string{"openid"}}); !errors.Is(err, ErrConflict) {
		t.Fatalf("a grant at level 4: %v", err)
	}
}
