package authcore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/clock"
)

// newClock is the clock of expiry, lockout and rotation tests: it moves
// only when a test advances it.
func newClock() *clock.Fake { return clock.NewFake(time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)) }

const pw = "correct horse battery"

func newAuthService(t *testing.T, cfg Config) (*Service, *clock.Fake) {
	t.Helper()
	return newAuthServiceAt(t, cfg, fsm.MaxLevel)
}

// newAuthServiceAt is newAuthService on a cluster at feature level level.
func newAuthServiceAt(t *testing.T, cfg Config, level int) (*Service, *clock.Fake) {
	t.Helper()
	clk := newClock()
	st := newLocalStore(t)
	// A new cluster runs at the highest feature level (node raises it).
	raise, _ := fsm.NewCommand(fsm.TypeClusterLevel, 1, 1, fsm.ClusterLevel{Level: level})
	if _, err := st.Apply(context.Background(), raise); err != nil {
		t.Fatal(err)
	}
	s := newNodeService(t, st, "n1", cfg, WithClock(clk), WithSecretBox(testBox(t)))
	ctx := context.Background()
	if err := s.PublishSigningKey(ctx); err != nil && !errors.Is(err, ErrIssuerNotRecorded) { // level 1: published, no issuer
		t.Fatal(err)
	}
	if _, err := s.CreateUser(ctx, NewUser{Username: "alice", Password: pw, Roles: []string{"admin"}}); err != nil {
		t.Fatal(err)
	}
	return s, clk
}

