package fsm

import (
	"errors"
	"slices"
	"testing"
	"time"
)

// consentSetup is oidcSetup plus client "ask" (consent required, v2) and a
// request "r2" for it with scopes openid and email.
func consentSetup(t *testing.T) *applier {
	t.Helper()
	a := oidcSetup(t)
	if r := a.applyVersion(TypeOIDCClientPut, 2, t0, OIDCClientPut{Client: OIDCClient{ID: "ask", Public: true,
		RedirectURIs: []string{"https://ask.example/cb"}, IDTokenAlg: "EdDSA", ConsentRequired: true}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	putRequest(t, a, "r2", "ask", t0, "openid", "email")
	return a
}

func putRequest(t *testing.T, a *applier, id, client string, at time.Time, scopes ...string) {
	t.Helper()
	if r := a.apply(TypeOIDCAuthRequest, at, OIDCAuthRequestPut{Request: OIDCAuthRequest{ID: id, ClientID: client,
		RedirectURI: "https://" + client + ".example/cb", Scopes: scopes,
		ExpiresAt: at.Add(10 * time.Minute), KeepUntil: at.Add(20 * time.Minute)}}); r.Err != nil {
		t.Fatal(r.Err)
	}
}

func authorizeReq(id, code string, after time.Time) OIDCAuthorize {
	return OIDCAuthorize{RequestID: id, CodeHash: hashOf(code), UserID: "u1", LoginSession: "login", AuthTime: t0,
		AMR: []string{"pwd"}, CodeExpiresAt: t0.Add(time.Minute), CodeKeepUntil: t0.Add(10 * time.Minute), ConsentAfter: after}
}

// The client's v2 fields are stored, an unknown algorithm refused; v1
// refuses the fields it never had, as the binaries before it did.
func TestOIDCClientPutV2(t *testing.T) {
	a := consentSetup(t)
	a.s.View(func(r Reader) error {
		c, err := r.OIDCClient("ask")
		if err != nil || c.IDTokenAlg != "EdDSA" || !c.ConsentRequired {
			t.Fatalf("stored client: %+v %v", c, err)
		}
		return nil
	})
	bad := OIDCClientPut{Client: OIDCClient{ID: "x", Public: true, RedirectURIs: []string{"https://x.example/cb"}, IDTokenAlg: "HS256"}}
	if r := a.applyVersion(TypeOIDCClientPut, 2, t0, bad); !errors.Is(r.Err, ErrInvalidCommand) {
		t.Fatalf("id_token_alg HS256: %v", r.Err)
	}
	for _, c := range []OIDCClient{
		{ID: "y", Public: true, RedirectURIs: []string{"https://y.example/cb"}, IDTokenAlg: "RS256"},
		{ID: "z", Public: true, RedirectURIs: []string{"https://z.example/cb"}, ConsentRequired: true},
	} {
		if r := a.applyVersion(TypeOIDCClientPut, 1, t0, OIDCClientPut{Client: c}); !errors.Is(r.Err, ErrMalformedCommand) {
			t.Fatalf("v1 with a v2 field (%+v): %v", c, r.Err)
		}
	}
	if r := a.applyVersion(TypeOIDCAuthorize, 1, t0, authorizeReq("r2", "c9", t0)); !errors.Is(r.Err, ErrMalformedCommand) {
		t.Fatalf("oidc.authorize v1 with consent_after: %v", r.Err)
	}
}

// oidc.authorize v2 needs, for a client that requires consent, a grant
// covering the request's scopes, given after ConsentAfter, to this
// registration of the client; a client without the flag needs none.
func TestOIDCAuthorizeChecksConsent(t *testing.T) {
	a := consentSetup(t)
	at := t0.Add(time.Second)
	if r := a.applyVersion(TypeOIDCAuthorize, 2, at, authorizeReq("r2", "c2", time.Time{})); !errors.Is(r.Err, ErrConsentRequired) {
		t.Fatalf("no grant: %v", r.Err)
	}
	// v1 never checked: the level-4 behaviour is kept.
	putRequest(t, a, "r3", "ask", t0, "openid")
	if r := a.applyVersion(TypeOIDCAuthorize, 1, at, OIDCAuthorize{RequestID: "r3", CodeHash: hashOf("c3"), UserID: "u1",
		LoginSession: "login", AuthTime: t0, CodeExpiresAt: t0.Add(time.Minute), CodeKeepUntil: t0.Add(10 * time.Minute)}); r.Err != nil {
		t.Fatalf("v1: %v", r.Err)
	}
	// A grant of openid alone does not cover openid+email.
	if r := a.apply(TypeOIDCConsentGrant, at, OIDCConsentGrant{UserID: "u1", ClientID: "ask", Scopes: []string{"openid"}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := a.applyVersion(TypeOIDCAuthorize, 2, at, authorizeReq("r2", "c2", time.Time{})); !errors.Is(r.Err, ErrConsentRequired) {
		t.Fatalf("grant of fewer scopes: %v", r.Err)
	}
	r := a.apply(TypeOIDCConsentGrant, at.Add(time.Second), OIDCConsentGrant{UserID: "u1", ClientID: "ask", Scopes: []string{"email"}})
	g, _ := r.Value.(*OIDCGrant)
	if r.Err != nil || g == nil || !slices.Equal(g.Scopes, []string{"email", "openid"}) || !g.GrantedAt.Equal(at) || !g.UpdatedAt.Equal(at.Add(time.Second)) {
		t.Fatalf("grant added to: %+v %v", g, r.Err)
	}
	// prompt=consent: a grant older than the request does not count.
	if r := a.applyVersion(TypeOIDCAuthorize, 2, at.Add(2*time.Second), authorizeReq("r2", "c2", at.Add(2*time.Second))); !errors.Is(r.Err, ErrConsentRequired) {
		t.Fatalf("grant before consent_after: %v", r.Err)
	}
	if r := a.applyVersion(TypeOIDCAuthorize, 2, at.Add(2*time.Second), authorizeReq("r2", "c2", at)); r.Err != nil {
		t.Fatalf("covered: %v", r.Err)
	}
	// A client without the flag needs no grant under v2.
	putRequest(t, a, "r4", "app", t0, "openid")
	if r := a.applyVersion(TypeOIDCAuthorize, 2, at, authorizeReq("r4", "c4", time.Time{})); r.Err != nil {
		t.Fatalf("first-party client: %v", r.Err)
	}
	// The client removed and registered again: the old grant is void.
	if r := a.apply(TypeOIDCClientDelete, at, OIDCClientDelete{ID: "ask"}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := a.applyVersion(TypeOIDCClientPut, 2, at.Add(time.Minute), OIDCClientPut{Client: OIDCClient{ID: "ask", Public: true,
		RedirectURIs: []string{"https://ask.example/cb"}, ConsentRequired: true}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	putRequest(t, a, "r5", "ask", at.Add(time.Minute), "openid")
	if r := a.applyVersion(TypeOIDCAuthorize, 2, at.Add(time.Minute), authorizeReq("r5", "c5", time.Time{})); !errors.Is(r.Err, ErrConsentRequired) {
		t.Fatalf("grant to the client's former registration: %v", r.Err)
	}
}

// Revoking a grant deletes it and ends the sessions its client holds for
// the user, and only those.
func TestOIDCConsentRevoke(t *testing.T) {
	a := consentSetup(t)
	at := t0.Add(time.Second)
	if r := a.apply(TypeOIDCConsentRevoke, at, OIDCConsentRevoke{UserID: "u1", ClientID: "ask"}); !errors.Is(r.Err, ErrGrantNotFound) {
		t.Fatalf("no grant: %v", r.Err)
	}
	for _, p := range []OIDCConsentGrant{{UserID: "nobody", ClientID: "ask", Scopes: []string{"openid"}},
		{UserID: "u1", ClientID: "gone", Scopes: []string{"openid"}}, {UserID: "u1", ClientID: "ask"}} {
		if r := a.apply(TypeOIDCConsentGrant, at, p); r.Err == nil {
			t.Fatalf("grant %+v accepted", p)
		}
	}
	if r := a.apply(TypeOIDCConsentGrant, at, OIDCConsentGrant{UserID: "u1", ClientID: "ask", Scopes: []string{"openid", "email"}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := a.applyVersion(TypeOIDCAuthorize, 2, at, authorizeReq("r2", "c2", time.Time{})); r.Err != nil {
		t.Fatal(r.Err)
	}
	r := a.apply(TypeOIDCCodeRedeem, at, OIDCCodeRedeem{CodeHash: hashOf("c2"), ClientID: "ask", RedirectURI: "https://ask.example/cb",
		Session: SessionCreate{ID: "sask", RefreshHash: hashOf("rsask"), Lifetime: int64(time.Hour), MaxPerUser: 10, OnLimit: "evict_oldest"}})
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	var grants []string
	a.s.View(func(rd Reader) error {
		return rd.OIDCGrants("u1", func(g *OIDCGrant) { grants = append(grants, g.ClientID) })
	})
	if !slices.Equal(grants, []string{"ask"}) {
		t.Fatalf("grants of u1: %v", grants)
	}
	r = a.apply(TypeOIDCConsentRevoke, at, OIDCConsentRevoke{UserID: "u1", ClientID: "ask"})
	if r.Err != nil || r.Value != 1 {
		t.Fatalf("revoke: %v %v", r.Value, r.Err)
	}
	a.s.View(func(rd Reader) error {
		if _, err := rd.Session("sask"); !errors.Is(err, ErrSessionNotFound) {
			t.Errorf("the client's session outlived the grant: %v", err)
		}
		if _, err := rd.Session("login"); err != nil {
			t.Errorf("the login session went with the grant: %v", err)
		}
		if _, err := rd.OIDCGrant("u1", "ask"); !errors.Is(err, ErrGrantNotFound) {
			t.Errorf("grant after revoke: %v", err)
		}
		return nil
	})
}

// user.delete v2 (level 5) deletes the user's consent grants and refusal
// count with them; v1 (level 1, unchanged) left both behind.
func TestUserDeleteTakesGrants(t *testing.T) {
	a := newApplier(t)
	must := func(r Result) {
		t.Helper()
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	must(a.apply(TypeOIDCClientPut, t0, OIDCClientPut{Client: OIDCClient{ID: "app", SecretHash: hashOf("secret"),
		RedirectURIs: []string{"https://app.example/cb"}}}))
	left := func(id string) (grants int, refusals bool) {
		return viewValue(t, a.s, func(r Reader) (int, error) {
			n := 0
			return n, r.OIDCGrants(id, func(*OIDCGrant) { n++ })
		}), viewValue(t, a.s, func(r Reader) (bool, error) { return r.tx.Bucket(bucketForbidden).Get([]byte(id)) != nil, nil })
	}
	for v, id := range map[uint16]string{1: "u1", 2: "u2"} {
		must(a.apply(TypeUserCreate, t0, UserCreate{ID: id, Username: "user-" + id, PasswordHash: "h"}))
		must(a.apply(TypeOIDCConsentGrant, t0, OIDCConsentGrant{UserID: id, ClientID: "app", Scopes: []string{"openid"}}))
		must(a.apply(TypeForbidden, t0, Forbidden{UserID: id, Max: 5, Window: int64(time.Minute)}))
		must(a.applyVersion(TypeUserDelete, v, t0.Add(time.Second), UserDelete{ID: id}))
	}
	if g, f := left("u1"); g != 1 || !f {
		t.Fatalf("v1 changed: it left %d grants and refusal count %v, want 1 and true", g, f)
	}
	if g, f := left("u2"); g != 0 || f {
		t.Fatalf("v2 left %d grants and refusal count %v", g, f)
	}
}

// Revoking all of a user's grants is one entry: every grant of the user
// goes (to a client since removed too), with the sessions those clients
// hold for the user; the user's own session and another user's grant
// stay. Again, it withdraws nothing and is no error.
func TestOIDCConsentRevokeAll(t *testing.T) {
	a := consentSetup(t)
	at := t0.Add(time.Second)
	must := func(r Result) {
		t.Helper()
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	must(a.apply(TypeUserCreate, t0, UserCreate{ID: "u2", Username: "bob", PasswordHash: "h"}))
	for _, id := range []string{"ask2", "gone"} {
		must(a.applyVersion(TypeOIDCClientPut, 2, t0, OIDCClientPut{Client: OIDCClient{ID: id, Public: true,
			RedirectURIs: []string{"https://" + id + ".example/cb"}, ConsentRequired: true}}))
	}
	for _, g := range []OIDCConsentGrant{{UserID: "u1", ClientID: "ask", Scopes: []string{"openid", "email"}},
		{UserID: "u1", ClientID: "ask2", Scopes: []string{"openid"}}, {UserID: "u1", ClientID: "gone", Scopes: []string{"openid"}},
		{UserID: "u2", ClientID: "ask", Scopes: []string{"openid"}}} {
		must(a.apply(TypeOIDCConsentGrant, at, g))
	}
	must(a.apply(TypeOIDCClientDelete, at, OIDCClientDelete{ID: "gone"}))
	must(a.applyVersion(TypeOIDCAuthorize, 2, at, authorizeReq("r2", "c2", time.Time{})))
	must(a.apply(TypeOIDCCodeRedeem, at, OIDCCodeRedeem{CodeHash: hashOf("c2"), ClientID: "ask", RedirectURI: "https://ask.example/cb",
		Session: SessionCreate{ID: "sask", RefreshHash: hashOf("rsask"), Lifetime: int64(time.Hour), MaxPerUser: 10, OnLimit: "evict_oldest"}}))

	if r := a.apply(TypeOIDCConsentRevokeAll, at, OIDCConsentRevokeAll{UserID: ""}); !errors.Is(r.Err, ErrInvalidCommand) {
		t.Fatalf("no user: %v", r.Err)
	}
	r := a.apply(TypeOIDCConsentRevokeAll, at, OIDCConsentRevokeAll{UserID: "u1"})
	got, _ := r.Value.(OIDCRevokedGrants)
	if r.Err != nil || !slices.Equal(got.ClientIDs, []string{"ask", "ask2", "gone"}) || got.Sessions != 1 {
		t.Fatalf("revoke all: %+v %v", r.Value, r.Err)
	}
	a.s.View(func(rd Reader) error {
		n := 0
		rd.OIDCGrants("u1", func(*OIDCGrant) { n++ })
		if n != 0 {
			t.Errorf("%d grants of u1 left", n)
		}
		if _, err := rd.OIDCGrant("u2", "ask"); err != nil {
			t.Errorf("another user's grant went too: %v", err)
		}
		if _, err := rd.Session("sask"); !errors.Is(err, ErrSessionNotFound) {
			t.Errorf("the client's session outlived the grants: %v", err)
		}
		if _, err := rd.Session("login"); err != nil {
			t.Errorf("the login session went with the grants: %v", err)
		}
		return nil
	})
	r = a.apply(TypeOIDCConsentRevokeAll, at, OIDCConsentRevokeAll{UserID: "u1"})
	if got, _ := r.Value.(OIDCRevokedGrants); r.Err != nil || len(got.ClientIDs) != 0 || got.Sessions != 0 {
		t.Fatalf("revoke all again: %+v %v", r.Value, r.Err)
	}
}
