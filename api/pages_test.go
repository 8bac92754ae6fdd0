package api

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/authcore"
)

// pageClient drives the pages of a handler as a browser would: it keeps
// the cookies the handler sets (by name: the test plays one browser).
type pageClient struct {
	t       *testing.T
	h       http.Handler
	cookies map[string]string
}

func newPageClient(t *testing.T) (*pageClient, *fakeAuth) {
	t.Helper()
	logger, _ := newTestLogger(t)
	auth := newFakeAuth()
	h := NewHandler(Options{Logger: logger}, fakeReady{ok: true}, newFakeUsers(), auth)
	return &pageClient{t: t, h: h, cookies: map[string]string{}}, auth
}

func (c *pageClient) do(method, target string, form url.Values) *httptest.ResponseRecorder {
	c.t.Helper()
	var req *http.Request
	if form != nil {
		req = httptest.NewRequest(method, target, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req = httptest.NewRequest(method, target, nil)
	}
	for k, v := range c.cookies {
		req.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	rec := httptest.NewRecorder()
	c.h.ServeHTTP(rec, req)
	for _, ck := range rec.Result().Cookies() {
		if ck.MaxAge < 0 {
			delete(c.cookies, ck.Name)
		} else {
			c.cookies[ck.Name] = ck.Value
		}
	}
	return rec
}

var csrfField = regexp.MustCompile(`<input type="hidden" name="csrf_token" value="([^"]*)">`)

// csrf is the CSRF field of a page.
func csrf(t *testing.T, page string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no csrf_token field in %.300s", page)
	}
	return m[1]
}

// The pages' headers: a CSP that allows this origin's script and style
// only, framing refused, no referrer, no caching; the CSRF cookie is
// __Host-, Secure, HttpOnly and SameSite; the fields are labelled and say
// what they hold.
func TestPageHeadersAndMarkup(t *testing.T) {
	c, _ := newPageClient(t)
	rec := c.do("GET", "/login", nil)
	if rec.Code != 200 {
		t.Fatalf("GET /login: %d", rec.Code)
	}
	h := rec.Header()
	for k, want := range map[string]string{
		"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
			"worker-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
		"X-Frame-Options":        "DENY",
		"Referrer-Policy":        "no-referrer",
		"Cache-Control":          "no-store",
		"Content-Type":           "text/html; charset=utf-8",
		"X-Content-Type-Options": "nosniff",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	var found bool
	for _, ck := range rec.Result().Cookies() {
		if ck.Name == cookieCSRF {
			found = true
			if !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Domain != "" {
				t.Errorf("CSRF cookie %+v", ck)
			}
		}
	}
	if !found {
		t.Error("no CSRF cookie")
	}
	body := rec.Body.String()
	for _, want := range []string{`<label for="username">`, `id="username"`, `autocomplete="username"`,
		`<label for="password">`, `autocomplete="current-password"`, `role="alert"`, `aria-live`,
		`<link rel="stylesheet" href="/assets/bulwark.css">`} {
		if !strings.Contains(body, want) {
			t.Errorf("the login page lacks %s", want)
		}
	}
	if strings.Contains(body, "<script>") || strings.Contains(body, "style=") || strings.Contains(body, " on") && regexp.MustCompile(` on[a-z]+=`).MatchString(body) {
		t.Error("inline script or style in the login page")
	}
	if csrf(t, body) != c.cookies[cookieCSRF] {
		t.Error("the form's CSRF field is not the cookie's")
	}
	for _, a := range []string{"/assets/bulwark.css", "/assets/bulwark.js"} {
		if rec := c.do("GET", a, nil); rec.Code != 200 || rec.Body.Len() == 0 {
			t.Errorf("%s: %d", a, rec.Code)
		}
	}
}

// Every POST of the pages is refused without the CSRF field, or with one
// that is not the cookie's, before anything is done.
func TestPagesRefuseForgedForms(t *testing.T) {
	c, auth := newPageClient(t)
	c.cookies[cookieSSO] = "alice-token"
	token := csrf(t, c.do("GET", "/login?reauth=1", nil).Body.String())
	posts := []string{loginPath, loginMFAPath, loginPasskeyPath, logoutPath, "/account/sessions/revoke",
		"/account/sessions/revoke-others", "/account/password", "/account/totp", "/account/totp/confirm",
		"/account/totp/remove", "/account/recovery-codes", "/account/passkeys/begin", "/account/passkeys",
		"/account/passkeys/remove"}
	form := url.Values{"username": {"alice"}, "password": {"alice password"}, "session_id": {"s-alice2"},
		"current_password": {"alice password"}, "new_password": {"a new long passphrase"}, "confirm_password": {"a new long passphrase"}}
	for _, path := range posts {
		for name, field := range map[string][]string{"missing": nil, "wrong": {strings.Repeat("A", 43)}, "empty": {""}} {
			f := url.Values{}
			for k, v := range form {
				f[k] = v
			}
			if field != nil {
				f[fieldCSRF] = field
			}
			calls := auth.count("Login") + auth.count("RevokeSession") + auth.count("ChangePassword") + auth.count("Logout")
			rec := c.do("POST", path, f)
			if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "The form has expired") {
				t.Errorf("POST %s, CSRF %s: %d %.200s", path, name, rec.Code, rec.Body)
			}
			if n := auth.count("Login") + auth.count("RevokeSession") + auth.count("ChangePassword") + auth.count("Logout"); n != calls {
				t.Errorf("POST %s with a %s CSRF field reached the auth service", path, name)
			}
		}
	}
	// The same form with the right field goes through.
	f := url.Values{fieldCSRF: {token}, "session_id": {"s-alice2"}}
	if rec := c.do("POST", "/account/sessions/revoke", f); rec.Code != http.StatusSeeOther || auth.count("RevokeSession") != 1 {
		t.Fatalf("revoke with the right CSRF field: %d, %d calls", rec.Code, auth.count("RevokeSession"))
	}
}

// A wrong password, an unknown name, a disabled account and a name that
// is no username all answer with the same words; a good password signs
// the browser in (the cookie is __Host-, Secure, HttpOnly) and opens the
// account page.
func TestLoginPageAnswers(t *testing.T) {
	c, _ := newPageClient(t)
	token := csrf(t, c.do("GET", "/login", nil).Body.String())
	for _, tc := range []struct{ user, password string }{
		{"alice", "wrong"}, {"nobody", "wrong"}, {"carol", "carol password"}, {"has space", "x"},
	} {
		rec := c.do("POST", "/login", url.Values{fieldCSRF: {token}, "username": {tc.user}, "password": {tc.password}})
		if rec.Code/100 != 4 || !strings.Contains(rec.Body.String(), wrongPassword) || rec.Header().Get("Location") != "" {
			t.Errorf("%s/%s: %d %q", tc.user, tc.password, rec.Code, rec.Body)
		}
		if _, ok := c.cookies[cookieSSO]; ok {
			t.Fatalf("%s/%s: signed in", tc.user, tc.password)
		}
	}
	if rec := c.do("GET", "/account", nil); rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != loginPath {
		t.Fatalf("/account signed out: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	rec := c.do("POST", "/login", url.Values{fieldCSRF: {token}, "username": {"bob"}, "password": {"bob password"}})
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != accountPath {
		t.Fatalf("good password: %d %q %.300s", rec.Code, rec.Header().Get("Location"), rec.Body)
	}
	for _, ck := range rec.Result().Cookies() {
		if ck.Name == cookieSSO && (!ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.MaxAge <= 0) {
			t.Errorf("SSO cookie %+v", ck)
		}
	}
	// The fake's tokens are not the fake's access map: teach it.
	c.cookies[cookieSSO] = "bob-token"
	page := c.do("GET", "/account", nil)
	if page.Code != 200 || !strings.Contains(page.Body.String(), "Signed in as <strong>bob</strong>") {
		t.Fatalf("account page: %d %.300s", page.Code, page.Body)
	}
	if rec := c.do("GET", "/login", nil); rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != accountPath {
		t.Fatalf("/login signed in: %d", rec.Code)
	}
}

// Bad input on the account page: a clear 4xx page and nothing changed.
func TestAccountBadInput(t *testing.T) {
	c, auth := newPageClient(t)
	c.cookies[cookieSSO] = "alice-token"
	token := csrf(t, c.do("GET", "/account", nil).Body.String())
	for _, tc := range []struct {
		path string
		form url.Values
		want int
	}{
		{"/account/sessions/revoke", url.Values{}, 400},
		{"/account/sessions/revoke", url.Values{"session_id": {strings.Repeat("x", 129)}}, 400},
		{"/account/sessions/revoke", url.Values{"session_id": {"s-bob"}}, 404}, // another user's
		{"/account/password", url.Values{"current_password": {"alice password"}, "new_password": {"one long passphrase"},
			"confirm_password": {"another passphrase"}}, 400},
		{"/account/passkeys", url.Values{}, 400},
		{"/account/passkeys/remove", url.Values{}, 400},
	} {
		tc.form.Set(fieldCSRF, token)
		rec := c.do("POST", tc.path, tc.form)
		if rec.Code != tc.want || !strings.Contains(rec.Header().Get("Content-Type"), "text/html") || !strings.Contains(rec.Body.String(), `class="error"`) {
			t.Errorf("POST %s %v: %d, want %d with an error on the page", tc.path, tc.form, rec.Code, tc.want)
		}
	}
	if auth.count("ChangePassword") != 0 {
		t.Error("mismatched new passwords reached ChangePassword")
	}
	if _, ok := auth.sessions["s-bob"]; !ok {
		t.Error("bob's session was revoked from alice's page")
	}
}

// A step-up refusal sends the user to confirm it's them, not to an error.
func TestAccountStepUp(t *testing.T) {
	c, auth := newPageClient(t)
	c.cookies[cookieSSO] = "alice-token"
	token := csrf(t, c.do("GET", "/account", nil).Body.String())
	auth.setErr("RegenerateRecoveryCodes", &authcore.StepUpError{})
	rec := c.do("POST", "/account/recovery-codes", url.Values{fieldCSRF: {token}})
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), `href="/login?reauth=1"`) {
		t.Fatalf("step-up: %d %.400s", rec.Code, rec.Body)
	}
	page := c.do("GET", "/login?reauth=1", nil).Body.String()
	if !strings.Contains(page, "Confirm it&#39;s you") || !strings.Contains(page, `value="alice" readonly`) {
		t.Fatalf("reauth page: %.600s", page)
	}
}

// The sign-in POSTs are behind the per-address limit and the per-name
// one, answered as pages; a name whose failures emptied its bucket is
// refused before its password is checked, in the lockout's words.
func TestLoginPageRateLimits(t *testing.T) {
	logger, _ := newTestLogger(t)
	auth := newFakeAuth()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rl := NewRateLimiter(RateLimitConfig{PerIP: 0.001, PerIPBurst: 4, PerUsername: 0.001, PerUsernameBurst: 2,
		Now: func() time.Time { return now }})
	c := &pageClient{t: t, h: NewHandler(Options{Logger: logger, RateLimit: rl}, fakeReady{ok: true}, newFakeUsers(), auth),
		cookies: map[string]string{}}
	token := csrf(t, c.do("GET", "/login", nil).Body.String())
	wrong := url.Values{fieldCSRF: {token}, "username": {"alice"}, "password": {"wrong"}}
	for i := range 2 {
		if rec := c.do("POST", "/login", wrong); rec.Code != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d", i, rec.Code)
		}
	}
	logins := auth.count("Login")
	rec := c.do("POST", "/login", wrong)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" ||
		!strings.Contains(rec.Body.String(), "Too many failed attempts") || auth.count("Login") != logins {
		t.Fatalf("a name over its limit: %d %q, %d logins", rec.Code, rec.Header().Get("Retry-After"), auth.count("Login")-logins)
	}
	c.do("POST", "/login", wrong)
	rec = c.do("POST", "/login", wrong) // the fifth POST from this address
	if rec.Code != http.StatusTooManyRequests || !strings.Contains(rec.Header().Get("Content-Type"), "text/html") ||
		!strings.Contains(rec.Body.String(), "Too many requests") {
		t.Fatalf("an address over its limit: %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
}
