package fsm

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Join tokens. `bulwark cluster join-token` hands an operator a token
// holding a random secret; the state keeps only the secret's SHA-256 and
// the token's expiry, so neither state.db, a snapshot nor a backup can be
// used to join. A joining node proves the secret to a node holding the
// cluster CA key, which consumes the token through the log: every node
// agrees that a token is used once, and refuses it after its expiry,
// judged at the consuming command's time, never by a clock here.
//
// Records live under meta/"join/<hash>" (no new bucket). join.token
// prunes records that expired more than JoinTokenRetention before its own
// time, so the set stays small; a pruned token is refused as unknown.
const (
	// TypeJoinToken records a new join token (v1: JoinTokenCreate).
	TypeJoinToken Type = "join.token"
	// TypeJoinConsume marks a join token used by a joining node (v1:
	// JoinConsume). Refused with ErrJoinTokenUnknown, ErrJoinTokenUsed or
	// ErrJoinTokenExpired.
	TypeJoinConsume Type = "join.consume"
)

// Limits of join tokens.
const (
	// MaxJoinTokenTTL is the longest a join token may live.
	MaxJoinTokenTTL = 7 * 24 * time.Hour
	// JoinTokenRetention is how long a record is kept past its expiry,
	// so a late attempt with a used token is told it was used.
	JoinTokenRetention = 7 * 24 * time.Hour
	// maxJoinTokens bounds the records kept (live or retained).
	maxJoinTokens = 1024
)

var joinKeyPrefix = []byte("join/")

// JoinTokenCreate is the payload of join.token v1.
type JoinTokenCreate struct {
	Hash      string `json:"hash"`       // hex SHA-256 of the secret, 64 lowercase digits
	ExpiresAt int64  `json:"expires_at"` // Unix nanoseconds, after the command's time
	Issuer    string `json:"issuer"`     // the node that made it (holds the CA key)
}

// JoinConsume is the payload of join.consume v1.
type JoinConsume struct {
	Hash   string `json:"hash"`
	NodeID string `json:"node_id"` // the joining node
}