// newNodeService is node's Service on st: cfg with the test hash,
// policy and issuer, an ES256 signing key of its own, and opts.
func newNodeService(t testing.TB, st Store, node string, cfg Config, opts ...Option) *Service {
	t.Helper()
	cfg.Hash = testHash
	cfg.Policy = PasswordPolicy{MinLength: 12, MaxLength: 128}
	cfg.Issuer = "https://bulwark.test:8443"
	cfg.NodeID = node
	s, err := New(st, cfg, append([]Option{WithSigner(testSigner(t, AlgES256))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func login(t *testing.T, s *Service) Tokens {
	t.Helper()
	tok, err := s.Login(context.Background(), "Alice", pw)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestLoginIssuesVerifiableTokens(t *testing.T) {
	s, _ := newAuthService(t, Config{})
	tok := login(t, s)
	if tok.TokenType != "Bearer" || tok.ExpiresIn != 3600 || !strings.HasPrefix(tok.RefreshToken, "bwr_") || tok.SessionID == "" {
		t.Fatalf("token answer %+v", tok)
	}
	p, err := s.Authenticate(context.Background(), tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	c := p.Claims
	if p.Username != "alice" || c.Sid != tok.SessionID || c.Subject != p.UserID || c.Issuer != "https://bulwark.test:8443" ||
		len(c.Audience) != 1 || c.ID == "" || c.AuthTime == 0 || len(c.Amr) != 1 || !p.IsAdmin() {
		t.Fatalf("claims %+v", c)
	}
	jwks, err := s.JWKS()
	if err != nil || !strings.Contains(string(jwks), s.currentSigner().Kid()) {
		t.Fatalf("JWKS %s lacks the signing kid: %v", jwks, err)
	}
}

func TestWrongPasswordUnknownAndDisabledAnswerAlike(t *testing.T) {
	s, _ := newAuthService(t, Config{})
	ctx := context.Background()
	if _, err := s.CreateUser(ctx, NewUser{Username: "dora", Password: pw}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetDisabled(ctx, "dora", true); err != nil {
		t.Fatal(err)
	}
	before := s.PasswordChecks()
	for _, c := range []struct{ name, pw string }{{"alice", "wrong password here"}, {"nobody", pw}, {"dora", pw}} {
		_, err := s.Login(ctx, c.name, c.pw)
		if !errors.Is(err, ErrInvalidCredentials) || err.Error() != ErrInvalidCredentials.Error() {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	// Each of the three paid for exactly one password check.
	if got := s.PasswordChecks() - before; got != 3 {
		t.Errorf("%d password checks for 3 failed logins", got)
	}
}

func TestLockoutBoundUnderConcurrency(t *testing.T) {
	for _, name := range []string{"alice", "nobody-at-all"} {
		t.Run(name, func(t *testing.T) {
			s, clk := newAuthService(t, Config{MaxFailedAttempts: 5, LockoutDuration: 15 * time.Minute})
			before := s.PasswordChecks()
			var wg sync.WaitGroup
			var mu sync.Mutex
			counts := map[string]int{}
			for i := 0; i < 100; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := s.Login(context.Background(), name, "a wrong password!")
					var le *LockedError
					key := "other"
					switch {
					case errors.As(err, &le) && le.RetryAfter > 0:
						key = "locked"
					case errors.Is(err, ErrInvalidCredentials):
						key = "invalid"
					}
					mu.Lock()
					counts[key]++
					mu.Unlock()
				}()
			}
			wg.Wait()
			if checks := s.PasswordChecks() - before; checks != 5 {
				t.Errorf("%d passwords checked, want exactly 5", checks)
			}
			if counts["invalid"] != 5 || counts["locked"] != 95 {
				t.Errorf("answers %v, want 5 invalid and 95 locked", counts)
			}
			// Still locked for the right password, until the window ends.
			if _, err := s.Login(context.Background(), name, pw); !errors.Is(err, ErrTooManyAttempts) {
				t.Errorf("right password while locked: %v", err)
			}
			clk.Advance(15 * time.Minute)
			_, err := s.Login(context.Background(), name, pw)
			if name == "alice" && err != nil {
				t.Errorf("after the lock: %v", err)
			}
			if name != "alice" && !errors.Is(err, ErrInvalidCredentials) {
				t.Errorf("unknown name after the lock: %v", err)
			}
		})
	}
}

func TestUnlockAndSuccessResetCounter(t *testing.T) {
	s, _ := newAuthService(t, Config{MaxFailedAttempts: 3})
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		s.Login(ctx, "alice", "a wrong password!")
	}
	login(t, s) // clears the count
	for i := 0; i < 3; i++ {
		s.Login(ctx, "alice", "a wrong password!")
	}
	if _, err := s.Login(ctx, "alice", pw); !errors.Is(err, ErrTooManyAttempts) {
		t.Fatalf("not locked after 3 failures: %v", err)
	}
	if err := s.Unlock(WithRequestInfo(ctx, RequestInfo{Actor: "local-admin"}), "ALICE"); err != nil {
		t.Fatal(err)
	}
	login(t, s)
}

func TestRefreshRotationReuseAndLogout(t *testing.T) {
	s, clk := newAuthService(t, Config{})
	ctx := context.Background()
	t1 := login(t, s)
	clk.Advance(time.Minute)
	t2, err := s.Refresh(ctx, t1.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if t2.SessionID != t1.SessionID || t2.RefreshToken == t1.RefreshToken {
		t.Fatalf("rotation: %+v", t2)
	}
	if _, err := s.Authenticate(ctx, t2.AccessToken); err != nil {
		t.Fatal(err)
	}
	// The old refresh token again: the session dies, for both holders.
	if _, err := s.Refresh(ctx, t1.RefreshToken); !errors.Is(err, ErrInvalidGrant) {
		t.Fatalf("reuse: %v", err)
	}
	if _, err := s.Refresh(ctx, t2.RefreshToken); !errors.Is(err, ErrInvalidGrant) {
		t.Fatalf("live token after reuse: %v", err)
	}
	if _, err := s.Authenticate(ctx, t2.AccessToken); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("access token after reuse: %v", err)
	}
	// The reuse is a critical audit entry.
	found := false
	s.store.View(func(r fsm.Reader) error {
		return r.AuditAfter(0, 0, func(e *fsm.AuditEntry) bool {
			found = found || (e.Type == "refresh.reuse" && e.Severity == fsm.AuditCritical)
			return true
		})
	})
	if !found {
		t.Error("no critical refresh.reuse audit entry")
	}

	t3 := login(t, s)
	p, err := s.Authenticate(ctx, t3.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Logout(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, t3.AccessToken); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("access token after logout: %v", err)
	}
	if _, err := s.Refresh(ctx, t3.RefreshToken); !errors.Is(err, ErrInvalidGrant) {
		t.Fatalf("refresh after logout: %v", err)
	}
	for _, bad := range []string{"", "bwr_short", "not-a-token", t3.RefreshToken + "x"} {
		if _, err := s.Refresh(ctx, bad); !errors.Is(err, ErrInvalidGrant) {
			t.Errorf("Refresh(%q): %v", bad, err)
		}
	}
}

func TestSessionEndsOnExpiryDisableDeleteAndPasswordChange(t *testing.T) {
	s, clk := newAuthService(t, Config{AccessTTL: 48 * time.Hour})
	ctx := context.Background()
	tok := login(t, s)
	clk.Advance(24 * time.Hour) // idle_timeout: the session is dead though the JWT lives
	if _, err := s.Authenticate(ctx, tok.AccessToken); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("idle session accepted: %v", err)
	}

	a, b := login(t, s), login(t, s)
	pa, err := s.Authenticate(ctx, a.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	sessions, err := s.Sessions(ctx, pa)
	if err != nil || len(sessions) != 2 || sessions[0].Current == sessions[1].Current {
		t.Fatalf("sessions %+v %v", sessions, err)
	}
	fresh, err := s.ChangePassword(ctx, pa, pw, "a brand new passphrase")
	if err != nil {
		t.Fatal(err)
	}
	if fresh.SessionID != a.SessionID {
		t.Fatalf("password change moved the session: %+v", fresh)
	}
	if _, err := s.Authenticate(ctx, b.AccessToken); !errors.Is(err, ErrInvalidToken) {
		t.Fatal("the other session survived the password change")
	}
	if _, err := s.Refresh(ctx, a.RefreshToken); !errors.Is(err, ErrInvalidGrant) {
		t.Fatal("the pre-change refresh token still works")
	}
	// That reuse ended session a; log in with the new password.
	if _, err := s.Login(ctx, "alice", pw); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatal("old password still accepted")
	}
	c, err := s.Login(ctx, "alice", "a brand new passphrase")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetDisabled(ctx, "alice", true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, c.AccessToken); !errors.Is(err, ErrInvalidToken) {
		t.Fatal("disabled user's token accepted")
	}
}

func TestForgedTokensRefused(t *testing.T) {
	s, clk := newAuthService(t, Config{})
	ctx := context.Background()
	tok := login(t, s)
	parts := strings.Split(tok.AccessToken, ".")
	none := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "x", "sid": tok.SessionID})
	noneTok, _ := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
	jwk, _ := s.currentSigner().PublicJWK()
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "x", "sid": tok.SessionID, "iss": s.cfg.Issuer,
		"aud": s.cfg.Audience, "exp": clk.Now().Add(time.Hour).Unix()})
	hs.Header["kid"] = s.currentSigner().Kid()
	hsTok, _ := hs.SignedString(jwk)
	for name, bad := range map[string]string{
		"none":        noneTok,
		"hs256-pub":   hsTok,
		"tampered":    parts[0] + "." + parts[1] + "x." + parts[2],
		"truncated":   parts[0] + "." + parts[1],
		"empty":       "",
		"garbage sig": parts[0] + "." + parts[1] + ".AAAA",
	} {
		if _, err := s.Authenticate(ctx, bad); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Verified once (and so cached), the token must still die at exp.
	if _, err := s.Authenticate(ctx, tok.AccessToken); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour + time.Minute)
	if _, err := s.Authenticate(ctx, tok.AccessToken); !errors.Is(err, ErrInvalidToken) {
		t.Error("expired token accepted")
	}
}

// TestBurstOfCorrectLoginsIsServed: a script logging one account in 30
// times at once is served. Slots held by checks in flight make the others
// wait; they do not fail, and the lockout bound still holds for failures.
func TestBurstOfCorrectLoginsIsServed(t *testing.T) {
	s, _ := newAuthService(t, Config{MaxFailedAttempts: 5})
	var wg sync.WaitGroup
	errs := make(chan error, 30)
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Login(context.Background(), "alice", pw); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a correct login in a burst failed: %v", err)
	}
}

