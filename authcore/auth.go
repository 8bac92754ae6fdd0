package authcore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/clock"
)

// refreshPrefix marks bulwark refresh tokens so secret scanners can find
// leaked ones; the rest is 256 random bits, base64url.
const refreshPrefix = "bwr_"

// RequestInfo describes who asks: the client's address and user agent, and
// for administrative calls the acting user. api puts it in the context.
type RequestInfo struct {
	IP        string
	UserAgent string
	Actor     string // user id or "local-admin"
}

type requestInfoKey struct{}

// WithRequestInfo attaches ri to ctx.
func WithRequestInfo(ctx context.Context, ri RequestInfo) context.Context {
	return context.WithValue(ctx, requestInfoKey{}, ri)
}

func requestInfo(ctx context.Context) RequestInfo {
	ri, _ := ctx.Value(requestInfoKey{}).(RequestInfo)
	ri.IP = fsm.CleanAuditText(ri.IP, fsm.MaxAuditIP)
	ri.UserAgent = fsm.CleanAuditText(ri.UserAgent, fsm.MaxAuditUserAgent)
	ri.Actor = fsm.CleanAuditText(ri.Actor, fsm.MaxAuditActor)
	return ri
}

// Tokens is the token answer of API.md.
type Tokens struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	SessionID    string `json:"session_id"`
	// DeviceToken lets this device sign in to the same name while the
	// name is locked by failures from elsewhere (device.go).
	DeviceToken string `json:"device_token,omitempty"`
	// MFA, when set, is the answer instead: the first factor checked out,
	// and the login goes on with a second one (no token above is set).
	MFA *MFAChallenge `json:"-"`
}

// LockedError says a name is locked and for how long.
type LockedError struct{ RetryAfter time.Duration }

func (e *LockedError) Error() string {
	return "too many failed attempts; try again later"
}

// Unwrap makes errors.Is(err, ErrTooManyAttempts) true.
func (e *LockedError) Unwrap() error { return ErrTooManyAttempts }

// Principal is an authenticated caller: a valid access token of a live
// session of an enabled user.
type Principal struct {
	UserID    string
	Username  string
	SessionID string
	Roles     []string
	Claims    *AccessClaims
	// adminNeedsMFA: require_mfa_for_admin is on and this session's
	// authentication had no second factor.
	adminNeedsMFA bool
	// user is the user record Authenticate read, in the same view as the
	// session: Me answers from it rather than read it again.
	user *fsm.User
}

// IsAdmin reports whether the caller may act as an administrator: it
// holds the admin role, and, when require_mfa_for_admin is on, signed in
// with a second factor. AdminRefusal says why not.
func (p *Principal) IsAdmin() bool { return p.AdminRefusal() == "" }

// AdminRefusal is "" for a caller who may act as an administrator, else
// why it may not.
func (p *Principal) AdminRefusal() string {
	if !slices.Contains(p.Roles, RoleAdmin) {
		return "this route needs the admin role"
	}
	if p.adminNeedsMFA {
		return "administrators must sign in with a second factor (auth.security.require_mfa_for_admin): " +
			"enrol one (POST /v1/me/mfa/totp or /v1/me/mfa/webauthn/begin) and sign in again with it"

	}
	return ""
}

// secondFactor reports whether amr (RFC 8176) names a second factor.
func secondFactor(amr []string) bool {
	return slices.ContainsFunc(amr, func(m string) bool { return m == "otp" || m == "mfa" || m == "hwk" })
}

// Login checks a username and password and, if they match an enabled user,
// starts a session. The attempt is counted through the replicated log
// before the password is checked, so the cluster as a whole checks at most
// MaxFailedAttempts passwords per name per LockoutDuration. Unknown names,
// wrong passwords and disabled users answer alike, after the same work.
//
// Once the attempt is made, the login runs to its end detached from ctx's
// cancellation: a client that closes its connection halfway still has its
// password's failure counted (and a reserved slot that is never resolved
// counts as a failure in the state machine).
func (s *Service) Login(ctx context.Context, username, password string) (Tokens, error) {
	return s.LoginWith(ctx, LoginRequest{Username: username, Password: password})
}

// LoginRequest is a login with what may come with it.
type LoginRequest struct {
	Username, Password string
	// Altcha is a solved proof-of-work challenge (base64 JSON), needed
	// once the name or the address has failed often (ChallengeAfter).
	Altcha string
	// DeviceToken is the device token an earlier login of this name
	// answered: its own budget while the name is locked (device.go).
	DeviceToken string
}

