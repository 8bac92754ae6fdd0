package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/bulwark-auth/bulwark/authcore"
)

// The sign-in pages: password, then a second factor (a TOTP code, a
// recovery code or a passkey), through authcore's LoginWith, VerifyMFA
// and FinishWebAuthnLogin, so the lockout, the rate limits, the proof of
// work, the device tokens and the audit trail are the API's. A sign-in
// either belongs to an authorization request of the OpenID Connect
// provider (?auth_request=, and back to the client with a code) or stands
// alone (to /account). ?reauth=1 confirms a signed-in user before a
// sensitive change (step-up): the same steps, for that user's name.

// Paths of the sign-in pages.
const (
	loginPath        = "/login"
	loginMFAPath     = "/login/mfa"
	loginPasskeyPath = "/login/passkey"
	signedOutPath    = "/login/signed-out"
	logoutPath       = "/logout"
	accountPath      = "/account"
	maxRequestID     = 64
)

// The words every refusal of a first factor answers with, whatever went
// wrong: no name is confirmed.
const wrongPassword = "The username or password is wrong."

// loginFlow is the sign-in a page belongs to.
type loginFlow struct {
	id     string // authorization request; "" standalone
	req    authcore.AuthorizationRequest
	reauth bool
	user   *authcore.Principal // the browser's sign-in, if any
}

// view is the page of f's sign-in with its hidden fields.
func (f loginFlow) view(w http.ResponseWriter, r *http.Request, title string) pageView {
	v := pageView{Title: title, CSRF: csrfToken(w, r), Request: f.id, Reauth: f.reauth}
	if f.id != "" {
		v.Client = f.req.ClientID
		v.formAction = originOf(f.req.RedirectURI)
	}
	if f.reauth {
		v.Title = "Confirm it's you"
		v.Lead = "For your security, sign in again before you change your password or how you sign in."
		v.Username = f.user.Username
	}
	return v
}

// postedFlow checks a sign-in form POST (its CSRF token, pageForm) and
// reads the sign-in it belongs to; false: the answer is written.
func (a *apiHandlers) postedFlow(w http.ResponseWriter, r *http.Request) (loginFlow, bool) {
	if !pageForm(w, r) {
		return loginFlow{}, false
	}
	return a.flow(w, r, r.PostFormValue("auth_request"), r.PostFormValue("reauth"))
}

// flow reads the sign-in a request belongs to from its query (GET) or
// form (POST); false: the answer is written.
func (a *apiHandlers) flow(w http.ResponseWriter, r *http.Request, id, reauth string) (loginFlow, bool) {
	f := loginFlow{id: id, user: a.browserPrincipal(r.Context(), r.Header)}
	f.reauth = reauth == "1" && f.user != nil && id == ""
	if id == "" {
		return f, true
	}
	if len(id) > maxRequestID || a.opts.OIDC == nil {
		renderError(w, http.StatusBadRequest, "No sign-in request", "Open this page from the application you want to sign in to.")
		return f, false
	}
	req, err := a.opts.OIDC.PendingAuthorization(id)
	if err != nil {
		renderError(w, http.StatusBadRequest, "This sign-in request has expired", "Go back to the application and start again.")
		return f, false
	}
	f.req = req
	return f, true
}

// loginPage serves GET /login.
func (a *apiHandlers) loginPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, ok := a.flow(w, r, q.Get("auth_request"), q.Get("reauth"))
	if !ok {
		return
	}
	if f.id == "" && f.user != nil && !f.reauth {
		http.Redirect(w, r, accountPath, http.StatusSeeOther)
		return
	}
	v := f.view(w, r, "Sign in")
	v.Script = !f.reauth // the passkey button
	renderPage(w, http.StatusOK, "login", v)
}

// loginSubmit serves POST /login: the password.
func (a *apiHandlers) loginSubmit(w http.ResponseWriter, r *http.Request) {
	f, ok := a.postedFlow(w, r)
	if !ok {
		return
	}
	name := r.PostFormValue("username")
	if f.reauth {
		name = f.user.Username // confirming who is signed in, nobody else
	}
	req := authcore.LoginRequest{Username: name, Password: r.PostFormValue("password"), Altcha: r.PostFormValue("altcha")}
	if c, err := r.Cookie(cookieDevice); err == nil {
		req.DeviceToken = c.Value
	}
	tok, err := a.passwordLogin(r.Context(), req)
	if err != nil {
		a.firstFactorRefused(w, r, f, name, err)
		return
	}
	a.afterFactor(w, r, f, tok)
}

