package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/bulwark-auth/bulwark/authcore"
)

// The server-rendered pages: sign-in (login.go) and the account page
// (account.go). Templates are embedded (pages/*.html, one layout); the
// stylesheet and the one script (passkeys) are under assets/, served from
// this origin. Nothing comes from a third party.
//
// Every page is sent with a Content-Security-Policy that allows scripts,
// styles and connections from this origin only, no inline script or style
// and images from this origin or data: (the TOTP QR code). form-action is
// 'self', plus, on the pages of an OpenID Connect sign-in, the origin of
// that request's redirect_uri: browsers (Chrome, and CSP 3) apply
// form-action to the redirects that follow a form's POST, and the sign-in
// POST answers 303 to the relying party's redirect_uri. The redirect_uri
// was matched exactly against the client's registered ones before the
// request was stored, so the one origin added is one the operator
// registered for that client, and only on the pages of that request.
//
// CSRF: a double-submit token, a random value in the __Host-bulwark-csrf
// cookie and every form's csrf_token field, compared in constant time; a
// POST without both, or with two that differ, is refused with 403. The
// cookie is __Host- (Secure, Path=/, no Domain), HttpOnly and
// SameSite=Lax, so another site can neither read nor set it.
//
// The browser's sign-in is the access token of its session in
// __Host-bulwark-sso (HttpOnly, Secure, SameSite=Lax: a relying party's
// top-level redirect to /oauth2/authorize carries it). Authenticate checks
// it like any bearer token, so a revoked session signs the browser out;
// it lasts as long as the access token (auth.security.jwt_expiry).

// Cookies and form fields of the pages.
const (
	cookieSSO    = "__Host-bulwark-sso"
	cookieCSRF   = "__Host-bulwark-csrf"
	cookieDevice = "__Host-bulwark-device"
	fieldCSRF    = "csrf_token"
	// deviceCookieAge matches authcore's device token lifetime (90 days).
	deviceCookieAge = 90 * 24 * 3600
	brandName       = "bulwark"
)

//go:embed pages/*.html
var pageFiles embed.FS

// pageTemplates are the pages by name, each parsed with the layout.
var pageTemplates = func() map[string]*template.Template {
	out := map[string]*template.Template{}
	for _, name := range []string{"login", "mfa", "account", "totp", "codes", "message"} {
		out[name] = template.Must(template.New(name).ParseFS(pageFiles, "pages/layout.html", "pages/"+name+".html"))
	}
	return out
}()

// pageView is what a page's template reads. Only the members a page uses
// are set.
type pageView struct {
	Title, Lead    string
	Error, Notice  string
	Brand          string
	Account        string // the signed-in user's name (the footer)
	CSRF           string
	Wide, Script   bool
	Link, LinkText string

	// Sign-in.
	Request   string // the OIDC authorization request id; "" standalone
	Client    string // its client
	Username  string
	Reauth    bool   // confirming a signed-in user (step-up)
	Challenge string // an ALTCHA challenge (JSON) to solve
	MFAToken  string
	Methods   []string

	// Account page.
	Confirm      bool // sensitive changes need a fresh sign-in first
	Sessions     []sessionRow
	Others       bool
	TOTP         bool
	MFAEnabled   bool
	Passkeys     []passkeyRow
	RecoveryLeft int
	QR           template.URL
	Secret       string
	Codes        []string

	// formAction is the extra form-action origin (an OIDC sign-in).
	formAction string
}

// HasMethod reports whether the second factor m is offered.
func (v pageView) HasMethod(m string) bool { return slices.Contains(v.Methods, m) }

// MethodList is Methods in one field.
func (v pageView) MethodList() string { return strings.Join(v.Methods, " ") }