// JoinToken is a stored join token record.
type JoinToken struct {
	Hash      string    `json:"hash"`
	Issuer    string    `json:"issuer"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	UsedAt    time.Time `json:"used_at,omitzero"`
	NodeID    string    `json:"node_id,omitempty"` // who used it
}

// joinCommands are the join commands' rows of the dispatch table.
var joinCommands = []CommandSpec{
	{Type: TypeJoinToken, Version: 1, Level: 1, Apply: applyJoinToken, Result: nil},
	{Type: TypeJoinConsume, Version: 1, Level: 1, Apply: applyJoinConsume, Result: nil},
}

func applyJoinToken(t txn, c Command) (any, error) {
	var p JoinTokenCreate
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	switch {
	case !isHex(p.Hash, 64):
		return nil, fmt.Errorf("%w: join.token: hash must be 64 lowercase hex digits", ErrInvalidCommand)
	case p.ExpiresAt <= c.Time:
		return nil, fmt.Errorf("%w: join.token: expires_at is not after the command's time", ErrInvalidCommand)
	case p.ExpiresAt-c.Time > int64(MaxJoinTokenTTL):
		return nil, fmt.Errorf("%w: join.token: a join token lives at most %v", ErrInvalidCommand, MaxJoinTokenTTL)
	case !validID(p.Issuer):
		return nil, fmt.Errorf("%w: join.token: issuer must be 1 to 64 printable ASCII bytes", ErrInvalidCommand)
	}
	meta := t.tx.Bucket(bucketMeta)
	key := joinKey(p.Hash)
	if meta.Get(key) != nil {
		return nil, fmt.Errorf("%w: join.token: a token with this hash exists", ErrInvalidCommand)
	}
	// Prune records long expired, then count what is left. Both depend
	// only on the state and the command's time.
	var stale [][]byte
	count := 0
	c2 := meta.Cursor()
	for k, v := c2.Seek(joinKeyPrefix); k != nil && hasPrefix(k, joinKeyPrefix); k, v = c2.Next() {
		var rec JoinToken
		if err := json.Unmarshal(v, &rec); err != nil {
			return nil, fmt.Errorf("fsm: stored join token %q: %w", k, err)
		}
		if rec.ExpiresAt.UnixNano()+int64(JoinTokenRetention) < c.Time {
			stale = append(stale, append([]byte(nil), k...))
			continue
		}
		count++
	}
	if count >= maxJoinTokens {
		return nil, fmt.Errorf("%w: join.token: %d join tokens are outstanding, the most there may be", ErrInvalidCommand, count)
	}
	rec := JoinToken{Hash: p.Hash, Issuer: p.Issuer, CreatedAt: time.Unix(0, c.Time).UTC(),
		ExpiresAt: time.Unix(0, p.ExpiresAt).UTC()}
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	for _, k := range stale {
		if err := meta.Delete(k); err != nil {
			return nil, err
		}
	}
	return nil, meta.Put(key, b)
}

func applyJoinConsume(t txn, c Command) (any, error) {
	var p JoinConsume
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	switch {
	case !isHex(p.Hash, 64):
		return nil, fmt.Errorf("%w: join.consume: hash must be 64 lowercase hex digits", ErrInvalidCommand)
	case !validID(p.NodeID):
		return nil, fmt.Errorf("%w: join.consume: node_id must be 1 to 64 printable ASCII bytes", ErrInvalidCommand)
	}
	rec, err := getJoinToken(t.tx, p.Hash)
	if err != nil {
		return nil, err
	}
	if err := rec.usable(c.Time); err != nil {
		return nil, err
	}
	rec.UsedAt, rec.NodeID = time.Unix(0, c.Time).UTC(), p.NodeID
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	return nil, t.tx.Bucket(bucketMeta).Put(joinKey(p.Hash), b)
}

// usable is Usable at Unix nanoseconds at.
func (r *JoinToken) usable(at int64) error {
	switch {
	case !r.UsedAt.IsZero():
		return fmt.Errorf("%w: by node %s at %s", ErrJoinTokenUsed, r.NodeID, r.UsedAt.Format(time.RFC3339))
	case at >= r.ExpiresAt.UnixNano():
		return fmt.Errorf("%w at %s", ErrJoinTokenExpired, r.ExpiresAt.Format(time.RFC3339))
	}
	return nil
}

// Usable reports, as join.consume would at time at, whether the token may
// be consumed: nil, or an error wrapping ErrJoinTokenUsed or
// ErrJoinTokenExpired.
func (r *JoinToken) Usable(at time.Time) error { return r.usable(at.UnixNano()) }

func joinKey(hash string) []byte { return append(append([]byte(nil), joinKeyPrefix...), hash...) }

func hasPrefix(b, prefix []byte) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == string(prefix)
}

func getJoinToken(tx *bolt.Tx, hash string) (*JoinToken, error) {
	v := tx.Bucket(bucketMeta).Get(joinKey(hash))
	if v == nil {
		return nil, ErrJoinTokenUnknown
	}
	var rec JoinToken
	if err := json.Unmarshal(v, &rec); err != nil {
		return nil, fmt.Errorf("fsm: stored join token: %w", err)
	}
	return &rec, nil
}

// JoinToken returns the join token record with the secret hash hash, or
// ErrJoinTokenUnknown.
func (r Reader) JoinToken(hash string) (*JoinToken, error) { return getJoinToken(r.tx, hash) }

// JoinTokens calls fn for every stored join token record, in hash order,
// until fn returns false.
func (r Reader) JoinTokens(fn func(*JoinToken) bool) error {
	c := r.tx.Bucket(bucketMeta).Cursor()
	for k, v := c.Seek(joinKeyPrefix); k != nil && hasPrefix(k, joinKeyPrefix); k, v = c.Next() {
		var rec JoinToken
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("fsm: stored join token %q: %w", k, err)
		}
		if !fn(&rec) {
			return nil
		}
	}
	return nil
}
