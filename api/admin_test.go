package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/bulwark-auth/bulwark/authcore"
)

// TestAdminRoutes walks every admin route's happy path in order.
func TestAdminRoutes(t *testing.T) {
	logger, _ := newTestLogger(t)
	users := newFakeUsers()
	h := NewAdminHandler(users, nil, func() any { return map[string]any{"leader": "node1", "nodes": 3} }, logger)

	steps := []struct {
		method, path, body string
		status             int
		check              func(t *testing.T, body []byte)
	}{
		{"POST", "/admin/v1/users", `{"username":"Alice","password":"long enough","email":"a@example.com","roles":["admin"]}`, 201,
			func(t *testing.T, b []byte) {
				var u authcore.User
				json.Unmarshal(b, &u)
				if u.Username != "alice" || u.Email != "a@example.com" || fmt.Sprint(u.Roles) != "[admin]" || u.ID == "" {
					t.Errorf("created %+v", u)
				}
				if users.last.Password != "long enough" {
					t.Errorf("password not passed through")
				}
			}},
		{"POST", "/admin/v1/users", `{"username":"bob","password":"long enough"}`, 201, nil},
		{"GET", "/admin/v1/users", "", 200, func(t *testing.T, b []byte) {
			var out struct{ Users []authcore.User }
			json.Unmarshal(b, &out)
			if len(out.Users) != 2 {
				t.Errorf("list: %s", b)
			}
		}},
		{"GET", "/admin/v1/users/alice", "", 200, func(t *testing.T, b []byte) {
			if !strings.Contains(string(b), `"username":"alice"`) || strings.Contains(string(b), "password") {
				t.Errorf("show: %s", b)
			}
		}},
		{"GET", "/admin/v1/users/id-bob", "", 200, nil},
		{"POST", "/admin/v1/users/alice/disable", "", 200, func(t *testing.T, b []byte) {
			if !strings.Contains(string(b), `"disabled":true`) {
				t.Errorf("disable: %s", b)
			}
		}},
		{"POST", "/admin/v1/users/alice/enable", "", 200, func(t *testing.T, b []byte) {
			if !strings.Contains(string(b), `"disabled":false`) {
				t.Errorf("enable: %s", b)
			}
		}},
		{"DELETE", "/admin/v1/users/bob", "", 204, func(t *testing.T, b []byte) {
			if len(b) != 0 {
				t.Errorf("204 with a body: %q", b)
			}
		}},
		{"GET", "/admin/v1/status", "", 200, func(t *testing.T, b []byte) {
			if strings.TrimSpace(string(b)) != `{"leader":"node1","nodes":3}` {
				t.Errorf("status: %s", b)
			}
		}},
	}
	for _, s := range steps {
		ct := ""
		if s.body != "" {
			ct = "application/json"
		}
		rec := do(t, h, s.method, s.path, ct, s.body)
		if rec.Code != s.status {
			t.Errorf("%s %s = %d %s, want %d", s.method, s.path, rec.Code, rec.Body, s.status)
			continue
		}
		checkSecurityHeaders(t, rec.Header())
		if s.status != 204 && rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: Content-Type %q", s.method, s.path, rec.Header().Get("Content-Type"))
		}
		if s.check != nil {
			s.check(t, rec.Body.Bytes())
		}
	}
	if rec := do(t, h, "POST", "/admin/v1/users", "application/json", `{"username":"carol","password":"long enough"}`); rec.Header().Get("Location") != "/admin/v1/users/id-carol" {
		t.Errorf("Location %q", rec.Header().Get("Location"))
	}
}

// TestAdminErrors: the service's errors keep their meaning on the socket.
func TestAdminErrors(t *testing.T) {
	errNoLeader := errors.New("node: no leader")
	tests := []struct {
		name, method, path, body string
		serviceErr               error
		status                   int
		code, desc               string
	}{
		{"duplicate", "POST", "/admin/v1/users", `{"username":"alice","password":"long enough"}`, nil, 409, CodeConflict, "exists"},
		{"weak password", "POST", "/admin/v1/users", `{"username":"bob","password":"short"}`, nil, 400, CodeInvalidRequest, "weak password"},
		{"bad username", "POST", "/admin/v1/users", `{"username":"","password":"long enough"}`, nil, 400, CodeInvalidRequest, "invalid username"},
		{"unknown user", "GET", "/admin/v1/users/nobody", "", nil, 404, CodeNotFound, "no such user"},
		{"disable unknown", "POST", "/admin/v1/users/nobody/disable", "", nil, 404, CodeNotFound, ""},
		{"delete unknown", "DELETE", "/admin/v1/users/nobody", "", nil, 404, CodeNotFound, ""},
		{"no leader", "GET", "/admin/v1/users", "", fmt.Errorf("apply: %w", errNoLeader), 503, CodeNoLeader, "leader"},
		{"internal", "GET", "/admin/v1/users", "", errDiskOnFire, 500, CodeInternal, "internal error"},
		{"wrong method", "PUT", "/admin/v1/users/alice", "", nil, 405, CodeMethodNotAllowed, "PUT"},
		{"unknown route", "GET", "/admin/v2/users", "", nil, 404, CodeNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logger, _ := newTestLogger(t)
			users := newFakeUsers()
			users.users["alice"] = authcore.User{ID: "id-alice", Username: "alice"}
			users.err = tt.serviceErr
			h := NewAdminHandler(users, nil, nil, logger, AdminIsNoLeader(func(err error) bool { return errors.Is(err, errNoLeader) }))
			ct := ""
			if tt.body != "" {
				ct = "application/json"
			}
			rec := do(t, h, tt.method, tt.path, ct, tt.body)
			eb := checkError(t, rec, tt.status, tt.code)
			checkSecurityHeaders(t, rec.Header())
			if !strings.Contains(eb.Description, tt.desc) {
				t.Errorf("description %q, want %q in it", eb.Description, tt.desc)
			}
			if strings.Contains(rec.Body.String(), "disk on fire") {
				t.Error("internals reached the client")
			}
		})
	}
}

func TestAdminStatusDefault(t *testing.T) {
	logger, _ := newTestLogger(t)
	rec := do(t, NewAdminHandler(newFakeUsers(), nil, nil, logger), "GET", "/admin/v1/status", "", "")
	if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != "{}" {
		t.Errorf("status without a status func: %d %s", rec.Code, rec.Body)
	}
}