// firstFactorRefused answers a password login authcore refused, on the
// password form again.
func (a *apiHandlers) firstFactorRefused(w http.ResponseWriter, r *http.Request, f loginFlow, name string, err error) {
	v := f.view(w, r, "Sign in")
	v.Script = !f.reauth
	if !f.reauth && len(name) <= 256 {
		v.Username = name
	}
	var ce *authcore.ChallengeError
	switch {
	case errors.As(err, &ce):
		b, _ := json.Marshal(ce.Challenge)
		v.Challenge = string(b)
		v.Error = "There were too many failed sign-ins. Enter your password again while your browser solves a short check."
		renderPage(w, http.StatusPreconditionRequired, "login", v)
	case isTooMany(err):
		w.Header().Set("Retry-After", strconv.Itoa(retrySeconds(err)))
		v.Error = "Too many failed attempts. Wait a while, then try again."
		renderPage(w, http.StatusTooManyRequests, "login", v)
	case errorIs(err, authcore.ErrInvalidCredentials):
		v.Error = wrongPassword
		renderPage(w, http.StatusUnauthorized, "login", v)
	case errorIs(err, authcore.ErrInvalidUsername, authcore.ErrInvalidInput):
		// Refused by its form before anything was counted, in the same
		// words.
		v.Error = wrongPassword
		renderPage(w, http.StatusBadRequest, "login", v)
	case errorIs(err, authcore.ErrLockedDown):
		renderError(w, http.StatusServiceUnavailable, "Sign-in is paused",
			"The administrators have paused sign-in while they look into a security incident. Try again later.")
	default:
		pageError(w, r, err)
	}
}

// isTooMany: a locked name, or one over its rate limit.
func isTooMany(err error) bool {
	var e *Error
	return errors.Is(err, authcore.ErrTooManyAttempts) || errors.As(err, &e) && e.Status == http.StatusTooManyRequests
}

func retrySeconds(err error) int {
	var e *Error
	d := lockedFor(err)
	if errors.As(err, &e) {
		d = e.RetryAfter
	}
	return max(1, int(d.Seconds()+0.999))
}

// loginMFA serves POST /login/mfa: a TOTP or recovery code.
func (a *apiHandlers) loginMFA(w http.ResponseWriter, r *http.Request) {
	f, ok := a.postedFlow(w, r)
	if !ok {
		return
	}
	method := r.PostFormValue("method")
	tok, err := a.auth.VerifyMFA(r.Context(), r.PostFormValue("mfa_token"), method, strings.TrimSpace(r.PostFormValue("code")))
	if err != nil {
		a.secondFactorRefused(w, r, f, method, err)
		return
	}
	a.afterFactor(w, r, f, tok)
}

// loginPasskey serves POST /login/passkey: the form bulwark.js submits
// with the authenticator's answer to a second-factor ceremony begun at
// /v1/auth/webauthn/begin.
func (a *apiHandlers) loginPasskey(w http.ResponseWriter, r *http.Request) {
	f, ok := a.postedFlow(w, r)
	if !ok {
		return
	}
	id, cred := r.PostFormValue("challenge_id"), r.PostFormValue("credential")
	if id == "" || cred == "" || !json.Valid([]byte(cred)) {
		v := f.view(w, r, "Sign in")
		v.Error = "The passkey's answer did not arrive. Passkeys need JavaScript; sign in again and use another method, or turn JavaScript on."
		renderPage(w, http.StatusBadRequest, "login", v)
		return
	}
	tok, err := a.auth.FinishWebAuthnLogin(r.Context(), id, []byte(cred))
	if err != nil {
		a.secondFactorRefused(w, r, f, "webauthn", err)
		return
	}
	a.afterFactor(w, r, f, tok)
}

