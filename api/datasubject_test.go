package api

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/bulwark-auth/bulwark/authcore"
)

// fakeDataSubject records what it was asked.
type fakeDataSubject struct{ exported, erased []string }

func (f *fakeDataSubject) ExportUser(_ context.Context, nameOrID string) (*authcore.UserExport, error) {
	if nameOrID == "nobody" {
		return nil, authcore.ErrUserNotFound
	}
	f.exported = append(f.exported, nameOrID)
	return &authcore.UserExport{User: authcore.User{ID: "id-" + nameOrID, Username: nameOrID}}, nil
}

func (f *fakeDataSubject) ExportMe(_ context.Context, p *authcore.Principal) (*authcore.UserExport, error) {
	f.exported = append(f.exported, "me:"+p.UserID)
	return &authcore.UserExport{User: authcore.User{ID: p.UserID}}, nil
}

func (f *fakeDataSubject) EraseUser(_ context.Context, nameOrID string) (authcore.Erasure, error) {
	if nameOrID == "nobody" {
		return authcore.Erasure{}, authcore.ErrUserNotFound
	}
	if nameOrID == "old" {
		return authcore.Erasure{}, authcore.ErrErasureUnavailable
	}
	f.erased = append(f.erased, nameOrID)
	return authcore.Erasure{Pseudonym: "erased:id-" + nameOrID, AuditEntries: 3}, nil
}

// The export and erase routes: the caller's own export, the admin's for
// anyone, erase for admins only; unknown users 404, a cluster below level
// 5 409; without a DataSubject the routes do not exist.
func TestDataSubjectRoutes(t *testing.T) {
	ds := &fakeDataSubject{}
	env := newAuthEnv(t, Options{DataSubject: ds})
	rec := send(t, env.h, "GET", "/v1/me/export", "", bearerOf("bob-token"))
	var exp authcore.UserExport
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &exp) != nil || exp.User.ID != "id-bob" {
		t.Fatalf("GET /v1/me/export: %d %s", rec.Code, rec.Body)
	}
	checkError(t, send(t, env.h, "GET", "/v1/me/export", ""), 401, CodeInvalidToken)
	checkError(t, send(t, env.h, "GET", "/v1/admin/users/erin/export", "", bearerOf("bob-token")), 403, CodeForbidden)
	checkError(t, send(t, env.h, "POST", "/v1/admin/users/erin/erase", "", bearerOf("bob-token")), 403, CodeForbidden)
	if len(ds.erased) != 0 || len(ds.exported) != 1 {
		t.Fatalf("a refused request reached the service: %v %v", ds.exported, ds.erased)
	}
	if rec := send(t, env.h, "GET", "/v1/admin/users/erin/export", "", bearerOf("alice-token")); rec.Code != 200 || env.users.barriers != 1 {
		t.Fatalf("admin export: %d %s, %d barriers", rec.Code, rec.Body, env.users.barriers)
	}
	rec = send(t, env.h, "POST", "/v1/admin/users/erin/erase", "", bearerOf("alice-token"))
	var er authcore.Erasure
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &er) != nil || er.Pseudonym != "erased:id-erin" {
		t.Fatalf("erase: %d %s", rec.Code, rec.Body)
	}
	checkError(t, send(t, env.h, "POST", "/v1/admin/users/nobody/erase", "", bearerOf("alice-token")), 404, CodeNotFound)
	checkError(t, send(t, env.h, "POST", "/v1/admin/users/old/erase", "", bearerOf("alice-token")), 409, CodeConflict)
	checkError(t, send(t, env.h, "GET", "/v1/admin/users/nobody/export", "", bearerOf("alice-token")), 404, CodeNotFound)

	bare := newAuthEnv(t, Options{})
	checkError(t, send(t, bare.h, "GET", "/v1/me/export", "", bearerOf("bob-token")), 404, CodeNotFound)
}
