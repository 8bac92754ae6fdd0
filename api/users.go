package api

import (
	"net/http"
	"net/url"

	"github.com/bulwark-auth/bulwark/authcore"
)

// userRoutes serves user administration the same way on the admin socket
// and on /v1/admin/users. {user} in a route is a username or a user id;
// base is where a created user's Location points.
type userRoutes struct {
	users UserAdmin
	base  string
}

type createUserRequest struct {
	Username string   `json:"username"`
	Password string   `json:"password"`
	Email    string   `json:"email"`
	Roles    []string `json:"roles"`
}

func (u userRoutes) create(w http.ResponseWriter, r *http.Request) {
	var req createUserRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	user, err := u.users.CreateUser(r.Context(), authcore.NewUser{
		Username: req.Username, Password: req.Password, Email: req.Email, Roles: req.Roles})
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("Location", u.base+url.PathEscape(user.ID))
	writeJSON(w, r, http.StatusCreated, user)
}

func (u userRoutes) list(w http.ResponseWriter, r *http.Request) {
	us, err := u.users.Users(r.Context())
	if err != nil {
		writeError(w, r, err)
		return
	}
	if us == nil {
		us = []authcore.User{}
	}
	writeJSON(w, r, http.StatusOK, map[string]any{"users": us})
}

func (u userRoutes) get(w http.ResponseWriter, r *http.Request) {
	user, err := u.users.User(r.Context(), r.PathValue("user"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, user)
}

func (u userRoutes) delete(w http.ResponseWriter, r *http.Request) {
	if err := u.users.DeleteUser(r.Context(), r.PathValue("user")); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
