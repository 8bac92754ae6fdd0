package api

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/bulwark-auth/bulwark/authcore"
)

// The consent step of the authorization endpoint, and the user's grants.
// A client registered as requiring consent gets a code only once the
// signed-in user allowed it the request's scopes on this page (recorded
// through Raft, asked for once per user, client and scopes; authcore and
// Apply refuse a code without it). Deny sends the browser back with
// access_denied. GET /v1/me/grants lists the grants, DELETE
// /v1/me/grants/{client_id} revokes one and ends what the client holds,
// DELETE /v1/me/grants revokes them all.
//
// The page is pages/consent.html in the sign-in pages' layout; its form
// carries the same double-submit CSRF token as the sign-in form, and its
// policy allows the redirect to the client's origin that follows it.

const consentPath = "/consent"

// scopeText says what each standard scope gives the application.
var scopeText = map[string]string{
	"openid":         "Know who you are (your account's identifier)",
	"profile":        "See your username",
	"email":          "See your email address",
	"offline_access": "Stay connected while you are away (a refresh token)",
}

// finishAuthorization answers req for the signed-in p: to the consent
// page if its client needs p's consent first, else back to the client
// with a code.
func (a *apiHandlers) finishAuthorization(w http.ResponseWriter, r *http.Request, req authcore.AuthorizationRequest, p *authcore.Principal) {
	need, err := a.opts.OIDC.ConsentNeeded(p, req)
	if err == nil && !need {
		var code string
		code, err = a.opts.OIDC.Authorize(r.Context(), req, p)
		if err == nil {
			http.Redirect(w, r, codeRedirect(req, code, a.opts.OIDC.Issuer()), http.StatusSeeOther)
			return
		}
		need = errors.Is(err, authcore.ErrConsentRequired) // revoked meanwhile
	}
	if need {
		http.Redirect(w, r, consentPath+"?auth_request="+url.QueryEscape(req.ID), http.StatusSeeOther)
		return
	}
	renderError(w, http.StatusBadRequest, "This sign-in request has expired", "Go back to the application and start again.")
}

// consentRequest is the pending request and signed-in user a consent
// page is for; false: the answer is written (the sign-in form when the
// browser is not signed in).
func (a *apiHandlers) consentRequest(w http.ResponseWriter, r *http.Request, id string) (authcore.AuthorizationRequest, *authcore.Principal, bool) {
	if id == "" {
		renderError(w, http.StatusBadRequest, "No sign-in request", "Open this page from the application you want to sign in to.")
		return authcore.AuthorizationRequest{}, nil, false
	}
	f, ok := a.flow(w, r, id, "")
	if !ok {
		return f.req, nil, false
	}
	if f.user == nil {
		http.Redirect(w, r, loginPath+"?auth_request="+url.QueryEscape(id), http.StatusSeeOther)
		return f.req, nil, false
	}
	return f.req, f.user, true
}

func (a *apiHandlers) consentPage(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("auth_request")
	req, p, ok := a.consentRequest(w, r, id)
	if !ok {
		return
	}
	v := pageView{Title: "Allow " + req.ClientID + " to access your account?", Username: p.Username,
		CSRF: csrfToken(w, r), Request: id, formAction: originOf(req.RedirectURI)}
	for _, s := range req.Scopes {
		if t, ok := scopeText[s]; ok {
			v.Scopes = append(v.Scopes, t)
		} else {
			v.Scopes = append(v.Scopes, "Use the permission “"+s+"”")
		}
	}
	renderPage(w, http.StatusOK, "consent", v)
}

func (a *apiHandlers) consentSubmit(w http.ResponseWriter, r *http.Request) {
	if !pageForm(w, r) { // parses the form, checks its CSRF token
		return
	}
	id := r.PostFormValue("auth_request")
	req, p, ok := a.consentRequest(w, r, id)
	if !ok {
		return
	}
	switch r.PostFormValue("decision") {
	case "allow":
		if err := a.opts.OIDC.GrantConsent(r.Context(), p, req); err != nil {
			writeError(w, r, err)
			return
		}
		a.finishAuthorization(w, r, req, p)
	case "deny":
		// The refusal is audited first; if it cannot be recorded the
		// user is told so and may deny again (nothing was granted).
		if err := a.opts.OIDC.DenyConsent(r.Context(), p, req); err != nil {
			writeError(w, r, err)
			return
		}
		// RFC 6749 4.1.2.1: the refusal goes back on the registered
		// redirect_uri (the request holds it, matched at its start).
		u, _ := url.Parse(req.RedirectURI)
		q := u.Query()
		q.Set("error", "access_denied")
		q.Set("error_description", "the user did not allow access")
		if req.State != "" {
			q.Set("state", req.State)
		}
		q.Set("iss", a.opts.OIDC.Issuer())
		u.RawQuery = q.Encode()
		http.Redirect(w, r, u.String(), http.StatusSeeOther)
	default:
		renderError(w, http.StatusBadRequest, "The form could not be read", "Choose Allow or Deny.")
	}
}

func (a *apiHandlers) myGrants(w http.ResponseWriter, r *http.Request, p *authcore.Principal) {
	gs, err := a.opts.OIDC.Grants(r.Context(), p)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, map[string]any{"grants": gs})
}

// revokeMyGrants serves DELETE /v1/me/grants: every grant revoked, in
// one replicated command (all or none).
func (a *apiHandlers) revokeMyGrants(w http.ResponseWriter, r *http.Request, p *authcore.Principal) {
	if _, err := a.opts.OIDC.RevokeAllGrants(r.Context(), p); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *apiHandlers) revokeMyGrant(w http.ResponseWriter, r *http.Request, p *authcore.Principal) {
	_, err := a.opts.OIDC.RevokeGrant(r.Context(), p, r.PathValue("client_id"))
	if errors.Is(err, authcore.ErrNotFound) {
		err = &Error{Status: http.StatusNotFound, Code: CodeNotFound, Description: "no consent to that client"}
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
