package fsm

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"reflect"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Incident lockdown (level 4): the hardening checklist's answer to a
// breach. incident.lockdown ends every session and refresh token at once,
// cluster-wide, and refuses new sessions until incident.release, except
// those their proposer marks as allowed (an administrator with a second
// factor, or a client from [incident].exempt: decided by the proposer,
// which knows the config, and carried in session.create v3).
//
// Ending every session is O(1): the entry records an instant, and a
// session created before the latest lockdown's instant is dead from that
// entry on (Reader.Session answers ErrSessionNotFound, session.refresh
// refuses its token); the sweep deletes it at its expiry as any other.
const (
	TypeLockdown        Type = "incident.lockdown"
	TypeLockdownRelease Type = "incident.release"
)

// Lockdown is incident.lockdown v1 and incident.release v1.
type Lockdown struct {
	Reason string `json:"reason,omitempty"`
	Actor  string `json:"actor"`
}

// LockdownState is the cluster's lockdown.
type LockdownState struct {
	Active     bool       `json:"active"`
	Since      time.Time  `json:"since,omitzero"`
	Reason     string     `json:"reason,omitempty"`
	Actor      string     `json:"actor,omitempty"`
	ReleasedAt *time.Time `json:"released_at,omitempty"`
	ReleasedBy string     `json:"released_by,omitempty"`
}

var (
	keyLockdown      = []byte("lockdown")
	keyRevokedBefore = []byte("sessions_revoked_before") // Unix ns (8 bytes)
)

var incidentCommands = []CommandSpec{
	{Type: TypeLockdown, Version: 1, Level: 4, Apply: applyLockdown, Result: reflect.TypeFor[LockdownState]()},
	{Type: TypeLockdownRelease, Version: 1, Level: 4, Apply: applyLockdownRelease, Result: reflect.TypeFor[LockdownState]()},
}

func applyLockdown(t txn, c Command) (any, error) {
	var p Lockdown
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if p.Actor == "" || len(p.Reason) > 512 || CleanAuditText(p.Reason, 512) != p.Reason {
		return nil, fmt.Errorf("%w: incident.lockdown needs an actor and a printable reason of at most 512 bytes", ErrInvalidCommand)
	}
	st := t.lockdown()
	if !st.Active {
		st = LockdownState{Active: true, Since: time.Unix(0, c.Time).UTC(), Reason: p.Reason, Actor: p.Actor}
	}
	// Every session that exists now ends, a repeated lockdown's too.
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(c.Time))
	if err := t.tx.Bucket(bucketMeta).Put(keyRevokedBefore, b[:]); err != nil {
		return nil, err
	}
	return st, t.putJSONMeta(keyLockdown, st)
}

func applyLockdownRelease(t txn, c Command) (any, error) {
	var p Lockdown
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	st := t.lockdown()
	if !st.Active {
		return st, nil
	}
	at := time.Unix(0, c.Time).UTC()
	st.Active, st.ReleasedAt, st.ReleasedBy = false, &at, p.Actor
	return st, t.putJSONMeta(keyLockdown, st)
}

func (t txn) putJSONMeta(key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return t.tx.Bucket(bucketMeta).Put(key, b)
}

func (t txn) lockdown() LockdownState { return Reader{tx: t.tx}.Lockdown() }

// Lockdown returns the cluster's lockdown state (inactive if none ever).
func (r Reader) Lockdown() LockdownState {
	var st LockdownState
	if v := r.tx.Bucket(bucketMeta).Get(keyLockdown); v != nil {
		json.Unmarshal(v, &st) // written by applyLockdown: it decodes
	}
	return st
}

// revokedBefore is the instant (Unix ns) before which every session was
// ended by a lockdown; 0 if none. A View's reader has it from the store's
// copy (Store.revokedBefore: every Bearer request asks, and a meta look-up
// each cost a bbolt bucket search); Apply's reads state.db.
func revokedBefore(r Reader) int64 {
	if r.rbSet {
		return r.rb
	}
	return storedRevokedBefore(r.tx)
}

// storedRevokedBefore reads revokedBefore from state.db.
func storedRevokedBefore(tx *bolt.Tx) int64 {
	if v := tx.Bucket(bucketMeta).Get(keyRevokedBefore); len(v) == 8 {
		return int64(binary.BigEndian.Uint64(v))
	}
	return 0
}

// endedByLockdown reports whether s was ended by a lockdown.
func endedByLockdown(r Reader, s *Session) bool {
	rb := revokedBefore(r)
	return rb != 0 && s.CreatedAt.UnixNano() < rb
}
