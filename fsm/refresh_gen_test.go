package fsm

import (
	"errors"
	"fmt"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// createMACSession starts session sid of u1 by session.create v4 with a
// refresh token that names its session (generation 0), whose hash is
// hashOf(tok).
func createMACSession(a *applier, at time.Time, sid, tok string) Result {
	a.t.Helper()
	return a.applyVersion(TypeSessionCreate, 4, at, SessionCreateV4{SessionCreateV3: SessionCreateV3{SessionCreateV2: SessionCreateV2{
		SessionCreate: SessionCreate{ID: sid, UserID: "u1", RefreshHash: hashOf(tok), Lifetime: int64(7 * 24 * time.Hour),
			IdleTimeout: int64(24 * time.Hour), MaxPerUser: 10, OnLimit: "evict_oldest", AMR: []string{"pwd"}}}}, RefreshMAC: true})
}

// refreshGen presents token old, of generation gen of session sid, for
// new (session.refresh v3).
func refreshGen(a *applier, at time.Time, sid string, gen uint64, old, new string) Result {
	a.t.Helper()
	return a.applyVersion(TypeSessionRefresh, 3, at, SessionRefreshV3{SessionID: sid, Generation: gen,
		SessionRefresh: SessionRefresh{OldHash: hashOf(old), NewHash: hashOf(new), IP: "192.0.2.1"}})
}

// refreshKeys is how many refresh records and index entries the state holds.
func refreshKeys(t testing.TB, s *Store) (records, index int) {
	t.Helper()
	if err := s.db.View(func(tx *bolt.Tx) error {
		records, index = bucketLen(tx.Bucket(bucketRefresh)), bucketLen(tx.Bucket(bucketSessionRefresh))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return records, index
}

// macSessionAt starts session s1 and rotates its token n times: the live
// token is then fmt.Sprint("g", n), of generation n.
func macSessionAt(t *testing.T, n int) *applier {
	t.Helper()
	a := setupUser(t)
	a.apply(TypeClusterLevel, t0, ClusterLevel{Level: MaxLevel})
	if r := createMACSession(a, t0, "s1", "g0"); r.Err != nil {
		t.Fatal(r.Err)
	}
	for i := range n {
		r := refreshGen(a, t0.Add(time.Duration(i+1)*time.Minute), "s1", uint64(i), fmt.Sprint("g", i), fmt.Sprint("g", i+1))
		if r.Err != nil {
			t.Fatalf("rotation %d: %v", i, r.Err)
		}
		if rr := r.Value.(RefreshResult); rr.Reused || rr.Session.RefreshGen != uint64(i+1) || rr.User.ID != "u1" {
			t.Fatalf("rotation %d: %+v", i, rr)
		}
	}
	return a
}

// TestRefreshV3RotatesWithoutRecords: a session whose tokens name it
// rotates with nothing stored per token; only its own record changes.
func TestRefreshV3RotatesWithoutRecords(t *testing.T) {
	a := macSessionAt(t, 50)
	if rec, idx := refreshKeys(t, a.s); rec != 0 || idx != 0 {
		t.Fatalf("%d refresh records and %d index entries after 50 rotations, want none", rec, idx)
	}
	s := viewValue(t, a.s, func(r Reader) (*Session, error) { return r.Session("s1") })
	if s.RefreshGen != 50 || s.RefreshHash != hashOf("g50") || !s.LastSeenAt.Equal(t0.Add(50*time.Minute)) || s.IP != "192.0.2.1" {
		t.Fatalf("after 50 rotations: %+v", s)
	}
	// The same under session.refresh v2 writes two keys per rotation.
	b := setupUser(t)
	createSession(b, t0, "u1", "s1", "q0", 10, "evict_oldest")
	for i := range 50 {
		if r := refresh(b, t0.Add(time.Minute), fmt.Sprint("q", i), fmt.Sprint("q", i+1)); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if rec, idx := refreshKeys(t, b.s); rec != 51 || idx != 51 {
		t.Fatalf("v2: %d records, %d index entries, want 51 each", rec, idx)
	}
}

// TestRefreshV3Reuse: every dead token that was handed out, one rotation
// back, many back, or the loser of a race at the live generation, revokes
// the session with a critical audit entry; the live token dies with it.
func TestRefreshV3Reuse(t *testing.T) {
	cases := []struct {
		name string
		gen  uint64
		tok  string
	}{
		{"one back", 4, "g4"},
		{"many back", 0, "g0"},
		{"live generation, another hash", 5, "g5-other"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := macSessionAt(t, 5)
			before := len(allAudit(t, a.s))
			r := refreshGen(a, t0.Add(time.Hour), "s1", c.gen, c.tok, "next")
			if r.Err != nil || !r.Value.(RefreshResult).Reused {
				t.Fatalf("dead token: %+v", r)
			}
			entries := allAudit(t, a.s)
			if len(entries) != before+1 {
				t.Fatalf("%d audit entries appended, want 1", len(entries)-before)
			}
			e := entries[len(entries)-1]
			if e.Type != "refresh.reuse" || e.Severity != AuditCritical || e.Details["session_id"] != "s1" || e.Subject != "u1" || e.IP != "192.0.2.1" {
				t.Fatalf("audit entry %+v", e)
			}
			if err := a.s.View(func(r Reader) error { _, err := r.Session("s1"); return err }); !errors.Is(err, ErrSessionNotFound) {
				t.Fatalf("session after reuse: %v", err)
			}
			if r := refreshGen(a, t0.Add(time.Hour), "s1", 5, "g5", "g6"); !errors.Is(r.Err, ErrInvalidGrant) {
				t.Fatalf("live token after reuse: %v", r.Err)
			}
		})
	}
}

// TestRefreshV3Race: two refreshes of the same token (two nodes' proposals
// in one log): the first rotates, the second is reuse and revokes.
func TestRefreshV3Race(t *testing.T) {
	a := macSessionAt(t, 2)
	if r := refreshGen(a, t0.Add(time.Hour), "s1", 2, "g2", "a3"); r.Err != nil || r.Value.(RefreshResult).Reused {
		t.Fatalf("first: %+v", r)
	}
	if r := refreshGen(a, t0.Add(time.Hour), "s1", 2, "g2", "b3"); r.Err != nil || !r.Value.(RefreshResult).Reused {
		t.Fatalf("second: %+v", r)
	}
	if r := refreshGen(a, t0.Add(time.Hour), "s1", 3, "a3", "a4"); !errors.Is(r.Err, ErrInvalidGrant) {
		t.Fatalf("the winner's token after the loser's reuse: %v", r.Err)
	}
}

// TestRefreshV3Refusals: a generation never handed out, an unknown
// session, a malformed payload: ErrInvalidGrant or ErrInvalidCommand, and
// the session is as it was.
func TestRefreshV3Refusals(t *testing.T) {
	a := macSessionAt(t, 3)
	want := viewValue(t, a.s, func(r Reader) (*Session, error) { return r.Session("s1") })
	audits := len(allAudit(t, a.s))
	for _, c := range []struct {
		name string
		p    SessionRefreshV3
		err  error
	}{
		{"generation ahead", SessionRefreshV3{SessionID: "s1", Generation: 4, SessionRefresh: SessionRefresh{OldHash: hashOf("g4"), NewHash: hashOf("x")}}, ErrInvalidGrant},
		{"generation ahead, live hash", SessionRefreshV3{SessionID: "s1", Generation: 9, SessionRefresh: SessionRefresh{OldHash: hashOf("g3"), NewHash: hashOf("x")}}, ErrInvalidGrant},
		{"unknown session", SessionRefreshV3{SessionID: "s9", Generation: 0, SessionRefresh: SessionRefresh{OldHash: hashOf("g3"), NewHash: hashOf("x")}}, ErrInvalidGrant},
		{"same hash twice", SessionRefreshV3{SessionID: "s1", Generation: 3, SessionRefresh: SessionRefresh{OldHash: hashOf("g3"), NewHash: hashOf("g3")}}, ErrInvalidCommand},
		{"not a hash", SessionRefreshV3{SessionID: "s1", Generation: 3, SessionRefresh: SessionRefresh{OldHash: "zz", NewHash: hashOf("x")}}, ErrInvalidCommand},
		{"no session id", SessionRefreshV3{Generation: 3, SessionRefresh: SessionRefresh{OldHash: hashOf("g3"), NewHash: hashOf("x")}}, ErrInvalidCommand},
	} {
		if r := a.applyVersion(TypeSessionRefresh, 3, t0.Add(time.Hour), c.p); !errors.Is(r.Err, c.err) {
			t.Errorf("%s: %v, want %v", c.name, r.Err, c.err)
		}
	}
	got := viewValue(t, a.s, func(r Reader) (*Session, error) { return r.Session("s1") })
	if got.RefreshGen != want.RefreshGen || got.RefreshHash != want.RefreshHash || !got.LastSeenAt.Equal(want.LastSeenAt) {
		t.Fatalf("session changed by refusals: %+v", got)
	}
	if n := len(allAudit(t, a.s)); n != audits {
		t.Fatalf("refusals appended %d audit entries", n-audits)
	}
	if r := refreshGen(a, t0.Add(time.Hour), "s1", 3, "g3", "g4"); r.Err != nil || r.Value.(RefreshResult).Reused {
		t.Fatalf("the live token after the refusals: %+v", r)
	}
}

// TestRefreshV3IdleAndDisabled: a dead session or user ends the session
// on presentation of its live token, as v2 does.
func TestRefreshV3IdleAndDisabled(t *testing.T) {
	a := macSessionAt(t, 1)
	if r := refreshGen(a, t0.Add(48*time.Hour), "s1", 1, "g1", "g2"); !errors.Is(r.Err, ErrInvalidGrant) {
		t.Fatalf("idle session refreshed: %v", r.Err)
	}
	if err := a.s.View(func(r Reader) error { _, err := r.Session("s1"); return err }); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("idle session kept: %v", err)
	}
	b := macSessionAt(t, 1)
	b.apply(TypeUserSetDisabled, t0.Add(time.Hour), UserSetDisabled{ID: "u1", Disabled: true})
	if r := refreshGen(b, t0.Add(time.Hour), "s1", 1, "g1", "g2"); !errors.Is(r.Err, ErrInvalidGrant) {
		t.Fatalf("disabled user's session refreshed: %v", r.Err)
	}
}

// TestPasswordChangeV3: the current session continues with a token of the
// generation the proposer read, the old one is dead, nothing is stored
// per token; a generation older than the session's is refused and
// changes nothing.
func TestPasswordChangeV3(t *testing.T) {
	a := macSessionAt(t, 3)
	change := func(gen uint64, tok string) Result {
		return a.applyVersion(TypeUserPassword, 3, t0.Add(time.Hour), UserSetPasswordV3{UserSetPasswordV2: UserSetPasswordV2{
			UserSetPassword: UserSetPassword{UserID: "u1", PasswordHash: "h2", SessionID: "s1", NewHash: hashOf(tok)}}, Generation: gen})
	}
	if r := change(2, "stale"); !errors.Is(r.Err, ErrRefreshMoved) {
		t.Fatalf("stale generation: %v", r.Err)
	}
	u := viewValue(t, a.s, func(r Reader) (*User, error) { return r.UserByID("u1") })
	if u.PasswordHash != "h" || u.PasswordGen != 0 {
		t.Fatalf("a refused change wrote the user: %+v", u)
	}
	r := change(3, "p3")
	if r.Err != nil || r.Value.(*Session).RefreshGen != 3 || r.Value.(*Session).RefreshHash != hashOf("p3") {
		t.Fatalf("change: %+v", r)
	}
	if rec, idx := refreshKeys(t, a.s); rec != 0 || idx != 0 {
		t.Fatalf("%d records, %d index entries after the change", rec, idx)
	}
	if r := refreshGen(a, t0.Add(2*time.Hour), "s1", 3, "p3", "p4"); r.Err != nil || r.Value.(RefreshResult).Reused {
		t.Fatalf("the new token: %+v", r)
	}
	if r := refreshGen(a, t0.Add(2*time.Hour), "s1", 3, "g3", "x"); r.Err != nil || !r.Value.(RefreshResult).Reused {
		t.Fatalf("the token the change replaced: %+v", r)
	}
}

// TestOldFormatSessionMovesToV3: a session of stored tokens keeps
// rotating under v2; a password change (v3) gives it a token that names
// it, and its old tokens, stored, still revoke it.
func TestOldFormatSessionMovesToV3(t *testing.T) {
	a := setupUser(t)
	createSession(a, t0, "u1", "s1", "r1", 10, "evict_oldest")
	if r := refresh(a, t0.Add(time.Minute), "r1", "r2"); r.Err != nil {
		t.Fatal(r.Err)
	}
	r := a.applyVersion(TypeUserPassword, 3, t0.Add(time.Hour), UserSetPasswordV3{UserSetPasswordV2: UserSetPasswordV2{
		UserSetPassword: UserSetPassword{UserID: "u1", PasswordHash: "h2", SessionID: "s1", NewHash: hashOf("m0")}}, Generation: 0})
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if rec, idx := refreshKeys(t, a.s); rec != 2 || idx != 2 {
		t.Fatalf("%d records, %d index entries, want the 2 the session had", rec, idx)
	}
	if r := refreshGen(a, t0.Add(2*time.Hour), "s1", 0, "m0", "m1"); r.Err != nil || r.Value.(RefreshResult).Reused {
		t.Fatalf("the new token: %+v", r)
	}
	if r := refresh(a, t0.Add(2*time.Hour), "r2", "x"); r.Err != nil || !r.Value.(RefreshResult).Reused {
		t.Fatalf("the stored token the change replaced: %+v", r)
	}
	if rec, idx := refreshKeys(t, a.s); rec != 0 || idx != 0 {
		t.Fatalf("the revoked session left %d records, %d index entries", rec, idx)
	}
}

// TestCodeRedeemV2WritesNoRecord: the session a code starts at level 5
// has a token that names it, and no record.
func TestCodeRedeemV2WritesNoRecord(t *testing.T) {
	for _, v := range []uint16{1, 2} {
		s := seededStore(t)
		p := applySeeds(t)[TypeOIDCCodeRedeem][0].(OIDCCodeRedeem)
		p.Session = SessionCreate{ID: "s9", RefreshHash: hashOf("oidc refresh"), Lifetime: int64(time.Hour),
			IdleTimeout: int64(time.Hour), MaxPerUser: 5, OnLimit: "evict_oldest"}
		steps := []struct {
			typ Type
			v   uint16
			p   any
		}{
			{TypeOIDCClientPut, 1, applySeeds(t)[TypeOIDCClientPut][0]},
			{TypeOIDCAuthRequest, 1, applySeeds(t)[TypeOIDCAuthRequest][0]},
			{TypeOIDCAuthorize, 1, applySeeds(t)[TypeOIDCAuthorize][0]},
			{TypeOIDCCodeRedeem, v, p},
		}
		var res Result
		for i, st := range steps {
			c, err := NewCommand(st.typ, st.v, seedTime.Add(30*time.Second).UnixNano(), st.p)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := c.Encode()
			if res = s.ApplyBatch([]Entry{{Index: uint64(100 + i), Term: 1, Command: true, Data: b}})[0]; res.Err != nil {
				t.Fatalf("v%d: %s: %v", v, st.typ, res.Err)
			}
		}
		sid := res.Value.(OIDCCodeResult).Session.ID
		var rec []byte
		s.View(func(r Reader) error { rec = r.tx.Bucket(bucketRefresh).Get([]byte(p.Session.RefreshHash)); return nil })
		if (rec != nil) != (v == 1) {
			t.Fatalf("oidc.code_redeem v%d: session %s's refresh record %q", v, sid, rec)
		}
	}
}

// usedBytes is how much of state.db holds data: its size less its free
// pages (and pages freed but not yet reusable).
func usedBytes(t testing.TB, s *Store) int64 {
	t.Helper()
	var n int64
	if err := s.db.View(func(tx *bolt.Tx) error {
		st := s.db.Stats()
		n = tx.Size() - int64(st.FreePageN+st.PendingPageN)*int64(s.db.Info().PageSize)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// BenchmarkRefreshState rotates one session's refresh token b.N times,
// one entry per transaction as a one-node Raft applies them, under
// session.refresh v2 (a record and an index entry kept per token) and v3
// (nothing per token), and reports what state.db grew by per refresh
// (bytes in use: its size less its free pages).
func BenchmarkRefreshState(b *testing.B) {
	for _, v := range []uint16{2, 3} {
		b.Run(fmt.Sprintf("v%d", v), func(b *testing.B) {
			a := &applier{t: b, s: openTestStore(b)}
			if r := a.apply(TypeUserCreate, t0, UserCreate{ID: "u1", Username: "alice", PasswordHash: "h"}); r.Err != nil {
				b.Fatal(r.Err)
			}
			create := SessionCreateV4{SessionCreateV3: SessionCreateV3{SessionCreateV2: SessionCreateV2{SessionCreate: SessionCreate{
				ID: "s1", UserID: "u1", RefreshHash: hashOf("t0"), Lifetime: int64(7 * 24 * time.Hour), IdleTimeout: int64(24 * time.Hour),
				MaxPerUser: 10, OnLimit: "evict_oldest", AMR: []string{"pwd"}}}}, RefreshMAC: v == 3}
			if r := a.applyVersion(TypeSessionCreate, 4, t0, create); r.Err != nil {
				b.Fatal(r.Err)
			}
			used := usedBytes(b, a.s)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				at := t0.Add(time.Duration(i+1) * time.Millisecond)
				old, next := hashOf(fmt.Sprint("t", i)), hashOf(fmt.Sprint("t", i+1))
				var p any = SessionRefresh{OldHash: old, NewHash: next, IP: "192.0.2.1", UserAgent: "bench"}
				if v == 3 {
					p = SessionRefreshV3{SessionID: "s1", Generation: uint64(i), SessionRefresh: p.(SessionRefresh)}
				}
				if r := a.applyVersion(TypeSessionRefresh, v, at, p); r.Err != nil || r.Value.(RefreshResult).Reused {
					b.Fatalf("refresh %d: %+v", i, r)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(usedBytes(b, a.s)-used)/float64(b.N), "statebytes/refresh")
		})
	}
}
