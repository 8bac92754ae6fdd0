package api

import (
	"errors"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/bulwark-auth/bulwark/authcore"
)

// The self-service account page (/account) of the browser's signed-in
// user: sessions (list, sign out one or every other), password, TOTP
// (QR code rendered by authcore), passkeys (bulwark.js), recovery codes,
// sign out. Every change is a POST with the CSRF field, through the same
// authcore methods as /v1/me/…, so step-up (RFC 9470), lockout and audit
// are theirs: a change that needs a fresh second factor sends the user
// through /login?reauth=1 first.

// notices are the messages a redirect back to /account may name; the
// query names a key, never the text.
var notices = map[string]string{
	"confirmed":       "Thanks, that's confirmed. You can change your security settings now.",
	"session-revoked": "That session is signed out.",
	"others-revoked":  "Every other session is signed out.",
	"password":        "Your password is changed. Every other session is signed out.",
	"totp-off":        "The authenticator app is turned off.",
	"passkey-added":   "The passkey is added. You can sign in with it.",
	"passkey-removed": "The passkey is removed.",
}

// accountHandler serves h to the browser's signed-in user; a POST must
// carry the CSRF field first. A browser that is not signed in is sent to
// the sign-in page.
func (a *apiHandlers) accountHandler(h principalHandler) http.HandlerFunc {
	return a.public(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && !pageForm(w, r) {
			return
		}
		p := a.browserPrincipal(r.Context(), r.Header)
		if p == nil {
			http.SetCookie(w, clearCookie(cookieSSO))
			http.Redirect(w, r, loginPath, http.StatusSeeOther)
			return
		}
		ri := authcore.RequestInfoFrom(r.Context())
		ri.Actor = p.UserID
		h(w, r.WithContext(authcore.WithRequestInfo(r.Context(), ri)), p)
	})
}

type sessionRow struct {
	ID, Device, IP    string
	Created, LastSeen string
	Current           bool
}

type passkeyRow struct {
	ID, Name, Created, LastUsed string
}

// when formats a time for the page (UTC: the server does not know the
// reader's zone).
func when(t time.Time) string { return t.UTC().Format("2 Jan 2006, 15:04 UTC") }

// accountView fills the account page of p.
func (a *apiHandlers) accountView(w http.ResponseWriter, r *http.Request, p *authcore.Principal) (pageView, error) {
	v := pageView{Title: "Your account", Account: p.Username, CSRF: csrfToken(w, r), Wide: true, Script: true}
	ss, err := a.auth.Sessions(r.Context(), p)
	if err != nil {
		return v, err
	}
	for _, s := range ss {
		ip := s.IP
		if ip == "" {
			ip = "unknown address"
		}
		v.Sessions = append(v.Sessions, sessionRow{ID: s.ID, Device: deviceName(s.UserAgent), IP: ip,
			Created: when(s.CreatedAt), LastSeen: when(s.LastSeenAt), Current: s.Current})
		v.Others = v.Others || !s.Current
	}
	info, err := a.auth.MFAStatus(r.Context(), p)
	if err != nil {
		return v, err
	}
	v.TOTP = info.TOTP.Enabled
	v.MFAEnabled = info.TOTP.Enabled || len(info.WebAuthn) > 0
	v.RecoveryLeft = info.RecoveryCodesLeft
	for _, k := range info.WebAuthn {
		row := passkeyRow{ID: k.ID, Name: k.Name, Created: when(k.CreatedAt)}
		if k.LastUsedAt != nil {
			row.LastUsed = when(*k.LastUsedAt)
		}
		v.Passkeys = append(v.Passkeys, row)
	}
	v.Confirm = a.auth.StepUpToEnrol(p) != nil
	return v, nil
}

// account serves GET /account.
func (a *apiHandlers) account(w http.ResponseWriter, r *http.Request, p *authcore.Principal) {
	a.accountPage(w, r, p, http.StatusOK, "")
}

