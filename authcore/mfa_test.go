package authcore

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/clock"
)

func testBox(t testing.TB) *SecretBox {
	t.Helper()
	b, err := NewSecretBox(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// code is the TOTP code of secret at the clock's time.
func code(t testing.TB, secret string, at time.Time) string {
	t.Helper()
	c, err := totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var fromAddr = WithRequestInfo(context.Background(), RequestInfo{IP: "192.0.2.7"})

// enrolAlice turns TOTP on for alice and returns its secret and recovery
// codes; the clock has moved a step past the confirming code.
func enrolAlice(t *testing.T, s *Service, clk *clock.Fake) (string, []string) {
	t.Helper()
	p := principalOf(t, s, login(t, s))
	e, err := s.EnrollTOTP(fromAddr, p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(e.OTPAuthURI, "otpauth://totp/bulwark:alice?") || !strings.HasPrefix(e.QRCode, "data:image/png;base64,") {
		t.Fatalf("enrolment: %q, %.40q", e.OTPAuthURI, e.QRCode)
	}
	if _, err := s.ConfirmTOTP(fromAddr, p, "000000"); !errors.Is(err, ErrInvalidCredentials) && code(t, e.Secret, clk.Now()) != "000000" {
		t.Fatalf("a wrong first code: %v", err)
	}
	codes, err := s.ConfirmTOTP(fromAddr, p, code(t, e.Secret, clk.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if len(codes) < 10 {
		t.Fatalf("%d recovery codes, want at least 10", len(codes))
	}
	clk.Advance(30 * time.Second)
	return e.Secret, codes
}

func principalOf(t *testing.T, s *Service, tok Tokens) *Principal {
	t.Helper()
	p, err := s.Authenticate(context.Background(), tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// mfaLogin signs alice in with her password and returns the challenge.
func mfaLogin(t *testing.T, s *Service) *MFAChallenge {
	t.Helper()
	tok, err := s.Login(fromAddr, "alice", pw)
	if err != nil {
		t.Fatal(err)
	}
	if tok.MFA == nil || tok.AccessToken != "" || tok.RefreshToken != "" {
		t.Fatalf("a password login of a user with TOTP answered %+v", tok)
	}
	return tok.MFA
}

func TestTOTPLogin(t *testing.T) {
	s, clk := newAuthService(t, Config{})
	secret, _ := enrolAlice(t, s, clk)
	ch := mfaLogin(t, s)
	if strings.Join(ch.Methods, " ") != "totp recovery_code" {
		t.Fatalf("methods %v", ch.Methods)
	}
	c := code(t, secret, clk.Now())
	tok, err := s.VerifyMFA(fromAddr, ch.Token, "totp", c)
	if err != nil {
		t.Fatal(err)
	}
	p := principalOf(t, s, tok)
	if strings.Join(p.Claims.Amr, " ") != "pwd otp mfa" {
		t.Fatalf("amr %v", p.Claims.Amr)
	}
	// The same code again, with a fresh ticket: refused, and counted.
	if _, err := s.VerifyMFA(fromAddr, mfaLogin(t, s).Token, "totp", c); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("a code used twice: %v", err)
	}
	// The same ticket again, with the next code: refused.
	clk.Advance(30 * time.Second)
	if _, err := s.VerifyMFA(fromAddr, ch.Token, "totp", code(t, secret, clk.Now())); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("a ticket used twice: %v", err)
	}
	if _, err := s.VerifyMFA(fromAddr, mfaLogin(t, s).Token, "totp", code(t, secret, clk.Now())); err != nil {
		t.Fatalf("the next step's code: %v", err)
	}
	info, err := s.MFAStatus(fromAddr, p)
	if err != nil || !info.TOTP.Enabled || info.RecoveryCodesLeft != 10 {
		t.Fatalf("status %+v, %v", info, err)
	}
}

// Wrong codes lock the second factor, never the password: the password
// still answers a challenge while the code is refused as locked.
func TestWrongCodesLockTheSecondFactorOnly(t *testing.T) {
	s, clk := newAuthService(t, Config{MaxFailedAttempts: 3})
	secret, _ := enrolAlice(t, s, clk)
	good := code(t, secret, clk.Now())
	bad := "000000"
	if bad == good {
		bad = "111111"
	}
	for i := range 3 {
		if _, err := s.VerifyMFA(fromAddr, mfaLogin(t, s).Token, "totp", bad); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("wrong code %d: %v", i+1, err)
		}
	}
	ch := mfaLogin(t, s) // the password is not locked
	var le *LockedError
	if _, err := s.VerifyMFA(fromAddr, ch.Token, "totp", good); !errors.As(err, &le) {
		t.Fatalf("the right code after 3 wrong ones: %v, want locked", err)
	}
	// Malformed codes are input errors: not counted, not locked out.
	if _, err := s.VerifyMFA(fromAddr, ch.Token, "totp", "12345"); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("a 5-digit code: %v", err)
	}
	if err := s.Unlock(fromAddr, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.VerifyMFA(fromAddr, ch.Token, "totp", good); err != nil {
		t.Fatalf("after unlock: %v", err)
	}
}

func TestRecoveryCodeUsedOnce(t *testing.T) {
	s, clk := newAuthService(t, Config{})
	_, codes := enrolAlice(t, s, clk)
	rc := strings.ToUpper(strings.ReplaceAll(codes[2], "-", " ")) // typed loosely
	tok, err := s.VerifyMFA(fromAddr, mfaLogin(t, s).Token, "recovery_code", rc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.VerifyMFA(fromAddr, mfaLogin(t, s).Token, "recovery_code", codes[2]); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("a recovery code used twice: %v", err)
	}
	info, _ := s.MFAStatus(fromAddr, principalOf(t, s, tok))
	if info.RecoveryCodesLeft != 9 {
		t.Fatalf("%d codes left, want 9", info.RecoveryCodesLeft)
	}
	// Regenerating needs a recent second factor, which this session has;
	// the old set dies.
	fresh, err := s.RegenerateRecoveryCodes(fromAddr, principalOf(t, s, tok))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.VerifyMFA(fromAddr, mfaLogin(t, s).Token, "recovery_code", codes[3]); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("a code of the old set: %v", err)
	}
	if _, err := s.VerifyMFA(fromAddr, mfaLogin(t, s).Token, "recovery_code", fresh[0]); err != nil {
		t.Fatalf("a code of the new set: %v", err)
	}
}

// An mfa_token is bound to its client address and its user's password,
// expires, and cannot be forged.
func TestMFATokenBinding(t *testing.T) {
	s, clk := newAuthService(t, Config{})
	secret, _ := enrolAlice(t, s, clk)
	ch := mfaLogin(t, s)
	c := code(t, secret, clk.Now())
	other := WithRequestInfo(context.Background(), RequestInfo{IP: "198.51.100.1"})
	if _, err := s.VerifyMFA(other, ch.Token, "totp", c); !errors.Is(err, ErrInvalidMFAToken) {
		t.Fatalf("from another address: %v", err)
	}
	forged := ch.Token[:len(ch.Token)-2] + "AA"
	if _, err := s.VerifyMFA(fromAddr, forged, "totp", c); !errors.Is(err, ErrInvalidMFAToken) {
		t.Fatalf("forged: %v", err)
	}
	// Under another data key (another cluster), the token is nothing.
	s2, _ := newAuthService(t, Config{})
	s2.box, _ = NewSecretBox(bytes.Repeat([]byte{8}, 32))
	if _, err := s2.VerifyMFA(fromAddr, ch.Token, "totp", c); !errors.Is(err, ErrInvalidMFAToken) {
		t.Fatalf("under another key: %v", err)
	}
	clk.Advance(mfaTicketTTL)
	if _, err := s.VerifyMFA(fromAddr, ch.Token, "totp", code(t, secret, clk.Now())); !errors.Is(err, ErrInvalidMFAToken) {
		t.Fatalf("expired: %v", err)
	}
}

// Two nodes checking the same code at once start one session between
// them: Apply re-checks the step.
func TestConcurrentSameCodeOneSession(t *testing.T) {
	s, clk := newAuthService(t, Config{})
	secret, _ := enrolAlice(t, s, clk)
	a, b := mfaLogin(t, s), mfaLogin(t, s)
	c := code(t, secret, clk.Now())
	st := s.store.(*localStore)
	// Both codes are checked before either session is proposed.
	var checked sync.WaitGroup
	checked.Add(2)
	st.before = func(ctx context.Context, cmd fsm.Command) {
		if cmd.Type == fsm.TypeSessionCreate {
			checked.Done()
			checked.Wait()
		}
	}
	errs := make(chan error, 2)
	for _, ch := range []*MFAChallenge{a, b} {
		go func() { _, err := s.VerifyMFA(fromAddr, ch.Token, "totp", c); errs <- err }()
	}
	e1, e2 := <-errs, <-errs
	if (e1 == nil) == (e2 == nil) {
		t.Fatalf("two logins with one code: %v and %v, want one success", e1, e2)
	}
}

// Step-up: a sensitive action needs a second factor within the window.
func TestStepUp(t *testing.T) {
	s, clk := newAuthService(t, Config{StepUpWindow: 10 * time.Minute})
	// Without a second factor there is nothing to step up with.
	plain := principalOf(t, s, login(t, s))
	if err := s.StepUp(plain); err != nil {
		t.Fatalf("a user without factors: %v", err)
	}
	secret, _ := enrolAlice(t, s, clk)
	if _, err := s.EnrollTOTP(fromAddr, plain); !errors.Is(err, ErrStepUpRequired) {
		t.Fatalf("a password-only session adding a factor to an account that has one: %v", err)
	}
	if _, err := s.ChangePassword(fromAddr, plain, pw, "another long passphrase"); !errors.Is(err, ErrStepUpRequired) {
		t.Fatalf("a password-only session changing the password: %v", err)
	}
	tok, err := s.VerifyMFA(fromAddr, mfaLogin(t, s).Token, "totp", code(t, secret, clk.Now()))
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(11 * time.Minute)
	stale := principalOf(t, s, tok)
	var su *StepUpError
	if err := s.RemoveTOTP(fromAddr, stale); !errors.As(err, &su) || su.MaxAge != 10*time.Minute {
		t.Fatalf("removing TOTP with an 11-minute-old factor: %v", err)
	}
	if _, err := s.ChangePassword(fromAddr, stale, pw, "another long passphrase"); !errors.Is(err, ErrStepUpRequired) {
		t.Fatalf("changing the password with a stale factor: %v", err)
	}
	tok, err = s.VerifyMFA(fromAddr, mfaLogin(t, s).Token, "totp", code(t, secret, clk.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ChangePassword(fromAddr, principalOf(t, s, tok), pw, "another long passphrase"); err != nil {
		t.Fatalf("a fresh factor: %v", err)
	}
}

// An administrator without a second factor holds no admin role until
// they enrol one and sign in with it.
func TestAdminNeedsASecondFactor(t *testing.T) {
	s, clk := newAuthService(t, Config{RequireMFAForAdmin: true})
	p := principalOf(t, s, login(t, s))
	if p.IsAdmin() {
		t.Fatal("a password-only admin session is an admin")
	}
	secret, _ := enrolAlice(t, s, clk)
	tok, err := s.VerifyMFA(fromAddr, mfaLogin(t, s).Token, "totp", code(t, secret, clk.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if p := principalOf(t, s, tok); !p.IsAdmin() || s.StepUp(p) != nil {
		t.Fatalf("an admin signed in with TOTP: admin %v", p.IsAdmin())
	}
}

// ResetMFA removes every factor and ends every session.
func TestResetMFA(t *testing.T) {
	s, clk := newAuthService(t, Config{})
	secret, _ := enrolAlice(t, s, clk)
	tok, err := s.VerifyMFA(fromAddr, mfaLogin(t, s).Token, "totp", code(t, secret, clk.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.ResetMFA(fromAddr, "alice"); err != nil || n < 1 {
		t.Fatalf("reset: %d sessions, %v", n, err)
	}
	if _, err := s.Authenticate(context.Background(), tok.AccessToken); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("a session outlived the reset: %v", err)
	}
	if tok := login(t, s); tok.MFA != nil {
		t.Fatal("a password login after the reset still asks for a second factor")
	}
}

// The TOTP secret never reaches the store in plain form.
func TestTOTPSecretSealed(t *testing.T) {
	s, clk := newAuthService(t, Config{})
	secret, _ := enrolAlice(t, s, clk)
	u, err := s.lookup("alice")
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.factorsOf(u.ID)
	if err == nil && m.TOTP == nil {
		t.Fatal("no TOTP stored")
	}
	if bytes.Contains(m.TOTP.Sealed, []byte(secret)) {
		t.Fatal("the stored TOTP secret is in plain form")
	}
}

// Below feature level 4 no member may be asked to apply a factor.
func TestNoEnrolmentBelowLevel4(t *testing.T) {
	s, _ := newAuthServiceAt(t, Config{}, 3)
	tok := login(t, s)
	if _, err := s.EnrollTOTP(fromAddr, principalOf(t, s, tok)); !errors.Is(err, ErrMFAUnavailable) {
		t.Fatalf("enrolment at level 3: %v", err)
	}
}

// BenchmarkLogin compares a password login with one followed by a TOTP
// code, on the in-process store with the default argon2id cost: what a
// second factor adds (two more commits and an HMAC) against the hash.
//
//	go test -run '^$' -bench 'BenchmarkLogin' -count 5 ./authcore
func BenchmarkLogin(b *testing.B) {
	for _, withTOTP := range []bool{false, true} {
		name := "password"
		if withTOTP {
			name = "password+totp"
		}
		b.Run(name, func(b *testing.B) {
			clk := newClock()
			st := newLocalStore(b)
			raise, _ := fsm.NewCommand(fsm.TypeClusterLevel, 1, 1, fsm.ClusterLevel{Level: fsm.MaxLevel})
			if _, err := st.Apply(context.Background(), raise); err != nil {
				b.Fatal(err)
			}
			s, err := New(st, Config{Hash: DefaultHashParams(), Policy: PasswordPolicy{MinLength: 12, MaxLength: 128},
				Issuer: "https://bulwark.test:8443", NodeID: "n1", MaxFailedAttempts: 1000},
				WithClock(clk), WithSigner(testSigner(b, AlgES256)), WithSecretBox(testBox(b)))
			if err != nil {
				b.Fatal(err)
			}
			u, err := s.CreateUser(fromAddr, NewUser{Username: "alice", Password: pw})
			if err != nil {
				b.Fatal(err)
			}
			var secret string
			if withTOTP {
				p := &Principal{UserID: u.ID, Username: "alice"}
				e, err := s.EnrollTOTP(fromAddr, p)
				if err != nil {
					b.Fatal(err)
				}
				secret = e.Secret
				if _, err := s.ConfirmTOTP(fromAddr, p, code(b, secret, clk.Now())); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for range b.N {
				clk.Advance(30 * time.Second) // a fresh step for each code
				tok, err := s.Login(fromAddr, "alice", pw)
				if err != nil {
					b.Fatal(err)
				}
				if withTOTP {
					if tok, err = s.VerifyMFA(fromAddr, tok.MFA.Token, "totp", code(b, secret, clk.Now())); err != nil {
						b.Fatal(err)
					}
				}
				if tok.AccessToken == "" {
					b.Fatal("no token")
				}
			}
		})
	}
}

// Adding a first factor needs a recent sign-in: an old (refreshed)
// session cannot bind the account to a thief's authenticator.
func TestFirstFactorNeedsARecentSignIn(t *testing.T) {
	s, clk := newAuthService(t, Config{StepUpWindow: 10 * time.Minute})
	tok := login(t, s)
	clk.Advance(11 * time.Minute)
	if _, err := s.EnrollTOTP(fromAddr, principalOf(t, s, tok)); !errors.Is(err, ErrStepUpRequired) {
		t.Fatalf("enrolment on an 11-minute-old sign-in: %v", err)
	}
	if _, err := s.EnrollTOTP(fromAddr, principalOf(t, s, login(t, s))); err != nil {
		t.Fatalf("enrolment on a fresh sign-in: %v", err)
	}
}
