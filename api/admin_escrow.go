package api

import (
	"context"
	"net/http"
	"time"
)

// DataKeyAdmin is what the data-key routes need: escrowing the cluster
// data key to an operator's public key, and issuing its recovery shares
// (cmd/bulwark adapts node.DataKeys to it). Refusals come back as
// *Error values (409 conflict: already escrowed to that key, shares
// already issued, no data key yet; 400 invalid_request: a bad key or
// count).
type DataKeyAdmin interface {
	EscrowDataKey(ctx context.Context, publicKeyPEM string) (DataKeyEscrowed, error)
	IssueRecoveryShares(ctx context.Context, threshold, shares int) (RecoveryShares, error)
}

// DataKeyEscrowed answers POST /admin/v1/datakey/escrow.
type DataKeyEscrowed struct {
	DataKeyFingerprint   string    `json:"data_key_fingerprint"`
	EscrowKeyFingerprint string    `json:"escrow_key_fingerprint"`
	KEM                  string    `json:"kem"`
	CreatedAt            time.Time `json:"created_at"`
}

// RecoveryShares answers POST /admin/v1/datakey/recovery-shares: the shares
// in their printed form, shown this once and never stored.
type RecoveryShares struct {
	DataKeyFingerprint string    `json:"data_key_fingerprint"`
	Threshold          int       `json:"threshold"`
	Total              int       `json:"total"`
	Shares             []string  `json:"shares"`
	IssuedAt           time.Time `json:"issued_at"`
}

// AdminDataKey serves the data-key routes with dk:
//
//	POST /admin/v1/datakey/escrow          {"public_key": armored} → 201 DataKeyEscrowed
//	POST /admin/v1/datakey/recovery-shares {"threshold","shares"}  → 201 RecoveryShares
//
// Without this option they answer 404 not_found.
func AdminDataKey(dk DataKeyAdmin) AdminOption {
	return func(o *Options) {
		o.DataKey = dk
	}
}

// adminDataKeyRoutes registers the data-key routes, served by dk.
func adminDataKeyRoutes(mux *http.ServeMux, dk DataKeyAdmin) {
	h := dataKeyHandlers{dk: dk}
	mux.Handle("POST /admin/v1/datakey/escrow", local(h.escrow))
	mux.Handle("POST /admin/v1/datakey/recovery-shares", local(h.recoveryShares))
}

type dataKeyHandlers struct{ dk DataKeyAdmin }

func (h dataKeyHandlers) available(w http.ResponseWriter, r *http.Request) bool {
	if h.dk == nil {
		writeError(w, r, &Error{Status: http.StatusNotFound, Code: CodeNotFound,
			Description: "data key administration is not available on this node"})
		return false
	}
	return true
}

func (h dataKeyHandlers) escrow(w http.ResponseWriter, r *http.Request) {
	if !h.available(w, r) {
		return
	}
	var req struct {
		PublicKey string `json:"public_key"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	if req.PublicKey == "" {
		writeError(w, r, badRequest("public_key is required: the armored escrow public key"))
		return
	}
	out, err := h.dk.EscrowDataKey(r.Context(), req.PublicKey)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusCreated, out)
}

func (h dataKeyHandlers) recoveryShares(w http.ResponseWriter, r *http.Request) {
	if !h.available(w, r) {
		return
	}
	var req struct {
		Threshold int `json:"threshold"`
		Shares    int `json:"shares"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	out, err := h.dk.IssueRecoveryShares(r.Context(), req.Threshold, req.Shares)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusCreated, out)
}