// accountPage writes the account page with an error (or the notice the
// query names).
func (a *apiHandlers) accountPage(w http.ResponseWriter, r *http.Request, p *authcore.Principal, status int, errMsg string) {
	v, err := a.accountView(w, r, p)
	if err != nil {
		pageError(w, r, err)
		return
	}
	v.Error = errMsg
	if errMsg == "" {
		v.Notice = notices[r.URL.Query().Get("notice")]
	}
	renderPage(w, status, "account", v)
}

// backToAccount is the answer to a change that worked.
func backToAccount(w http.ResponseWriter, r *http.Request, notice string) {
	http.Redirect(w, r, accountPath+"?notice="+notice, http.StatusSeeOther)
}

// accountRefused answers a change authcore refused.
func (a *apiHandlers) accountRefused(w http.ResponseWriter, r *http.Request, p *authcore.Principal, err error) {
	var e *Error
	switch {
	case errorIs(err, authcore.ErrStepUpRequired):
		renderMessage(w, http.StatusUnauthorized, pageView{Title: "Confirm it's you", Account: p.Username,
			Lead: "This change needs a recent sign-in with your second step, if you have one. Sign in again, then make the change.",
			Link: loginPath + "?reauth=1", LinkText: "Continue"})
	case errorIs(err, authcore.ErrInvalidCredentials):
		a.accountPage(w, r, p, http.StatusUnauthorized, "The current password is not right.")
	case isTooMany(err):
		a.accountPage(w, r, p, http.StatusTooManyRequests, "Too many failed attempts. Wait a while, then try again.")
	case errorIs(err, authcore.ErrWeakPassword, authcore.ErrInvalidInput, authcore.ErrConflict):
		a.accountPage(w, r, p, http.StatusBadRequest, sentence(err.Error()))
	case errorIs(err, authcore.ErrNotFound):
		a.accountPage(w, r, p, http.StatusNotFound, "That is gone already.")
	case errors.As(err, &e) && e.Status < 500:
		a.accountPage(w, r, p, e.Status, sentence(e.Description))
	default:
		pageError(w, r, err)
	}
}

// revokeSession serves POST /account/sessions/revoke.
func (a *apiHandlers) accountRevokeSession(w http.ResponseWriter, r *http.Request, p *authcore.Principal) {
	sid := r.PostFormValue("session_id")
	if sid == "" || len(sid) > 128 {
		a.accountPage(w, r, p, http.StatusBadRequest, "Choose a session to sign out.")
		return
	}
	if sid == p.SessionID {
		a.logoutPage(w, r, p)
		return
	}
	if err := a.auth.RevokeSession(r.Context(), p, sid); err != nil {
		a.accountRefused(w, r, p, err)
		return
	}
	backToAccount(w, r, "session-revoked")
}

// accountRevokeOthers serves POST /account/sessions/revoke-others.
func (a *apiHandlers) accountRevokeOthers(w http.ResponseWriter, r *http.Request, p *authcore.Principal) {
	ss, err := a.auth.Sessions(r.Context(), p)
	if err != nil {
		pageError(w, r, err)
		return
	}
	for _, s := range ss {
		if s.ID == p.SessionID {
			continue
		}
		if err := a.auth.RevokeSession(r.Context(), p, s.ID); err != nil && !errors.Is(err, authcore.ErrNotFound) {
			pageError(w, r, err)
			return
		}
	}
	backToAccount(w, r, "others-revoked")
}

// accountPassword serves POST /account/password.
func (a *apiHandlers) accountPassword(w http.ResponseWriter, r *http.Request, p *authcore.Principal) {
	cur, next := r.PostFormValue("current_password"), r.PostFormValue("new_password")
	if next != r.PostFormValue("confirm_password") {
		a.accountPage(w, r, p, http.StatusBadRequest, "The two new passwords are not the same.")
		return
	}
	tok, err := a.auth.ChangePassword(r.Context(), p, cur, next)
	if err != nil {
		a.accountRefused(w, r, p, err)
		return
	}
	http.SetCookie(w, hostCookie(cookieSSO, tok.AccessToken, tok.ExpiresIn))
	backToAccount(w, r, "password")
}

