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
