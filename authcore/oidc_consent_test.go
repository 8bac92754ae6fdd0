package authcore

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
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

// A consent refused is in the audit trail: who, which client, which
// scopes; nothing else is recorded.
func TestDenyConsentAudited(t *testing.T) {
	s := oidcService(t, newLocalStore(t), newMemVault(), AlgES256, newClock())
	ctx := context.Background()
	addClient(t, s, "third", "", true)
	p, err := s.Authenticate(ctx, login(t, s).AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	req := AuthorizationRequest{ClientID: "third", RedirectURI: "https://third.example/cb", Scopes: []string{"openid", "email"}}
	if err := s.DenyConsent(ctx, p, req); err != nil {
		t.Fatal(err)
	}
	trail, err := s.Audit(ctx, 0, MaxAuditLimit)
	if err != nil {
		t.Fatal(err)
	}
	last := trail[len(trail)-1]
	if last.Type != "oidc.consent_denied" || last.Actor != p.UserID || last.Subject != p.UserID ||
		last.Details["client_id"] != "third" || last.Details["scope"] != "openid email" {
		t.Fatalf("last audit entry after a refusal: %+v", last)
	}
	if gs, err := s.Grants(ctx, p); err != nil || len(gs) != 0 {
		t.Fatalf("grants after a refusal: %v %v", gs, err)
	}
}

// Revoking all grants is one replicated command: if it fails (the
// leader lost, the client gone halfway), every grant is still there; if it
// succeeds, none is, the clients' sessions end, and the trail has one
// entry naming them.
func TestRevokeAllGrantsAtomic(t *testing.T) {
	st := newLocalStore(t)
	s := oidcService(t, st, newMemVault(), AlgES256, newClock())
	ctx := context.Background()
	p, err := s.Authenticate(ctx, login(t, s).AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	clients := []string{"one", "three", "two"}
	for _, c := range clients {
		addClient(t, s, c, "", true)
		if err := s.GrantConsent(ctx, p, AuthorizationRequest{ClientID: c, Scopes: []string{"openid"}}); err != nil {
			t.Fatal(err)
		}
	}
	grants := func() []string {
		t.Helper()
		gs, err := s.Grants(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, g := range gs {
			out = append(out, g.ClientID)
		}
		return out
	}
	// The write that withdraws grants is lost after the first of them.
	revokes := 0
	st.fail = func(cmd fsm.Command) error {
		if cmd.Type == fsm.TypeOIDCConsentRevoke || cmd.Type == fsm.TypeOIDCConsentRevokeAll {
			if revokes++; revokes > 1 {
				return errors.New("connection to the leader lost")
			}
		}
		return nil
	}
	if _, err := s.RevokeAllGrants(ctx, p); err != nil {
		t.Fatal(err)
	}
	if got := grants(); len(got) != 0 || revokes != 1 {
		t.Fatalf("after revoking all: grants %v, %d commands; want none, 1", got, revokes)
	}
	trail, err := s.Audit(ctx, 0, MaxAuditLimit)
	if err != nil {
		t.Fatal(err)
	}
	if last := trail[len(trail)-1]; last.Type != "oidc.consent_revoke_all" || last.Actor != p.UserID ||
		last.Details["client_ids"] != strings.Join(clients, " ") {
		t.Fatalf("last audit entry: %+v", last)
	}

	for _, c := range clients {
		if err := s.GrantConsent(ctx, p, AuthorizationRequest{ClientID: c, Scopes: []string{"openid"}}); err != nil {
			t.Fatal(err)
		}
	}
	revokes = 1 // every revoking write is lost now
	if _, err := s.RevokeAllGrants(ctx, p); err == nil {
		t.Fatal("revoke all with its write lost: no error")
	}
	if got := grants(); !slices.Equal(got, clients) {
		t.Fatalf("grants after a failed revoke all: %v; want all of %v", got, clients)
	}
}