// LoginWith is Login with a LoginRequest's extras.
func (s *Service) LoginWith(ctx context.Context, req LoginRequest) (Tokens, error) {
	username, password := req.Username, req.Password
	name, err := NormalizeUsername(username)
	if err != nil {
		return Tokens{}, err
	}
	if password == "" || len(password) > 4096 {
		return Tokens{}, fmt.Errorf("%w: password must be 1 to 4096 bytes", ErrInvalidInput)
	}
	sol, err := s.checkSolution(req.Altcha)
	if err != nil {
		return Tokens{}, err
	}
	ctx, cancel := s.detach(ctx)
	defer cancel()
	ri := requestInfo(ctx)
	gate := s.challengeGate(ri, sol)
	key := name // the counter this check draws on
	slot, err := s.attempt(ctx, name, ri, &gate)
	var dev *device
	if le := (*LockedError)(nil); errors.As(err, &le) && req.DeviceToken != "" && s.proposable(fsm.TypeLoginAttempt, 3) {
		// Locked by failures from elsewhere: a device of the owner's has
		// a budget of its own.
		if dev = s.parseDevice(req.DeviceToken, name); dev != nil {
			key = deviceLockName(dev.hash)
			slot, err = s.attempt(ctx, key, ri, &fsm.LoginAttemptV3{Device: dev.hash})
		}
	}
	if err != nil {
		return Tokens{}, err
	}
	u, _ := s.lookup(name)
	ok, err := s.checkPassword(ctx, name, u, password)
	if err != nil {
		s.unchecked(ctx, key, slot, err)
		return Tokens{}, err
	}
	// The lockdown, and the factors of a user whose password checked out,
	// in one read.
	var lockdown LockdownState
	var m *fsm.MFA
	err = s.store.View(func(r fsm.Reader) error {
		if lockdown = r.Lockdown(); !ok || u.Disabled {
			return nil
		}
		var err error
		m, err = r.MFA(u.ID)
		return err
	})
	locked := lockdown.Active && !s.exempt(ri)
	if !ok || u.Disabled {
		if dev != nil {
			s.deviceFailed(ctx, dev, name, u, ri, slot)
		} else {
			s.loginFailed(ctx, name, u, ri, slot)
		}
		if locked { // right or wrong, a lockdown answers alike
			return Tokens{}, ErrLockedDown
		}
		return Tokens{}, ErrInvalidCredentials
	}
	if err != nil {
		return Tokens{}, err // the slot counts as a failure when it runs out: fail closed
	}
	if locked && !(u.HasRole(RoleAdmin) && m.Enabled()) {
		// Only an administrator with a second factor goes on.
		s.releaseSlot(ctx, key, slot)
		return Tokens{}, ErrLockedDown
	}
	if m.Enabled() {
		return s.challenge(ctx, u, key, m, ri)
	}
	gen := u.PasswordGen
	tok, err := s.startSessionWith(ctx, u, key, ri, []string{"pwd"}, sessionProof{pwdGen: &gen, rehash: s.rehash(ctx, u, password)})
	if err == nil {
		tok.DeviceToken = s.issueDevice(name)
	}
	if errors.Is(err, fsm.ErrUserDisabled) || errors.Is(err, fsm.ErrUserNotFound) || errors.Is(err, fsm.ErrCredentialChanged) {
		// Disabled, deleted or given another password meanwhile: the
		// password checked is no longer the user's.
		return Tokens{}, ErrInvalidCredentials
	}
	return tok, err
}

// rehash returns password hashed under the configured parameters if u's
// stored hash uses others, for the session's command to store in its
// place; "" if it needs none or hashing it failed (the login goes on).
func (s *Service) rehash(ctx context.Context, u *fsm.User, password string) string {
	if !NeedsRehash(u.PasswordHash, s.cfg.Hash) {
		return ""
	}
	salt, err := NewSalt()
	if err != nil {
		return ""
	}
	var phc string
	if err := s.withHashSlot(ctx, func() error {
		phc, err = HashPassword(password, s.cfg.Hash, salt)
		return err
	}); err != nil {
		s.log.Warn("password not rehashed to the current parameters", "user", u.ID, "error", err)
		return ""
	}
	return phc
}

// pendingTTL is how long a granted password check may stay unresolved
// before its slot frees (its node died mid-check).
const pendingTTL = 30 * time.Second

