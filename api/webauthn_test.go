package api

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/bulwark-auth/bulwark/authcore"
)

// The fake's passkey methods note their arguments and answer canned
// values; authcore's and the black-box tests drive the real ceremonies.
func (f *fakeAuth) noteWebAuthn(ctx context.Context, method string, args ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.webauthn = append([]string{method}, args...)
	return f.enter(ctx, method)
}

func (f *fakeAuth) BeginWebAuthnLogin(ctx context.Context, mfaToken string) (authcore.WebAuthnCeremony, error) {
	if err := f.noteWebAuthn(ctx, "BeginWebAuthnLogin", mfaToken); err != nil {
		return authcore.WebAuthnCeremony{}, err
	}
	return authcore.WebAuthnCeremony{ChallengeID: "bwc_x", PublicKey: map[string]string{"challenge": "c"}}, nil
}

func (f *fakeAuth) FinishWebAuthnLogin(ctx context.Context, challengeID string, credential []byte) (authcore.Tokens, error) {
	if err := f.noteWebAuthn(ctx, "FinishWebAuthnLogin", challengeID, string(credential)); err != nil {
		return authcore.Tokens{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.issue(f.accounts["bob"], ""), nil
}

func (f *fakeAuth) BeginWebAuthnRegistration(ctx context.Context, p *authcore.Principal, name string) (authcore.WebAuthnCeremony, error) {
	if err := f.noteWebAuthn(ctx, "BeginWebAuthnRegistration", p.UserID, name); err != nil {
		return authcore.WebAuthnCeremony{}, err
	}
	return authcore.WebAuthnCeremony{ChallengeID: "bwc_r", PublicKey: map[string]string{"challenge": "c"}}, nil
}

func (f *fakeAuth) FinishWebAuthnRegistration(ctx context.Context, p *authcore.Principal, challengeID string, credential []byte) (authcore.WebAuthnRegistered, error) {
	if err := f.noteWebAuthn(ctx, "FinishWebAuthnRegistration", p.UserID, challengeID, string(credential)); err != nil {
		return authcore.WebAuthnRegistered{}, err
	}
	return authcore.WebAuthnRegistered{ID: "cred1", Name: "key"}, nil
}

func (f *fakeAuth) RenameWebAuthn(ctx context.Context, p *authcore.Principal, id, name string) error {
	return f.noteWebAuthn(ctx, "RenameWebAuthn", p.UserID, id, name)
}

func (f *fakeAuth) RemoveWebAuthn(ctx context.Context, p *authcore.Principal, id string) error {
	return f.noteWebAuthn(ctx, "RemoveWebAuthn", p.UserID, id)
}

func (f *fakeAuth) lastWebAuthn() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.webauthn, "|")
}

// The passkey routes hand authcore the credential exactly as sent, refuse
// a request without one before authcore sees it, and answer per API.md.
func TestWebAuthnRoutes(t *testing.T) {
	env := newAuthEnv(t, Options{})
	h, fa := env.h, env.auth

	rec := send(t, h, "POST", "/v1/auth/webauthn/begin", `{"mfa_token":"bwm_t"}`)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"challenge_id":"bwc_x","publicKey":{`) ||
		fa.lastWebAuthn() != "BeginWebAuthnLogin|bwm_t" {
		t.Fatalf("begin: %d %s; %q", rec.Code, rec.Body, fa.lastWebAuthn())
	}
	send(t, h, "POST", "/v1/auth/webauthn/begin", `{}`)
	if fa.lastWebAuthn() != "BeginWebAuthnLogin|" {
		t.Fatalf("passwordless begin: %q", fa.lastWebAuthn())
	}
	cred := `{"id":"AA","response":{"clientDataJSON":"e30"}}`
	checkTokens(t, send(t, h, "POST", "/v1/auth/webauthn/finish", `{"challenge_id":"bwc_x","credential":`+cred+`}`))
	if fa.lastWebAuthn() != "FinishWebAuthnLogin|bwc_x|"+cred {
		t.Fatalf("finish: %q", fa.lastWebAuthn())
	}
	calls := fa.count("FinishWebAuthnLogin")
	for _, body := range []string{`{"challenge_id":"bwc_x"}`, `{"credential":{}}`, `{"challenge_id":"bwc_x","credential":null}`,
		`{"challenge_id":"bwc_x","credential":{},"extra":1}`, `{"challenge_id":"bwc_x","credential":{`} {
		checkError(t, send(t, h, "POST", "/v1/auth/webauthn/finish", body), 400, CodeInvalidRequest)
	}
	if fa.count("FinishWebAuthnLogin") != calls {
		t.Fatal("a malformed finish reached authcore")
	}
	fa.setErr("FinishWebAuthnLogin", authcore.ErrInvalidCredentials)
	checkError(t, send(t, h, "POST", "/v1/auth/webauthn/finish", `{"challenge_id":"bwc_x","credential":{}}`), 401, CodeInvalidCredentials)

	checkError(t, send(t, h, "POST", "/v1/me/mfa/webauthn/begin", `{"name":"key"}`), 401, CodeInvalidToken)
	rec = send(t, h, "POST", "/v1/me/mfa/webauthn/begin", `{"name":"key"}`, bearerOf("bob-token"))
	if rec.Code != 200 || fa.lastWebAuthn() != "BeginWebAuthnRegistration|id-bob|key" {
		t.Fatalf("register begin: %d %s; %q", rec.Code, rec.Body, fa.lastWebAuthn())
	}
	rec = send(t, h, "POST", "/v1/me/mfa/webauthn/finish", `{"challenge_id":"bwc_r","credential":`+cred+`}`, bearerOf("bob-token"))
	if rec.Code != http.StatusCreated || strings.TrimSpace(rec.Body.String()) != `{"id":"cred1","name":"key"}` ||
		fa.lastWebAuthn() != "FinishWebAuthnRegistration|id-bob|bwc_r|"+cred {
		t.Fatalf("register finish: %d %s; %q", rec.Code, rec.Body, fa.lastWebAuthn())
	}
	rec = send(t, h, "PATCH", "/v1/me/mfa/webauthn/cred1", `{"name":"laptop"}`, bearerOf("bob-token"))
	if rec.Code != 200 || fa.lastWebAuthn() != "RenameWebAuthn|id-bob|cred1|laptop" {
		t.Fatalf("rename: %d %s; %q", rec.Code, rec.Body, fa.lastWebAuthn())
	}
	rec = send(t, h, "DELETE", "/v1/me/mfa/webauthn/cred1", "", bearerOf("bob-token"))
	if rec.Code != http.StatusNoContent || fa.lastWebAuthn() != "RemoveWebAuthn|id-bob|cred1" {
		t.Fatalf("remove: %d %s; %q", rec.Code, rec.Body, fa.lastWebAuthn())
	}
	fa.setErr("RemoveWebAuthn", authcore.ErrNotFound)
	if eb := checkError(t, send(t, h, "DELETE", "/v1/me/mfa/webauthn/nope", "", bearerOf("bob-token")), 404, CodeNotFound); eb.Description != "no such passkey" {
		t.Fatalf("remove unknown: %q", eb.Description)
	}
	fa.setErr("RemoveWebAuthn", &authcore.StepUpError{MaxAge: 600e9})
	checkError(t, send(t, h, "DELETE", "/v1/me/mfa/webauthn/cred1", "", bearerOf("bob-token")), 401, CodeInsufficientUserAuthentication)
}
