package fsm

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func mfaOf(t *testing.T, a *applier, userID string) *MFA {
	t.Helper()
	return viewValue(t, a.s, func(r Reader) (*MFA, error) { return r.MFA(userID) })
}

func codes(n int, tag string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = hashOf(tag + string(rune('a'+i)))
	}
	return out
}

// mfaSession proposes session.create v3 for u1 with factor f.
func mfaSession(a *applier, at time.Time, sid string, f *FactorProof) Result {
	a.t.Helper()
	gen := uint64(0)
	return a.applyVersion(TypeSessionCreate, 3, at, SessionCreateV3{
		SessionCreateV2: SessionCreateV2{SessionCreate: SessionCreate{ID: sid, UserID: "u1", RefreshHash: hashOf("r" + sid),
			Lifetime: int64(time.Hour), MaxPerUser: 10, OnLimit: "evict_oldest", AMR: []string{"pwd", "otp", "mfa"}},
			PasswordGen: &gen},
		Factor: f})
}

func enrolTOTP(t *testing.T, a *applier, step int64) {
	t.Helper()
	if r := a.apply(TypeMFATOTPEnroll, t0, MFATOTPEnroll{UserID: "u1", Sealed: []byte("sealed")}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if m := mfaOf(t, a, "u1"); m.Enabled() || m.PendingTOTP == nil {
		t.Fatalf("a pending secret counts as a factor, or was not stored: %+v", m)
	}
	if r := a.apply(TypeMFATOTPConfirm, t0, MFATOTPConfirm{UserID: "u1", Step: step, Recovery: codes(10, "set1")}); r.Err != nil {
		t.Fatal(r.Err)
	}
}

// A TOTP step is accepted once: a session decided on a step at or below
// the last accepted one (the confirmation's included) is refused, and the
// refused command changes nothing.
func TestTOTPStepUsedOnce(t *testing.T) {
	a := setupUser(t)
	enrolTOTP(t, a, 100)
	if r := mfaSession(a, t0, "s0", &FactorProof{Method: FactorTOTP, Step: 100}); !errors.Is(r.Err, ErrFactorReplayed) {
		t.Fatalf("the confirmation's code used to sign in: %v", r.Err)
	}
	if r := mfaSession(a, t0, "s1", &FactorProof{Method: FactorTOTP, Step: 101}); r.Err != nil {
		t.Fatal(r.Err)
	}
	for _, step := range []int64{101, 99} {
		if r := mfaSession(a, t0, "s2", &FactorProof{Method: FactorTOTP, Step: step}); !errors.Is(r.Err, ErrFactorReplayed) {
			t.Fatalf("step %d after 101: %v", step, r.Err)
		}
	}
	if err := a.s.View(func(r Reader) error { _, err := r.Session("s2"); return err }); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("a refused session was stored: %v", err)
	}
	if m := mfaOf(t, a, "u1"); m.TOTP.LastStep != 101 {
		t.Fatalf("last step %d, want 101", m.TOTP.LastStep)
	}
	if r := a.apply(TypeMFATOTPEnroll, t0, MFATOTPEnroll{UserID: "u1", Sealed: []byte("other")}); !errors.Is(r.Err, ErrFactorExists) {
		t.Fatalf("a second secret over a confirmed one: %v", r.Err)
	}
}

