package fsm

import (
	"encoding/json"
	"fmt"
	"reflect"
	"time"
)

// Repeated 403s on admin routes (level 4): the hardening checklist's
// "unauthorised access attempts" rule. incident.forbidden counts, per
// account and through the log (so a probe spread over nodes counts as
// one), the admin-route refusals of a signed-in user; the Max-th within
// Window revokes every session of the account and flags it, in the same
// entry, with a critical audit entry. The count starts again afterwards.
const TypeForbidden Type = "incident.forbidden"

// Forbidden is incident.forbidden v1.
type Forbidden struct {
	UserID string `json:"user_id"`
	Max    int    `json:"max"`
	Window int64  `json:"window"` // nanoseconds
	Route  string `json:"route,omitempty"`
	IP     string `json:"ip,omitempty"`
}

// ForbiddenResult answers incident.forbidden: whether this refusal
// flagged the account, and how many sessions it revoked.
type ForbiddenResult struct {
	Flagged bool `json:"flagged,omitempty"`
	Revoked int  `json:"revoked,omitempty"`
}

// forbiddenRecord is an account's count (bucketForbidden).
type forbiddenRecord struct {
	Count       int   `json:"count"`
	WindowStart int64 `json:"window_start"`
	Window      int64 `json:"window"`
}

// TypeUserUnflag clears an account's flag (level 5): an administrator has
// looked at what flagged it. Its result is the user afterwards; the flag
// already clear changes nothing.
const TypeUserUnflag Type = "user.unflag"

// UserUnflag is user.unflag v1.
type UserUnflag struct {
	ID string `json:"id"`
}

var forbiddenCommands = []CommandSpec{
	{Type: TypeForbidden, Version: 1, Level: 4, Apply: applyForbidden, Result: reflect.TypeFor[ForbiddenResult]()},
	{Type: TypeUserUnflag, Version: 1, Level: 5, Apply: applyUserUnflag, Result: reflect.TypeFor[*User]()},
}

func applyUserUnflag(t txn, c Command) (any, error) {
	var p UserUnflag
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	u, err := getUser(t.tx, p.ID)
	if err != nil || !u.Flagged {
		return u, err
	}
	u.Flagged, u.UpdatedAt = false, time.Unix(0, c.Time).UTC()
	return u, t.putUser(u)
}

func applyForbidden(t txn, c Command) (any, error) {
	var p Forbidden
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if !validID(p.UserID) || p.Max < 1 || p.Max > 1000 || p.Window <= 0 || p.Window > maxLockoutWindow || !validIP(p.IP) {
		return nil, fmt.Errorf("%w: incident.forbidden needs user_id, max 1..1000 and a window", ErrInvalidCommand)
	}
	u, err := getUser(t.tx, p.UserID)
	if err != nil {
		return nil, err
	}
	b := t.tx.Bucket(bucketForbidden)
	var r forbiddenRecord
	if v := b.Get([]byte(p.UserID)); v != nil {
		if err := json.Unmarshal(v, &r); err != nil {
			return nil, err
		}
	}
	if c.Time-r.WindowStart >= p.Window {
		r = forbiddenRecord{WindowStart: c.Time, Window: p.Window}
	}
	r.Count++
	if r.Count < p.Max {
		if err := t.index(r.WindowStart+p.Window, expiryForbidden, p.UserID); err != nil {
			return nil, err
		}
		return ForbiddenResult{}, t.putJSON(bucketForbidden, p.UserID, r)
	}
	n, err := t.revokeUserSessions(u.ID, "")
	if err != nil {
		return nil, err
	}
	u.Flagged, u.UpdatedAt = true, time.Unix(0, c.Time).UTC()
	if err := t.putUser(u); err != nil {
		return nil, err
	}
	if err := b.Delete([]byte(p.UserID)); err != nil {
		return nil, err
	}
	ev := AuditAppend{Type: "account.flagged", Severity: AuditCritical, Subject: u.ID, IP: asciiIP(p.IP),
		Details: map[string]string{"username": CleanAuditText(u.Username, MaxAuditDetailValue), "reason": "repeated 403s on admin routes",
			"route": CleanAuditText(p.Route, MaxAuditDetailValue), "sessions": fmt.Sprint(n)}}
	if _, err := appendAudit(t, c.Time, ev); err != nil {
		return nil, err
	}
	return ForbiddenResult{Flagged: true, Revoked: n}, nil
}
