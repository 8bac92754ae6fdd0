package api

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/bulwark-auth/bulwark/authcore"
)

// MFA is what the second-factor routes need from the auth service
// (authcore.Service satisfies it); part of Auth.
type MFA interface {
	VerifyMFA(ctx context.Context, mfaToken, method, code string) (authcore.Tokens, error)
	MFAStatus(ctx context.Context, p *authcore.Principal) (authcore.MFAInfo, error)
	EnrollTOTP(ctx context.Context, p *authcore.Principal) (authcore.TOTPEnrolment, error)
	ConfirmTOTP(ctx context.Context, p *authcore.Principal, code string) ([]string, error)
	RemoveTOTP(ctx context.Context, p *authcore.Principal) error
	RegenerateRecoveryCodes(ctx context.Context, p *authcore.Principal) ([]string, error)
	ResetMFA(ctx context.Context, nameOrID string) (int, error)
	// StepUp is nil when p may do a sensitive action now, else a
	// *authcore.StepUpError (RFC 9470).
	StepUp(p *authcore.Principal) error
	// StepUpToEnrol is StepUp for adding a factor: a user with none needs
	// a recent sign-in.
	StepUpToEnrol(p *authcore.Principal) error
	WebAuthn
}

// mfaRequired is the login answer for a user with a second factor
// (API.md): no session exists until POST /v1/auth/mfa.
type mfaRequired struct {
	MFARequired bool     `json:"mfa_required"`
	MFAToken    string   `json:"mfa_token"`
	MFAMethods  []string `json:"mfa_methods"`
	ExpiresIn   int      `json:"expires_in"`
}

// writeLogin writes a login's answer: tokens, or the second factor to go.
func writeLogin(w http.ResponseWriter, r *http.Request, tok authcore.Tokens) {
	if c := tok.MFA; c != nil {
		w.Header().Set("Pragma", "no-cache")
		writeJSON(w, r, http.StatusOK, mfaRequired{MFARequired: true, MFAToken: c.Token, MFAMethods: c.Methods, ExpiresIn: c.ExpiresIn})
		return
	}
	writeTokens(w, r, tok)
}

type mfaRequest struct {
	MFAToken string `json:"mfa_token"`
	Method   string `json:"method"`
	Code     string `json:"code"`
}

// verifyMFA serves POST /v1/auth/mfa.
func (a *apiHandlers) verifyMFA(w http.ResponseWriter, r *http.Request) {
	var req mfaRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	tok, err := a.auth.VerifyMFA(r.Context(), req.MFAToken, req.Method, req.Code)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeTokens(w, r, tok)
}

func (a *apiHandlers) myMFA(w http.ResponseWriter, r *http.Request, p *authcore.Principal) {
	info, err := a.auth.MFAStatus(r.Context(), p)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, info)
}

func (a *apiHandlers) enrollTOTP(w http.ResponseWriter, r *http.Request, p *authcore.Principal) {
	e, err := a.auth.EnrollTOTP(r.Context(), p)
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, r, http.StatusOK, e)
}

type codeRequest struct {
	Code string `json:"code"`
}

type recoveryCodes struct {
	RecoveryCodes []string `json:"recovery_codes"`
}

func (a *apiHandlers) confirmTOTP(w http.ResponseWriter, r *http.Request, p *authcore.Principal) {
	var req codeRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	codes, err := a.auth.ConfirmTOTP(r.Context(), p, req.Code)
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, r, http.StatusOK, recoveryCodes{codes})
}

func (a *apiHandlers) removeTOTP(w http.ResponseWriter, r *http.Request, p *authcore.Principal) {
	if err := a.auth.RemoveTOTP(r.Context(), p); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *apiHandlers) regenerateRecoveryCodes(w http.ResponseWriter, r *http.Request, p *authcore.Principal) {
	codes, err := a.auth.RegenerateRecoveryCodes(r.Context(), p)
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, r, http.StatusOK, recoveryCodes{codes})
}

// resetMFA serves the administrators' DELETE …/users/{user}/mfa, on the
// API and the admin socket alike.
func resetMFA(auth Auth) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n, err := auth.ResetMFA(r.Context(), r.PathValue("user"))
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, r, http.StatusOK, map[string]int{"sessions_revoked": n})
	}
}

// stepUp serves h only to a caller whose second factor is recent enough
// (RFC 9470): password change, factor removal, recovery codes, and every
// administrator's write.
func (a *apiHandlers) stepUp(h principalHandler) principalHandler {
	return func(w http.ResponseWriter, r *http.Request, p *authcore.Principal) {
		if err := a.auth.StepUp(p); err != nil {
			writeError(w, r, err)
			return
		}
		h(w, r, p)
	}
}

// adminWrite is admin for a route that changes state: it needs a recent
// second factor too.
func (a *apiHandlers) adminWrite(h principalHandler) http.HandlerFunc {
	return a.admin(a.stepUp(h))
}

// errStepUp is the RFC 9470 answer: 401 insufficient_user_authentication
// with the window the client must authenticate within.
func errStepUp(maxAge time.Duration) *Error {
	secs := strconv.FormatInt(int64(maxAge/time.Second), 10)
	return &Error{Status: http.StatusUnauthorized, Code: CodeInsufficientUserAuthentication,
		Description: fmt.Sprintf("this action needs a second factor used within the last %s: sign in again with it", maxAge),
		Challenge: `Bearer error="insufficient_user_authentication", ` +
			`error_description="A second factor within the last ` + secs + ` seconds is required", max_age=` + secs}
}