// A recovery code is good once; a new set kills the old one; removing
// the last factor takes the codes with it.
func TestRecoveryCodes(t *testing.T) {
	a := setupUser(t)
	if r := a.apply(TypeMFARecoverySet, t0, MFARecoverySet{UserID: "u1", Recovery: codes(10, "x")}); !errors.Is(r.Err, ErrFactorNotFound) {
		t.Fatalf("recovery codes without a factor: %v", r.Err)
	}
	enrolTOTP(t, a, 1)
	first := codes(10, "set1")
	if r := mfaSession(a, t0, "s1", &FactorProof{Method: FactorRecovery, RecoveryHash: first[3]}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := mfaSession(a, t0, "s2", &FactorProof{Method: FactorRecovery, RecoveryHash: first[3]}); !errors.Is(r.Err, ErrFactorNotFound) {
		t.Fatalf("a spent recovery code: %v", r.Err)
	}
	if n := len(mfaOf(t, a, "u1").Recovery); n != 9 {
		t.Fatalf("%d codes left, want 9", n)
	}
	if r := a.apply(TypeMFARecoverySet, t0, MFARecoverySet{UserID: "u1", Recovery: codes(10, "set2")}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := mfaSession(a, t0, "s3", &FactorProof{Method: FactorRecovery, RecoveryHash: first[4]}); !errors.Is(r.Err, ErrFactorNotFound) {
		t.Fatalf("a code of the replaced set: %v", r.Err)
	}
	if r := a.apply(TypeMFATOTPRemove, t0, MFAUser{UserID: "u1"}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if m := mfaOf(t, a, "u1"); m.Enabled() || len(m.Recovery) != 0 {
		t.Fatalf("after the last factor went: %+v", m)
	}
	if r := mfaSession(a, t0, "s4", &FactorProof{Method: FactorRecovery, RecoveryHash: codes(10, "set2")[0]}); !errors.Is(r.Err, ErrFactorNotFound) {
		t.Fatalf("a code outliving its factor: %v", r.Err)
	}
}

// A second-factor ticket (an mfa_token) starts one session; the sweep
// forgets it once it has expired.
func TestTicketUsedOnceThenSwept(t *testing.T) {
	a := setupUser(t)
	enrolTOTP(t, a, 1)
	ticket, exp := hashOf("nonce"), t0.Add(5*time.Minute).UnixNano()
	if r := mfaSession(a, t0, "s1", &FactorProof{Method: FactorTOTP, Step: 2, Ticket: ticket, TicketExpires: exp}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := mfaSession(a, t0, "s2", &FactorProof{Method: FactorTOTP, Step: 3, Ticket: ticket, TicketExpires: exp}); !errors.Is(r.Err, ErrFactorReplayed) {
		t.Fatalf("a ticket exchanged twice: %v", r.Err)
	}
	if m := mfaOf(t, a, "u1"); m.TOTP.LastStep != 2 {
		t.Fatalf("a refused session moved the step to %d", m.TOTP.LastStep)
	}
	if r := mfaSession(a, t0, "s3", &FactorProof{Method: FactorTOTP, Step: 3, Ticket: hashOf("n2"), TicketExpires: t0.UnixNano()}); !errors.Is(r.Err, ErrInvalidCommand) {
		t.Fatalf("an expired ticket: %v", r.Err)
	}
	used := func() bool {
		return viewValue(t, a.s, func(r Reader) (bool, error) { return r.tx.Bucket(bucketMFAUsed).Get([]byte(ticket)) != nil, nil })
	}
	a.applyVersion(TypeSweep, 2, t0.Add(4*time.Minute), SweepV2{Limit: 100})
	if !used() {
		t.Fatal("the sweep forgot a ticket before it expired")
	}
	a.applyVersion(TypeSweep, 2, t0.Add(6*time.Minute), SweepV2{Limit: 100})
	if used() {
		t.Fatal("the sweep kept an expired ticket")
	}
}

// WebAuthn: a credential id is registered once across users; its sign
// counter must grow (or stay 0 for authenticators without one); rename,
// remove and reset keep the id index in step.
func TestWebAuthnCredentials(t *testing.T) {
	a := setupUser(t)
	if r := a.apply(TypeUserCreate, t0, UserCreate{ID: "u2", Username: "bob", PasswordHash: "h"}); r.Err != nil {
		t.Fatal(r.Err)
	}
	add := func(user, id string, count uint32) Result {
		return a.apply(TypeWebAuthnAdd, t0, WebAuthnAdd{UserID: user, Recovery: codes(10, "w"),
			Credential: WebAuthnCredential{ID: id, Name: "key", Sealed: []byte("data"), SignCount: count}})
	}
	if r := add("u1", "cred1", 5); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := add("u2", "cred1", 0); !errors.Is(r.Err, ErrFactorExists) {
		t.Fatalf("one credential for two users: %v", r.Err)
	}
	use := func(sid string, count uint32) Result {
		return mfaSession(a, t0, sid, &FactorProof{Method: FactorWebAuthn, CredentialID: "cred1", SignCount: count})
	}
	if r := use("s1", 5); !errors.Is(r.Err, ErrFactorReplayed) {
		t.Fatalf("a counter that did not grow: %v", r.Err)
	}
	if r := use("s2", 6); r.Err != nil {
		t.Fatal(r.Err)
	}
	if m := mfaOf(t, a, "u1"); m.WebAuthn[0].SignCount != 6 || m.WebAuthn[0].LastUsedAt == nil || len(m.Recovery) != 10 {
		t.Fatalf("after use: %+v", m.WebAuthn[0])
	}
	if r := a.apply(TypeWebAuthnRename, t0, WebAuthnRename{UserID: "u1", ID: "cred1", Name: "bad\nname"}); !errors.Is(r.Err, ErrInvalidCommand) {
		t.Fatalf("a name with a newline: %v", r.Err)
	}
	if r := a.apply(TypeWebAuthnRename, t0, WebAuthnRename{UserID: "u2", ID: "cred1", Name: "mine"}); !errors.Is(r.Err, ErrFactorNotFound) {
		t.Fatalf("renaming another user's credential: %v", r.Err)
	}
	if r := a.apply(TypeWebAuthnRemove, t0, WebAuthnRename{UserID: "u1", ID: "cred1"}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if owner := viewValue(t, a.s, func(r Reader) (string, error) { o, _ := r.WebAuthnOwner("cred1"); return o, nil }); owner != "" {
		t.Fatalf("a removed credential still indexed to %q", owner)
	}
	if r := add("u2", "cred1", 0); r.Err != nil {
		t.Fatalf("a removed credential's id registered again: %v", r.Err)
	}
	// Counterless authenticators send 0 every time.
	if r := mfaSession(a, t0, "s3", &FactorProof{Method: FactorWebAuthn, CredentialID: "cred1", SignCount: 0}); !errors.Is(r.Err, ErrFactorNotFound) {
		t.Fatalf("u1 signing in with u2's credential: %v", r.Err)
	}
}

// mfa.reset removes every factor and ends the user's sessions; deleting a
// user drops their factors and frees their credential ids.
func TestMFAResetAndUserDelete(t *testing.T) {
	a := setupUser(t)
	enrolTOTP(t, a, 1)
	if r := a.apply(TypeWebAuthnAdd, t0, WebAuthnAdd{UserID: "u1",
		Credential: WebAuthnCredential{ID: "c1", Name: "key", Sealed: []byte("d")}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := mfaSession(a, t0, "s1", &FactorProof{Method: FactorTOTP, Step: 2}); r.Err != nil {
		t.Fatal(r.Err)
	}
	r := a.apply(TypeMFAReset, t0, MFAUser{UserID: "u1"})
	if r.Err != nil || r.Value.(int) != 1 {
		t.Fatalf("reset: %v, %v sessions ended, want 1", r.Err, r.Value)
	}
	if m := mfaOf(t, a, "u1"); m.Enabled() || m.PendingTOTP != nil || len(m.Recovery) > 0 {
		t.Fatalf("after reset: %+v", m)
	}
	if r := a.apply(TypeWebAuthnAdd, t0, WebAuthnAdd{UserID: "u1",
		Credential: WebAuthnCredential{ID: "c1", Name: "key", Sealed: []byte("d")}}); r.Err != nil {
		t.Fatalf("the id of a reset credential: %v", r.Err)
	}
	if r := a.apply(TypeUserDelete, t0, UserDelete{ID: "u1"}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if viewValue(t, a.s, func(r Reader) (bool, error) { _, ok := r.WebAuthnOwner("c1"); return ok, nil }) {
		t.Fatal("a deleted user's credential id is still taken")
	}
	if m := mfaOf(t, a, "u1"); m.Enabled() {
		t.Fatal("a deleted user's factors remain")
	}
	if r := a.apply(TypeMFATOTPEnroll, t0, MFATOTPEnroll{UserID: "u1", Sealed: []byte("s")}); !errors.Is(r.Err, ErrUserNotFound) {
		t.Fatalf("a factor for a deleted user: %v", r.Err)
	}
}

// A webhook cursor only moves forward.
func TestWebhookCursorForwardOnly(t *testing.T) {
	a := newApplier(t)
	target := hashOf("https://siem.example/hook")
	for _, c := range []struct{ seq, want uint64 }{{5, 5}, {3, 5}, {9, 9}} {
		if r := a.apply(TypeWebhookCursor, t0, WebhookCursor{Target: target, Seq: c.seq}); r.Err != nil || r.Value.(uint64) != c.want {
			t.Fatalf("cursor to %d: %v %v, want %d", c.seq, r.Value, r.Err, c.want)
		}
	}
	if seq := viewValue(t, a.s, func(r Reader) (uint64, error) { s, _ := r.WebhookCursor(target); return s, nil }); seq != 9 {
		t.Fatalf("stored cursor %d", seq)
	}
	if r := a.apply(TypeWebhookCursor, t0, WebhookCursor{Target: "nope", Seq: 1}); !errors.Is(r.Err, ErrInvalidCommand) {
		t.Fatalf("a bad target: %v", r.Err)
	}
}

// A lockdown ends every session at once and refuses new ones but those
// its proposer allows; release lets sessions start again, and the ended
// ones stay ended.
func TestLockdown(t *testing.T) {
	a := setupUser(t)
	create := func(sid string, at time.Time, allowed bool) Result {
		return a.applyVersion(TypeSessionCreate, 3, at, SessionCreateV3{SessionCreateV2: SessionCreateV2{SessionCreate: SessionCreate{
			ID: sid, UserID: "u1", RefreshHash: hashOf("r" + sid), Lifetime: int64(time.Hour), MaxPerUser: 1, OnLimit: "deny",
			DuringLockdown: allowed}}})
	}
	if r := create("s1", t0, false); r.Err != nil {
		t.Fatal(r.Err)
	}
	r := a.apply(TypeLockdown, t0.Add(time.Second), Lockdown{Reason: "breach", Actor: "local-admin"})
	if st := r.Value.(LockdownState); r.Err != nil || !st.Active || st.Reason != "breach" {
		t.Fatalf("lockdown: %+v %v", r.Value, r.Err)
	}
	if _, err := viewSession(a, "s1"); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("a session from before the lockdown: %v", err)
	}
	if r := refresh(a, t0.Add(2*time.Second), "rs1", "rs1b"); !errors.Is(r.Err, ErrInvalidGrant) {
		t.Fatalf("its refresh token: %v", r.Err)
	}
	if r := create("s2", t0.Add(2*time.Second), false); !errors.Is(r.Err, ErrLockedDown) {
		t.Fatalf("a session during the lockdown: %v", r.Err)
	}
	if r := create("s3", t0.Add(2*time.Second), true); r.Err != nil {
		t.Fatalf("an allowed session during the lockdown (the ended one does not count toward the limit): %v", r.Err)
	}
	r = a.apply(TypeLockdownRelease, t0.Add(3*time.Second), Lockdown{Actor: "local-admin"})
	if st := r.Value.(LockdownState); r.Err != nil || st.Active || st.ReleasedAt == nil {
		t.Fatalf("release: %+v %v", r.Value, r.Err)
	}
	if _, err := viewSession(a, "s1"); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("a session ended by the lockdown came back: %v", err)
	}
	if _, err := viewSession(a, "s3"); err != nil {
		t.Fatalf("the allowed session: %v", err)
	}
}

func viewSession(a *applier, id string) (*Session, error) {
	var s *Session
	err := a.s.View(func(r Reader) error {
		var err error
		s, err = r.Session(id)
		return err
	})
	return s, err
}

// A lockdown's end of older sessions holds for View's readers, which read
// it from the store's copy rather than from state.db: after the batch that
// applied it, after the store is opened again, and in a store restored
// from a snapshot taken after it (and is gone from one restored from
// before it).
func TestLockdownSeenByViewsAfterReopenAndRestore(t *testing.T) {
	a := setupUser(t)
	if r := a.applyVersion(TypeSessionCreate, 3, t0, SessionCreateV3{SessionCreateV2: SessionCreateV2{SessionCreate: SessionCreate{
		ID: "s1", UserID: "u1", RefreshHash: hashOf("rs1"), Lifetime: int64(time.Hour), MaxPerUser: 1, OnLimit: "deny"}}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	before := snapshotBytes(t, a.s)
	if r := a.apply(TypeLockdown, t0.Add(time.Second), Lockdown{Reason: "breach", Actor: "local-admin"}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if _, err := viewSession(a, "s1"); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("after the lockdown's batch: %v", err)
	}
	after := snapshotBytes(t, a.s)

	path := a.s.path
	if err := a.s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeAndCheck(t, s) })
	a.s = s
	if _, err := viewSession(a, "s1"); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("after opening the store again: %v", err)
	}

	if err := s.Restore(bytes.NewReader(before)); err != nil {
		t.Fatal(err)
	}
	if _, err := viewSession(a, "s1"); err != nil {
		t.Fatalf("restored from before the lockdown: %v", err)
	}
	if err := s.Restore(bytes.NewReader(after)); err != nil {
		t.Fatal(err)
	}
	if _, err := viewSession(a, "s1"); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("restored from after the lockdown: %v", err)
	}
}

func snapshotBytes(t *testing.T, s *Store) []byte {
	t.Helper()
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	var buf bytes.Buffer
	if _, err := snap.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// session.create v4 checks everything before it writes: a login refused
// for a replayed TOTP step, or for the session limit under on_limit deny,
// spends neither its ticket nor its factor. v3 (shipped) spent the ticket
// first, and replay keeps that.
func TestSessionCreateV4RefusesWithoutSpending(t *testing.T) {
	gen := uint64(0)
	create := func(a *applier, v uint16, sid string, f *FactorProof, max int, onLimit string) Result {
		a.t.Helper()
		return a.applyVersion(TypeSessionCreate, v, t0, SessionCreateV3{
			SessionCreateV2: SessionCreateV2{SessionCreate: SessionCreate{ID: sid, UserID: "u1", RefreshHash: hashOf("r" + sid),
				Lifetime: int64(time.Hour), MaxPerUser: max, OnLimit: onLimit, AMR: []string{"pwd", "otp", "mfa"}},
				PasswordGen: &gen},
			Factor: f})
	}
	ticket, exp := hashOf("nonce"), t0.Add(5*time.Minute).UnixNano()
	for _, v := range []uint16{3, 4} {
		a := setupUser(t)
		enrolTOTP(t, a, 100)
		// A replayed step with a fresh ticket: refused; v4 leaves the
		// ticket unspent, so the same ticket with a new step still works.
		if r := create(a, v, "s1", &FactorProof{Method: FactorTOTP, Step: 100, Ticket: ticket, TicketExpires: exp}, 10, "evict_oldest"); !errors.Is(r.Err, ErrFactorReplayed) {
			t.Fatalf("v%d, a replayed step: %v", v, r.Err)
		}
		r := create(a, v, "s2", &FactorProof{Method: FactorTOTP, Step: 101, Ticket: ticket, TicketExpires: exp}, 10, "evict_oldest")
		switch {
		case v == 3 && !errors.Is(r.Err, ErrFactorReplayed):
			t.Fatalf("v3 (as shipped) no longer spends the ticket of a refused login: %v", r.Err)
		case v == 4 && r.Err != nil:
			t.Fatalf("v4: the ticket of a refused login was spent: %v", r.Err)
		}
	}
	// At the limit under deny: refused, and v4 leaves the step unused.
	a := setupUser(t)
	enrolTOTP(t, a, 100)
	if r := create(a, 4, "s1", &FactorProof{Method: FactorTOTP, Step: 101}, 1, "deny"); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := create(a, 4, "s2", &FactorProof{Method: FactorTOTP, Step: 102}, 1, "deny"); !errors.Is(r.Err, ErrSessionLimit) {
		t.Fatalf("at the limit under deny: %v", r.Err)
	}
	if m := mfaOf(t, a, "u1"); m.TOTP.LastStep != 101 {
		t.Fatalf("a login refused at the session limit used step %d", m.TOTP.LastStep)
	}
}