// attempt obtains a slot to check one password for name, through the log.
// When every slot is held by checks in flight (a burst of logins for one
// name) it waits for one to free, up to HashWait; a locked name answers
// LockedError at once.
//
// From feature level 3 it proposes login.attempt v2: a slot never resolved
// counts as a failure once pendingTTL has passed, and an address that has
// made MaxFailedNamesPerAddress names fail this window is refused for any
// name with nothing live (answered as a lock, whether the name exists).
//
// gate, when set and the cluster is at level 4, is the proof-of-work gate
// (login.attempt v3): refused for want of a solution, attempt answers a
// *ChallengeError. Only password logins pass one; a password change and
// a second factor (a signed-in user, a user whose password checked out)
// are not challenged.
func (s *Service) attempt(ctx context.Context, name string, ri RequestInfo, gate *fsm.LoginAttemptV3) (int64, error) {
	if chaosBugLockout { // planted bug (chaos selftest): no slot reserved before the check
		return 0, nil
	}
	deadline := time.Now().Add(s.cfg.HashWait)
	level := s.clusterLevel() // one read for the three versions
	v2 := fsm.Proposable(fsm.TypeLoginAttempt, 2, level)
	v3 := gate != nil && fsm.Proposable(fsm.TypeLoginAttempt, 3, level)
	v4 := v3 && fsm.Proposable(fsm.TypeLoginAttempt, 4, level) // unsolved challenges count toward blocks
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		var payload any = fsm.LoginAttempt{
			Username: name, MaxAttempts: s.cfg.MaxFailedAttempts, Window: int64(s.cfg.LockoutDuration),
			PendingTTL: int64(pendingTTL), IP: ri.IP, UserAgent: ri.UserAgent}
		version := uint16(1)
		if v2 {
			p2 := fsm.LoginAttemptV2{
				Username: name, MaxAttempts: s.cfg.MaxFailedAttempts, Window: int64(s.cfg.LockoutDuration),
				PendingTTL: int64(pendingTTL), MaxNamesPerAddress: s.namesPerAddress(), IP: ri.IP, UserAgent: ri.UserAgent}
			version, payload = 2, p2
			if v3 {
				p3 := *gate
				p3.LoginAttemptV2 = p2
				version, payload = 3, p3
				if v4 {
					version, payload = 4, fsm.LoginAttemptV4{LoginAttemptV3: p3, Detect: s.detectLimits(ri.IP)}
				}
			}
		}
		cmd, err := fsm.NewCommand(fsm.TypeLoginAttempt, version, s.now().UnixNano(), payload)
		if err != nil {
			return 0, err
		}
		res, err := proposeAs[fsm.AttemptResult](ctx, s, cmd)
		if err != nil {
			return 0, err
		}
		switch {
		case res.ChallengeRequired:
			s.reportChallenge()
			if res.Blocked {
				s.logAudit([]fsm.AuditAppend{{Type: "address.block", Severity: fsm.AuditWarning, IP: ri.IP,
					Details: map[string]string{"reason": "detection rule: unsolved challenges"}}}, nil)
			}
			why := "too many failed attempts from here or against this name: solve this challenge and send the login again with it (altcha)"
			if res.Replayed {
				why = "that solution was used already: solve this challenge"
			}
			return 0, s.challengeError(res.Suspicion-s.cfg.ChallengeAfter, why)
		case res.Granted:
			return res.Slot, nil
		case res.Locked:
			s.reportLocked()
			return 0, &LockedError{RetryAfter: res.RetryAfter}
		case time.Now().Add(wait).After(deadline):
			s.reportLocked()
			return 0, &LockedError{RetryAfter: time.Second}
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// checkPassword verifies password against u's hash, or, when there is no
// such user, against a dummy hash as costly as a stored one (census.go).
func (s *Service) checkPassword(ctx context.Context, name string, u *fsm.User, password string) (bool, error) {
	var phc string
	if u == nil {
		phc = DummyHash(s.dummyParams(name))
	} else {
		phc = u.PasswordHash
	}
	var ok bool
	err := s.withHashSlot(ctx, func() error {
		var err error
		s.passwordChecks.Add(1)
		ok, err = VerifyPassword(password, phc)
		return err
	})
	return ok && u != nil, err
}

// loginFailed turns the check's slot into a failure, which may lock the
// name; the failure (and the lockout) go to the audit trail in the same
// entry. A failure to record is logged; the answer stays the same.
func (s *Service) loginFailed(ctx context.Context, name string, u *fsm.User, ri RequestInfo, slot int64) {
	s.recordFailure(ctx, name, name, u, ri, slot, nil)
}

// recordFailure records a failed password check of name that drew on
// counter key's slot (name itself, or a device's budget: device.go),
// against the name's lockout, the address's and the detection rules
// alike; extra goes into the audit entry's details. It reports the
// result, zero when the failure did not commit (logged).
func (s *Service) recordFailure(ctx context.Context, key, name string, u *fsm.User, ri RequestInfo, slot int64,
	extra map[string]string) fsm.FailureResult {
	reason, subject := "wrong_password", ""
	switch {
	case u == nil:
		reason = "unknown_user"
	case u.Disabled:
		reason, subject = "disabled", u.ID
	default:
		subject = u.ID
	}
	details := map[string]string{"username": name, "reason": reason}
	maps.Copy(details, extra)
	ev := fsm.AuditAppend{Type: "login.failure", Severity: fsm.AuditWarning, Subject: subject,
		IP: ri.IP, UserAgent: ri.UserAgent, Details: details}
	var payload any = fsm.LoginFailure{
		Username: key, Slot: slot, MaxAttempts: s.cfg.MaxFailedAttempts, Window: int64(s.cfg.LockoutDuration),
		Subject: subject, IP: ri.IP, UserAgent: ri.UserAgent}
	version := uint16(1)
	if s.proposable(fsm.TypeLoginFailure, 2) { // counts against the address too
		v2 := fsm.LoginFailureV2{
			Username: key, Slot: slot, MaxAttempts: s.cfg.MaxFailedAttempts, Window: int64(s.cfg.LockoutDuration),
			PendingTTL: int64(pendingTTL), MaxNamesPerAddress: s.namesPerAddress(),
			Subject: subject, IP: ri.IP, UserAgent: ri.UserAgent}
		version, payload = 2, v2
		if s.proposable(fsm.TypeLoginFailure, 3) { // and against the detection rules (blocks.go)
			version, payload = 3, fsm.LoginFailureV3{LoginFailureV2: v2, Detect: s.detectLimits(ri.IP)}
		}
	}
	var res fsm.FailureResult
	inEnvelope := true
	if v3, ok := payload.(fsm.LoginFailureV3); ok && s.proposable(fsm.TypeLoginFailure, 4) { // the entry in the payload, capped for an unknown name (retention.go)
		v4 := fsm.LoginFailureV4{LoginFailureV3: v3, Event: ev}
		if u == nil {
			v4.Cap = s.unknownNameCap()
		}
		version, payload, inEnvelope = 4, v4, false
	}
	cmd, err := fsm.NewCommand(fsm.TypeLoginFailure, version, s.now().UnixNano(), payload)
	if err == nil && inEnvelope {
		cmd = cmd.WithAudit(ev)
	}
	if err == nil {
		res, err = proposeAs[fsm.FailureResult](ctx, s, cmd)
		if err == nil && res.Locked {
			s.logAudit([]fsm.AuditAppend{{Type: "lockout", Severity: fsm.AuditWarning, Subject: subject, IP: ri.IP,
				Details: map[string]string{"username": name}}}, nil)
		}
		if err == nil && res.Blocked {
			s.logAudit([]fsm.AuditAppend{{Type: "address.block", Severity: fsm.AuditWarning, IP: ri.IP,
				Details: map[string]string{"reason": "detection rule"}}}, nil)
		}
	}
	s.logAudit([]fsm.AuditAppend{ev}, err)
	return res
}

// releaseSlot gives back a slot that attempt granted for name when its
// password was never checked (the hash was refused as busy), so that it
// counts as no failure. Below feature level 3 there is no login.release:
// the slot frees after pendingTTL, as login.attempt v1 always did. A
// release that does not commit leaves the slot to count as a failure when
// it runs out: fail closed.
func (s *Service) releaseSlot(ctx context.Context, name string, slot int64) {
	if !s.proposable(fsm.TypeLoginRelease, 1) {
		return
	}
	cmd, err := fsm.NewCommand(fsm.TypeLoginRelease, 1, s.now().UnixNano(), fsm.LoginRelease{Username: name, Slot: slot})
	if err == nil {
		_, err = s.propose(ctx, cmd)
	}
	if err != nil {
		s.log.Warn("could not release a login slot; it will count as a failure", "username", name, "error", err)
	}
}

// unchecked gives back the slot of a password check that never ran: its
// hash was refused as busy, or its time ran out while it waited. Any
// other error leaves the slot to count as a failure.
func (s *Service) unchecked(ctx context.Context, name string, slot int64, err error) {
	if errors.Is(err, ErrBusy) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		s.releaseSlot(ctx, name, slot)
	}
}

// namesPerAddress is the cap login.attempt and login.failure v2 carry
// (0: off).
func (s *Service) namesPerAddress() int { return max(s.cfg.MaxFailedNamesPerAddress, 0) }

// audit appends entries to the trail on their own (for events that are
// not a state change) and mirrors them to the log; the error says they
// were not recorded (most callers have nothing to undo and go on).
func (s *Service) audit(ctx context.Context, entries ...fsm.AuditAppend) error {
	cmd, err := fsm.NewCommand(fsm.TypeAuditAppend, 1, s.now().UnixNano(), entries[0])
	if err == nil {
		cmd = cmd.WithAudit(entries[1:]...)
		_, err = s.propose(ctx, cmd)
	}
	s.logAudit(entries, err)
	return err
}

// logAudit mirrors entries to the log and, once committed (err nil),
// reports them to the security observer.
func (s *Service) logAudit(entries []fsm.AuditAppend, err error) {
	if err == nil {
		s.report(entries)
	}
	for _, e := range entries {
		level := slog.LevelInfo
		switch e.Severity {
		case fsm.AuditWarning:
			level = slog.LevelWarn
		case fsm.AuditCritical: // an error in journald and syslog
			level = slog.LevelError
		}
		args := []any{"audit", e.Type, "severity", e.Severity, "actor", e.Actor, "subject", e.Subject, "ip", e.IP}
		for k, v := range e.Details {
			args = append(args, k, v)
		}
		if err != nil {
			args = append(args, "error", err)
			level = slog.LevelError
		}
		s.log.Log(context.Background(), level, "security event", args...)
	}
}

// apply proposes cmd with its audit entries and mirrors them to the log
// once committed.
func (s *Service) apply(ctx context.Context, cmd fsm.Command, entries ...fsm.AuditAppend) (any, error) {
	v, err := s.propose(ctx, cmd.WithAudit(entries...))
	if err == nil {
		s.logAudit(entries, nil)
	}
	return v, err
}

// sessionProof is what a session is decided on, for Apply to re-check:
// the password generation checked (nil: no password, a passkey), and the
// second factor used. rehash, if set, replaces the stored hash with the
// same password under the current parameters.
type sessionProof struct {
	pwdGen *uint64
	factor *fsm.FactorProof
	rehash string
}

// startSessionWith mints a session id and refresh token, proposes the
// session (resetting the failed attempts of resetName, which resolves the
// slot of the check that let it in) and signs an access token. The
// session is created only if what it was decided on (proof) still holds
// in Apply.
func (s *Service) startSessionWith(ctx context.Context, u *fsm.User, resetName string, ri RequestInfo, amr []string, proof sessionProof) (Tokens, error) {
	name, rehash := resetName, proof.rehash
	sid, err := NewSessionID(s.now())
	if err != nil {
		return Tokens{}, err
	}
	level := s.clusterLevel() // one read for the versions below
	refresh, err := s.newRefresh(sid, level)
	if err != nil {
		return Tokens{}, err
	}
	p := fsm.SessionCreate{
		ID: sid, UserID: u.ID, RefreshHash: hashToken(refresh),
		Lifetime: int64(s.cfg.RefreshTTL), IdleTimeout: int64(s.cfg.IdleTimeout),
		MaxPerUser: s.cfg.MaxSessionsPerUser, OnLimit: s.cfg.OnLimit,
		IP: ri.IP, UserAgent: ri.UserAgent, AMR: amr, ResetLockout: name}
	audit := []fsm.AuditAppend{{Type: "login.success", Severity: fsm.AuditInfo,
		Actor: u.ID, Subject: u.ID, IP: ri.IP, UserAgent: ri.UserAgent,
		Details: map[string]string{"username": u.Username, "session_id": sid, "amr": strings.Join(amr, " ")}}}
	var cmd fsm.Command
	switch {
	case proof.factor != nil || proof.pwdGen == nil || fsm.Proposable(fsm.TypeSessionCreate, 3, level):
		// Only a cluster at level 4 has second factors to use.
		if proof.factor != nil {
			audit[0].Details["method"] = proof.factor.Method
		}
		p.DuringLockdown = s.lockdownAllows(u, amr, ri)
		v3 := fsm.SessionCreateV3{
			SessionCreateV2: fsm.SessionCreateV2{SessionCreate: p, PasswordGen: proof.pwdGen, Rehash: rehash}, Factor: proof.factor}
		if fsm.Proposable(fsm.TypeSessionCreate, 4, level) {
			// v4 (level 5) refuses without spending the ticket or factor,
			// and keeps no record of a refresh token that names its session.
			cmd, err = fsm.NewCommand(fsm.TypeSessionCreate, 4, s.now().UnixNano(), fsm.SessionCreateV4{
				SessionCreateV3: v3, RefreshMAC: s.macRefresh(level)})
		} else {
			cmd, err = fsm.NewCommand(fsm.TypeSessionCreate, 3, s.now().UnixNano(), v3)
		}
	case fsm.Proposable(fsm.TypeSessionCreate, 2, level):
		cmd, err = fsm.NewCommand(fsm.TypeSessionCreate, 2, s.now().UnixNano(), fsm.SessionCreateV2{
			SessionCreate: p, PasswordGen: proof.pwdGen, Rehash: rehash})
		if rehash != "" {
			audit = append(audit, fsm.AuditAppend{Type: "password.rehash", Severity: fsm.AuditInfo,
				Actor: u.ID, Subject: u.ID, Details: map[string]string{"reason": "argon2id parameters changed"}})
		}
	default:
		cmd, err = fsm.NewCommand(fsm.TypeSessionCreate, 1, s.now().UnixNano(), p)
	}
	if err != nil {
		return Tokens{}, err
	}
	sess, err := applyAs[*fsm.Session](ctx, s, cmd, audit...)
	if err != nil {
		return Tokens{}, err
	}
	return s.issue(sess, u, refresh)
}

// issue signs an access token for a session.
func (s *Service) issue(sess *fsm.Session, u *fsm.User, refresh string) (Tokens, error) {
	signer := s.currentSigner()
	if signer == nil {
		return Tokens{}, errors.New("authcore: no signing key")
	}
	now := s.now()
	jti, err := randomToken("")
	if err != nil {
		return Tokens{}, err
	}
	roles := u.Roles
	if s.cfg.RequireMFAForAdmin && !secondFactor(sess.AMR) {
		// Relying parties that read roles must not see an admin either.
		roles = slices.DeleteFunc(slices.Clone(roles), func(r string) bool { return r == RoleAdmin })
	}
	if roles == nil {
		roles = []string{}
	}
	claims := AccessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: s.cfg.Issuer, Subject: u.ID, Audience: jwt.ClaimStrings{s.cfg.Audience},
			ExpiresAt: jwt.NewNumericDate(now.Add(s.cfg.AccessTTL)), IssuedAt: jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now), ID: jti[:22],
		},
		Sid: sess.ID, Amr: sess.AMR, Roles: roles, AuthTime: sess.AuthTime.Unix(),
	}
	at, err := signer.Sign(claims)
	if err != nil {
		return Tokens{}, err
	}
	return Tokens{AccessToken: at, TokenType: "Bearer", ExpiresIn: int(s.cfg.AccessTTL / time.Second),
		RefreshToken: refresh, SessionID: sess.ID}, nil
}

