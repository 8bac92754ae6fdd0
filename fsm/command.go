package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// Type names a command. New types are added; an existing type's payload never
// changes in place: a changed payload is a new Version of the type.
type Type string

// The user commands (users.go). Every file declares the types of the
// commands it applies, and the handler table lists each (type, version).
const (
	TypeUserCreate      Type = "user.create"
	TypeUserSetDisabled Type = "user.set_disabled"
	TypeUserDelete      Type = "user.delete"
)

// MaxCommandBytes bounds one encoded command. Larger entries are refused by the
// proposer and, identically, by every node's decoder.
const MaxCommandBytes = 1 << 20

// Command is the envelope of every replicated write: {type, version, time,
// payload, audit}. Everything Apply needs that is not in the state already
// (the time, ids, random values, hashes) is decided by the proposer and
// carried here, so every node applies it to the same result.
//
// Audit lists the audit entries the change stands for. Apply appends them
// in the same transaction, and only when the command succeeds, so the
// trail never misses a change nor records one that did not happen.
type Command struct {
	Type    Type            `json:"type"`
	Version uint16          `json:"v"`
	Time    int64           `json:"at"` // proposer's clock, Unix nanoseconds
	Payload json.RawMessage `json:"p"`
	Audit   []AuditAppend   `json:"audit,omitempty"`
}

// maxEnvelopeAudit bounds the audit entries one command carries.
const maxEnvelopeAudit = 4

// WithAudit returns c with the audit entries added.
func (c Command) WithAudit(entries ...AuditAppend) Command {
	c.Audit = append(append([]AuditAppend(nil), c.Audit...), entries...)
	return c
}

// NewCommand builds a command from a payload value.
func NewCommand(t Type, version uint16, at int64, payload any) (Command, error) {
	p, err := json.Marshal(payload)
	if err != nil {
		return Command{}, fmt.Errorf("fsm: encode %s payload: %w", t, err)
	}
	return Command{Type: t, Version: version, Time: at, Payload: p}, nil
}

// Encode returns the bytes that go into the Raft log.
func (c Command) Encode() ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxCommandBytes {
		return nil, fmt.Errorf("%w: %d bytes", ErrCommandTooLarge, len(b))
	}
	return b, nil
}

// DecodeCommand parses a log entry strictly: unknown envelope fields,
// trailing data, invalid UTF-8, oversize entries and unknown types or
// versions are all rejected, the same way on every node.
func DecodeCommand(b []byte) (Command, error) {
	var c Command
	if len(b) > MaxCommandBytes {
		return c, fmt.Errorf("%w: %d bytes", ErrCommandTooLarge, len(b))
	}
	if !utf8.Valid(b) {
		return c, fmt.Errorf("%w: invalid UTF-8", ErrMalformedCommand)
	}
	if err := decodeStrict(b, &c); err != nil {
		return c, fmt.Errorf("%w: %v", ErrMalformedCommand, err)
	}
	if _, ok := lookup(c.Type, c.Version); !ok {
		return c, fmt.Errorf("%w: %q version %d", ErrUnknownCommand, c.Type, c.Version)
	}
	if c.Time <= 0 {
		return c, fmt.Errorf("%w: missing time", ErrMalformedCommand)
	}
	if len(c.Audit) > maxEnvelopeAudit {
		return c, fmt.Errorf("%w: %d audit entries, at most %d", ErrMalformedCommand, len(c.Audit), maxEnvelopeAudit)
	}
	for i := range c.Audit {
		if err := c.Audit[i].Validate(); err != nil {
			return c, err
		}
	}
	return c, nil
}

// decodeStrict decodes one JSON value, refusing unknown fields and trailing data.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after JSON value")
	}
	return nil
}

// UserCreate adds a user. The proposer has normalised the name, checked the
// password policy and hashed the password.
type UserCreate struct {
	ID           string   `json:"id"`
	Username     string   `json:"username"`
	Email        string   `json:"email,omitempty"`
	Roles        []string `json:"roles,omitempty"`
	PasswordHash string   `json:"password_hash"`
}

// UserSetDisabled disables or enables a user.
type UserSetDisabled struct {
	ID       string `json:"id"`
	Disabled bool   `json:"disabled"`
}

// UserDelete removes a user and its name.
type UserDelete struct {
	ID string `json:"id"`
}
