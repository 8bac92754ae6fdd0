package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
)

// resultErrors are the domain errors a result may carry, by wire code. A
// forwarded error matches the same sentinel with errors.Is on the
// follower as on the leader.
var resultErrors = map[string]error{
	"user_exists":        ErrUserExists,
	"user_not_found":     ErrUserNotFound,
	"user_disabled":      ErrUserDisabled,
	"credential_changed": ErrCredentialChanged,
	"refresh_moved":      ErrRefreshMoved,
	"invalid_command":    ErrInvalidCommand,
	"malformed_command":  ErrMalformedCommand,
	"unknown_command":    ErrUnknownCommand,
	"command_too_large":  ErrCommandTooLarge,
	"locked":             ErrLocked,
	"session_limit":      ErrSessionLimit,
	"session_not_found":  ErrSessionNotFound,
	"invalid_grant":      ErrInvalidGrant,
	"key_not_found":      ErrKeyNotFound,
	"escrow_exists":      ErrEscrowExists,
	"shares_issued":      ErrSharesIssued,
	"no_datakey":         ErrNoDataKey,

	// second factors (mfa.go)
	"factor_exists":    ErrFactorExists,
	"factor_not_found": ErrFactorNotFound,
	"factor_replayed":  ErrFactorReplayed,
	"locked_down":      ErrLockedDown,

	// OpenID Connect (oidc.go)
	"oidc_client_exists":     ErrClientExists,
	"oidc_client_not_found":  ErrClientNotFound,
	"oidc_request_not_found": ErrAuthRequestNotFound,
	"oidc_invalid_code":      ErrInvalidCode,
	"oidc_consent_required":  ErrConsentRequired,
	"oidc_grant_not_found":   ErrGrantNotFound,

	// block.remove (blocks.go)
	"block_not_found": ErrBlockNotFound,

	// tokens.issuer (issuer.go)
	"issuer_conflict": ErrIssuerConflict,

	// join.consume (join.go)
	"join_token_unknown": ErrJoinTokenUnknown,
	"join_token_used":    ErrJoinTokenUsed,
	"join_token_expired": ErrJoinTokenExpired,
}

type wireResult struct {
	Value json.RawMessage `json:"v,omitempty"`
	Code  string          `json:"code,omitempty"`
	Error string          `json:"error,omitempty"`
}

// EncodeResult turns the Result of a command of type t and version v into
// bytes. A Result computed on the leader travels back so to a follower
// that forwarded the command, whose DecodeResult decodes its Value into
// the Go type the command's row names (CommandSpec.Result): the type the
// proposer expects. A row without one carries no value.
func EncodeResult(t Type, v uint16, r Result) ([]byte, error) {
	var w wireResult
	if r.Err != nil {
		w.Error = r.Err.Error()
		w.Code = "other"
		for code, sentinel := range resultErrors {
			if errors.Is(r.Err, sentinel) {
				w.Code = code
				break
			}
		}
	}
	if r.Value != nil {
		if row, _ := lookup(t, v); row.Result == nil {
			return nil, fmt.Errorf("fsm: the result of %s v%d has no wire type", t, v)
		}
		b, err := json.Marshal(r.Value)
		if err != nil {
			return nil, err
		}
		w.Value = b
	}
	return json.Marshal(w)
}

// RemoteError is a domain error computed on another node: it prints that
// node's message and matches the same sentinel.
type RemoteError struct {
	Msg      string
	Sentinel error // nil when the error was not a known sentinel
}

func (e *RemoteError) Error() string { return e.Msg }

func (e *RemoteError) Unwrap() error { return e.Sentinel }

// DecodeResult reads a Result encoded by EncodeResult for a command of
// type t and version v.
func DecodeResult(t Type, v uint16, b []byte) (Result, error) {
	var w wireResult
	if err := json.Unmarshal(b, &w); err != nil {
		return Result{}, fmt.Errorf("fsm: decode result: %w", err)
	}
	var r Result
	if w.Code != "" {
		r.Err = &RemoteError{Msg: w.Error, Sentinel: resultErrors[w.Code]}
	}
	if len(w.Value) > 0 && string(w.Value) != "null" {
		row, _ := lookup(t, v)
		if row.Result == nil {
			return Result{}, fmt.Errorf("fsm: the result of %s v%d has no wire type", t, v)
		}
		p := reflect.New(row.Result)
		if err := json.Unmarshal(w.Value, p.Interface()); err != nil {
			return Result{}, fmt.Errorf("fsm: decode %s v%d result: %w", t, v, err)
		}
		r.Value = p.Elem().Interface()
	}
	return r, nil
}