// Refresh exchanges a refresh token for new tokens. The old token dies; a
// dead token presented again revokes its whole session (RFC 9700 4.14.2).
func (s *Service) Refresh(ctx context.Context, refreshToken string) (Tokens, error) {
	if namesSession(refreshToken) {
		return s.refreshNamed(ctx, refreshToken)
	}
	// A token of the first format: a record per token (session.refresh
	// v1, v2) until its session ends.
	if !wellFormedToken(refreshToken, refreshPrefix) {
		return Tokens{}, ErrInvalidGrant
	}
	next, err := randomToken(refreshPrefix)
	if err != nil {
		return Tokens{}, err
	}
	ri := requestInfo(ctx)
	version := uint16(1)
	if s.proposable(fsm.TypeSessionRefresh, 2) {
		version = 2 // every member applies it
	}
	cmd, err := fsm.NewCommand(fsm.TypeSessionRefresh, version, s.now().UnixNano(), fsm.SessionRefresh{
		OldHash: hashToken(refreshToken), NewHash: hashToken(next), IP: ri.IP, UserAgent: ri.UserAgent})
	if err != nil {
		return Tokens{}, err
	}
	res, err := proposeAs[fsm.RefreshResult](ctx, s, cmd)
	return s.refreshed(res, err, ri, next)
}