// A node that says its state may be stale vouches for no session, and a
// read barrier is one no-op entry through the store.
func TestFreshnessAndReadBarrier(t *testing.T) {
	s, _ := newAuthServiceAt(t, Config{}, 1)
	tok := login(t, s)
	errStale := errors.New("no contact with the leader")
	stale := false
	s.fresh = func() error {
		if stale {
			return errStale
		}
		return nil
	}
	if _, err := s.Authenticate(context.Background(), tok.AccessToken); err != nil {
		t.Fatal(err)
	}
	stale = true
	if p, err := s.Authenticate(context.Background(), tok.AccessToken); !errors.Is(err, errStale) || p != nil {
		t.Fatalf("Authenticate on a stale node: %v, %v", p, err)
	}
	// A forged token is still refused as such, before freshness matters.
	if _, err := s.Authenticate(context.Background(), tok.AccessToken+"x"); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("a forged token on a stale node: %v", err)
	}

	// Below feature level 2 no member may be asked to apply a barrier
	// (or session.refresh v2): the read stays local, refreshes use v1.
	ctx := context.Background()
	st := s.store.(*localStore)
	before := st.index
	if err := s.ReadBarrier(ctx); err != nil || st.index != before {
		t.Fatalf("ReadBarrier at level 1: %v, %d entries", err, st.index-before)
	}
	tok = login(t, s)
	if _, err := s.Refresh(ctx, tok.RefreshToken); err != nil || st.versions[fsm.TypeSessionRefresh] != 1 {
		t.Fatalf("refresh at level 1: %v, session.refresh v%d", err, st.versions[fsm.TypeSessionRefresh])
	}
	raise, _ := fsm.NewCommand(fsm.TypeClusterLevel, 1, 1, fsm.ClusterLevel{Level: 2})
	if _, err := st.Apply(ctx, raise); err != nil {
		t.Fatal(err)
	}
	before = st.index
	if err := s.ReadBarrier(ctx); err != nil || st.index != before+1 {
		t.Fatalf("ReadBarrier at level 2: %v, %d entries", err, st.index-before)
	}
	tok = login(t, s)
	if _, err := s.Refresh(ctx, tok.RefreshToken); err != nil || st.versions[fsm.TypeSessionRefresh] != 2 {
		t.Fatalf("refresh at level 2: %v, session.refresh v%d", err, st.versions[fsm.TypeSessionRefresh])
	}
	// Sessions carry the password generation they were checked against
	// from level 3 on.
	if st.versions[fsm.TypeSessionCreate] != 1 {
		t.Fatalf("login at level 2: session.create v%d", st.versions[fsm.TypeSessionCreate])
	}
	raise, _ = fsm.NewCommand(fsm.TypeClusterLevel, 1, 1, fsm.ClusterLevel{Level: 3})
	if _, err := st.Apply(ctx, raise); err != nil {
		t.Fatal(err)
	}
	if login(t, s); st.versions[fsm.TypeSessionCreate] != 2 {
		t.Fatalf("login at level 3: session.create v%d", st.versions[fsm.TypeSessionCreate])
	}
}

