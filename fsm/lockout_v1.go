package fsm

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"time"
)

// Lockout commands of the first release (v1), and the counter they keep.
// Level 3 adds v2 of login.attempt and login.failure, and login.release
// (lockout.go); both versions share the Lockout record.
const (
	TypeLoginAttempt Type = "login.attempt"
	TypeLoginFailure Type = "login.failure"
	TypeLockoutReset Type = "lockout.reset"
)

// Lockout is the failed-attempt state of one normalised username, known or
// not. A password check holds a slot from before it starts: Pending while
// it runs, Failures once it failed. Failures + len(Pending) never exceeds
// the maximum, so no more passwords are checked per window than allowed,
// however many requests race.
type Lockout struct {
	Failures    int   `json:"failures"`
	WindowStart int64 `json:"window_start"`
	// Pending holds the times of granted checks not yet resolved. A check
	// whose node died never resolves: under login.attempt v1 its slot
	// frees after PendingTTL; from level 3 it is a failure then.
	Pending []int64 `json:"pending,omitempty"`
	// LockedUntil is set when the window's failures reach the maximum.
	LockedUntil int64 `json:"locked_until,omitempty"`
	// Limits are those of the last level-3 command that wrote the record
	// (nil before level 3). With them, a pending slot older than
	// PendingTTL is a failure at its deadline instead of a freed slot.
	Limits *LockoutLimits `json:"limits,omitempty"`
	// PendingFrom is the client address each pending slot was granted to
	// (level 3, when names are counted per address).
	PendingFrom map[int64]string `json:"pending_from,omitempty"`
}

// LoginAttempt asks for a slot to check one password for Username.
type LoginAttempt struct {
	Username    string `json:"username"`
	MaxAttempts int    `json:"max_attempts"`
	Window      int64  `json:"window"`      // nanoseconds: lockout_duration
	PendingTTL  int64  `json:"pending_ttl"` // nanoseconds a granted check may stay unresolved
	IP          string `json:"ip,omitempty"`
	UserAgent   string `json:"user_agent,omitempty"`
}

// AttemptResult answers a LoginAttempt: Granted (check the password, then
// report a failure with LoginFailure{Slot}), Locked (the name is locked
// for RetryAfter), or neither: every slot is held by a check in flight,
// and one frees within RetryAfter at the latest.
type AttemptResult struct {
	Granted    bool
	Slot       int64 // identifies the granted check in LoginFailure
	Locked     bool
	RetryAfter time.Duration
	// ChallengeRequired (login.attempt v3): no slot until a solved
	// challenge comes with the attempt; Suspicion sizes it, and Replayed
	// says the one that came was used already.
	ChallengeRequired bool `json:",omitempty"`
	Suspicion         int  `json:",omitempty"`
	Replayed          bool `json:",omitempty"`
	// Blocked (login.attempt v4): this refusal blocked the address.
	Blocked bool `json:",omitempty"`
}

// LoginFailure turns a granted check into a failure, locking the name when
// the window's failures reach MaxAttempts. The audit entries of the
// failure (and the lockout) travel in the envelope.
type LoginFailure struct {
	Username    string `json:"username"`
	Slot        int64  `json:"slot"`
	MaxAttempts int    `json:"max_attempts"`
	Window      int64  `json:"window"`
	// For the lockout's audit entry, should this failure lock the name.
	Subject   string `json:"subject,omitempty"`
	IP        string `json:"ip,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`
}

// FailureResult says whether the failure locked the name.
type FailureResult struct {
	Locked bool
	// Blocked: login.failure v3 blocked the failure's address (a
	// detection threshold was reached). Left out of the encoding when
	// false, so v1 and v2 results read as they always did.
	Blocked bool `json:",omitempty"`
}

// LockoutReset clears a name's counter: after a successful login, or an
// administrator's unlock.
type LockoutReset struct {
	Username string `json:"username"`
	Actor    string `json:"actor,omitempty"` // set for an administrator's unlock
}

var lockoutV1Commands = []CommandSpec{
	{Type: TypeLoginAttempt, Version: 1, Level: 1, Apply: applyLoginAttempt, Result: reflect.TypeFor[AttemptResult]()},
	{Type: TypeLoginFailure, Version: 1, Level: 1, Apply: applyLoginFailure, Result: reflect.TypeFor[FailureResult]()},
	{Type: TypeLockoutReset, Version: 1, Level: 1, Apply: applyLockoutReset, Result: nil},
}