// refreshed answers a session.refresh: new tokens with next, or
// ErrInvalidGrant for a dead token (its session revoked if it was reuse).
func (s *Service) refreshed(res fsm.RefreshResult, err error, ri RequestInfo, next string) (Tokens, error) {
	if errors.Is(err, fsm.ErrInvalidGrant) {
		return Tokens{}, ErrInvalidGrant
	}
	if err != nil {
		return Tokens{}, err
	}
	if res.Reused {
		s.logAudit([]fsm.AuditAppend{{Type: "refresh.reuse", Severity: fsm.AuditCritical, Subject: res.Session.UserID,
			IP: ri.IP, Details: map[string]string{"session_id": res.Session.ID}}}, nil)
		return Tokens{}, ErrInvalidGrant
	}
	return s.issue(res.Session, res.User, next)
}

// Authenticate checks a bearer access token: signature, claims, and that
// its session is alive and its user enabled in the local state, so a
// revoked session is refused although its JWT has not expired. With
// WithFreshness, a node whose state may be stale answers that error
// instead.
func (s *Service) Authenticate(ctx context.Context, bearer string) (*Principal, error) {
	claims, kid, err := s.verifier.verify(bearer, s.now())
	if err != nil {
		return nil, err
	}
	if s.fresh != nil {
		if err := s.fresh(); err != nil {
			return nil, err
		}
	}
	now := s.now()
	p, issErr, err := s.sessionPrincipal(claims, kid, now)
	if err != nil && issErr == nil && s.catchUp != nil && claims.IssuedAt != nil && now.Sub(claims.IssuedAt.Time) < catchUpWindow {
		// A token minted a moment ago for a session this node does not
		// hold yet: another node opened it, and its entry may not have
		// reached this one. Catch up with the leader and look once more,
		// so a client that logged in there is not refused here. Only
		// validly signed, recent tokens ask, so a flood of them cannot
		// make every request a call to the leader.
		cctx, cancel := context.WithTimeout(ctx, catchUpTimeout)
		cerr := s.catchUp(cctx)
		cancel()
		if cerr == nil {
			p, issErr, err = s.sessionPrincipal(claims, kid, s.now())
		}
	}
	if issErr != nil {
		return nil, issErr
	}
	if err != nil {
		return nil, fmt.Errorf("%w: session ended", ErrInvalidToken)
	}
	return p, nil
}