// require_mfa_for_admin: a password-only session of an admin does not
// carry the admin role's powers; with the setting off it does.
func TestRequireMFAForAdmin(t *testing.T) {
	for _, require := range []bool{true, false} {
		s, _ := newAuthService(t, Config{RequireMFAForAdmin: require})
		p, err := s.Authenticate(context.Background(), login(t, s).AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		if p.IsAdmin() == require {
			t.Fatalf("require_mfa_for_admin=%v: IsAdmin %v for a password-only admin session", require, p.IsAdmin())
		}
		if require && !strings.Contains(p.AdminRefusal(), "require_mfa_for_admin") {
			t.Fatalf("refusal %q does not name the setting", p.AdminRefusal())
		}
		// The token's roles claim, read by relying parties, agrees.
		if slices.Contains(p.Claims.Roles, RoleAdmin) == require {
			t.Fatalf("require_mfa_for_admin=%v: token roles %v", require, p.Claims.Roles)
		}
	}
	// A plain user is refused for the role, whatever the setting.
	p := &Principal{Roles: []string{"ops"}}
	if p.IsAdmin() || !strings.Contains(p.AdminRefusal(), "admin role") {
		t.Fatalf("plain user: %q", p.AdminRefusal())
	}
	if !secondFactor([]string{"pwd", "otp"}) || secondFactor([]string{"pwd"}) {
		t.Fatal("secondFactor")
	}
}

// A token is held to its key's lifecycle: no longer than jwt_expiry, not
// issued after its key stopped signing, not accepted once the key retired.
// Retiring a removed node's keys puts that to use.
func TestTokensHeldToTheirKeyLifecycle(t *testing.T) {
	s, clk := newAuthService(t, Config{})
	ctx := context.Background()
	tok := login(t, s)
	p, err := s.Authenticate(ctx, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	// Re-signed with a longer life by the same key: refused.
	long := *p.Claims
	long.ExpiresAt = jwt.NewNumericDate(long.IssuedAt.Add(2 * time.Hour))
	forged, err := s.currentSigner().Sign(long)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, forged); !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), "jwt_expiry") {
		t.Fatalf("a token living 2h under a 1h jwt_expiry: %v", err)
	}

	// The node is removed: its keys stop signing now and retire after 1h
	// plus leeway. Tokens it signed before still verify, until then.
	n, err := s.RetireNodeKeys(ctx, "n1", "test")
	if err != nil || n != 1 {
		t.Fatalf("RetireNodeKeys: %d, %v", n, err)
	}
	if n, _ := s.RetireNodeKeys(ctx, "n1", "test"); n != 0 {
		t.Fatalf("retiring again retired %d keys", n)
	}
	s.verifier.cache = nil // a fresh node, that has verified nothing yet
	if _, err := s.Authenticate(ctx, tok.AccessToken); err != nil {
		t.Fatalf("a token signed before the removal: %v", err)
	}
	clk.Advance(5 * time.Minute)
	later := *p.Claims
	later.IssuedAt = jwt.NewNumericDate(clk.Now())
	later.ExpiresAt = jwt.NewNumericDate(clk.Now().Add(30 * time.Minute))
	minted, err := s.currentSigner().Sign(later)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, minted); !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), "stopped signing") {
		t.Fatalf("a token the removed node's key signed afterwards: %v", err)
	}
}

