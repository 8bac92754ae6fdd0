package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/bulwark-auth/bulwark/authcore"
)

// WebAuthn is what the passkey routes need from the auth service
// (authcore.Service satisfies it); part of MFA.
type WebAuthn interface {
	BeginWebAuthnLogin(ctx context.Context, mfaToken string) (authcore.WebAuthnCeremony, error)
	FinishWebAuthnLogin(ctx context.Context, challengeID string, credential []byte) (authcore.Tokens, error)
	BeginWebAuthnRegistration(ctx context.Context, p *authcore.Principal, name string) (authcore.WebAuthnCeremony, error)
	FinishWebAuthnRegistration(ctx context.Context, p *authcore.Principal, challengeID string, credential []byte) (authcore.WebAuthnRegistered, error)
	RenameWebAuthn(ctx context.Context, p *authcore.Principal, id, name string) error
	RemoveWebAuthn(ctx context.Context, p *authcore.Principal, id string) error
}

type webauthnBeginRequest struct {
	MFAToken string `json:"mfa_token"`
}

// webauthnFinishRequest carries the authenticator's PublicKeyCredential
// as the browser serialised it; authcore parses it.
type webauthnFinishRequest struct {
	ChallengeID string          `json:"challenge_id"`
	Credential  json.RawMessage `json:"credential"`
}

func (req webauthnFinishRequest) check() error {
	if req.ChallengeID == "" || len(req.Credential) == 0 || string(req.Credential) == "null" {
		return badRequest("challenge_id and credential are required")
	}
	return nil
}

type nameRequest struct {
	Name string `json:"name"`
}

// webauthnLoginBegin serves POST /v1/auth/webauthn/begin: {"mfa_token"}
// for a second factor, {} for a passwordless sign-in.
func (a *apiHandlers) webauthnLoginBegin(w http.ResponseWriter, r *http.Request) {
	var req webauthnBeginRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	c, err := a.auth.BeginWebAuthnLogin(r.Context(), req.MFAToken)
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, r, http.StatusOK, c)
}

// webauthnLoginFinish serves POST /v1/auth/webauthn/finish.
func (a *apiHandlers) webauthnLoginFinish(w http.ResponseWriter, r *http.Request) {
	var req webauthnFinishRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	if err := req.check(); err != nil {
		writeError(w, r, err)
		return
	}
	tok, err := a.auth.FinishWebAuthnLogin(r.Context(), req.ChallengeID, req.Credential)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeTokens(w, r, tok)
}

func (a *apiHandlers) webauthnRegisterBegin(w http.ResponseWriter, r *http.Request, p *authcore.Principal) {
	var req nameRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	c, err := a.auth.BeginWebAuthnRegistration(r.Context(), p, req.Name)
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, r, http.StatusOK, c)
}

func (a *apiHandlers) webauthnRegisterFinish(w http.ResponseWriter, r *http.Request, p *authcore.Principal) {
	var req webauthnFinishRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	if err := req.check(); err != nil {
		writeError(w, r, err)
		return
	}
	reg, err := a.auth.FinishWebAuthnRegistration(r.Context(), p, req.ChallengeID, req.Credential)
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, r, http.StatusCreated, reg)
}

func (a *apiHandlers) webauthnRename(w http.ResponseWriter, r *http.Request, p *authcore.Principal) {
	var req nameRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	if err := a.auth.RenameWebAuthn(r.Context(), p, r.PathValue("id"), req.Name); err != nil {
		writeError(w, r, passkeyError(err))
		return
	}
	writeJSON(w, r, http.StatusOK, map[string]string{"id": r.PathValue("id"), "name": req.Name})
}

func (a *apiHandlers) webauthnRemove(w http.ResponseWriter, r *http.Request, p *authcore.Principal) {
	if err := a.auth.RemoveWebAuthn(r.Context(), p, r.PathValue("id")); err != nil {
		writeError(w, r, passkeyError(err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// passkeyError names what was not found.
func passkeyError(err error) error {
	if errors.Is(err, authcore.ErrNotFound) {
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Description: "no such passkey"}
	}
	return err
}
