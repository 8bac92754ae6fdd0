package api

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"syscall"
	"time"

	"github.com/bulwark-auth/bulwark/authcore"
)

// Error codes, the "error" member of every error body. They are a contract
// with clients (API.md); add to them, never rename.
const (
	CodeInvalidRequest     = "invalid_request"     // 400
	CodeInvalidCredentials = "invalid_credentials" // 401
	CodeInvalidToken       = "invalid_token"       // 401
	CodeInvalidGrant       = "invalid_grant"       // 400 or 401
	// CodeInsufficientUserAuthentication: RFC 9470 step-up, with a
	// WWW-Authenticate challenge naming max_age.
	CodeInsufficientUserAuthentication = "insufficient_user_authentication" // 401
	CodeMFAUnavailable                 = "mfa_unavailable"                  // 503
	CodeLockedDown                     = "locked_down"                      // 503: an operator's incident lockdown
	CodeForbidden                      = "forbidden"                        // 403
	CodeNotFound                       = "not_found"                        // 404
	CodeMethodNotAllowed               = "method_not_allowed"               // 405, with Allow
	CodeConflict                       = "conflict"                         // 409
	CodeUpgradePending                 = "upgrade_pending"                  // 503
	CodePayloadTooLarge                = "payload_too_large"                // 413
	CodeUnsupportedMediaType           = "unsupported_media_type"           // 415
	CodeChallengeRequired              = "challenge_required"               // 428
	CodeTooManyAttempts                = "too_many_attempts"                // 429, with Retry-After
	CodeInternal                       = "internal_error"                   // 500
	CodeUnavailable                    = "unavailable"                      // 503, with Retry-After
	CodeNoLeader                       = "no_leader"                        // 503, with Retry-After
	CodeDiskFull                       = "disk_full"                        // 503, with Retry-After: writes refused, reads go on
	CodeAuditChainBroken               = "audit_chain_broken"               // 409, naming the first bad seq
)

// Error is an HTTP error answer: the status, the code and a description a
// person can act on. It is the one error type handlers return and
// writeError writes; AdminClient.Do returns it for a non-2xx answer.
type Error struct {
	Status      int
	Code        string
	Description string
	// RetryAfter, when positive, is sent as Retry-After in whole seconds
	// (rounded up).
	RetryAfter time.Duration
	// Challenge, when set, is sent as WWW-Authenticate (RFC 6750 3 on a
	// 401 from a Bearer-protected route).
	Challenge string
	// PoW, when set, is the body's "challenge" member: the proof of work
	// a 428 challenge_required asks for.
	PoW any
}

// Error returns the description, which is written for people (the CLI
// prints it as its one-line reason), or the code when there is none.
func (e *Error) Error() string {
	if e.Description != "" {
		return e.Description
	}
	return e.Code
}

// errorBody is the wire form of an Error.
type errorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
	Challenge   any    `json:"challenge,omitempty"`
}

// retryBusy is how long a client should wait after a 503.
const retryBusy = time.Second

// writeError is the one function that writes an error answer. err may be
// an *Error (written as is), one of authcore's sentinel errors (mapped to
// its code), an error Options.IsNoLeader recognises (503 no_leader), a
// context error (503), or anything else: a 500 with a generic description,
// the real error going to the log with the request id.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	sc := scopeOf(r)
	e := toError(sc, err)
	if e.Status >= 500 {
		switch e.Code {
		case CodeInternal:
			sc.log.Error("internal error", "method", r.Method, "path", r.URL.Path, "error", err)
		default:
			if !errors.Is(err, context.Canceled) { // a client that left is not news
				sc.log.Warn("service unavailable", "code", e.Code, "error", err)
			}
		}
	}
	body, mErr := json.Marshal(errorBody{Error: e.Code, Description: e.Description, Challenge: e.PoW})
	if mErr != nil { // two strings cannot fail to marshal; be safe anyway
		body = []byte(`{"error":"internal_error","error_description":"internal error"}`)
	}
	h := w.Header()
	h.Del("Content-Length")
	h.Del("Content-Encoding")
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64(math.Ceil(e.RetryAfter.Seconds())), 10))
	}
	if e.Challenge != "" {
		h.Set("WWW-Authenticate", e.Challenge)
	}
	w.WriteHeader(e.Status)
	w.Write(append(body, '\n'))
}

