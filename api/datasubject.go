package api

import (
	"context"
	"net/http"

	"github.com/bulwark-auth/bulwark/authcore"
)

// DataSubject serves data-subject requests (authcore/datasubject.go):
//
//	GET  /v1/me/export                     → the caller's export (Bearer)
//	GET  /v1/admin/users/{user}/export     → a user's export (admin)
//	POST /v1/admin/users/{user}/erase      → 200 erasure (admin, with a recent second factor)
//	GET  /admin/v1/users/{user}/export     → the same on the admin socket
//	POST /admin/v1/users/{user}/erase
//
// Nil: those routes are 404.
type DataSubject interface {
	ExportUser(ctx context.Context, nameOrID string) (*authcore.UserExport, error)
	ExportMe(ctx context.Context, p *authcore.Principal) (*authcore.UserExport, error)
	EraseUser(ctx context.Context, nameOrID string) (authcore.Erasure, error)
}

// AdminDataSubject serves the export and erase routes on the admin socket.
func AdminDataSubject(d DataSubject) AdminOption {
	return func(o *Options) { o.DataSubject = d }
}

type dataSubjectRoutes struct{ d DataSubject }

func (d dataSubjectRoutes) exportMe(w http.ResponseWriter, r *http.Request, p *authcore.Principal) {
	exp, err := d.d.ExportMe(r.Context(), p)
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Disposition", `attachment; filename="bulwark-export.json"`)
	writeJSON(w, r, http.StatusOK, exp)
}

func (d dataSubjectRoutes) export(w http.ResponseWriter, r *http.Request) {
	exp, err := d.d.ExportUser(r.Context(), r.PathValue("user"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, exp)
}

func (d dataSubjectRoutes) erase(w http.ResponseWriter, r *http.Request) {
	res, err := d.d.EraseUser(r.Context(), r.PathValue("user"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, res)
}

// dataSubjectRoutes registers the API's routes (server.go).
func (a *apiHandlers) dataSubjectRoutes(mux *http.ServeMux) {
	if a.opts.DataSubject == nil {
		return
	}
	d := dataSubjectRoutes{a.opts.DataSubject}
	mux.Handle("GET /v1/me/export", a.bearer(d.exportMe))
	mux.Handle("GET /v1/admin/users/{user}/export", a.admin(anyPrincipal(a.linearizable(d.export))))
	mux.Handle("POST /v1/admin/users/{user}/erase", a.adminWrite(anyPrincipal(d.erase)))
}

// adminDataSubjectRoutes registers the admin socket's routes (admin.go).
func adminDataSubjectRoutes(mux *http.ServeMux, ds DataSubject) {
	if ds == nil {
		return
	}
	d := dataSubjectRoutes{ds}
	mux.Handle("GET /admin/v1/users/{user}/export", local(d.export))
	mux.Handle("POST /admin/v1/users/{user}/erase", local(d.erase))
}