// accountTOTP serves POST /account/totp: a new secret, shown once as a QR
// code and as text, pending until a first code confirms it.
func (a *apiHandlers) accountTOTP(w http.ResponseWriter, r *http.Request, p *authcore.Principal) {
	e, err := a.auth.EnrollTOTP(r.Context(), p)
	if err != nil {
		a.accountRefused(w, r, p, err)
		return
	}
	v := pageView{Title: "Set up an authenticator app", Account: p.Username, CSRF: csrfToken(w, r), Secret: e.Secret}
	if strings.HasPrefix(e.QRCode, "data:image/png;base64,") {
		v.QR = template.URL(e.QRCode) // authcore's own PNG
	}
	renderPage(w, http.StatusOK, "totp", v)
}

// accountTOTPConfirm serves POST /account/totp/confirm.
func (a *apiHandlers) accountTOTPConfirm(w http.ResponseWriter, r *http.Request, p *authcore.Principal) {
	codes, err := a.auth.ConfirmTOTP(r.Context(), p, strings.TrimSpace(r.PostFormValue("code")))
	if errorIs(err, authcore.ErrInvalidCredentials, authcore.ErrInvalidInput) {
		renderPage(w, http.StatusBadRequest, "totp", pageView{Title: "Set up an authenticator app", Account: p.Username,
			CSRF:  csrfToken(w, r),
			Error: "That code is not right. Enter the 6-digit code the app shows now, or start over if the app's clock is off."})
		return
	}
	if err != nil {
		a.accountRefused(w, r, p, err)
		return
	}
	a.showCodes(w, r, p, "Two-step verification is on", codes)
}

// showCodes writes a new set of recovery codes, shown once.
func (a *apiHandlers) showCodes(w http.ResponseWriter, r *http.Request, p *authcore.Principal, title string, codes []string) {
	renderPage(w, http.StatusOK, "codes", pageView{Title: title, Account: p.Username,
		Lead: "Save these recovery codes somewhere safe.", Codes: codes})
}

// accountTOTPRemove serves POST /account/totp/remove.
func (a *apiHandlers) accountTOTPRemove(w http.ResponseWriter, r *http.Request, p *authcore.Principal) {
	if err := a.auth.RemoveTOTP(r.Context(), p); err != nil {
		a.accountRefused(w, r, p, err)
		return
	}
	backToAccount(w, r, "totp-off")
}

// accountRecoveryCodes serves POST /account/recovery-codes.
func (a *apiHandlers) accountRecoveryCodes(w http.ResponseWriter, r *http.Request, p *authcore.Principal) {
	codes, err := a.auth.RegenerateRecoveryCodes(r.Context(), p)
	if err != nil {
		a.accountRefused(w, r, p, err)
		return
	}
	a.showCodes(w, r, p, "New recovery codes", codes)
}

// accountPasskeyBegin serves POST /account/passkeys/begin for bulwark.js:
// the creation options, in JSON, as /v1/me/mfa/webauthn/begin answers.
func (a *apiHandlers) accountPasskeyBegin(w http.ResponseWriter, r *http.Request, p *authcore.Principal) {
	c, err := a.auth.BeginWebAuthnRegistration(r.Context(), p, strings.TrimSpace(r.PostFormValue("name")))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, c)
}

// accountPasskey serves POST /account/passkeys: the new credential.
func (a *apiHandlers) accountPasskey(w http.ResponseWriter, r *http.Request, p *authcore.Principal) {
	id, cred := r.PostFormValue("challenge_id"), r.PostFormValue("credential")
	if id == "" || cred == "" {
		a.accountPage(w, r, p, http.StatusBadRequest, "Adding a passkey needs JavaScript: turn it on and try again.")
		return
	}
	reg, err := a.auth.FinishWebAuthnRegistration(r.Context(), p, id, []byte(cred))
	if err != nil {
		a.accountRefused(w, r, p, err)
		return
	}
	if len(reg.RecoveryCodes) > 0 {
		a.showCodes(w, r, p, "Your passkey is added", reg.RecoveryCodes)
		return
	}
	backToAccount(w, r, "passkey-added")
}