// catchUpWindow: a token issued this recently whose session this node
// does not hold makes it catch up before refusing (Authenticate);
// catchUpTimeout bounds that wait.
const (
	catchUpWindow  = 10 * time.Second
	catchUpTimeout = time.Second
)

// sessionPrincipal looks up the session and user a verified token names
// in the local state: issErr if its issuer or key does not belong,
// err if the session or user is not (or no longer) good.
func (s *Service) sessionPrincipal(claims *AccessClaims, kid string, now time.Time) (p *Principal, issErr, err error) {
	err = s.store.View(func(r fsm.Reader) error {
		if issErr = s.verifier.checkIssuer(r, claims, kid); issErr != nil {
			return issErr
		}
		sess, err := r.Session(claims.Sid)
		if chaosBugRevocation && err != nil { // planted bug (chaos selftest): a revoked session passes
			sess, err = &fsm.Session{ID: claims.Sid, UserID: claims.Subject, ExpiresAt: now.Add(time.Hour)}, nil
		}
		if err != nil || sess.UserID != claims.Subject || !sess.Alive(now) {
			return ErrInvalidToken
		}
		u, err := r.UserByID(claims.Subject)
		if err != nil || (u.Disabled && !chaosBugRevocation) {
			return ErrInvalidToken
		}
		p = &Principal{UserID: u.ID, Username: u.Username, SessionID: sess.ID, Roles: u.Roles, Claims: claims,
			adminNeedsMFA: s.cfg.RequireMFAForAdmin && !secondFactor(sess.AMR), user: u}
		return nil
	})
	return p, issErr, err
}

// Logout ends the caller's session and its refresh tokens.
func (s *Service) Logout(ctx context.Context, p *Principal) error {
	return s.revokeSession(ctx, p, p.SessionID, "logout")
}

// RevokeSession ends one of the caller's own sessions.
func (s *Service) RevokeSession(ctx context.Context, p *Principal, sid string) error {
	return s.revokeSession(ctx, p, sid, "session.revoke")
}

func (s *Service) revokeSession(ctx context.Context, p *Principal, sid, event string) error {
	ri := requestInfo(ctx)
	cmd, err := fsm.NewCommand(fsm.TypeSessionRevoke, 1, s.now().UnixNano(), fsm.SessionRevoke{ID: sid, UserID: p.UserID, Reason: event})
	if err != nil {
		return err
	}
	_, err = s.apply(ctx, cmd, fsm.AuditAppend{Type: event, Severity: fsm.AuditInfo, Actor: p.UserID, Subject: p.UserID,
		IP: ri.IP, UserAgent: ri.UserAgent, Details: map[string]string{"session_id": fsm.CleanAuditText(sid, 128)}})
	if errors.Is(err, fsm.ErrSessionNotFound) {
		return ErrNotFound
	}
	return err
}