// raiseLevel raises the test store's feature level.
func raiseLevel(t *testing.T, s *Service, level int) {
	t.Helper()
	cmd, _ := fsm.NewCommand(fsm.TypeClusterLevel, 1, 1, fsm.ClusterLevel{Level: level})
	if _, err := s.store.Apply(context.Background(), cmd); err != nil {
		t.Fatal(err)
	}
}

// From feature level 3 the lockout commands are v2: one address may make
// only MaxFailedNamesPerAddress names fail per window, then any name with
// nothing live is refused as a lock, known or not; below it, v1 and no cap.
func TestFailedNamesPerAddress(t *testing.T) {
	s, clock := newAuthServiceAt(t, Config{MaxFailedNamesPerAddress: 3}, 1)
	st := s.store.(*localStore)
	ctx := WithRequestInfo(context.Background(), RequestInfo{IP: "2001:db8:5::1"})
	other := WithRequestInfo(context.Background(), RequestInfo{IP: "2001:db8:6::1"})
	for i := 0; i < 5; i++ { // level 1: no cap
		if _, err := s.Login(ctx, fmt.Sprint("nobody", i), "a wrong password!"); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("level 1, name %d: %v", i, err)
		}
	}
	if st.versions[fsm.TypeLoginAttempt] != 1 || st.versions[fsm.TypeLoginFailure] != 1 {
		t.Fatalf("versions below level 3: %v", st.versions)
	}
	raiseLevel(t, s, 3)
	for i := 0; i < 3; i++ {
		if _, err := s.Login(ctx, fmt.Sprint("ghost", i), "a wrong password!"); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("level 3, name %d: %v", i, err)
		}
	}
	if st.versions[fsm.TypeLoginAttempt] != 2 || st.versions[fsm.TypeLoginFailure] != 2 {
		t.Fatalf("versions at level 3: %v", st.versions)
	}
	before := s.PasswordChecks()
	var le1, le2 *LockedError
	_, err1 := s.Login(ctx, "ghost-new", "a wrong password!")
	_, err2 := s.Login(WithRequestInfo(context.Background(), RequestInfo{IP: "2001:db8:5::2"}), "alice", pw)
	if !errors.As(err1, &le1) || !errors.As(err2, &le2) || le1.RetryAfter != le2.RetryAfter || le1.RetryAfter <= 0 {
		t.Fatalf("unknown and known names from a capped /64: %v, %v", err1, err2)
	}
	if s.PasswordChecks() != before {
		t.Fatal("a refused login checked a password")
	}
	if _, err := s.Login(other, "alice", pw); err != nil {
		t.Fatalf("another /64: %v", err)
	}
	clock.Advance(15 * time.Minute)
	if _, err := s.Login(ctx, "alice", pw); err != nil {
		t.Fatalf("after the address's window: %v", err)
	}
}

