package fsm

import (
	"errors"
	"testing"
	"time"
)

func userOf(t *testing.T, a *applier, id string) *User {
	t.Helper()
	return viewValue(t, a.s, func(r Reader) (*User, error) { return r.UserByID(id) })
}

// session.create v2 and user.set_password v2 re-check, in Apply, the
// password generation their proposer checked: nothing decided on a
// password survives its change, and a rehash keeps the generation.
func TestPasswordGenerationRechecked(t *testing.T) {
	a := setupUser(t)
	base := SessionCreate{UserID: "u1", Lifetime: int64(time.Hour), MaxPerUser: 10, OnLimit: "evict_oldest"}
	create := func(sid string, gen *uint64, rehash string) Result {
		p := base
		p.ID, p.RefreshHash = sid, hashOf("refresh "+sid)
		return a.applyVersion(TypeSessionCreate, 2, t0, SessionCreateV2{SessionCreate: p, PasswordGen: gen, Rehash: rehash})
	}
	zero, one := uint64(0), uint64(1)
	if r := create("s1", &zero, "h2"); r.Err != nil {
		t.Fatal(r.Err)
	}
	if u := userOf(t, a, "u1"); u.PasswordHash != "h2" || u.PasswordGen != 0 {
		t.Fatalf("after a rehash: %q generation %d, want h2 and 0", u.PasswordHash, u.PasswordGen)
	}
	if r := create("s2", &one, ""); !errors.Is(r.Err, ErrCredentialChanged) {
		t.Fatalf("a session from a generation the user never had: %v", r.Err)
	}
	if r := create("s3", nil, "h3"); !errors.Is(r.Err, ErrInvalidCommand) {
		t.Fatalf("a rehash without a generation: %v", r.Err)
	}
	change := func(gen uint64, hash string) Result {
		return a.applyVersion(TypeUserPassword, 2, t0, UserSetPasswordV2{
			UserSetPassword: UserSetPassword{UserID: "u1", PasswordHash: hash}, PasswordGen: gen})
	}
	if r := change(0, "h4"); r.Err != nil {
		t.Fatal(r.Err)
	}
	if u := userOf(t, a, "u1"); u.PasswordHash != "h4" || u.PasswordGen != 1 {
		t.Fatalf("after a change: %q generation %d, want h4 and 1", u.PasswordHash, u.PasswordGen)
	}
	if r := change(0, "h5"); !errors.Is(r.Err, ErrCredentialChanged) {
		t.Fatalf("a change decided on the replaced password: %v", r.Err)
	}
	if r := create("s4", &zero, ""); !errors.Is(r.Err, ErrCredentialChanged) {
		t.Fatalf("a session from the replaced password: %v", r.Err)
	}
	if err := a.s.View(func(r Reader) error { _, err := r.Session("s4"); return err }); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("a refused session was stored: %v", err)
	}
	if r := create("s5", &one, ""); r.Err != nil {
		t.Fatalf("a session from the current password: %v", r.Err)
	}
	if u := userOf(t, a, "u1"); u.PasswordHash != "h4" {
		t.Fatalf("a refused command changed the hash to %q", u.PasswordHash)
	}
}