// SessionInfo is one session as its owner sees it.
type SessionInfo struct {
	ID         string    `json:"id"`
	CreatedAt  time.Time `json:"created_at"`
	LastSeenAt time.Time `json:"last_seen_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	IP         string    `json:"ip"`
	UserAgent  string    `json:"user_agent"`
	Current    bool      `json:"current"`
}

// Sessions lists the caller's live sessions, oldest first.
func (s *Service) Sessions(ctx context.Context, p *Principal) ([]SessionInfo, error) {
	now := s.now()
	out := []SessionInfo{}
	err := s.store.View(func(r fsm.Reader) error {
		ss, err := r.UserSessions(p.UserID)
		for _, x := range ss {
			if x.Alive(now) {
				out = append(out, SessionInfo{ID: x.ID, CreatedAt: x.CreatedAt, LastSeenAt: x.LastSeenAt,
					ExpiresAt: x.ExpiresAt, IP: x.IP, UserAgent: x.UserAgent, Current: x.ID == p.SessionID})
			}
		}
		return err
	})
	slices.SortStableFunc(out, func(a, b SessionInfo) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, err
}

// ChangePassword replaces the caller's password after checking the
// current one (counted like a login attempt), ends every other session and
// returns fresh tokens for this one.
func (s *Service) ChangePassword(ctx context.Context, p *Principal, current, next string) (Tokens, error) {
	if current == "" || len(current) > 4096 {
		return Tokens{}, fmt.Errorf("%w: current_password must be 1 to 4096 bytes", ErrInvalidInput)
	}
	if err := s.cfg.Policy.Check(next, p.Username); err != nil {
		return Tokens{}, err
	}
	if next == current {
		return Tokens{}, fmt.Errorf("%w: the new password equals the current one", ErrWeakPassword)
	}
	if err := s.StepUp(p); err != nil { // a stolen session alone cannot take the account
		return Tokens{}, err
	}
	ctx, cancel := s.detach(ctx) // as in Login: the attempt's outcome is recorded
	defer cancel()
	ri := requestInfo(ctx)
	slot, err := s.attempt(ctx, p.Username, ri, nil)
	if err != nil {
		return Tokens{}, err
	}
	u, err := s.lookup(p.Username)
	if err != nil {
		return Tokens{}, ErrInvalidToken
	}
	ok, err := s.checkPassword(ctx, p.Username, u, current)
	if err != nil {
		s.unchecked(ctx, p.Username, slot, err)
		return Tokens{}, err
	}
	if !ok {
		s.loginFailed(ctx, p.Username, u, ri, slot)
		return Tokens{}, ErrInvalidCredentials
	}
	salt, err := NewSalt()
	if err != nil {
		return Tokens{}, err
	}
	var phc string
	if err := s.withHashSlot(ctx, func() error {
		phc, err = HashPassword(next, s.cfg.Hash, salt)
		return err
	}); err != nil {
		return Tokens{}, err
	}
	var (
		sess    *fsm.Session
		refresh string
	)
	// A session whose refresh token rotated between the read of its
	// generation and the change (ErrRefreshMoved: nothing written) is
	// read again, a few times.
	for try := 1; ; try++ {
		var cmd fsm.Command
		if refresh, cmd, err = s.passwordCommand(u, phc, p.SessionID); err != nil {
			return Tokens{}, err
		}
		sess, err = applyAs[*fsm.Session](ctx, s, cmd, fsm.AuditAppend{Type: "password.change", Severity: fsm.AuditInfo, Actor: u.ID,
			Subject: u.ID, IP: ri.IP, UserAgent: ri.UserAgent, Details: map[string]string{"other_sessions": "revoked"}},
			fsm.AuditAppend{Type: "lockout.reset", Severity: fsm.AuditInfo, Actor: u.ID, Subject: u.ID})
		if !errors.Is(err, fsm.ErrRefreshMoved) || try == 3 {
			break
		}
	}
	if errors.Is(err, fsm.ErrCredentialChanged) {
		return Tokens{}, ErrInvalidCredentials // changed by another request meanwhile
	}
	if errors.Is(err, fsm.ErrSessionNotFound) {
		return Tokens{}, ErrInvalidToken // the caller's session ended meanwhile
	}
	if err != nil {
		return Tokens{}, err
	}
	s.clearAttempts(ctx, p.Username)
	return s.issue(sess, u, refresh)
}

// passwordCommand builds the change of u's password to phc, which gives
// session sid a new refresh token, and returns that token.
func (s *Service) passwordCommand(u *fsm.User, phc, sid string) (string, fsm.Command, error) {
	level := s.clusterLevel()
	if s.macRefresh(level) {
		// The new token names the session at the generation read here;
		// Apply refuses it if the session has rotated past it since.
		var gen uint64
		s.store.View(func(r fsm.Reader) error {
			if sess, err := r.Session(sid); err == nil {
				gen = sess.RefreshGen
			}
			return nil
		})
		refresh, err := s.box.mintRefresh(sid, gen)
		if err != nil {
			return "", fsm.Command{}, err
		}
		cmd, err := fsm.NewCommand(fsm.TypeUserPassword, 3, s.now().UnixNano(), fsm.UserSetPasswordV3{
			UserSetPasswordV2: fsm.UserSetPasswordV2{UserSetPassword: fsm.UserSetPassword{UserID: u.ID, PasswordHash: phc,
				SessionID: sid, NewHash: hashToken(refresh)}, PasswordGen: u.PasswordGen}, Generation: gen})
		return refresh, cmd, err
	}
	refresh, err := randomToken(refreshPrefix)
	if err != nil {
		return "", fsm.Command{}, err
	}
	change := fsm.UserSetPassword{UserID: u.ID, PasswordHash: phc, SessionID: sid, NewHash: hashToken(refresh)}
	var cmd fsm.Command
	if fsm.Proposable(fsm.TypeUserPassword, 2, level) {
		// Only if the password checked is still the user's: of two
		// concurrent changes that both checked the same password, one
		// wins and the other is refused.
		cmd, err = fsm.NewCommand(fsm.TypeUserPassword, 2, s.now().UnixNano(),
			fsm.UserSetPasswordV2{UserSetPassword: change, PasswordGen: u.PasswordGen})
	} else {
		cmd, err = fsm.NewCommand(fsm.TypeUserPassword, 1, s.now().UnixNano(), change)
	}
	return refresh, cmd, err
}

func (s *Service) clearAttempts(ctx context.Context, name string) {
	cmd, err := fsm.NewCommand(fsm.TypeLockoutReset, 1, s.now().UnixNano(), fsm.LockoutReset{Username: name})
	if err == nil {
		_, err = s.propose(ctx, cmd)
	}
	if err != nil {
		s.log.Warn("could not clear failed attempts", "username", name, "error", err)
	}
}

// Me returns the caller's user record, as Authenticate read it with the
// session (the same request: a change committed between the two is not
// missed by a second read, only raced).
func (s *Service) Me(ctx context.Context, p *Principal) (User, error) {
	if p.user != nil && p.user.ID == p.UserID {
		return publicUser(p.user), nil
	}
	var u *fsm.User
	err := s.store.View(func(r fsm.Reader) error {
		var err error
		u, err = r.UserByID(p.UserID)
		return err
	})
	if err != nil {
		return User{}, err
	}
	return publicUser(u), nil
}

// Unlock clears a name's failed attempts (an administrator's action). The
// name need not belong to a user: unknown names are counted too.
func (s *Service) Unlock(ctx context.Context, username string) error {
	name, err := NormalizeUsername(username)
	if err != nil {
		return err
	}
	ri := requestInfo(ctx)
	cmd, err := fsm.NewCommand(fsm.TypeLockoutReset, 1, s.now().UnixNano(), fsm.LockoutReset{Username: name, Actor: ri.Actor})
	if err != nil {
		return err
	}
	_, err = s.apply(ctx, cmd, fsm.AuditAppend{Type: "unlock", Severity: fsm.AuditInfo, Actor: ri.Actor,
		IP: ri.IP, UserAgent: ri.UserAgent, Details: map[string]string{"username": name}})
	if u, lerr := s.lookup(name); err == nil && lerr == nil {
		s.clearAttempts(ctx, mfaLockName(u.ID)) // and the user's second factor
	}
	return err
}

// RevokeUserSessions ends every session of a user (an administrator's
// action) and returns how many ended.
func (s *Service) RevokeUserSessions(ctx context.Context, nameOrID string) (int, error) {
	u, err := s.find(nameOrID)
	if err != nil {
		return 0, err
	}
	ri := requestInfo(ctx)
	cmd, err := fsm.NewCommand(fsm.TypeUserRevoke, 1, s.now().UnixNano(), fsm.UserRevokeSessions{UserID: u.ID})
	if err != nil {
		return 0, err
	}
	return applyAs[int](ctx, s, cmd, fsm.AuditAppend{Type: "session.revoke_all", Severity: fsm.AuditWarning, Actor: ri.Actor,
		Subject: u.ID, IP: ri.IP, UserAgent: ri.UserAgent, Details: map[string]string{"username": u.Username}})
}

// Sweep budgets from feature level 3 (state.sweep v2): one sweep handles
// due index entries worth sweepLimit (a session counts 4) and indexes at
// most sweepMigrate records written before level 3, which keeps one apply
// to a few milliseconds at a million records (fsm's
// BenchmarkSweepMillion); while the result says More, Sweep proposes
// another, sweepPause apart so that other writes go between, up to
// sweepRounds a call.
const (
	sweepLimit   = 32
	sweepMigrate = 64
	sweepRounds  = 2000
	sweepPause   = 10 * time.Millisecond
)

// Sweep deletes dead sessions and stale lockout counters. Only a leader's
// proposal commits; elsewhere it fails harmlessly. Below feature level 3
// it proposes state.sweep v1, which reads every session and counter in
// one apply; from 3, small v2 sweeps through the expiry index, repeated
// while more is due.
func (s *Service) Sweep(ctx context.Context) (fsm.SweepResult, error) {
	if !s.proposable(fsm.TypeSweep, 2) {
		cmd, err := fsm.NewCommand(fsm.TypeSweep, 1, s.now().UnixNano(), fsm.Sweep{Limit: 10000})
		if err != nil {
			return fsm.SweepResult{}, err
		}
		return proposeAs[fsm.SweepResult](ctx, s, cmd)
	}
	var total fsm.SweepResult
	for round := 1; ; round++ {
		cmd, err := fsm.NewCommand(fsm.TypeSweep, 2, s.now().UnixNano(), fsm.SweepV2{Limit: sweepLimit, Migrate: sweepMigrate})
		if err != nil {
			return total, err
		}
		r, err := proposeAs[fsm.SweepResult](ctx, s, cmd)
		if err != nil {
			return total, err
		}
		total.Sessions += r.Sessions
		total.Lockouts += r.Lockouts
		total.Addresses += r.Addresses
		total.Migrated += r.Migrated
		total.More = r.More
		if !r.More || round == sweepRounds {
			return total, nil
		}
		select {
		case <-ctx.Done():
			return total, ctx.Err()
		case <-time.After(sweepPause):
		}
	}
}

// RunSweeper sweeps every interval until ctx ends.
func (s *Service) RunSweeper(ctx context.Context, every time.Duration) {
	clock.Every(ctx, s.clock, every, func() {
		if res, err := s.Sweep(ctx); err != nil {
			s.log.Debug("sweep not committed", "error", err)
		} else if res.Sessions+res.Lockouts > 0 {
			s.log.Info("swept expired state", "sessions", res.Sessions, "lockouts", res.Lockouts)
		}
		if n, err := s.PruneSessions(ctx); err != nil {
			s.log.Warn("session retention: prune not committed", "error", err, "deleted", n)
		} else if n > 0 {
			s.log.Info("session retention: deleted sessions dead longer than retention.expired_sessions", "deleted", n)
		}
		if n, err := s.PruneAudit(ctx); err != nil {
			s.log.Warn("audit retention: prune not committed", "error", err, "deleted", n)
		} else if n > 0 {
			s.log.Info("audit retention: pruned entries older than retention.audit", "deleted", n)
		}
	})
}

// NewSessionID returns a new session id: the creation time at as 12 hex
// digits of Unix milliseconds, then 192 random bits in base64url (44
// characters). A session id names a session and is no credential (the
// tokens are), so the time in it gives away nothing its holder's token
// does not say. It is there for the store: session ids are the keys of a
// B+tree, and a refresh rewrites its session's record. With random ids
// the sessions in use are spread over every page of a large store, and
// each refresh of a batch writes a page of its own and the branch above
// it (2.2 pages a refresh with 50,000 sessions); ids in creation order
// keep the sessions logged in at about the same time on the same pages
// (0.2 pages; fsm's BenchmarkRefreshAtSize). Ids of either form are
// valid, and the store holds both after an upgrade.
func NewSessionID(at time.Time) (string, error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	ms := uint64(max(at.UnixMilli(), 0)) & (1<<48 - 1)
	return fmt.Sprintf("%012x", ms) + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// randomToken returns prefix + 256 random bits, base64url without padding.
func randomToken(prefix string) (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

func wellFormedToken(tok, prefix string) bool {
	if !strings.HasPrefix(tok, prefix) || len(tok) != len(prefix)+43 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(tok[len(prefix):])
	return err == nil
}

// hashToken is how refresh tokens are stored: hex SHA-256.
func hashToken(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}
