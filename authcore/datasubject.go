package authcore

// Data-subject requests (GDPR articles 15 and 17): an export of every
// record held about a user, without secrets, and their erasure. The
// records come from the state in one read (fsm.Reader.SubjectRecords);
// the erase is the replicated user.erase (fsm/erase.go), after which each
// node compacts its files (node/erase.go).

import (
	"context"
	"fmt"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
)

// UserExport is everything the cluster holds about one user. Secrets are
// left out: the password hash, refresh tokens' hashes, TOTP secrets,
// WebAuthn credentials' sealed data, recovery codes' hashes, the hash of
// authorization codes and the PKCE challenge.
type UserExport struct {
	ExportedAt time.Time       `json:"exported_at"`
	User       User            `json:"user"`
	Sessions   []ExportSession `json:"sessions"`
	// RefreshTokens lists each session's refresh tokens, current or
	// already exchanged, by their session.
	RefreshTokens []fsm.RefreshMeta `json:"refresh_tokens"`
	MFA           ExportMFA         `json:"mfa"`
	// Lockouts are the failed-attempt counters kept under the user's
	// name (failed passwords) and under "mfa <id>" (failed second factors).
	Lockouts []ExportLockout `json:"lockouts"`
	// AdminRefusals counts refused admin-route requests in its window.
	AdminRefusals *fsm.ForbiddenCount `json:"admin_refusals,omitempty"`
	OIDCRequests  []ExportOIDCRequest `json:"oidc_requests"`
	OIDCCodes     []ExportOIDCCode    `json:"oidc_codes"`
	// OIDCGrants are the consents the user gave clients (GET /v1/me/grants).
	OIDCGrants []*fsm.OIDCGrant `json:"oidc_grants"`
	Audit      []AuditEntry     `json:"audit"`
}

// ExportSession is a session without its refresh token's hash.
type ExportSession struct {
	ID         string    `json:"id"`
	CreatedAt  time.Time `json:"created_at"`
	LastSeenAt time.Time `json:"last_seen_at"`
	AuthTime   time.Time `json:"auth_time"`
	ExpiresAt  time.Time `json:"expires_at"`
	IP         string    `json:"ip,omitempty"`
	UserAgent  string    `json:"user_agent,omitempty"`
	AMR        []string  `json:"amr,omitempty"`
	ClientID   string    `json:"client_id,omitempty"`
	Scopes     []string  `json:"scopes,omitempty"`
}

// ExportMFA describes the second factors, never their secrets.
type ExportMFA struct {
	TOTP              *ExportTOTP     `json:"totp,omitempty"`
	PendingTOTP       *ExportTOTP     `json:"pending_totp,omitempty"`
	Passkeys          []ExportPasskey `json:"passkeys"`
	RecoveryCodesLeft int             `json:"recovery_codes_left"`
}

// ExportTOTP says a TOTP secret is enrolled, and since when.
type ExportTOTP struct {
	Enrolled  bool      `json:"enrolled"`
	CreatedAt time.Time `json:"created_at"`
}

// ExportPasskey is a WebAuthn credential without its key material.
type ExportPasskey struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	SignCount  uint32     `json:"sign_count"`
}

// ExportLockout is a failed-attempt counter.
type ExportLockout struct {
	Name        string     `json:"name"`
	Failures    int        `json:"failures"`
	WindowStart time.Time  `json:"window_start"`
	LockedUntil *time.Time `json:"locked_until,omitempty"`
	Pending     int        `json:"pending_checks"`
}

// ExportOIDCRequest is an authorization request the user signed in to.
type ExportOIDCRequest struct {
	ID          string    `json:"id"`
	ClientID    string    `json:"client_id"`
	RedirectURI string    `json:"redirect_uri"`
	Scopes      []string  `json:"scopes"`
	AuthTime    time.Time `json:"auth_time,omitzero"`
	AMR         []string  `json:"amr,omitempty"`
	ExpiresAt   time.Time `json:"expires_at"`
}

// ExportOIDCCode is an authorization code issued to the user, without
// the code's hash.
type ExportOIDCCode struct {
	RequestID string    `json:"request_id"`
	ClientID  string    `json:"client_id"`
	ExpiresAt time.Time `json:"expires_at"`
	SessionID string    `json:"session_id,omitempty"`
}

// Erasure is what an erase did.
type Erasure struct {
	// Pseudonym replaces the name and email in the audit trail.
	Pseudonym string `json:"pseudonym"`
	// AuditSeq is the seq of the erase's own audit entry.
	AuditSeq     uint64 `json:"audit_seq"`
	Sessions     int    `json:"sessions"`
	Records      int    `json:"records"`
	AuditEntries int    `json:"audit_entries"`
}

// ErrErasureUnavailable: the cluster is below feature level 5, where
// user.erase is; it is an ErrConflict (409).
var ErrErasureUnavailable = fmt.Errorf("%w: erasure needs cluster feature level 5: upgrade every member first", ErrConflict)

// ExportUser returns everything held about the user with that name or id
// (the admin's export).
func (s *Service) ExportUser(ctx context.Context, nameOrID string) (*UserExport, error) {
	u, err := s.find(nameOrID)
	if err != nil {
		return nil, err
	}
	return s.export(ctx, u.ID)
}

