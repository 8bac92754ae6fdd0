package api

import (
	"context"
	"net/http"

	"github.com/bulwark-auth/bulwark/authcore"
)

// Incident is what the lockdown routes need from the auth service
// (authcore.Service satisfies it); part of Auth.
type Incident interface {
	Lockdown(ctx context.Context, reason string) (authcore.LockdownState, error)
	ReleaseLockdown(ctx context.Context) (authcore.LockdownState, error)
	LockdownStatus() authcore.LockdownState
	// AdminForbidden counts a refusal on an admin route (detection:
	// repeated ones revoke the account's sessions).
	AdminForbidden(ctx context.Context, p *authcore.Principal, route string) bool
}

// ForensicsFunc preserves evidence once a lockdown has committed (an
// online backup into the forensics directory) and says where.
type ForensicsFunc func(ctx context.Context) (path string, err error)

// AdminForensics sets what a lockdown preserves; without it, nothing.
func AdminForensics(fn ForensicsFunc) AdminOption {
	return func(o *Options) { o.Forensics = fn }
}

type lockdownRequest struct {
	Reason string `json:"reason"`
}

type lockdownAnswer struct {
	authcore.LockdownState
	// Forensics is the backup written for the investigation, if any.
	Forensics string `json:"forensics,omitempty"`
}

// incidentRoutes serve the lockdown on the API (admin, step-up) and the
// admin socket alike.
type incidentRoutes struct {
	auth      Auth
	forensics ForensicsFunc
}

func (h incidentRoutes) lockdown(w http.ResponseWriter, r *http.Request) {
	var req lockdownRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	if req.Reason == "" {
		writeError(w, r, badRequest("a reason is required"))
		return
	}
	st, err := h.auth.Lockdown(r.Context(), req.Reason)
	if err != nil {
		writeError(w, r, err)
		return
	}
	ans := lockdownAnswer{LockdownState: st}
	if h.forensics != nil {
		// The lockdown has committed: the evidence is taken after it,
		// whatever the client does with its connection.
		path, err := h.forensics(context.WithoutCancel(r.Context()))
		if err != nil {
			scopeOf(r).log.Error("lockdown: the forensic backup failed", "error", err)
		}
		ans.Forensics = path
	}
	writeJSON(w, r, http.StatusOK, ans)
}

func (h incidentRoutes) release(w http.ResponseWriter, r *http.Request) {
	st, err := h.auth.ReleaseLockdown(r.Context())
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, st)
}

func (h incidentRoutes) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, r, http.StatusOK, h.auth.LockdownStatus())
}