// secondFactorRefused answers a second factor authcore refused: the same
// form again while the mfa_token lasts, else the password form.
func (a *apiHandlers) secondFactorRefused(w http.ResponseWriter, r *http.Request, f loginFlow, method string, err error) {
	again := func(status int, msg string) {
		v := f.view(w, r, "Two-step verification")
		v.MFAToken = r.PostFormValue("mfa_token")
		v.Methods = strings.Fields(r.PostFormValue("mfa_methods"))
		if len(v.Methods) == 0 || len(v.Methods) > 3 {
			v.Methods = []string{"totp", "recovery_code"}
		}
		v.Script = v.HasMethod("webauthn")
		v.Error = msg
		renderPage(w, status, "mfa", v)
	}
	switch {
	case errorIs(err, authcore.ErrInvalidMFAToken):
		v := f.view(w, r, "Sign in")
		v.Error = "The sign-in took too long or the account changed meanwhile. Sign in again."
		renderPage(w, http.StatusUnauthorized, "login", v)
	case errorIs(err, authcore.ErrInvalidCredentials):
		msg := "That code is not right. Check the app and try again."
		if method == "webauthn" {
			msg = "That passkey did not work. Try again, or use another method."
		} else if method == "recovery_code" {
			msg = "That recovery code is not right, or was used already."
		}
		again(http.StatusUnauthorized, msg)
	case errorIs(err, authcore.ErrInvalidInput):
		msg := "Enter the 6-digit code your authenticator app shows."
		if method == "recovery_code" {
			msg = "A recovery code has 12 letters and digits, like abcd-efgh-2345."
		} else if method == "webauthn" {
			msg = "The passkey's answer was not accepted; try again."
		}
		again(http.StatusBadRequest, msg)
	case isTooMany(err):
		w.Header().Set("Retry-After", strconv.Itoa(retrySeconds(err)))
		renderError(w, http.StatusTooManyRequests, "Too many attempts",
			"Too many wrong codes. Wait a while, then sign in again.")
	case errorIs(err, authcore.ErrLockedDown):
		renderError(w, http.StatusServiceUnavailable, "Sign-in is paused",
			"The administrators have paused sign-in while they look into a security incident. Try again later.")
	default:
		pageError(w, r, err)
	}
}

// afterFactor answers a factor that checked out: the second-factor form,
// or the signed-in browser sent on.
func (a *apiHandlers) afterFactor(w http.ResponseWriter, r *http.Request, f loginFlow, tok authcore.Tokens) {
	if c := tok.MFA; c != nil {
		v := f.view(w, r, "Two-step verification")
		v.Lead = "Confirm it's you with your second step."
		v.MFAToken, v.Methods = c.Token, c.Methods
		v.Script = v.HasMethod("webauthn")
		renderPage(w, http.StatusOK, "mfa", v)
		return
	}
	p, err := a.auth.Authenticate(r.Context(), tok.AccessToken)
	if err != nil {
		pageError(w, r, err)
		return
	}
	// The browser holds one sign-in: the one it replaces ends.
	if old := f.user; old != nil && old.SessionID != p.SessionID {
		if err := a.auth.Logout(r.Context(), old); err != nil && !errors.Is(err, authcore.ErrNotFound) {
			scopeOf(r).log.Warn("the browser's previous session did not end", "error", err)
		}
	}
	http.SetCookie(w, hostCookie(cookieSSO, tok.AccessToken, tok.ExpiresIn))
	if tok.DeviceToken != "" {
		dc := hostCookie(cookieDevice, tok.DeviceToken, deviceCookieAge)
		dc.SameSite = http.SameSiteStrictMode // only ever sent to this site's own forms
		http.SetCookie(w, dc)
	}
	switch {
	case f.id != "":
		a.finishAuthorization(w, r, f.req, p) // the consent step first, if the client needs it (oidc_consent.go)
	case f.reauth:
		http.Redirect(w, r, accountPath+"?notice=confirmed", http.StatusSeeOther)
	default:
		http.Redirect(w, r, accountPath, http.StatusSeeOther)
	}
}

// signedOut serves GET /login/signed-out.
func (a *apiHandlers) signedOut(w http.ResponseWriter, r *http.Request) {
	renderMessage(w, http.StatusOK, pageView{Title: "Signed out", Notice: "You have been signed out.",
		Link: loginPath, LinkText: "Sign in again"})
}
