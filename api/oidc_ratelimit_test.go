package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/bulwark-auth/bulwark/authcore"
)

// pendingOIDC is an OIDC whose every authorization request is pending,
// for the login form; the rest of the provider is not reached by these
// tests (a call panics on the nil interface).
type pendingOIDC struct{ OIDC }

func (pendingOIDC) PendingAuthorization(id string) (authcore.AuthorizationRequest, error) {
	return authcore.AuthorizationRequest{ID: id, ClientID: "app", RedirectURI: "https://app.example/cb", Scopes: []string{"openid"}}, nil
}
func (pendingOIDC) ConsentNeeded(*authcore.Principal, authcore.AuthorizationRequest) (bool, error) {
	return false, nil
}
func (pendingOIDC) Authorize(context.Context, authcore.AuthorizationRequest, *authcore.Principal) (string, error) {
	return "bwc_code", nil
}
func (pendingOIDC) Issuer() string { return "https://bulwark.test" }

const testCSRF = "0123456789012345678901234567890123456789012" // 43 characters

// formLogin posts the authorization endpoint's sign-in form.
func formLogin(t *testing.T, h http.Handler, user, password string) *httptest.ResponseRecorder {
	t.Helper()
	form := url.Values{"csrf_token": {testCSRF}, "auth_request": {"req1"}, "username": {user}, "password": {password}}
	req := httptest.NewRequest("POST", loginPath, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: cookieCSRF, Value: testCSRF})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func jsonLogin(t *testing.T, h http.Handler, user, password string) *httptest.ResponseRecorder {
	t.Helper()
	return do(t, h, "POST", "/v1/auth/login", "application/json", `{"username":"`+user+`","password":"`+password+`"}`)
}

// The authorization endpoint's sign-in form takes the JSON API's path:
// the same per-username bucket, charged by failures from either, refuses
// a name from both (429, Retry-After) before its password is checked.
func TestLoginFormPerUsernameLimit(t *testing.T) {
	clk := newRLClock()
	env := newAuthEnv(t, Options{OIDC: pendingOIDC{},
		RateLimit: NewRateLimiter(RateLimitConfig{PerUsername: 1, PerUsernameBurst: 2, Now: clk.Now})})
	h := env.h

	// Two failures on the form empty alice's bucket...
	for i := 0; i < 2; i++ {
		if rec := formLogin(t, h, "alice", "wrong"); rec.Code != http.StatusUnauthorized {
			t.Fatalf("failure %d on the form: %d %s", i, rec.Code, rec.Body)
		}
	}
	checks := env.auth.count("Login")
	// ...so the right password on the form is refused unchecked, as the
	// lockout refuses it, and so is the JSON API.
	rec := formLogin(t, h, "alice", "alice password")
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "1" || !strings.Contains(rec.Body.String(), "Too many failed attempts") {
		t.Fatalf("form login with an empty bucket: %d %q %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	checkError(t, jsonLogin(t, h, "alice", "alice password"), http.StatusTooManyRequests, CodeTooManyAttempts)
	if n := env.auth.count("Login"); n != checks {
		t.Fatalf("%d passwords checked while the name was limited", n-checks)
	}
	// Another name is not limited; the bucket refills.
	if rec := formLogin(t, h, "bob", "bob password"); rec.Code != http.StatusSeeOther {
		t.Fatalf("bob on the form: %d %s", rec.Code, rec.Body)
	}
	clk.Advance(1e9)
	if rec := formLogin(t, h, "alice", "alice password"); rec.Code != http.StatusSeeOther {
		t.Fatalf("alice after a refill: %d %s", rec.Code, rec.Body)
	}

	// Failures on the JSON API limit the form too.
	for i := 0; i < 2; i++ {
		checkError(t, jsonLogin(t, h, "bob", "wrong"), http.StatusUnauthorized, CodeInvalidCredentials)
	}
	if rec := formLogin(t, h, "bob", "bob password"); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("form login after the API's failures: %d %s", rec.Code, rec.Body)
	}
}