// ExportMe returns everything held about the caller (GET /v1/me/export).
func (s *Service) ExportMe(ctx context.Context, p *Principal) (*UserExport, error) {
	return s.export(ctx, p.UserID)
}

func (s *Service) export(ctx context.Context, id string) (*UserExport, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var recs *fsm.SubjectRecords
	if err := s.store.View(func(r fsm.Reader) error {
		var err error
		recs, err = r.SubjectRecords(id)
		return err
	}); err != nil {
		return nil, err
	}
	out := &UserExport{ExportedAt: s.now().UTC(), User: publicUser(recs.User),
		Sessions: []ExportSession{}, RefreshTokens: []fsm.RefreshMeta{}, Lockouts: []ExportLockout{},
		OIDCRequests: []ExportOIDCRequest{}, OIDCCodes: []ExportOIDCCode{}, OIDCGrants: []*fsm.OIDCGrant{}, Audit: []AuditEntry{},
		MFA: ExportMFA{Passkeys: []ExportPasskey{}}, AdminRefusals: recs.Forbidden}
	for _, x := range recs.Sessions {
		out.Sessions = append(out.Sessions, ExportSession{ID: x.ID, CreatedAt: x.CreatedAt, LastSeenAt: x.LastSeenAt,
			AuthTime: x.AuthTime, ExpiresAt: x.ExpiresAt, IP: x.IP, UserAgent: x.UserAgent, AMR: x.AMR,
			ClientID: x.ClientID, Scopes: x.Scopes})
	}
	out.RefreshTokens = append(out.RefreshTokens, recs.Refresh...)
	if m := recs.MFA; m != nil {
		if m.TOTP != nil {
			out.MFA.TOTP = &ExportTOTP{Enrolled: true, CreatedAt: m.TOTP.CreatedAt}
		}
		if m.PendingTOTP != nil {
			out.MFA.PendingTOTP = &ExportTOTP{CreatedAt: m.PendingTOTP.CreatedAt}
		}
		for _, c := range m.WebAuthn {
			out.MFA.Passkeys = append(out.MFA.Passkeys, ExportPasskey{ID: c.ID, Name: c.Name, CreatedAt: c.CreatedAt,
				LastUsedAt: c.LastUsedAt, SignCount: c.SignCount})
		}
		out.MFA.RecoveryCodesLeft = len(m.Recovery)
	}
	for _, l := range recs.Lockouts {
		e := ExportLockout{Name: l.Name, Failures: l.Lockout.Failures, WindowStart: time.Unix(0, l.Lockout.WindowStart).UTC(),
			Pending: len(l.Lockout.Pending)}
		if l.Lockout.LockedUntil != 0 {
			until := time.Unix(0, l.Lockout.LockedUntil).UTC()
			e.LockedUntil = &until
		}
		out.Lockouts = append(out.Lockouts, e)
	}
	for _, r := range recs.Requests {
		out.OIDCRequests = append(out.OIDCRequests, ExportOIDCRequest{ID: r.ID, ClientID: r.ClientID, RedirectURI: r.RedirectURI,
			Scopes: r.Scopes, AuthTime: r.AuthTime, AMR: r.AMR, ExpiresAt: r.ExpiresAt})
	}
	for _, c := range recs.Codes {
		out.OIDCCodes = append(out.OIDCCodes, ExportOIDCCode{RequestID: c.RequestID, ClientID: c.ClientID,
			ExpiresAt: c.ExpiresAt, SessionID: c.SessionID})
	}
	out.OIDCGrants = append(out.OIDCGrants, recs.Grants...)
	for _, e := range recs.Audit {
		out.Audit = append(out.Audit, *e)
	}
	return out, nil
}

// EraseUser erases the user with that name or id: user.erase deletes
// them and everything keyed by them, and pseudonymises the audit entries
// that name them (fsm/erase.go). The command carries the id alone, so the
// log entry that erases holds no name. Every node then compacts its
// files; raft.db is rewritten at each node's next start (node/erase.go).
func (s *Service) EraseUser(ctx context.Context, nameOrID string) (Erasure, error) {
	if !s.proposable(fsm.TypeUserErase, 1) {
		return Erasure{}, ErrErasureUnavailable
	}
	u, err := s.find(nameOrID)
	if err != nil {
		return Erasure{}, err
	}
	ri := requestInfo(ctx)
	actor := ri.Actor
	if actor == "" {
		actor = "unknown"
	}
	cmd, err := fsm.NewCommand(fsm.TypeUserErase, 1, s.now().UnixNano(),
		fsm.UserErase{ID: u.ID, Actor: actor, IP: ri.IP, UserAgent: ri.UserAgent})
	if err != nil {
		return Erasure{}, err
	}
	res, err := proposeAs[fsm.EraseResult](ctx, s, cmd)
	if err != nil {
		return Erasure{}, err
	}
	return Erasure{Pseudonym: res.Pseudonym, AuditSeq: res.Seq, Sessions: res.Sessions, Records: res.Records,
		AuditEntries: res.AuditEntries}, nil
}
