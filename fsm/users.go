package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

// User is a stored account. Username is the PRECIS-normalised form; the
// password is an argon2id PHC string, never the password.
type User struct {
	ID           string   `json:"id"`
	Username     string   `json:"username"`
	Email        string   `json:"email,omitempty"`
	Roles        []string `json:"roles,omitempty"`
	PasswordHash string   `json:"password_hash"`
	Disabled     bool     `json:"disabled,omitempty"`
	// PasswordGen counts the password's changes (user.set_password v2).
	// A session checked against a password carries the generation it was
	// checked against, and Apply refuses it once the password has changed
	// (session.create v2). A rehash of the same password keeps it.
	PasswordGen uint64 `json:"password_gen,omitempty"`
	// Flagged: repeated refusals on admin routes revoked the account's
	// sessions (incident.forbidden); for an administrator to look into.
	Flagged   bool      `json:"flagged,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// HasRole reports whether the user holds role.
func (u *User) HasRole(role string) bool {
	for _, r := range u.Roles {
		if r == role {
			return true
		}
	}
	return false
}

// txn is the write side handed to command handlers. counts, when set,
// gathers what the handlers changed of the counted records (counts.go).
type txn struct {
	tx     *bolt.Tx
	counts *batchCounts
}

// userCommands are the user commands' rows of the dispatch table.
var userCommands = []CommandSpec{
	{Type: TypeUserCreate, Version: 1, Level: 1, Apply: applyUserCreate, Result: reflect.TypeFor[*User]()},
	{Type: TypeUserSetDisabled, Version: 1, Level: 1, Apply: applyUserSetDisabled, Result: reflect.TypeFor[*User]()},
	{Type: TypeUserDelete, Version: 1, Level: 1, Apply: applyUserDelete, Result: nil},
	{Type: TypeUserDelete, Version: 2, Level: 5, Apply: applyUserDeleteV2, Result: nil},
}

func decodePayload(c Command, v any) error {
	if err := decodeStrict(c.Payload, v); err != nil {
		return fmt.Errorf("%w: %s payload: %v", ErrMalformedCommand, c.Type, err)
	}
	return nil
}

// validID accepts the ids proposers mint: 1 to 64 printable ASCII bytes.
func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

func applyUserCreate(t txn, c Command) (any, error) {
	var p UserCreate
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if !validID(p.ID) || p.Username == "" || !utf8.ValidString(p.Username) || p.PasswordHash == "" {
		return nil, fmt.Errorf("%w: user.create needs id, username and password_hash", ErrInvalidCommand)
	}
	users, names := t.tx.Bucket(bucketUsers), t.tx.Bucket(bucketUsernames)
	if names.Get([]byte(p.Username)) != nil || users.Get([]byte(p.ID)) != nil {
		return nil, ErrUserExists
	}
	at := time.Unix(0, c.Time).UTC()
	u := User{ID: p.ID, Username: p.Username, Email: p.Email, Roles: p.Roles,
		PasswordHash: p.PasswordHash, CreatedAt: at, UpdatedAt: at}
	if err := t.putUser(&u); err != nil {
		return nil, err
	}
	if err := names.Put([]byte(p.Username), []byte(p.ID)); err != nil {
		return nil, err
	}
	return &u, nil
}

func applyUserSetDisabled(t txn, c Command) (any, error) {
	var p UserSetDisabled
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	u, err := getUser(t.tx, p.ID)
	if err != nil {
		return nil, err
	}
	u.Disabled = p.Disabled
	u.UpdatedAt = time.Unix(0, c.Time).UTC()
	if err := t.putUser(u); err != nil {
		return nil, err
	}
	if u.Disabled { // a disabled user keeps no session
		if _, err := t.revokeUserSessions(u.ID, ""); err != nil {
			return nil, err
		}
	}
	return u, nil
}

func applyUserDelete(t txn, c Command) (any, error) {
	var p UserDelete
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	return nil, deleteUser(t, p.ID)
}

// applyUserDeleteV2 is user.delete v2 (level 5): v1, and what v1 left
// behind keyed by the user's id, their consent grants to OpenID Connect
// clients (oidc_grants.go) and their count of admin-route refusals
// (forbidden.go; its expiry-index entry then finds nothing to sweep).
func applyUserDeleteV2(t txn, c Command) (any, error) {
	var p UserDelete
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if err := deleteUser(t, p.ID); err != nil {
		return nil, err
	}
	prefix := append([]byte(p.ID), 0)
	if err := t.deleteKeysWhere(bucketGrants, func(k []byte) bool { return bytes.HasPrefix(k, prefix) }); err != nil {
		return nil, err
	}
	return nil, t.tx.Bucket(bucketForbidden).Delete([]byte(p.ID))
}

func deleteUser(t txn, id string) error {
	u, err := getUser(t.tx, id)
	if err != nil {
		return err
	}
	if _, err := t.revokeUserSessions(u.ID, ""); err != nil {
		return err
	}
	if err := t.tx.Bucket(bucketUsernames).Delete([]byte(u.Username)); err != nil {
		return err
	}
	if err := deleteMFA(t.tx, u.ID); err != nil { // none below level 4: a no-op there
		return err
	}
	return t.tx.Bucket(bucketUsers).Delete([]byte(u.ID))
}

func (t txn) putUser(u *User) error {
	b, err := json.Marshal(u)
	if err != nil {
		return err
	}
	return t.tx.Bucket(bucketUsers).Put([]byte(u.ID), b)
}

func getUser(tx *bolt.Tx, id string) (*User, error) {
	return Reader{tx: tx}.UserByID(id) // no cache: Apply reads what it decodes
}

func decodeUser(v []byte) (*User, error) {
	var u User
	if err := json.Unmarshal(v, &u); err != nil {
		return nil, err
	}
	return &u, nil
}
