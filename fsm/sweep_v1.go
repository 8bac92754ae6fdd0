package fsm

import (
	"encoding/json"
	"reflect"
	"time"
)

// The sweep of the first release (v1): it reads every session and lockout
// counter in one apply. Level 3's state.sweep v2 walks the expiry index
// instead (expiry.go).
const TypeSweep Type = "state.sweep"

// Sweep deletes sessions that are dead at the command's time, and lockout
// counters whose window and lock are over.
type Sweep struct {
	Limit int `json:"limit"` // most records deleted by one sweep
}

// SweepResult says what a sweep deleted. From v2: Addresses (per-address
// counters deleted), Migrated (records its walk of the records written
// before level 3 examined) and More (due entries or unindexed records
// remain: sweep again).
type SweepResult struct {
	Sessions, Lockouts int
	Addresses          int
	Migrated           int
	More               bool
	// Blocks is how many expired blocks were deleted (level 4); left out
	// when zero, so results read as they did before.
	Blocks int `json:",omitempty"`
}

var sweepV1Commands = []CommandSpec{
	{Type: TypeSweep, Version: 1, Level: 1, Apply: applySweep, Result: reflect.TypeFor[SweepResult]()},
}

func applySweep(t txn, c Command) (any, error) {
	var p Sweep
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if p.Limit <= 0 {
		p.Limit = 10000
	}
	at := time.Unix(0, c.Time)
	var res SweepResult
	var dead []*Session
	err := t.tx.Bucket(bucketSessions).ForEach(func(k, v []byte) error {
		if len(dead) >= p.Limit {
			return nil
		}
		var s Session
		if err := json.Unmarshal(v, &s); err != nil {
			return err
		}
		if !s.Alive(at) {
			dead = append(dead, &s)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, s := range dead {
		if err := t.deleteSession(s); err != nil {
			return nil, err
		}
	}
	res.Sessions = len(dead)
	var over [][]byte
	err = t.tx.Bucket(bucketLockout).ForEach(func(k, v []byte) error {
		if len(over) >= p.Limit {
			return nil
		}
		var l Lockout
		if err := json.Unmarshal(v, &l); err != nil {
			return err
		}
		// Keep a counter until its lock is over and its window could no
		// longer matter; the longest window any proposer uses is unknown
		// here, so keep unlocked counters for a day.
		day := int64(24 * time.Hour)
		if l.LockedUntil <= c.Time && c.Time-l.WindowStart > day && (len(l.Pending) == 0 || c.Time-l.Pending[len(l.Pending)-1] > day) {
			over = append(over, append([]byte(nil), k...))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, k := range over {
		if err := t.tx.Bucket(bucketLockout).Delete(k); err != nil {
			return nil, err
		}
	}
	res.Lockouts = len(over)
	return res, nil
}
