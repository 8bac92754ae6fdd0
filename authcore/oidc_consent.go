package authcore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
)

// Consent. A client registered as requiring consent (a third-party
// application, Keycloak's "consent required") gets a code only once the
// user allowed it the request's scopes; the grant is recorded through
// Raft and asked for again when a request wants a scope it lacks, when
// the request says prompt=consent, or after the user revoked it.
// First-party clients (the default) skip the step. oidc.authorize v2
// checks the grant again in Apply, so no path to a code skips it.

// ErrConsentRequired: the user must consent before the client gets a code.
var ErrConsentRequired = errors.New("the user has not allowed this application these scopes")

// consentAfter is when a grant must have been given to count for req:
// with prompt=consent, during this request (from its start; now for one
// not stored yet); otherwise at any time.
func consentAfter(req AuthorizationRequest, now time.Time) time.Time {
	if !slices.Contains(req.Prompt, "consent") {
		return time.Time{}
	}
	if req.ExpiresAt.IsZero() {
		return now.UTC()
	}
	return req.ExpiresAt.Add(-AuthRequestTTL).UTC()
}

// ConsentNeeded reports whether p must consent before req's client gets a
// code: the client requires consent and p's grant does not cover req.
func (s *Service) ConsentNeeded(p *Principal, req AuthorizationRequest) (bool, error) {
	need := false
	err := s.store.View(func(r fsm.Reader) error {
		c, err := r.OIDCClient(req.ClientID)
		if err != nil {
			return err
		}
		if !c.ConsentRequired {
			return nil
		}
		g, err := r.OIDCGrant(p.UserID, req.ClientID)
		need = err != nil || !g.Covers(c, req.Scopes) || g.UpdatedAt.Before(consentAfter(req, s.now()))
		return nil
	})
	if errors.Is(err, fsm.ErrClientNotFound) {
		return false, ErrNotFound
	}
	return need, err
}

// GrantConsent records that p allows req's client req's scopes (added to
// what p allowed it before).
func (s *Service) GrantConsent(ctx context.Context, p *Principal, req AuthorizationRequest) error {
	if !s.proposable(fsm.TypeOIDCConsentGrant, 1) {
		return fmt.Errorf("%w: consent needs cluster feature level 5", ErrConflict)
	}
	cmd, err := fsm.NewCommand(fsm.TypeOIDCConsentGrant, 1, s.now().UnixNano(),
		fsm.OIDCConsentGrant{UserID: p.UserID, ClientID: req.ClientID, Scopes: req.Scopes})
	if err != nil {
		return err
	}
	ri := requestInfo(ctx)
	_, err = s.apply(ctx, cmd, fsm.AuditAppend{Type: "oidc.consent", Severity: fsm.AuditInfo, Actor: p.UserID, Subject: p.UserID,
		IP: ri.IP, UserAgent: ri.UserAgent, Details: map[string]string{"client_id": req.ClientID,
			"scope": fsm.CleanAuditText(strings.Join(req.Scopes, " "), 256)}})
	if errors.Is(err, fsm.ErrClientNotFound) || errors.Is(err, fsm.ErrUserNotFound) {
		return ErrNotFound
	}
	return err
}

