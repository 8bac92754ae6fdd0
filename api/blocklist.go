package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/bulwark-auth/bulwark/authcore"
)

// Blocklist is what the blocked-address check and the blocklist routes
// need from the auth service (authcore.Service satisfies it).
type Blocklist interface {
	// Blocked reports whether a client at a is blocked, and for how long
	// yet. Called for every request: it must be cheap.
	Blocked(a netip.Addr) (time.Duration, bool)
	Blocks(ctx context.Context) ([]authcore.Block, error)
	AddBlock(ctx context.Context, cidr string, d time.Duration, reason string) (authcore.Block, error)
	RemoveBlock(ctx context.Context, cidr string) error
}

// CodeAddressBlocked answers a client whose address is blocked (403, with
// Retry-After).
const CodeAddressBlocked = "address_blocked"

// unblockable are the routes a blocked address still reaches: the health
// probes, which load balancers send from addresses of their own.
var unblockable = map[string]bool{"/healthz": true, "/readyz": true}

// refuseBlocked answers a request from a blocked client address and
// reports whether it did.
func (m *middleware) refuseBlocked(w http.ResponseWriter, r *http.Request) bool {
	if m.blocks == nil || unblockable[r.URL.Path] {
		return false
	}
	left, blocked := m.blocks.Blocked(clientIP(r, m.trusted))
	if !blocked {
		return false
	}
	writeError(w, r, &Error{Status: http.StatusForbidden, Code: CodeAddressBlocked,
		Description: "requests from this address are blocked; try again later", RetryAfter: left})
	return true
}

// blocklistRoutes serve the blocklist the same way on the admin socket and
// on /v1/admin/blocklist.
type blocklistRoutes struct{ b Blocklist }

type addBlockRequest struct {
	CIDR   string `json:"cidr"`
	For    string `json:"for"` // "1h", "30m", "7d"; empty: [incident] block_for
	Reason string `json:"reason"`
}

func (br blocklistRoutes) list(w http.ResponseWriter, r *http.Request) {
	bs, err := br.b.Blocks(r.Context())
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, map[string]any{"blocks": bs})
}

func (br blocklistRoutes) add(w http.ResponseWriter, r *http.Request) {
	var req addBlockRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	var d time.Duration
	if req.For != "" {
		var err error
		if d, err = parseBlockFor(req.For); err != nil {
			writeError(w, r, &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Description: err.Error()})
			return
		}
	}
	b, err := br.b.AddBlock(r.Context(), req.CIDR, d, req.Reason)
	if err != nil {
		writeError(w, r, blockError(err))
		return
	}
	writeJSON(w, r, http.StatusCreated, b)
}

func (br blocklistRoutes) remove(w http.ResponseWriter, r *http.Request) {
	if err := br.b.RemoveBlock(r.Context(), r.PathValue("cidr")); err != nil {
		writeError(w, r, blockError(err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// blockError maps the blocklist's own errors; the rest are writeError's.
func blockError(err error) error {
	switch {
	case errors.Is(err, authcore.ErrBlockNotFound):
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Description: "no live block of that exact range"}
	case errors.Is(err, authcore.ErrBlocksUnavailable):
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Description: err.Error()}
	}
	return err
}

// parseBlockFor reads a block's duration: Go syntax ("90m", "1h30m") or
// whole days ("7d").
func parseBlockFor(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if days, err := strconv.Atoi(n); err == nil && days > 0 && days <= 366 {
			return time.Duration(days) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("for: %q is not a positive duration such as \"1h\", \"30m\" or \"7d\"", s)
	}
	return d, nil
}

// adminBlocklistRoutes registers the admin socket's blocklist routes; b
// nil leaves them 404.
func adminBlocklistRoutes(mux *http.ServeMux, b Blocklist) {
	if b == nil {
		return
	}
	br := blocklistRoutes{b}
	mux.Handle("GET /admin/v1/blocklist", local(br.list))
	mux.Handle("POST /admin/v1/blocklist", local(br.add))
	mux.Handle("DELETE /admin/v1/blocklist/{cidr...}", local(br.remove))
}

// AdminBlocklist serves the blocklist routes on the admin socket.
func AdminBlocklist(b Blocklist) AdminOption {
	return func(o *Options) { o.Blocklist = b }
}
