package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
)

// A Result computed on the leader travels back to a follower that
// forwarded the command. resultTypes names the Go type of each command's
// Result.Value, so it decodes into what the proposer expects; a command
// whose Value is always nil needs no row. Add a row with every command
// whose handler returns a value.
var resultTypes = map[Type]reflect.Type{
	TypeUserCreate:      reflect.TypeFor[*User](),
	TypeUserSetDisabled: reflect.TypeFor[*User](),
	TypeLoginAttempt:    reflect.TypeFor[AttemptResult](),
	TypeLoginFailure:    reflect.TypeFor[FailureResult](),
	TypeSessionCreate:   reflect.TypeFor[*Session](),
	TypeSessionRefresh:  reflect.TypeFor[RefreshResult](),
	TypeSessionRevoke:   reflect.TypeFor[*Session](),
	TypeUserRevoke:      reflect.TypeFor[int](),
	TypeUserPassword:    reflect.TypeFor[*Session](),
	TypeSweep:           reflect.TypeFor[SweepResult](),
	TypeKeyPublish:      reflect.TypeFor[*PublicKey](),
	TypeAuditAppend:     reflect.TypeFor[*AuditEntry](),

	TypeDataKeyRegister: reflect.TypeFor[*DataKeyState](),
	TypeDataKeyEscrow:   reflect.TypeFor[*Escrow](),
	TypeDataKeyShares:   reflect.TypeFor[*RecoveryShares](),
	TypeCAKey:           reflect.TypeFor[*CAKey](),
	TypeClusterLevel:    reflect.TypeFor[int](),
}

// resultErrors are the domain errors a result may carry, by wire code. A
// forwarded error matches the same sentinel with errors.Is on the
// follower as on the leader.
var resultErrors = map[string]error{
	"user_exists":        ErrUserExists,
	"user_not_found":     ErrUserNotFound,
	"user_disabled":      ErrUserDisabled,
	"credential_changed": ErrCredentialChanged,
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

// EncodeResult turns the Result of a command of type t into bytes.
func EncodeResult(t Type, r Result) ([]byte, error) {
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
		if _, ok := resultTypes[t]; !ok {
			return nil, fmt.Errorf("fsm: the result of %s has no wire type", t)
		}
		v, err := json.Marshal(r.Value)
		if err != nil {
			return nil, err
		}
		w.Value = v
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

// DecodeResult reads a Result encoded by EncodeResult for a command of type t.
func DecodeResult(t Type, b []byte) (Result, error) {
	var w wireResult
	if err := json.Unmarshal(b, &w); err != nil {
		return Result{}, fmt.Errorf("fsm: decode result: %w", err)
	}
	var r Result
	if w.Code != "" {
		r.Err = &RemoteError{Msg: w.Error, Sentinel: resultErrors[w.Code]}
	}
	if len(w.Value) > 0 && string(w.Value) != "null" {
		rt, ok := resultTypes[t]
		if !ok {
			return Result{}, fmt.Errorf("fsm: the result of %s has no wire type", t)
		}
		p := reflect.New(rt)
		if err := json.Unmarshal(w.Value, p.Interface()); err != nil {
			return Result{}, fmt.Errorf("fsm: decode %s result: %w", t, err)
		}
		r.Value = p.Elem().Interface()
	}
	return r, nil
}