// Grant is a consent the user gave, as the user sees it.
type Grant struct {
	ClientID  string    `json:"client_id"`
	Scopes    []string  `json:"scopes"`
	GrantedAt time.Time `json:"granted_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Grants lists p's consents to clients still registered as they were
// given to.
func (s *Service) Grants(ctx context.Context, p *Principal) ([]Grant, error) {
	out := []Grant{}
	err := s.store.View(func(r fsm.Reader) error {
		return r.OIDCGrants(p.UserID, func(g *fsm.OIDCGrant) {
			if c, err := r.OIDCClient(g.ClientID); err == nil && g.Covers(c, nil) {
				out = append(out, Grant{ClientID: g.ClientID, Scopes: slices.Clone(g.Scopes), GrantedAt: g.GrantedAt, UpdatedAt: g.UpdatedAt})
			}
		})
	})
	return out, err
}

// RevokeGrant withdraws p's consent to clientID and ends the sessions
// (refresh tokens) that client holds for p; it returns how many.
// ErrNotFound: no such grant.
func (s *Service) RevokeGrant(ctx context.Context, p *Principal, clientID string) (int, error) {
	if !validClientName(clientID) {
		return 0, ErrNotFound
	}
	if !s.proposable(fsm.TypeOIDCConsentRevoke, 1) {
		return 0, ErrNotFound // no grant can exist below level 5
	}
	cmd, err := fsm.NewCommand(fsm.TypeOIDCConsentRevoke, 1, s.now().UnixNano(),
		fsm.OIDCConsentRevoke{UserID: p.UserID, ClientID: clientID})
	if err != nil {
		return 0, err
	}
	ri := requestInfo(ctx)
	res, err := s.apply(ctx, cmd, fsm.AuditAppend{Type: "oidc.consent_revoke", Severity: fsm.AuditInfo, Actor: p.UserID, Subject: p.UserID,
		IP: ri.IP, UserAgent: ri.UserAgent, Details: map[string]string{"client_id": clientID}})
	if errors.Is(err, fsm.ErrGrantNotFound) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, err
	}
	n, _ := res.(int)
	if n > 0 {
		s.log.Info("consent revoked", "user", p.UserID, "client_id", clientID, "sessions_ended", n)
	}
	return n, nil
}

// DenyConsent records in the audit trail that p refused req's client
// req's scopes. Nothing else changes; an error means the refusal was not
// recorded (the caller does not answer as if it were).
func (s *Service) DenyConsent(ctx context.Context, p *Principal, req AuthorizationRequest) error {
	ri := requestInfo(ctx)
	return s.audit(ctx, fsm.AuditAppend{Type: "oidc.consent_denied", Severity: fsm.AuditInfo, Actor: p.UserID, Subject: p.UserID,
		IP: ri.IP, UserAgent: ri.UserAgent, Details: map[string]string{"client_id": fsm.CleanAuditText(req.ClientID, 64),
			"scope": fsm.CleanAuditText(strings.Join(req.Scopes, " "), 256)}})
}

// RevokedGrants is what revoking all of a user's consents did.
type RevokedGrants struct {
	ClientIDs []string // the clients whose grants were withdrawn
	Sessions  int      // the sessions those clients held for the user, ended
}

// RevokeAllGrants withdraws every consent p gave, in one replicated
// command (all or none), and ends the sessions those clients hold for p;
// it returns the clients and how many sessions ended. Below feature level
// 5 no grant can exist: nothing to do.
func (s *Service) RevokeAllGrants(ctx context.Context, p *Principal) (RevokedGrants, error) {
	if !s.proposable(fsm.TypeOIDCConsentRevokeAll, 1) {
		return RevokedGrants{ClientIDs: []string{}}, nil
	}
	var listed []string // for the audit entry: the grants as read now
	if err := s.store.View(func(r fsm.Reader) error {
		return r.OIDCGrants(p.UserID, func(g *fsm.OIDCGrant) { listed = append(listed, g.ClientID) })
	}); err != nil {
		return RevokedGrants{}, err
	}
	cmd, err := fsm.NewCommand(fsm.TypeOIDCConsentRevokeAll, 1, s.now().UnixNano(), fsm.OIDCConsentRevokeAll{UserID: p.UserID})
	if err != nil {
		return RevokedGrants{}, err
	}
	ri := requestInfo(ctx)
	out, err := applyAs[fsm.OIDCRevokedGrants](ctx, s, cmd, fsm.AuditAppend{Type: "oidc.consent_revoke_all", Severity: fsm.AuditInfo,
		Actor: p.UserID, Subject: p.UserID, IP: ri.IP, UserAgent: ri.UserAgent,
		Details: map[string]string{"client_ids": fsm.CleanAuditText(strings.Join(listed, " "), 512)}})
	if err != nil {
		return RevokedGrants{}, err
	}
	if len(out.ClientIDs) > 0 {
		s.log.Info("consents revoked", "user", p.UserID, "client_ids", strings.Join(out.ClientIDs, " "), "sessions_ended", out.Sessions)
	}
	return RevokedGrants(out), nil
}
