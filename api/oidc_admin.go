package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/bulwark-auth/bulwark/authcore"
)

// ClientAdmin is what the admin socket's client routes need
// (authcore.Service satisfies it).
type ClientAdmin interface {
	CreateClient(ctx context.Context, req authcore.NewClient) (authcore.OIDCClient, string, error)
	Clients(ctx context.Context) ([]authcore.OIDCClient, error)
	DeleteClient(ctx context.Context, name string) error
}

// AdminClients serves the client routes of the admin socket:
//
//	POST   /admin/v1/clients        {"name","redirect_uris","public","id_token_alg","consent_required"} → 201 {"client_id","client_secret",…}
//	GET    /admin/v1/clients        → {"clients":[…]}
//	DELETE /admin/v1/clients/{name} → 204
//
// The secret is in the answer to POST only: the state keeps a MAC of it.
func AdminClients(c ClientAdmin) AdminOption { return func(o *Options) { o.Clients = c } }

type createClientRequest struct {
	Name         string   `json:"name"`
	RedirectURIs []string `json:"redirect_uris"`
	Public       bool     `json:"public"`
	// IDTokenAlg: ES256 (the default), EdDSA or RS256.
	IDTokenAlg string `json:"id_token_alg"`
	// ConsentRequired: users are asked once per scopes (a third-party
	// client).
	ConsentRequired bool `json:"consent_required"`
}

type createdClient struct {
	authcore.OIDCClient
	Secret string `json:"client_secret,omitempty"`
}

func adminClientRoutes(mux *http.ServeMux, c ClientAdmin) {
	if c == nil {
		return
	}
	mux.Handle("POST /admin/v1/clients", local(func(w http.ResponseWriter, r *http.Request) {
		var req createClientRequest
		if err := decodeJSON(w, r, &req); err != nil {
			writeError(w, r, err)
			return
		}
		cl, secret, err := c.CreateClient(r.Context(), authcore.NewClient{Name: req.Name, RedirectURIs: req.RedirectURIs,
			Public: req.Public, IDTokenAlg: req.IDTokenAlg, ConsentRequired: req.ConsentRequired})
		if errors.Is(err, authcore.ErrClientExists) {
			err = &Error{Status: http.StatusConflict, Code: CodeConflict, Description: "a client with that name already exists"}
		}
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, r, http.StatusCreated, createdClient{OIDCClient: cl, Secret: secret})
	}))
	mux.Handle("GET /admin/v1/clients", local(func(w http.ResponseWriter, r *http.Request) {
		cs, err := c.Clients(r.Context())
		if err != nil {
			writeError(w, r, err)
			return
		}
		if cs == nil {
			cs = []authcore.OIDCClient{}
		}
		writeJSON(w, r, http.StatusOK, map[string]any{"clients": cs})
	}))
	mux.Handle("DELETE /admin/v1/clients/{name}", local(func(w http.ResponseWriter, r *http.Request) {
		err := c.DeleteClient(r.Context(), r.PathValue("name"))
		if errors.Is(err, authcore.ErrNotFound) {
			err = &Error{Status: http.StatusNotFound, Code: CodeNotFound, Description: "no such client"}
		}
		if err != nil {
			writeError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
}
