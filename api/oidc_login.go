package api

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"strconv"

	"github.com/bulwark-auth/bulwark/authcore"
)

// The minimal sign-in step of the authorization endpoint: a server-rendered
// form, password then second factor, through authcore's Login and
// VerifyMFA (so the lockout, the rate limits and the audit trail are the
// API's). It lives apart from the provider so the login pages can replace
// its look without touching the protocol.
//
// CSRF: a double-submit token, a random value in the __Host-bulwark-csrf
// cookie and the form's csrf_token field, compared in constant time; a
// POST without both, or with two that differ, is refused. The cookie is
// __Host- (Secure, Path=/, no Domain), HttpOnly and SameSite=Lax, so
// another site can neither read nor set it. The browser's sign-in is the
// access token of the session the login started, in __Host-bulwark-sso
// (HttpOnly, Secure, SameSite=Lax): checked by Authenticate like any
// bearer token, so a revoked session signs the browser out.

const (
	loginPath     = "/login"
	loginMFAPath  = "/login/mfa"
	signedOutPath = "/login/signed-out"
	cookieSSO     = "__Host-bulwark-sso"
	cookieCSRF    = "__Host-bulwark-csrf"
	fieldCSRF     = "csrf_token"
	maxRequestID  = 64
)

var loginTemplates = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{{.Title}} · bulwark</title></head>
<body>
<main>
<h1>{{.Title}}</h1>
{{if .Error}}<p role="alert">{{.Error}}</p>{{end}}
{{if .Message}}<p>{{.Message}}</p>{{end}}
{{if eq .Form "password"}}
<form method="post" action="/login">
<input type="hidden" name="csrf_token" value="{{.CSRF}}">
<input type="hidden" name="auth_request" value="{{.Request}}">
<p><label for="username">Username</label><br><input id="username" name="username" autocomplete="username" required autofocus></p>
<p><label for="password">Password</label><br><input id="password" name="password" type="password" autocomplete="current-password" required></p>
<p><button type="submit">Sign in</button></p>
</form>
{{else if eq .Form "mfa"}}
<form method="post" action="/login/mfa">
<input type="hidden" name="csrf_token" value="{{.CSRF}}">
<input type="hidden" name="auth_request" value="{{.Request}}">
<input type="hidden" name="mfa_token" value="{{.MFAToken}}">
<p><label for="method">Second factor</label><br><select id="method" name="method">
<option value="totp">Code from your authenticator app</option>
<option value="recovery_code">Recovery code</option>
</select></p>
<p><label for="code">Code</label><br><input id="code" name="code" autocomplete="one-time-code" inputmode="numeric" required autofocus></p>
<p><button type="submit">Verify</button></p>
</form>
{{end}}
</main>
</body>
</html>
`))

type loginView struct {
	Title, Error, Message string
	Form                  string // "password", "mfa" or ""
	CSRF, Request         string
	MFAToken              string
}

func renderPage(w http.ResponseWriter, status int, v loginView) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	loginTemplates.Execute(w, v)
}

// renderError writes an error page (no form).
func renderError(w http.ResponseWriter, status int, title, msg string) {
	renderPage(w, status, loginView{Title: title, Error: msg})
}

func hostCookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode}
}

func clearCookie(name string) *http.Cookie { return hostCookie(name, "", -1) }

// csrfToken returns the browser's CSRF token, setting a new cookie if it
// has none.
func csrfToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(cookieCSRF); err == nil && len(c.Value) == 43 {
		return c.Value
	}
	b := make([]byte, 32)
	rand.Read(b)
	tok := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, hostCookie(cookieCSRF, tok, 0))
	return tok
}

// csrfOK checks the form's csrf_token against the cookie.
func csrfOK(r *http.Request) bool {
	c, err := r.Cookie(cookieCSRF)
	f := r.PostFormValue(fieldCSRF)
	return err == nil && len(c.Value) == 43 && subtle.ConstantTimeCompare([]byte(c.Value), []byte(f)) == 1
}

// browserPrincipal is the caller the SSO cookie in h names, or nil.
func (a *apiHandlers) browserPrincipal(ctx context.Context, h http.Header) *authcore.Principal {
	c, err := (&http.Request{Header: h}).Cookie(cookieSSO)
	if err != nil || c.Value == "" {
		return nil
	}
	p, err := a.auth.Authenticate(ctx, c.Value)
	if err != nil {
		return nil
	}
	return p
}

// pending returns the authorization request a login form is for.
func (a *apiHandlers) pending(w http.ResponseWriter, id string) (authcore.AuthorizationRequest, bool) {
	if id == "" || len(id) > maxRequestID {
		renderError(w, http.StatusBadRequest, "No sign-in request", "Open this page from the application you want to sign in to.")
		return authcore.AuthorizationRequest{}, false
	}
	req, err := a.opts.OIDC.PendingAuthorization(id)
	if err != nil {
		renderError(w, http.StatusBadRequest, "This sign-in request has expired", "Go back to the application and start again.")
		return authcore.AuthorizationRequest{}, false
	}
	return req, true
}

func (a *apiHandlers) loginPage(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("auth_request")
	if _, ok := a.pending(w, id); !ok {
		return
	}
	renderPage(w, http.StatusOK, loginView{Title: "Sign in", Form: "password", CSRF: csrfToken(w, r), Request: id})
}

// loginForm parses a POSTed form and checks its CSRF token; false: the
// answer is written.
func loginForm(w http.ResponseWriter, r *http.Request) bool {
	if err := r.ParseForm(); err != nil {
		renderError(w, http.StatusBadRequest, "The form could not be read", "Go back and try again.")
		return false
	}
	if !csrfOK(r) {
		renderError(w, http.StatusForbidden, "The form has expired", "The form was not sent from this site's page, or is too old. Go back, reload the page and try again.")
		return false
	}
	return true
}

func (a *apiHandlers) loginSubmit(w http.ResponseWriter, r *http.Request) {
	if !loginForm(w, r) {
		return
	}
	id := r.PostFormValue("auth_request")
	if _, ok := a.pending(w, id); !ok {
		return
	}
	tok, err := a.auth.Login(r.Context(), r.PostFormValue("username"), r.PostFormValue("password"))
	a.afterFactor(w, r, id, tok, err)
}

func (a *apiHandlers) loginMFA(w http.ResponseWriter, r *http.Request) {
	if !loginForm(w, r) {
		return
	}
	id := r.PostFormValue("auth_request")
	if _, ok := a.pending(w, id); !ok {
		return
	}
	tok, err := a.auth.VerifyMFA(r.Context(), r.PostFormValue("mfa_token"), r.PostFormValue("method"), r.PostFormValue("code"))
	if errors.Is(err, authcore.ErrInvalidCredentials) {
		// The ticket stays good for another code until it expires.
		renderPage(w, http.StatusUnauthorized, loginView{Title: "Second factor", Form: "mfa", Error: "That code is not right.",
			CSRF: csrfToken(w, r), Request: id, MFAToken: r.PostFormValue("mfa_token")})
		return
	}
	a.afterFactor(w, r, id, tok, err)
}

// afterFactor answers a checked factor: the next form, a refusal, or the
// signed-in browser sent back to the client with its code.
func (a *apiHandlers) afterFactor(w http.ResponseWriter, r *http.Request, id string, tok authcore.Tokens, err error) {
	var locked *authcore.LockedError
	switch {
	case errors.As(err, &locked):
		w.Header().Set("Retry-After", strconv.Itoa(int(locked.RetryAfter.Seconds()+0.999)))
		renderPage(w, http.StatusTooManyRequests, loginView{Title: "Sign in", Form: "password", CSRF: csrfToken(w, r), Request: id,
			Error: "Too many failed attempts. Try again later."})
		return
	case errors.Is(err, authcore.ErrInvalidCredentials), errors.Is(err, authcore.ErrInvalidUsername),
		errors.Is(err, authcore.ErrInvalidInput), errors.Is(err, authcore.ErrInvalidMFAToken):
		// The same words whatever went wrong: no name is confirmed.
		renderPage(w, http.StatusUnauthorized, loginView{Title: "Sign in", Form: "password", CSRF: csrfToken(w, r), Request: id,
			Error: "The username or password is wrong."})
		return
	case err != nil:
		writeError(w, r, err)
		return
	case tok.MFA != nil:
		renderPage(w, http.StatusOK, loginView{Title: "Second factor", Form: "mfa", CSRF: csrfToken(w, r), Request: id,
			MFAToken: tok.MFA.Token})
		return
	}
	p, err := a.auth.Authenticate(r.Context(), tok.AccessToken)
	if err != nil {
		writeError(w, r, err)
		return
	}
	http.SetCookie(w, hostCookie(cookieSSO, tok.AccessToken, tok.ExpiresIn))
	req, ok := a.pending(w, id)
	if !ok {
		return
	}
	code, err := a.opts.OIDC.Authorize(r.Context(), req, p)
	if err != nil {
		renderError(w, http.StatusBadRequest, "This sign-in request has expired", "Go back to the application and start again.")
		return
	}
	http.Redirect(w, r, codeRedirect(req, code, a.opts.OIDC.Issuer()), http.StatusSeeOther)
}

func (a *apiHandlers) signedOut(w http.ResponseWriter, r *http.Request) {
	renderPage(w, http.StatusOK, loginView{Title: "Signed out", Message: "You have been signed out."})
}
