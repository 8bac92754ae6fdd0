package fsm

import (
	"errors"
	"testing"
	"time"
)

// oidcSetup registers client "app", starts u1's login session "login"
// and an authorization request "r1" answered with code hash hashOf("c1").
func oidcSetup(t *testing.T) *applier {
	t.Helper()
	a := setupUser(t)
	if r := a.apply(TypeOIDCClientPut, t0, OIDCClientPut{Client: OIDCClient{ID: "app", SecretHash: hashOf("secret"),
		RedirectURIs: []string{"https://app.example/cb"}}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := a.apply(TypeOIDCClientPut, t0, OIDCClientPut{Client: OIDCClient{ID: "app", Public: true,
		RedirectURIs: []string{"https://x.example/cb"}}}); !errors.Is(r.Err, ErrClientExists) {
		t.Fatalf("a second client app: %v", r.Err)
	}
	if r := a.apply(TypeSessionCreate, t0, SessionCreate{ID: "login", UserID: "u1", RefreshHash: hashOf("rlogin"),
		Lifetime: int64(time.Hour), MaxPerUser: 10, OnLimit: "evict_oldest", AMR: []string{"pwd", "otp", "mfa"}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := a.apply(TypeOIDCAuthRequest, t0, OIDCAuthRequestPut{Request: OIDCAuthRequest{ID: "r1", ClientID: "app",
		RedirectURI: "https://app.example/cb", Scopes: []string{"openid", "profile"}, Nonce: "n",
		CodeChallenge: pkceOf("verifier"), CodeChallengeMethod: "S256",
		ExpiresAt: t0.Add(10 * time.Minute), KeepUntil: t0.Add(20 * time.Minute)}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := a.apply(TypeOIDCAuthorize, t0.Add(time.Second), authorizeR1("c1")); r.Err != nil {
		t.Fatal(r.Err)
	}
	return a
}

func authorizeR1(code string) OIDCAuthorize {
	return OIDCAuthorize{RequestID: "r1", CodeHash: hashOf(code), UserID: "u1", LoginSession: "login",
		AuthTime: t0, AMR: []string{"pwd", "otp", "mfa"},
		CodeExpiresAt: t0.Add(time.Minute), CodeKeepUntil: t0.Add(10 * time.Minute)}
}

// pkceOf stands for the S256 transform of a verifier.
func pkceOf(v string) string { return hashOf("pkce " + v)[:43] }

func redeem(a *applier, at time.Time, code, client, redirect, sid string) Result {
	a.t.Helper()
	return redeemPKCE(a, at, code, client, redirect, sid, pkceOf("verifier"))
}

func redeemPKCE(a *applier, at time.Time, code, client, redirect, sid, pkce string) Result {
	a.t.Helper()
	return a.apply(TypeOIDCCodeRedeem, at, OIDCCodeRedeem{CodeHash: hashOf(code), ClientID: client, RedirectURI: redirect, PKCE: pkce,
		Session: SessionCreate{ID: sid, RefreshHash: hashOf("r" + sid), Lifetime: int64(time.Hour), MaxPerUser: 10, OnLimit: "evict_oldest"}})
}

// A code is bound to its client, redirect_uri and PKCE challenge (a
// refusal leaves it redeemable), redeemed once into a
// session carrying the request's user, amr, auth time and scopes, and a
// second redemption revokes that session (RFC 6749 4.1.2).
func TestOIDCCodeRedeemedOnce(t *testing.T) {
	a := oidcSetup(t)
	at := t0.Add(2 * time.Second)
	if r := a.apply(TypeOIDCAuthorize, at, authorizeR1("c2")); !errors.Is(r.Err, ErrAuthRequestNotFound) {
		t.Fatalf("a request answered twice: %v", r.Err)
	}
	for _, c := range []struct{ client, redirect string }{{"other", "https://app.example/cb"}, {"app", "https://app.example/cb2"}} {
		if r := redeem(a, at, "c1", c.client, c.redirect, "s0"); !errors.Is(r.Err, ErrInvalidCode) {
			t.Fatalf("redeemed by %s at %s: %v", c.client, c.redirect, r.Err)
		}
	}
	for _, pk := range []string{"", pkceOf("another")} {
		if r := redeemPKCE(a, at, "c1", "app", "https://app.example/cb", "s0", pk); !errors.Is(r.Err, ErrInvalidCode) {
			t.Fatalf("redeemed with PKCE %q: %v", pk, r.Err)
		}
	}
	r := redeem(a, at, "c1", "app", "https://app.example/cb", "s1")
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	res := r.Value.(OIDCCodeResult)
	s := res.Session
	if s.UserID != "u1" || s.ClientID != "app" || !s.AuthTime.Equal(t0) || len(s.AMR) != 3 || len(s.Scopes) != 2 || res.Request.Nonce != "n" {
		t.Fatalf("session from the code: %+v", s)
	}
	if r := redeem(a, at, "c1", "app", "https://app.example/cb", "s2"); r.Err != nil || !r.Value.(OIDCCodeResult).Replayed {
		t.Fatalf("a second redemption: %+v", r)
	}
	if sessionExists(t, a, "s1") || sessionExists(t, a, "s2") {
		t.Fatal("the session a replayed code issued is still there (or the replay started one)")
	}
}

func sessionExists(t *testing.T, a *applier, id string) bool {
	t.Helper()
	var ok bool
	a.s.View(func(r Reader) error { _, err := r.Session(id); ok = err == nil; return nil })
	return ok
}

// A code redeemed late, or after the login session it came from ended,
// is refused.
func TestOIDCCodeExpiresWithItsLogin(t *testing.T) {
	a := oidcSetup(t)
	if r := redeem(a, t0.Add(time.Minute), "c1", "app", "https://app.example/cb", "s1"); !errors.Is(r.Err, ErrInvalidCode) {
		t.Fatalf("a code at its expiry: %v", r.Err)
	}
	a = oidcSetup(t)
	if r := a.apply(TypeSessionRevoke, t0.Add(2*time.Second), SessionRevoke{ID: "login"}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := redeem(a, t0.Add(3*time.Second), "c1", "app", "https://app.example/cb", "s1"); !errors.Is(r.Err, ErrInvalidCode) {
		t.Fatalf("a code whose login session was revoked: %v", r.Err)
	}
}

// The sweep deletes requests and codes once they are kept no longer.
func TestOIDCSweep(t *testing.T) {
	a := oidcSetup(t)
	if r := a.applyVersion(TypeSweep, 2, t0.Add(30*time.Minute), SweepV2{Limit: 100}); r.Err != nil {
		t.Fatal(r.Err)
	}
	a.s.View(func(r Reader) error {
		if _, err := r.OIDCAuthRequest("r1"); !errors.Is(err, ErrAuthRequestNotFound) {
			t.Errorf("request after the sweep: %v", err)
		}
		if _, err := r.OIDCCode(hashOf("c1")); !errors.Is(err, ErrInvalidCode) {
			t.Errorf("code after the sweep: %v", err)
		}
		if _, err := r.OIDCClient("app"); err != nil {
			t.Errorf("the client went with them: %v", err)
		}
		return nil
	})
}
