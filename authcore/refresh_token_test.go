package authcore

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
)

// refreshRecords counts the refresh records and index entries in st.
func refreshRecords(t *testing.T, st *localStore) int {
	t.Helper()
	n := 0
	if err := st.View(func(r fsm.Reader) error {
		return r.ForEachRaw(func(bucket string, _, _ []byte) error {
			if bucket == "refresh" || bucket == "session_refresh" {
				n++
			}
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// sessionOf reads session sid from s's state.
func sessionOf(t *testing.T, s *Service, sid string) (*fsm.Session, error) {
	t.Helper()
	var sess *fsm.Session
	err := s.store.View(func(r fsm.Reader) (err error) { sess, err = r.Session(sid); return err })
	return sess, err
}

// lastAudit is the type of the newest entry of s's trail.
func lastAudit(t *testing.T, s *Service) fsm.AuditEntry {
	t.Helper()
	var e *fsm.AuditEntry
	if err := s.store.View(func(r fsm.Reader) (err error) { e, err = r.AuditLast(); return err }); err != nil {
		t.Fatal(err)
	}
	return *e
}

// TestRefreshTokensNameTheirSession: at level 5 a login's refresh token
// names its session at generation 0, each rotation the next generation,
// and nothing is stored per token.
func TestRefreshTokensNameTheirSession(t *testing.T) {
	s, _ := newAuthService(t, Config{})
	st := s.store.(*localStore)
	tok := login(t, s)
	for gen := uint64(0); gen < 20; gen++ {
		c, err := s.box.openRefresh(tok.RefreshToken)
		if err != nil || c.sid != tok.SessionID || c.gen != gen {
			t.Fatalf("rotation %d: %+v %v", gen, c, err)
		}
		if tok, err = s.Refresh(context.Background(), tok.RefreshToken); err != nil {
			t.Fatal(err)
		}
		if v := st.versions[fsm.TypeSessionRefresh]; v != 3 {
			t.Fatalf("session.refresh v%d proposed, want v3", v)
		}
	}
	if n := refreshRecords(t, st); n != 0 {
		t.Fatalf("%d refresh records or index entries after a login and 20 rotations", n)
	}
	if v := st.versions[fsm.TypeSessionCreate]; v != 4 {
		t.Fatalf("session.create v%d, want v4", v)
	}
}

// TestRefreshReuseByGeneration: a dead token, one rotation back or many,
// revokes the session with a critical audit entry; the live token dies
// with it.
func TestRefreshReuseByGeneration(t *testing.T) {
	for _, back := range []int{1, 4} {
		s, _ := newAuthService(t, Config{})
		toks := []Tokens{login(t, s)}
		for range 4 {
			next, err := s.Refresh(context.Background(), toks[len(toks)-1].RefreshToken)
			if err != nil {
				t.Fatal(err)
			}
			toks = append(toks, next)
		}
		live := toks[len(toks)-1]
		if _, err := s.Refresh(fromAddr, toks[len(toks)-1-back].RefreshToken); !errors.Is(err, ErrInvalidGrant) {
			t.Fatalf("%d back: %v, want ErrInvalidGrant", back, err)
		}
		if e := lastAudit(t, s); e.Type != "refresh.reuse" || e.Severity != fsm.AuditCritical || e.Details["session_id"] != live.SessionID {
			t.Fatalf("%d back: last audit entry %+v", back, e)
		}
		if _, err := sessionOf(t, s, live.SessionID); !errors.Is(err, fsm.ErrSessionNotFound) {
			t.Fatalf("%d back: session after reuse: %v", back, err)
		}
		if _, err := s.Authenticate(context.Background(), live.AccessToken); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("%d back: access token after reuse: %v", back, err)
		}
		if _, err := s.Refresh(context.Background(), live.RefreshToken); !errors.Is(err, ErrInvalidGrant) {
			t.Fatalf("%d back: live token after reuse: %v", back, err)
		}
	}
}

// retoken re-encodes a token of this format with its raw bytes changed by f.
func retoken(t *testing.T, tok string, f func([]byte) []byte) string {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(tok[len(refreshPrefix):])
	if err != nil {
		t.Fatal(err)
	}
	return refreshPrefix + base64.RawURLEncoding.EncodeToString(f(bytes.Clone(raw)))
}

// TestRefreshForgedTokens: a token this cluster did not mint, or altered,
// is invalid_grant with no Raft entry and no change to the session; a
// token minted for a generation the session has not reached changes
// nothing either. The live token works afterwards.
func TestRefreshForgedTokens(t *testing.T) {
	s, _ := newAuthService(t, Config{})
	st := s.store.(*localStore)
	var proposed atomic.Int64
	st.before = func(context.Context, fsm.Command) { proposed.Add(1) }
	tok := login(t, s)
	tok, err := s.Refresh(context.Background(), tok.RefreshToken) // generation 1
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.Login(context.Background(), "alice", pw)
	if err != nil {
		t.Fatal(err)
	}
	sid := tok.SessionID
	n := len(sid)
	otherBox, err := NewSecretBox(bytes.Repeat([]byte{9}, 32))
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := otherBox.mintRefresh(sid, 1)
	if err != nil {
		t.Fatal(err)
	}
	forged := map[string]string{
		"another cluster's key": foreign,
		"a random byte altered": retoken(t, tok.RefreshToken, func(b []byte) []byte { b[2+n+8] ^= 1; return b }),
		"the generation moved back": retoken(t, tok.RefreshToken, func(b []byte) []byte {
			binary.BigEndian.PutUint64(b[2+n:], 0)
			return b
		}),
		"the MAC altered": retoken(t, tok.RefreshToken, func(b []byte) []byte { b[len(b)-1] ^= 0x80; return b }),
		"another session's MAC": retoken(t, tok.RefreshToken, func(b []byte) []byte {
			o, _ := base64.RawURLEncoding.DecodeString(other.RefreshToken[len(refreshPrefix):])
			return append(b[:len(b)-refreshMACBytes], o[len(o)-refreshMACBytes:]...)
		}),
		"the session id swapped": retoken(t, tok.RefreshToken, func(b []byte) []byte {
			return append(append(b[:2:2], other.SessionID...), b[2+n:]...)
		}),
		// The live token's bytes, spelt otherwise: its hash is not the
		// session's, so it would pass the MAC as a reuse.
		"a line break inserted": tok.RefreshToken[:30] + "\n" + tok.RefreshToken[30:],
		"truncated":             tok.RefreshToken[:len(tok.RefreshToken)-2],
		"one byte added":        retoken(t, tok.RefreshToken, func(b []byte) []byte { return append(b, 0) }),
		"another version":       retoken(t, tok.RefreshToken, func(b []byte) []byte { b[0] = 2; return b }),
	}
	before, _ := sessionOf(t, s, sid)
	for name, f := range forged {
		p := proposed.Load()
		if _, err := s.Refresh(context.Background(), f); !errors.Is(err, ErrInvalidGrant) {
			t.Errorf("%s: %v, want ErrInvalidGrant", name, err)
		}
		if d := proposed.Load() - p; d != 0 {
			t.Errorf("%s: %d commands proposed", name, d)
		}
	}
	// Minted by this cluster, for a generation never handed out: Apply
	// refuses it and the session stays.
	ahead, err := s.box.mintRefresh(sid, 5)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Refresh(context.Background(), ahead); !errors.Is(err, ErrInvalidGrant) {
		t.Fatalf("generation ahead: %v", err)
	}
	after, err := sessionOf(t, s, sid)
	if err != nil || after.RefreshHash != before.RefreshHash || after.RefreshGen != 1 || !after.LastSeenAt.Equal(before.LastSeenAt) {
		t.Fatalf("session after the forgeries: %+v %v", after, err)
	}
	if _, err := s.Refresh(context.Background(), tok.RefreshToken); err != nil {
		t.Fatalf("the live token after the forgeries: %v", err)
	}
}

// TestRefreshOldFormatAtLevel5: a session started below level 5 keeps its
// stored tokens: they rotate through session.refresh v2 and a dead one
// still revokes the session.
func TestRefreshOldFormatAtLevel5(t *testing.T) {
	s, _ := newAuthService(t, Config{})
	st := s.store.(*localStore)
	var u *fsm.User
	st.View(func(r fsm.Reader) (err error) { u, err = r.UserByName("alice"); return err })
	old, err := randomToken(refreshPrefix)
	if err != nil {
		t.Fatal(err)
	}
	cmd, _ := fsm.NewCommand(fsm.TypeSessionCreate, 3, s.now().UnixNano(), fsm.SessionCreateV3{SessionCreateV2: fsm.SessionCreateV2{
		SessionCreate: fsm.SessionCreate{ID: "old-session", UserID: u.ID, RefreshHash: hashToken(old), Lifetime: int64(24 * time.Hour),
			IdleTimeout: int64(time.Hour), MaxPerUser: 10, OnLimit: "evict_oldest", AMR: []string{"pwd"}}}})
	if _, err := st.Apply(context.Background(), cmd); err != nil {
		t.Fatal(err)
	}
	next, err := s.Refresh(context.Background(), old)
	if err != nil {
		t.Fatal(err)
	}
	if v := st.versions[fsm.TypeSessionRefresh]; v != 2 || namesSession(next.RefreshToken) || !wellFormedToken(next.RefreshToken, refreshPrefix) {
		t.Fatalf("an old-format token rotated by v%d to %q", v, next.RefreshToken)
	}
	if next, err = s.Refresh(context.Background(), next.RefreshToken); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Refresh(context.Background(), old); !errors.Is(err, ErrInvalidGrant) {
		t.Fatalf("reuse of an old-format token: %v", err)
	}
	if e := lastAudit(t, s); e.Type != "refresh.reuse" {
		t.Fatalf("last audit entry %+v", e)
	}
	if _, err := s.Refresh(context.Background(), next.RefreshToken); !errors.Is(err, ErrInvalidGrant) {
		t.Fatalf("the live old-format token after reuse: %v", err)
	}
}

// TestRefreshBelowLevel5: a cluster at level 4 issues and rotates stored
// tokens, as before.
func TestRefreshBelowLevel5(t *testing.T) {
	s, _ := newAuthServiceAt(t, Config{}, 4)
	st := s.store.(*localStore)
	tok := login(t, s)
	if namesSession(tok.RefreshToken) {
		t.Fatal("a session token at level 4")
	}
	if _, err := s.Refresh(context.Background(), tok.RefreshToken); err != nil {
		t.Fatal(err)
	}
	if v := st.versions[fsm.TypeSessionRefresh]; v != 2 {
		t.Fatalf("session.refresh v%d at level 4", v)
	}
	if n := refreshRecords(t, st); n != 4 {
		t.Fatalf("%d refresh records and index entries at level 4, want 4", n)
	}
}

// TestChangePasswordRefreshRace: the session rotates its token between
// the change's read of the generation and its apply; the change is
// refused (nothing written), read again and proposed again, and its
// token is the session's live one.
func TestChangePasswordRefreshRace(t *testing.T) {
	s, clk := newAuthService(t, Config{})
	st := s.store.(*localStore)
	tok := login(t, s)
	var raced atomic.Bool
	st.before = func(ctx context.Context, cmd fsm.Command) {
		if cmd.Type == fsm.TypeUserPassword && raced.CompareAndSwap(false, true) {
			if _, err := s.Refresh(context.Background(), tok.RefreshToken); err != nil {
				t.Errorf("the racing refresh: %v", err)
			}
		}
	}
	clk.Advance(time.Second)
	p := principalOf(t, s, tok)
	next, err := s.ChangePassword(context.Background(), p, pw, "another long passphrase")
	if err != nil {
		t.Fatal(err)
	}
	if !raced.Load() {
		t.Fatal("no refresh raced the change")
	}
	c, err := s.box.openRefresh(next.RefreshToken)
	if err != nil || c.gen != 1 {
		t.Fatalf("the change's token: %+v %v", c, err)
	}
	if _, err := s.Refresh(context.Background(), next.RefreshToken); err != nil {
		t.Fatalf("the change's token: %v", err)
	}
}
