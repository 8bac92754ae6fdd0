package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/bulwark-auth/bulwark/authcore"
)

// consentOIDC is a provider whose client "third" requires consent, kept
// in memory: grants by client id.
type consentOIDC struct {
	pendingOIDC
	mu      sync.Mutex
	grants  map[string][]string
	codes   int
	denied  []string // "user client scopes" of each refusal audited
	denyErr error    // the audit of a refusal fails with it
	revokes int      // revoking writes (RevokeGrant, RevokeAllGrants)
}

func (o *consentOIDC) DenyConsent(ctx context.Context, p *authcore.Principal, req authcore.AuthorizationRequest) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.denyErr != nil {
		return o.denyErr
	}
	o.denied = append(o.denied, p.UserID+" "+req.ClientID+" "+strings.Join(req.Scopes, ","))
	return nil
}

func (o *consentOIDC) RevokeAllGrants(ctx context.Context, p *authcore.Principal) (authcore.RevokedGrants, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.revokes++
	out := authcore.RevokedGrants{}
	for c := range o.grants {
		out.ClientIDs = append(out.ClientIDs, c)
	}
	clear(o.grants)
	return out, nil
}

func (o *consentOIDC) PendingAuthorization(id string) (authcore.AuthorizationRequest, error) {
	return authcore.AuthorizationRequest{ID: id, ClientID: "third", RedirectURI: "https://third.example/cb",
		Scopes: []string{"openid", "email", "custom"}, State: "st"}, nil
}

func (o *consentOIDC) ConsentNeeded(p *authcore.Principal, req authcore.AuthorizationRequest) (bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, s := range req.Scopes {
		if !slices.Contains(o.grants[req.ClientID], s) {
			return true, nil
		}
	}
	return false, nil
}

func (o *consentOIDC) GrantConsent(ctx context.Context, p *authcore.Principal, req authcore.AuthorizationRequest) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.grants[req.ClientID] = req.Scopes
	return nil
}

func (o *consentOIDC) Authorize(ctx context.Context, req authcore.AuthorizationRequest, p *authcore.Principal) (string, error) {
	if need, _ := o.ConsentNeeded(p, req); need {
		return "", authcore.ErrConsentRequired
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.codes++
	return "bwc_code", nil
}

func (o *consentOIDC) Grants(ctx context.Context, p *authcore.Principal) ([]authcore.Grant, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := []authcore.Grant{}
	for c, s := range o.grants {
		out = append(out, authcore.Grant{ClientID: c, Scopes: s})
	}
	return out, nil
}

func (o *consentOIDC) RevokeGrant(ctx context.Context, p *authcore.Principal, client string) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.grants[client]; !ok {
		return 0, authcore.ErrNotFound
	}
	o.revokes++
	delete(o.grants, client)
	return 1, nil
}