// accountPasskeyRemove serves POST /account/passkeys/remove.
func (a *apiHandlers) accountPasskeyRemove(w http.ResponseWriter, r *http.Request, p *authcore.Principal) {
	id := r.PostFormValue("passkey_id")
	if id == "" || len(id) > 512 {
		a.accountPage(w, r, p, http.StatusBadRequest, "Choose a passkey to remove.")
		return
	}
	if err := a.auth.RemoveWebAuthn(r.Context(), p, id); err != nil {
		a.accountRefused(w, r, p, err)
		return
	}
	backToAccount(w, r, "passkey-removed")
}

// logoutPage serves POST /logout: the session ends, the cookie goes.
func (a *apiHandlers) logoutPage(w http.ResponseWriter, r *http.Request, p *authcore.Principal) {
	if err := a.auth.Logout(r.Context(), p); err != nil && !errors.Is(err, authcore.ErrNotFound) {
		pageError(w, r, err)
		return
	}
	http.SetCookie(w, clearCookie(cookieSSO))
	http.Redirect(w, r, signedOutPath, http.StatusSeeOther)
}

// deviceName is a short name for a User-Agent: "Firefox on Linux".
func deviceName(ua string) string {
	if ua == "" {
		return "Unknown device"
	}
	browser := ""
	for _, b := range []struct{ token, name string }{
		{"Edg/", "Edge"}, {"OPR/", "Opera"}, {"Firefox/", "Firefox"}, {"Chrome/", "Chrome"},
		{"Safari/", "Safari"}, {"curl/", "curl"}, {"Go-http-client", "Go program"},
	} {
		if strings.Contains(ua, b.token) {
			browser = b.name
			break
		}
	}
	if strings.Contains(ua, "HeadlessChrome") {
		browser = "Chrome (headless)"
	}
	os := ""
	for _, o := range []struct{ token, name string }{
		{"Android", "Android"}, {"iPhone", "iPhone"}, {"iPad", "iPad"}, {"Windows", "Windows"},
		{"Mac OS X", "macOS"}, {"CrOS", "ChromeOS"}, {"Linux", "Linux"},
	} {
		if strings.Contains(ua, o.token) {
			os = o.name
			break
		}
	}
	switch {
	case browser != "" && os != "":
		return browser + " on " + os
	case browser != "":
		return browser
	case os != "":
		return os
	}
	if r := []rune(ua); len(r) > 40 {
		ua = string(r[:40]) + "…"
	}
	return ua
}

// pageRoutes registers the sign-in and account pages.
func (a *apiHandlers) pageRoutes(mux *http.ServeMux) {
	mux.Handle("GET "+loginPath, a.public(a.loginPage))
	mux.Handle("POST "+loginPath, a.pageLimited(a.loginSubmit))
	mux.Handle("POST "+loginMFAPath, a.pageLimited(a.loginMFA))
	mux.Handle("POST "+loginPasskeyPath, a.pageLimited(a.loginPasskey))
	mux.Handle("GET "+signedOutPath, a.public(a.signedOut))
	mux.Handle("POST "+logoutPath, a.accountHandler(a.logoutPage))
	mux.Handle("GET "+accountPath, a.accountHandler(a.account))
	for path, h := range map[string]principalHandler{
		"/sessions/revoke":        a.accountRevokeSession,
		"/sessions/revoke-others": a.accountRevokeOthers,
		"/password":               a.accountPassword,
		"/totp":                   a.accountTOTP,
		"/totp/confirm":           a.accountTOTPConfirm,
		"/totp/remove":            a.accountTOTPRemove,
		"/recovery-codes":         a.accountRecoveryCodes,
		"/passkeys/begin":         a.accountPasskeyBegin,
		"/passkeys":               a.accountPasskey,
		"/passkeys/remove":        a.accountPasskeyRemove,
	} {
		mux.Handle("POST "+accountPath+path, a.accountHandler(h))
	}
}
