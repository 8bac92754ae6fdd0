package api

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/bulwark-auth/bulwark/authcore"
)

// Error codes, the "error" member of every error body. They are a contract
// with clients (API.md); add to them, never rename.
const (
	CodeInvalidRequest       = "invalid_request"        // 400
	CodeInvalidCredentials   = "invalid_credentials"    // 401
	CodeInvalidToken         = "invalid_token"          // 401
	CodeInvalidGrant         = "invalid_grant"          // 400 or 401
	CodeForbidden            = "forbidden"              // 403
	CodeNotFound             = "not_found"              // 404
	CodeMethodNotAllowed     = "method_not_allowed"     // 405, with Allow
	CodeConflict             = "conflict"               // 409
	CodePayloadTooLarge      = "payload_too_large"      // 413
	CodeUnsupportedMediaType = "unsupported_media_type" // 415
	CodeChallengeRequired    = "challenge_required"     // 428
	CodeTooManyAttempts      = "too_many_attempts"      // 429, with Retry-After
	CodeInternal             = "internal_error"         // 500
	CodeUnavailable          = "unavailable"            // 503, with Retry-After
	CodeNoLeader             = "no_leader"              // 503, with Retry-After
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
	body, mErr := json.Marshal(errorBody{Error: e.Code, Description: e.Description})
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
	case errors.Is(err, authcore.ErrUserExists):
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Description: "a user with that name already exists"}
	case errors.Is(err, authcore.ErrUserNotFound):
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Description: "no such user"}
	case sc.isNoLeader != nil && sc.isNoLeader(err):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeNoLeader,
			Description: "no cluster leader is known; try again shortly", RetryAfter: retryBusy}
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

func badRequest(desc string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Description: desc}
}
