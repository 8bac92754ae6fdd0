package api

import (
	"context"
	"net/http"
	"time"
)

// ClusterAdmin is what the cluster routes of the admin socket need
// (cmd/bulwark adapts the node to it). Refusals come back as *Error values:
// 409 conflict (this node does not hold the CA key; the description names
// the node that does), 404 not_found (no such member), 400
// invalid_request (a bad ttl); no leader is 503 no_leader.
type ClusterAdmin interface {
	ClusterStatus(ctx context.Context) (ClusterStatus, error)
	JoinToken(ctx context.Context, ttl string) (JoinToken, error)
	RemoveNode(ctx context.Context, id string) error
	// RenewCertificate renews this node's certificate now.
	RenewCertificate(ctx context.Context) (CertRenewal, error)
}

// CertRenewal answers POST /admin/v1/cluster/renew-cert: the node
// certificate presented from now on.
type CertRenewal struct {
	Serial   string    `json:"serial"` // hexadecimal
	NotAfter time.Time `json:"not_after"`
	Renewed  bool      `json:"renewed"`
}

// ClusterStatus answers GET /admin/v1/cluster: the configuration as the
// answering node knows it, and what each member says of itself.
type ClusterStatus struct {
	Leader string        `json:"leader"` // leader's id, "" when none is known
	Nodes  []ClusterNode `json:"nodes"`
}

// ClusterNode is one member in ClusterStatus.
type ClusterNode struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	Suffrage string `json:"suffrage"` // "voter" or "nonvoter"
	Leader   bool   `json:"leader"`
	Self     bool   `json:"self"` // the node that answered
	// Reachable: the member answered; the fields below are its report.
	Reachable    bool   `json:"reachable"`
	State        string `json:"state,omitempty"` // Leader, Follower, Candidate
	AppliedIndex uint64 `json:"applied_index"`
	Lag          uint64 `json:"lag"`                    // entries behind the leader
	LastContact  string `json:"last_contact,omitempty"` // since it heard from the leader
	CAHolder     bool   `json:"ca_holder"`              // can admit nodes
	// CertNotAfter: when the node certificate it presents expires.
	CertNotAfter *time.Time `json:"cert_not_after,omitempty"`
	Error        string     `json:"error,omitempty"` // why it did not answer
}

// JoinToken answers POST /admin/v1/cluster/join-token.
type JoinToken struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// AdminCluster serves the cluster routes with c:
//
//	GET  /admin/v1/cluster                          → 200 ClusterStatus
//	POST /admin/v1/cluster/join-token {"ttl":"1h"}  → 201 JoinToken (ttl optional)
//	POST /admin/v1/cluster/remove/{id}              → 200 {"removed": id}
//	POST /admin/v1/cluster/renew-cert               → 200 CertRenewal
//
// Without this option they answer 404 not_found.
func AdminCluster(c ClusterAdmin) AdminOption {
	return func(o *Options) {
		o.Cluster = c
	}
}

// adminClusterRoutes registers the cluster routes, served by c.
func adminClusterRoutes(mux *http.ServeMux, c ClusterAdmin) {
	h := clusterHandlers{c: c}
	mux.Handle("GET /admin/v1/cluster", local(h.status))
	mux.Handle("POST /admin/v1/cluster/join-token", local(h.joinToken))
	mux.Handle("POST /admin/v1/cluster/remove/{id}", local(h.remove))
	mux.Handle("POST /admin/v1/cluster/renew-cert", local(h.renewCert))
}

type clusterHandlers struct{ c ClusterAdmin }

func (h clusterHandlers) available(w http.ResponseWriter, r *http.Request) bool {
	if h.c == nil {
		writeError(w, r, &Error{Status: http.StatusNotFound, Code: CodeNotFound,
			Description: "cluster administration is not available on this node"})
		return false
	}
	return true
}

func (h clusterHandlers) status(w http.ResponseWriter, r *http.Request) {
	if !h.available(w, r) {
		return
	}
	st, err := h.c.ClusterStatus(r.Context())
	if err != nil {
		writeError(w, r, err)
		return
	}
	if st.Nodes == nil {
		st.Nodes = []ClusterNode{}
	}
	writeJSON(w, r, http.StatusOK, st)
}

func (h clusterHandlers) joinToken(w http.ResponseWriter, r *http.Request) {
	if !h.available(w, r) {
		return
	}
	var req struct {
		TTL string `json:"ttl"`
	}
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, &req); err != nil {
			writeError(w, r, err)
			return
		}
	}
	tok, err := h.c.JoinToken(r.Context(), req.TTL)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusCreated, tok)
}

func (h clusterHandlers) remove(w http.ResponseWriter, r *http.Request) {
	if !h.available(w, r) {
		return
	}
	id := r.PathValue("id")
	if err := h.c.RemoveNode(r.Context(), id); err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, map[string]string{"removed": id})
}

func (h clusterHandlers) renewCert(w http.ResponseWriter, r *http.Request) {
	if !h.available(w, r) {
		return
	}
	c, err := h.c.RenewCertificate(r.Context())
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, c)
}