// pageCSP is the policy of every page; formActionCSP ends it.
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"worker-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// renderPage writes the page name with v. The headers every answer gets
// (middleware.go) stay, but for the policy, which allows the page's own
// assets; nothing is cached.
func renderPage(w http.ResponseWriter, status int, name string, v pageView) {
	v.Brand = brandName
	var buf bytes.Buffer
	if err := pageTemplates[name].ExecuteTemplate(&buf, "layout", v); err != nil {
		// The templates are fixed at build time and tested: a bug.
		http.Error(w, "page error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	csp := pageCSP
	if v.formAction != "" {
		csp += " " + v.formAction
	}
	h.Set("Content-Security-Policy", csp)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// renderError writes a page that says what went wrong, with no form.
func renderError(w http.ResponseWriter, status int, title, msg string) {
	renderPage(w, status, "message", pageView{Title: title, Error: msg})
}

// renderMessage writes a page with a message and one link onwards.
func renderMessage(w http.ResponseWriter, status int, v pageView) {
	renderPage(w, status, "message", v)
}

// pageError answers err on a page: authcore's refusals in words a person
// reads, anything else as writeError would (its detail to the log).
func pageError(w http.ResponseWriter, r *http.Request, err error) {
	sc := scopeOf(r)
	e := toError(sc, err)
	if e.Status >= 500 && e.Code == CodeInternal {
		sc.log.Error("internal error", "method", r.Method, "path", r.URL.Path, "error", err)
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(e.RetryAfter.Seconds()+0.999)))
	}
	title := "Something went wrong"
	switch {
	case e.Status == http.StatusTooManyRequests:
		title = "Too many attempts"
	case e.Status >= 500:
		title = "The service is unavailable"
	case e.Status == http.StatusNotFound:
		title = "Not found"
	}
	renderMessage(w, e.Status, pageView{Title: title, Error: sentence(e.Description), Link: "/account", LinkText: "Back"})
}

// sentence turns an API description into a sentence: capitalised, with a
// full stop.
func sentence(s string) string {
	if s == "" {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	s = string(unicode.ToUpper(r)) + s[n:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
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
	// The same request may render a second form (an error page after a
	// refusal): it must carry the same token.
	r.AddCookie(&http.Cookie{Name: cookieCSRF, Value: tok})
	return tok
}

// csrfOK checks the form's csrf_token against the cookie.
func csrfOK(r *http.Request) bool {
	c, err := r.Cookie(cookieCSRF)
	f := r.PostFormValue(fieldCSRF)
	return err == nil && len(c.Value) == 43 && subtle.ConstantTimeCompare([]byte(c.Value), []byte(f)) == 1
}

// pageForm parses a POSTed form and checks its CSRF token; false: the
// refusal is written and nothing was done.
func pageForm(w http.ResponseWriter, r *http.Request) bool {
	if err := r.ParseForm(); err != nil {
		renderError(w, http.StatusBadRequest, "The form could not be read", "Go back and try again.")
		return false
	}
	if !csrfOK(r) {
		renderError(w, http.StatusForbidden, "The form has expired",
			"The form was not sent from this site's page, or is too old. Go back, reload the page and try again.")
		return false
	}
	return true
}

// browserPrincipal is the caller the SSO cookie in h names, or nil.
func (a *apiHandlers) browserPrincipal(ctx context.Context, h http.Header) *authcore.Principal {
	c, err := (&http.Request{Header: h}).Cookie(cookieSSO)
	if err != nil || c.Value == "" || !isB64Token(c.Value) {
		return nil
	}
	p, err := a.auth.Authenticate(ctx, c.Value)
	if err != nil {
		return nil
	}
	return p
}

// pageLimited is public behind the per-address rate limit, answering a
// page when it refuses.
func (a *apiHandlers) pageLimited(h http.HandlerFunc) http.HandlerFunc {
	return a.public(func(w http.ResponseWriter, r *http.Request) {
		if a.limit != nil {
			if ok, d := a.limit.AllowIP(r); !ok {
				w.Header().Set("Retry-After", strconv.Itoa(int(d.Seconds()+0.999)))
				renderError(w, http.StatusTooManyRequests, "Too many requests", "Wait a moment, then try again.")
				return
			}
		}
		h(w, r)
	})
}

// originOf is the scheme://host[:port] of an absolute URL, as a CSP
// source; "" if it has none.
func originOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" || strings.ContainsAny(u.Host, " ;,'\"") {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// errorIs reports whether err is one of targets.
func errorIs(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
