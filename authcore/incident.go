package authcore

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/bulwark-auth/bulwark/fsm"
)

// LockdownState is the cluster's incident lockdown.
type LockdownState = fsm.LockdownState

// Lockdown ends every session and refresh token cluster-wide and refuses
// new logins until ReleaseLockdown, except administrators who sign in
// with a second factor and clients from IncidentExempt. The entry that
// does it carries a critical audit entry (which the webhooks send).
func (s *Service) Lockdown(ctx context.Context, reason string) (LockdownState, error) {
	if len(reason) > 512 || fsm.CleanAuditText(reason, 512) != reason {
		return LockdownState{}, fmt.Errorf("%w: the reason must be at most 512 printable bytes", ErrInvalidInput)
	}
	if !s.proposable(fsm.TypeLockdown, 1) {
		return LockdownState{}, fmt.Errorf("%w: not every member of the cluster runs a version with lockdown yet", ErrConflict)
	}
	ri := requestInfo(ctx)
	actor := ri.Actor
	if actor == "" {
		actor = "unknown"
	}
	cmd, err := fsm.NewCommand(fsm.TypeLockdown, 1, s.now().UnixNano(), fsm.Lockdown{Reason: reason, Actor: actor})
	if err != nil {
		return LockdownState{}, err
	}
	return applyAs[LockdownState](ctx, s, cmd, fsm.AuditAppend{Type: "incident.lockdown", Severity: fsm.AuditCritical,
		Actor: actor, IP: ri.IP, UserAgent: ri.UserAgent,
		Details: map[string]string{"reason": reason, "sessions": "all revoked"}})
}

// ReleaseLockdown ends a lockdown; the sessions it ended stay ended.
func (s *Service) ReleaseLockdown(ctx context.Context) (LockdownState, error) {
	ri := requestInfo(ctx)
	cmd, err := fsm.NewCommand(fsm.TypeLockdownRelease, 1, s.now().UnixNano(), fsm.Lockdown{Actor: ri.Actor})
	if err != nil {
		return LockdownState{}, err
	}
	return applyAs[LockdownState](ctx, s, cmd, fsm.AuditAppend{Type: "incident.release", Severity: fsm.AuditCritical,
		Actor: ri.Actor, IP: ri.IP, UserAgent: ri.UserAgent})
}

// LockdownStatus reads the lockdown state from the local state.
func (s *Service) LockdownStatus() LockdownState {
	var st LockdownState
	s.store.View(func(r fsm.Reader) error { st = r.Lockdown(); return nil })
	return st
}

// exempt reports whether ri's client is in IncidentExempt.
func (s *Service) exempt(ri RequestInfo) bool {
	ip, err := netip.ParseAddr(ri.IP)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	return slices.ContainsFunc(s.cfg.IncidentExempt, func(p netip.Prefix) bool { return p.Contains(ip) })
}

// lockdownAllows reports whether a session for u, authenticated with
// amr, from ri, may start during a lockdown: an administrator with a
// second factor, or an exempt client.
func (s *Service) lockdownAllows(u *fsm.User, amr []string, ri RequestInfo) bool {
	return s.exempt(ri) || (u.HasRole(RoleAdmin) && secondFactor(amr))
}

// AdminForbidden counts, through the log, a refusal of p on an admin
// route; the RevokeAfterForbidden-th within the incident window revokes
// every session of the account and flags it (a stolen session probing for
// power, or an insider). It reports whether this refusal did.
func (s *Service) AdminForbidden(ctx context.Context, p *Principal, route string) bool {
	max := s.cfg.Incident.RevokeAfterForbidden
	if max <= 0 || !s.proposable(fsm.TypeForbidden, 1) {
		return false
	}
	ri := requestInfo(ctx)
	cmd, err := fsm.NewCommand(fsm.TypeForbidden, 1, s.now().UnixNano(), fsm.Forbidden{UserID: p.UserID, Max: max,
		Window: int64(s.cfg.Incident.Window), Route: fsm.CleanAuditText(route, 128), IP: ri.IP})
	if err != nil {
		return false
	}
	res, err := proposeAs[fsm.ForbiddenResult](ctx, s, cmd)
	if err != nil {
		s.log.Warn("could not count a refusal on an admin route", "user", p.UserID, "error", err)
		return false
	}
	if res.Flagged {
		ev := fsm.AuditAppend{Type: "account.flagged", Severity: fsm.AuditCritical, Subject: p.UserID, IP: ri.IP,
			Details: map[string]string{"username": p.Username, "reason": "repeated 403s on admin routes"}}
		s.logAudit([]fsm.AuditAppend{ev}, nil)
	}
	return res.Flagged
}