func applyLoginAttempt(t txn, c Command) (any, error) {
	var p LoginAttempt
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if p.Username == "" || len(p.Username) > 1024 || p.MaxAttempts < 1 || p.MaxAttempts > 1000 || p.Window <= 0 || p.PendingTTL <= 0 {
		return nil, fmt.Errorf("%w: login.attempt needs username, max_attempts, window and pending_ttl", ErrInvalidCommand)
	}
	l, err := t.lockout(p.Username)
	if err != nil {
		return nil, err
	}
	if l.LockedUntil > c.Time {
		return AttemptResult{Locked: true, RetryAfter: time.Duration(l.LockedUntil - c.Time)}, nil
	}
	l.refresh(c.Time, p.Window, p.PendingTTL)
	if l.Failures+len(l.Pending) >= p.MaxAttempts && len(l.Pending) == 0 {
		// Failures counted under a higher max_attempts than this one (the
		// setting was lowered): over this maximum until the window ends.
		// This read Pending[0] and panicked, on every node alike, so no
		// state ever went past such an entry: answering it changes no
		// outcome any node has.
		return AttemptResult{Locked: true, RetryAfter: time.Duration(l.WindowStart + p.Window - c.Time)}, nil
	}
	if l.Failures+len(l.Pending) >= p.MaxAttempts {
		// Every slot is held by a check in flight: one frees when it
		// resolves, or at the latest when the oldest expires.
		return AttemptResult{RetryAfter: time.Duration(l.Pending[0] + p.PendingTTL - c.Time)}, nil
	}
	l.Pending = append(l.Pending, c.Time)
	return AttemptResult{Granted: true, Slot: c.Time}, t.putLockout(p.Username, &l, t.level() >= 3)
}

func applyLoginFailure(t txn, c Command) (any, error) {
	var p LoginFailure
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if p.Username == "" || p.MaxAttempts < 1 || p.Window <= 0 {
		return nil, fmt.Errorf("%w: login.failure needs username, max_attempts and window", ErrInvalidCommand)
	}
	l, err := t.lockout(p.Username)
	if err != nil {
		return nil, err
	}
	if i := slices.Index(l.Pending, p.Slot); i >= 0 {
		l.Pending = slices.Delete(l.Pending, i, i+1)
	}
	if l.LockedUntil != 0 && l.LockedUntil <= c.Time {
		l.LockedUntil, l.Failures, l.WindowStart = 0, 0, c.Time
	}
	if c.Time-l.WindowStart >= p.Window {
		l.Failures, l.WindowStart = 0, c.Time
	}
	l.Failures++
	res := FailureResult{}
	if l.Failures >= p.MaxAttempts && l.LockedUntil <= c.Time {
		l.LockedUntil = c.Time + p.Window
		res.Locked = true
		ev := AuditAppend{Type: "lockout", Severity: AuditWarning, Subject: CleanAuditText(p.Subject, MaxAuditSubject),
			IP: asciiIP(p.IP), UserAgent: CleanAuditText(p.UserAgent, MaxAuditUserAgent),
			Details: map[string]string{"username": CleanAuditText(p.Username, MaxAuditDetailValue),
				"until": time.Unix(0, l.LockedUntil).UTC().Format(time.RFC3339)}}
		if err := ev.Validate(); err != nil {
			return nil, err
		}
		if err := t.putLockout(p.Username, &l, t.level() >= 3); err != nil {
			return nil, err
		}
		_, err := appendAudit(t, c.Time, ev)
		return res, err
	}
	return res, t.putLockout(p.Username, &l, t.level() >= 3)
}

func (t txn) lockout(name string) (Lockout, error) {
	var l Lockout
	if v := t.tx.Bucket(bucketLockout).Get([]byte(name)); v != nil {
		if err := json.Unmarshal(v, &l); err != nil {
			return l, err
		}
	}
	return l, nil
}

// refresh ends a lock or a window that is over, and drops pending checks
// older than ttl, as of now.
func (l *Lockout) refresh(now, window, ttl int64) {
	if l.LockedUntil != 0 || now-l.WindowStart >= window {
		l.Failures, l.LockedUntil, l.WindowStart = 0, 0, now
	}
	l.Pending = slices.DeleteFunc(l.Pending, func(at int64) bool { return now-at >= ttl })
}

func applyLockoutReset(t txn, c Command) (any, error) {
	var p LockoutReset
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if p.Username == "" {
		return nil, fmt.Errorf("%w: lockout.reset needs a username", ErrInvalidCommand)
	}
	return nil, t.tx.Bucket(bucketLockout).Delete([]byte(p.Username))
}

// Lockout returns a name's failed-attempt state (zero if none).
func (r Reader) Lockout(name string) (Lockout, error) {
	var l Lockout
	v := r.tx.Bucket(bucketLockout).Get([]byte(name))
	if v == nil {
		return l, nil
	}
	return l, json.Unmarshal(v, &l)
}