// consentPost posts the consent form; sso is the browser's sign-in
// cookie ("" for none), csrf the form's token.
func consentPost(t *testing.T, h http.Handler, sso, csrf, decision string) *httptest.ResponseRecorder {
	t.Helper()
	form := url.Values{"csrf_token": {csrf}, "auth_request": {"req1"}, "decision": {decision}}
	req := httptest.NewRequest("POST", consentPath, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: cookieCSRF, Value: testCSRF})
	if sso != "" {
		req.AddCookie(&http.Cookie{Name: cookieSSO, Value: sso})
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// The consent page: only for a signed-in browser (else the login form),
// listing the scopes escaped; its form refused without the CSRF token or
// a decision; Deny sends access_denied with the state back, records
// nothing and issues no code; Allow records the grant and sends the code.
// /v1/me/grants lists and revokes.
func TestConsentPage(t *testing.T) {
	o := &consentOIDC{grants: map[string][]string{}}
	env := newAuthEnv(t, Options{OIDC: o})
	h := env.h

	req := httptest.NewRequest("GET", consentPath+"?auth_request=req1", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != loginPath+"?auth_request=req1" {
		t.Fatalf("consent page without a sign-in: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	req = httptest.NewRequest("GET", consentPath+"?auth_request=req1", nil)
	req.AddCookie(&http.Cookie{Name: cookieSSO, Value: "alice-token"})
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	page := rec.Body.String()
	if rec.Code != 200 || !strings.Contains(page, "Allow third") || !strings.Contains(page, "See your email address") ||
		!strings.Contains(page, "“custom”") || !strings.Contains(page, `name="csrf_token"`) {
		t.Fatalf("consent page: %d %s", rec.Code, page)
	}
	if rec.Header().Get("Content-Security-Policy") == "" || rec.Header().Get("X-Frame-Options") != "DENY" {
		t.Fatalf("consent page headers: %v", rec.Header())
	}

	for _, c := range []struct {
		sso, csrf, decision string
		status              int
	}{
		{"alice-token", "", "allow", http.StatusForbidden},
		{"alice-token", "x" + testCSRF[1:], "allow", http.StatusForbidden},
		{"alice-token", testCSRF, "maybe", http.StatusBadRequest},
		{"", testCSRF, "allow", http.StatusSeeOther}, // to the login form
	} {
		rec := consentPost(t, h, c.sso, c.csrf, c.decision)
		if rec.Code != c.status || len(o.grants) != 0 || o.codes != 0 {
			t.Fatalf("%+v: %d, grants %v, codes %d", c, rec.Code, o.grants, o.codes)
		}
	}
	if len(o.denied) != 0 {
		t.Fatalf("refusals audited before any: %v", o.denied)
	}
	// A refusal that cannot be audited is not answered as one.
	o.denyErr = authcore.ErrBusy
	if rec := consentPost(t, h, "alice-token", testCSRF, "deny"); rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Location") != "" {
		t.Fatalf("deny with the audit failing: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	o.denyErr = nil
	rec = consentPost(t, h, "alice-token", testCSRF, "deny")
	loc, _ := url.Parse(rec.Header().Get("Location"))
	if rec.Code != http.StatusSeeOther || loc.Host != "third.example" || loc.Query().Get("error") != "access_denied" ||
		loc.Query().Get("state") != "st" || len(o.grants) != 0 || o.codes != 0 {
		t.Fatalf("deny: %d %v, grants %v, codes %d", rec.Code, loc, o.grants, o.codes)
	}
	if len(o.denied) != 1 || !strings.HasSuffix(o.denied[0], " third openid,email,custom") || strings.HasPrefix(o.denied[0], " ") {
		t.Fatalf("refusals audited: %q; want one, by the user, for third and its scopes", o.denied)
	}
	rec = consentPost(t, h, "alice-token", testCSRF, "allow")
	loc, _ = url.Parse(rec.Header().Get("Location"))
	if rec.Code != http.StatusSeeOther || loc.Query().Get("code") != "bwc_code" || loc.Query().Get("state") != "st" || o.codes != 1 {
		t.Fatalf("allow: %d %v", rec.Code, loc)
	}

	get := doAuth(t, h, "GET", "/v1/me/grants", "alice-token", "")
	if get.Code != 200 || !strings.Contains(get.Body.String(), `"client_id":"third"`) {
		t.Fatalf("GET /v1/me/grants: %d %s", get.Code, get.Body)
	}
	if rec := doAuth(t, h, "DELETE", "/v1/me/grants/nope", "alice-token", ""); rec.Code != http.StatusNotFound {
		t.Fatalf("DELETE an unknown grant: %d", rec.Code)
	}
	o.grants["other"] = []string{"openid"}
	if rec := doAuth(t, h, "DELETE", "/v1/me/grants/third", "alice-token", ""); rec.Code != http.StatusNoContent || o.grants["third"] != nil {
		t.Fatalf("DELETE /v1/me/grants/third: %d %v", rec.Code, o.grants)
	}
	o.grants["another"] = []string{"openid"}
	o.revokes = 0
	if rec := doAuth(t, h, "DELETE", "/v1/me/grants", "alice-token", ""); rec.Code != http.StatusNoContent || len(o.grants) != 0 || o.revokes != 1 {
		t.Fatalf("DELETE /v1/me/grants: %d, grants left %v, %d revoking writes; want none left in one write", rec.Code, o.grants, o.revokes)
	}
	if rec := doAuth(t, h, "GET", "/v1/me/grants", "", ""); rec.Code != http.StatusUnauthorized {
		t.Fatalf("GET /v1/me/grants without a token: %d", rec.Code)
	}
}

// doAuth sends a request with a Bearer token ("" for none).
func doAuth(t *testing.T, h http.Handler, method, target, bearer, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}