func TestReleaseSlot(t *testing.T) {
	s, _ := newAuthServiceAt(t, Config{MaxFailedAttempts: 2}, 1)
	ctx := context.Background()
	lockout := func() (l fsm.Lockout) {
		s.store.View(func(r fsm.Reader) error { l, _ = r.Lockout("alice"); return nil })
		return l
	}
	// Below level 3 there is nothing to propose: the slot stays pending.
	slot, err := s.attempt(ctx, "alice", RequestInfo{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.releaseSlot(ctx, "alice", slot)
	if l := lockout(); len(l.Pending) != 1 {
		t.Fatalf("level 1: %+v", l)
	}
	raiseLevel(t, s, 3)
	for i := 0; i < 5; i++ { // never a failure: always the same slot back
		slot, err := s.attempt(ctx, "alice", RequestInfo{IP: "192.0.2.1"}, nil)
		if err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
		s.releaseSlot(ctx, "alice", slot)
	}
	if l := lockout(); l.Failures != 0 || len(l.Pending) != 1 {
		t.Fatalf("after releases: %+v", l)
	}
}

// At level 3 Sweep proposes small v2 sweeps, again while more is due.
func TestSweepV2Rounds(t *testing.T) {
	s, clock := newAuthService(t, Config{})
	st := s.store.(*localStore)
	raiseLevel(t, s, 3)
	ctx := context.Background()
	n := 3*sweepLimit + 5
	for i := 0; i < n; i++ {
		ctx := WithRequestInfo(ctx, RequestInfo{IP: fmt.Sprintf("192.0.2.%d", i%200)})
		s.Login(ctx, fmt.Sprint("nobody", i), "a wrong password!")
	}
	clock.Advance(16 * time.Minute)
	before := st.index
	res, err := s.Sweep(ctx)
	if err != nil || st.versions[fsm.TypeSweep] != 2 {
		t.Fatalf("sweep: %+v %v, v%d", res, err, st.versions[fsm.TypeSweep])
	}
	if res.Lockouts != n || res.More || st.index-before < 4 {
		t.Fatalf("sweep at level 3: %+v in %d proposals, want %d lockouts", res, st.index-before, n)
	}
}

// A password login opens few read transactions of the local state: on a
// node each is a bbolt transaction on the login's path (begin, meta
// copy, a lock shared with every other reader), and the feature level,
// the lockdown and the user's factors need one each at most.
func TestLoginReadTransactions(t *testing.T) {
	const maxViews = 4
	s, _ := newAuthService(t, Config{})
	st := s.store.(*localStore)
	login(t, s) // the first login may read what later ones find cached
	before := st.views.Load()
	login(t, s)
	if n := st.views.Load() - before; n > maxViews {
		t.Errorf("a password login opened %d read transactions, want at most %d", n, maxViews)
	}
}