// toError maps err to the answer a client may see.
func toError(sc *scope, err error) *Error {
	var e *Error
	switch {
	case errors.As(err, &e):
		if e.Status == 0 || e.Code == "" {
			return internalError(sc)
		}
		return e
	case errors.Is(err, authcore.ErrInvalidUsername),
		errors.Is(err, authcore.ErrWeakPassword),
		errors.Is(err, authcore.ErrInvalidInput):
		// authcore promises these carry a reason a person can read.
		return &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Description: err.Error()}
	case errors.Is(err, authcore.ErrTooManyAttempts): // a *LockedError says how long
		return errTooManyAttempts(lockedFor(err))
	case errors.Is(err, authcore.ErrInvalidCredentials):
		// One answer for an unknown name, a wrong password and a disabled
		// account, so none can be told apart.
		return &Error{Status: http.StatusUnauthorized, Code: CodeInvalidCredentials,
			Description: "invalid username or password"}
	case errors.Is(err, authcore.ErrInvalidToken):
		return errInvalidToken("the access token is invalid, expired or revoked")
	case errors.Is(err, authcore.ErrStepUpRequired):
		var su *authcore.StepUpError
		if errors.As(err, &su) {
			return errStepUp(su.MaxAge)
		}
		return errStepUp(10 * time.Minute)
	case errors.Is(err, authcore.ErrInvalidMFAToken):
		return &Error{Status: http.StatusUnauthorized, Code: CodeInvalidGrant,
			Description: "the mfa_token is invalid, expired or used; sign in again"}
	case errors.Is(err, authcore.ErrChallengeRequired):
		var ce *authcore.ChallengeError
		if errors.As(err, &ce) {
			return &Error{Status: http.StatusPreconditionRequired, Code: CodeChallengeRequired, Description: ce.Reason, PoW: ce.Challenge}
		}
		return internalError(sc)
	case errors.Is(err, authcore.ErrLockedDown):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeLockedDown,
			Description: "sign-in is suspended by an incident lockdown; administrators sign in with a second factor"}
	case errors.Is(err, authcore.ErrUpgradePending):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUpgradePending,
			Description: "not available until every cluster member runs this release (cluster feature level)", RetryAfter: retryBusy}
	case errors.Is(err, authcore.ErrConflict):
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Description: err.Error()}
	case errors.Is(err, authcore.ErrPasskeysUnavailable):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeMFAUnavailable,
			Description: "passkeys are not configured on this node (mfa.webauthn_rp_id)"}
	case errors.Is(err, authcore.ErrMFAUnavailable):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeMFAUnavailable,
			Description: "second factors are not available on this node (no cluster data key)", RetryAfter: retryBusy}
	case errors.Is(err, authcore.ErrInvalidGrant):
		// RFC 6749 5.2: invalid_grant is a 400.
		return &Error{Status: http.StatusBadRequest, Code: CodeInvalidGrant,
			Description: "the refresh token is invalid, expired or already used"}
	case errors.Is(err, authcore.ErrSessionLimit):
		return &Error{Status: http.StatusForbidden, Code: CodeForbidden,
			Description: "session limit reached; log out elsewhere or ask an administrator"}
	case errors.Is(err, authcore.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Description: "no such session"}
	case errors.Is(err, authcore.ErrUserExists):
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Description: "a user with that name already exists"}
	case errors.Is(err, authcore.ErrUserNotFound):
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Description: "no such user"}
	case sc.isNoLeader != nil && sc.isNoLeader(err):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeNoLeader,
			Description: "no cluster leader is known; try again shortly", RetryAfter: retryBusy}
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		// The node's data directory is full (node.ErrDiskFull matches
		// ENOSPC): writes wait for space, reads and session checks go on.
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeDiskFull,
			Description: "this node's disk is full, so it cannot record changes now; try again later", RetryAfter: 5 * retryBusy}
	case errors.Is(err, authcore.ErrBusy):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable,
			Description: "the server is busy; try again shortly", RetryAfter: retryBusy}
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable,
			Description: "the request timed out; try again", RetryAfter: retryBusy}
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads this answer.
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Description: "the request was canceled"}
	default:
		return internalError(sc)
	}
}

func internalError(sc *scope) *Error {
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal,
		Description: "internal error; the server log has details under request id " + sc.id}
}

// Errors the routing layer answers with.
func errNotFound() *Error {
	return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Description: "no such resource"}
}

func errMethodNotAllowed(method, allow string) *Error {
	return &Error{Status: http.StatusMethodNotAllowed, Code: CodeMethodNotAllowed,
		Description: "method " + method + " is not allowed here; allowed: " + allow}
}

// tooManyAttemptsDescription is the one description of every 429 on a
// login: a locked name, a name over its rate limit and an unknown name
// that has failed as often answer alike (API.md).
const tooManyAttemptsDescription = "too many failed attempts; try again later"

func errTooManyAttempts(retry time.Duration) *Error {
	return &Error{Status: http.StatusTooManyRequests, Code: CodeTooManyAttempts,
		Description: tooManyAttemptsDescription, RetryAfter: max(retry, time.Second)}
}

// lockedFor is how long a LockedError in err says to wait; zero if none.
func lockedFor(err error) time.Duration {
	if le, ok := errors.AsType[*authcore.LockedError](err); ok {
		return le.RetryAfter
	}
	return 0
}

// Bearer challenges (RFC 6750 3): a request with no credentials gets the
// realm only; one with a bad token is told so.
const (
	challengeRealm        = `Bearer realm="bulwark"`
	challengeInvalidToken = `Bearer error="invalid_token"`
)

func errInvalidToken(desc string) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: CodeInvalidToken, Description: desc,
		Challenge: challengeInvalidToken}
}

func badRequest(desc string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Description: desc}
}
