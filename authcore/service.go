// Package authcore is bulwark's domain: users, passwords, the login and
// lockout policy, sessions, tokens, MFA and threat response.
//
// It is pure Go: no HTTP, no Raft, no bbolt. It decides everything a write
// needs (ids, timestamps, hashes), proposes fsm commands through the Store
// interface it declares, and reads fsm views. api calls it; cmd/bulwark
// builds it. It may import fsm and nothing else of bulwark's.
//
// Every write goes through Service.propose, detached from the request's
// cancellation: what a request set in motion (a failed attempt, a
// refresh rotation and its reuse detection, a revocation, their audit
// entries) is recorded whatever its client does with the connection.
// Every check-then-act is re-checked in Apply: a session carries the
// password generation it was checked against (session.create v2).
package authcore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/bulwark-auth/bulwark/authcore/internal/hashpool"
	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/clock"
)

// Store is what authcore needs from the replicated state: propose a
// command and wait for its result, and read the local state.
type Store interface {
	Apply(ctx context.Context, cmd fsm.Command) (any, error)
	View(fn func(fsm.Reader) error) error
}

// Roles bulwark itself gives meaning to.
const RoleAdmin = "admin"

// Config is the part of the configuration authcore enforces. Zero values
// take the defaults of API.md.
type Config struct {
	Hash   HashParams
	Policy PasswordPolicy
	// MaxConcurrentHashes bounds argon2id computations in flight; the rest
	// wait up to HashWait. Zero means the number of CPUs.
	MaxConcurrentHashes int
	HashWait            time.Duration
	// WriteTimeout bounds every write this package proposes. Writes run
	// detached from the request that caused them (see propose); this is
	// what ends one that cannot commit. Zero means HashWait + 10s.
	WriteTimeout time.Duration

	// Issuer goes into every access token this node signs. ClusterIssuer
	// is tokens.issuer: the cluster's public URL, the same on every member
	// (RecordIssuer); when set, Issuer is the same or empty. Left empty,
	// each member signs with its own Issuer, and every member accepts the
	// issuer of every member whose key still signs, and the cluster's.
	Issuer, ClusterIssuer string
	// Audience goes into every access token and is required of every
	// token presented; empty: each token's aud is its issuer.
	Audience    string
	AccessTTL   time.Duration // jwt_expiry
	RefreshTTL  time.Duration // refresh_token_expiry: a session's absolute lifetime
	IdleTimeout time.Duration // idle_timeout
	// MaxFailedAttempts passwords are checked per name per LockoutDuration.
	MaxFailedAttempts  int
	LockoutDuration    time.Duration
	MaxSessionsPerUser int
	OnLimit            string        // "evict_oldest" or "deny"
	Leeway             time.Duration // clock skew allowed when checking tokens

	// MaxFailedNamesPerAddress (max_failed_names_per_address) is how many
	// distinct names may fail from one client address (IPv6: its /64) per
	// LockoutDuration before that address is refused, as a lock, for any
	// name with nothing live in its lockout counter; it bounds what
	// unauthenticated requests write. Zero means the default, 100; a
	// negative value turns the cap off. Feature level 3.
	MaxFailedNamesPerAddress int

	// Incident is [incident]'s detection rules (blocks.go); the ranges
	// they never apply to are IncidentExempt.
	Incident IncidentConfig

	// Retention is [retention] (retention.go): how long the audit trail
	// is kept, and the audit cost of failed logins for unknown names.
	Retention RetentionConfig

	// RequireMFAForAdmin (require_mfa_for_admin): the admin role counts
	// only in a session whose authentication included a second factor
	// (amr "otp", "mfa" or "hwk", RFC 8176).
	RequireMFAForAdmin bool
	// ChallengeAfter (incident.challenge_after_failures): failures of a
	// name, or names failed from an address, in the lockout window after
	// which a login needs a solved proof-of-work challenge; 0: never.
	ChallengeAfter int

	// IncidentExempt ([incident].exempt): clients never blocked, and
	// allowed to sign in during a lockdown.
	IncidentExempt []netip.Prefix

	// StepUpWindow (mfa.step_up_window): how recent a second factor a
	// sensitive action needs (RFC 9470). Zero means 10 minutes.
	StepUpWindow time.Duration
	// WebAuthnRPID (mfa.webauthn_rp_id) is the WebAuthn relying-party id;
	// empty: the issuer's host. WebAuthnOrigins (mfa.webauthn_origins)
	// are the origins ceremonies may come from; empty: the issuer's
	// origin (webauthn.go).
	WebAuthnRPID    string
	WebAuthnOrigins []string

	// NodeID names this node as the owner of its signing keys.
	NodeID string
	// SigningAlg is tokens.algorithm: the algorithm new keys are made for.
	SigningAlg string
	// KeyActivation is how long a scheduled rotation publishes the next key
	// before signing with it; zero means JWKSMaxAge.
	KeyActivation time.Duration
}

func (c *Config) setDefaults() {
	if c.MaxConcurrentHashes <= 0 {
		c.MaxConcurrentHashes = runtime.NumCPU()
	}
	if c.HashWait <= 0 {
		c.HashWait = 5 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = c.HashWait + 10*time.Second
	}
	if c.AccessTTL <= 0 {
		c.AccessTTL = time.Hour
	}
	if c.RefreshTTL <= 0 {
		c.RefreshTTL = 7 * 24 * time.Hour
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 24 * time.Hour
	}
	if c.MaxFailedAttempts <= 0 {
		c.MaxFailedAttempts = 5
	}
	if c.LockoutDuration <= 0 {
		c.LockoutDuration = 15 * time.Minute
	}
	if c.MaxFailedNamesPerAddress == 0 {
		c.MaxFailedNamesPerAddress = 100
	}
	if c.MaxSessionsPerUser <= 0 {
		c.MaxSessionsPerUser = 10
	}
	if c.OnLimit == "" {
		c.OnLimit = "evict_oldest"
	}
	if c.Audience == "" {
		c.Audience = c.Issuer
	}
	if c.Leeway == 0 {
		c.Leeway = 30 * time.Second
	}
	c.Retention.setDefaults()
	if c.StepUpWindow <= 0 {
		c.StepUpWindow = 10 * time.Minute
	}
	if c.KeyActivation <= 0 {
		c.KeyActivation = JWKSMaxAge
	}
	if c.SigningAlg == "" {
		c.SigningAlg = AlgES256
	}
	c.Incident.setDefaults()
}

// Service is the authentication core.
type Service struct {
	store    Store
	cfg      Config
	clock    clock.Clock
	log      *slog.Logger
	hashes   chan struct{} // one token per hash allowed in flight
	signer   atomic.Pointer[signerBox]
	vault    KeyVault
	rotateMu sync.Mutex
	verifier *verifier
	fresh    func() error                // nil: the local state is always fresh enough
	catchUp  func(context.Context) error // nil: nothing to catch up with (WithCatchUp)
	box      *SecretBox                  // nil: second factors are off (mfa.go)
	rp       *webauthn.WebAuthn          // nil: passkeys are off (webauthn.go)
	// auditKeys holds this node's audit keys once loaded (checkpoint.go);
	// checkpointLock (a one-slot channel, so a waiter can give up) guards
	// it and serialises checkpoints. leader says whether the node leads
	// (nil: always).
	auditKeys      *auditSigner
	checkpointLock chan struct{}
	leader         func() bool

	census census // the parameters of the stored password hashes (census.go)
	blocks blocks // the blocklist as of its last change (blocks.go)

	passwordChecks atomic.Int64
	hashRequests   atomic.Int64 // callers that asked for a hash slot
	hashWaiting    atomic.Int64 // callers waiting for a hash slot now
	hashWaitNanos  atomic.Int64 // time callers spent waiting for a slot
	hashBusyNanos  atomic.Int64 // time slots were held
	hashRefused    atomic.Int64 // callers that gave up with ErrBusy
	hashAbandoned  atomic.Int64 // callers whose request ended while they waited

	observe func(SecurityEvent) // WithSecurityObserver; nil: none
	audits  auditVerifier       // the background check of the audit chain (auditverify.go)
	// sessionPruned is when PruneSessions last finished a pass (Unix
	// nanoseconds, by the service clock; 0: never).
	sessionPruned atomic.Int64

	// hashThreads runs the hashes (nil: on the caller's goroutine).
	hashThreads *hashpool.Pool
	pinHashes   *bool // WithHashThreads's choice; nil: no threads

	// idSigners are the ID-token keys of other algorithms than the
	// signer's (idtoken_keys.go).
	idSigners atomic.Pointer[idSigners]
}

// PasswordChecks counts password verifications since start (a metric, and
// the measure of the lockout bound).
func (s *Service) PasswordChecks() int64 { return s.passwordChecks.Load() }

// HashStats describes this node's bounded password hashing since start:
// how close it is to its capacity, and what a flood costs its callers.
type HashStats struct {
	Slots     int           // hashes allowed at once (MaxConcurrentHashes)
	InFlight  int           // hashes running now
	Waiting   int64         // callers waiting for a slot now
	Requests  int64         // callers that asked for a slot, whatever came of it
	Busy      time.Duration // total time slots were held: Busy/Slots/uptime is the share used
	Waited    time.Duration // total time callers waited for a slot: Waited/Requests is the mean wait
	Refused   int64         // callers that gave up after HashWait (ErrBusy)
	Abandoned int64         // callers whose request was cancelled while they waited
	// Threads is the number of dedicated hash threads (WithHashThreads;
	// 0: hashes run on the callers' goroutines), PinnedThreads how many
	// of them are pinned to a CPU, and PinError why the others are not.
	Threads, PinnedThreads int
	PinError               error
}

// HashStats reports the state of the password hash slots.
func (s *Service) HashStats() HashStats {
	st := HashStats{Slots: cap(s.hashes), InFlight: len(s.hashes), Waiting: s.hashWaiting.Load(),
		Requests: s.hashRequests.Load(), Busy: time.Duration(s.hashBusyNanos.Load()),
		Waited: time.Duration(s.hashWaitNanos.Load()), Refused: s.hashRefused.Load(),
		Abandoned: s.hashAbandoned.Load()}
	if s.hashThreads != nil {
		cpus, err := s.hashThreads.Pinning()
		st.Threads, st.PinError = len(cpus), err
		for _, c := range cpus {
			if c >= 0 {
				st.PinnedThreads++
			}
		}
	}
	return st
}

// Option changes how a Service is built.
type Option func(*Service)

// WithClock sets the clock every decision reads (commands' times, and so
// lockout windows and expiries; token checks; key rotation's schedule):
// tests pass a clock.Fake. Without it, the system clock. Waits for a hash
// slot and for a lockout slot to free stay on real time: they measure
// the machine.
func WithClock(c clock.Clock) Option { return func(s *Service) { s.clock = c } }

// now is the time by s's clock.
func (s *Service) now() time.Time { return s.clock.Now() }

// signerBox holds the current signer so it can be swapped atomically.
type signerBox struct{ TokenSigner }

// WithSigner sets a fixed key to sign access tokens with (tests; a key
// held outside a vault cannot be rotated).
func WithSigner(sig TokenSigner) Option {
	return func(s *Service) { s.signer.Store(&signerBox{sig}) }
}

// WithKeyVault keeps this node's signing keys in v: the current one is
// loaded (or created for Config.SigningAlg), and rotation adds new ones.
func WithKeyVault(v KeyVault) Option { return func(s *Service) { s.vault = v } }

// currentSigner is the key tokens are signed with now (nil if none).
func (s *Service) currentSigner() TokenSigner {
	if b := s.signer.Load(); b != nil {
		return b.TokenSigner
	}
	return nil
}

// WithHashThreads runs password hashes on dedicated OS threads, one per
// hash slot, pinned each to a CPU of its own when pin is set and the
// system allows it (see HashStats.PinnedThreads). Close stops them.
// Without it, a hash runs on the goroutine that asked for it.
func WithHashThreads(pin bool) Option { return func(s *Service) { s.pinHashes = &pin } }

// WithLogger sets where security events are mirrored.
func WithLogger(l *slog.Logger) Option { return func(s *Service) { s.log = l } }

// proposable reports whether the cluster's feature level, as the local
// state knows it, allows version v of type t: every member applies it
// (fsm.Proposable). Proposers choose with it which version to write; the
// store refuses one above the level (fsm.ErrAboveLevel).
func (s *Service) proposable(t fsm.Type, v uint16) bool {
	return fsm.Proposable(t, v, s.clusterLevel())
}

// clusterLevel is the cluster's feature level as the local state knows
// it: one read transaction, for a caller that asks about several
// versions at once (fsm.Proposable with it).
func (s *Service) clusterLevel() int {
	level := 1
	s.store.View(func(r fsm.Reader) error { level = r.ClusterLevel(); return nil })
	return level
}

// propose commits cmd through the store and returns its result. It is
// the one way this package writes. The write is detached from ctx's
// cancellation (it keeps ctx's values) and bounded by WriteTimeout
// instead: a security fact (a failed attempt, a reuse, a revocation, a
// lockout, their audit entries) is recorded whatever the client does with
// its connection, so closing it halfway through a request buys an
// attacker nothing.
func (s *Service) propose(ctx context.Context, cmd fsm.Command) (any, error) {
	if chaosBugAckearly && cmd.Type == fsm.TypeSessionRevoke { // planted bug (chaos selftest): acknowledged before it commits
		go func() {
			time.Sleep(500 * time.Millisecond)
			ctx, cancel := s.detach(ctx)
			defer cancel()
			s.store.Apply(ctx, cmd)
		}()
		return nil, nil
	}
	ctx, cancel := s.detach(ctx)
	defer cancel()
	return s.store.Apply(ctx, cmd)
}

// proposeAs is propose for a command whose result is a T, the type its
// row of the command table names (fsm.CommandSpec.Result); a result of
// another type is an error, not a panic.
func proposeAs[T any](ctx context.Context, s *Service, cmd fsm.Command) (T, error) {
	v, err := s.propose(ctx, cmd)
	return resultAs[T](cmd, v, err)
}

// applyAs is apply (auth.go) for a command whose result is a T.
func applyAs[T any](ctx context.Context, s *Service, cmd fsm.Command, entries ...fsm.AuditAppend) (T, error) {
	v, err := s.apply(ctx, cmd, entries...)
	return resultAs[T](cmd, v, err)
}

// resultAs checks that v, the result of cmd, is a T.
func resultAs[T any](cmd fsm.Command, v any, err error) (T, error) {
	t, ok := v.(T)
	switch {
	case err != nil:
		return *new(T), err
	case !ok:
		return t, fmt.Errorf("authcore: %s v%d answered %T, not %T", cmd.Type, cmd.Version, v, t)
	}
	return t, nil
}

// detach returns a context with ctx's values that the client cannot
// cancel, ending after WriteTimeout.
func (s *Service) detach(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), s.cfg.WriteTimeout)
}

// WithFreshness makes every session check ask fresh first whether the
// local state is recent enough to trust; its error (the node has lost
// contact with the cluster) is returned instead of an answer, so a node
// cut off from the leader stops vouching for sessions that may have been
// revoked elsewhere.
func WithFreshness(fresh func() error) Option { return func(s *Service) { s.fresh = fresh } }

// WithCatchUp gives Authenticate a way to bring the local state up to the
// leader's commit (node.CatchUp): a token issued moments ago whose session
// is not here yet was most likely opened on another node, and is looked up
// again once this node has caught up, instead of being refused.
func WithCatchUp(catchUp func(context.Context) error) Option {
	return func(s *Service) { s.catchUp = catchUp }
}

// ReadBarrier returns once the local state holds every write the cluster
// acknowledged before the call: a read after it is linearizable. It costs
// one Raft commit (a no-op entry), so only reads that must not be stale
// (the admin API's) use it.
//
// A cluster still below feature level 2 (in a rolling upgrade from the
// first release, whose members would refuse the barrier) cannot have
// one: the read is then local, as it was in that release.
func (s *Service) ReadBarrier(ctx context.Context) error {
	if !s.proposable(fsm.TypeReadBarrier, 1) {
		return nil
	}
	cmd, err := fsm.NewCommand(fsm.TypeReadBarrier, 1, s.now().UnixNano(), fsm.ReadBarrier{})
	if err != nil {
		return err
	}
	_, err = s.propose(ctx, cmd)
	return err
}

// New builds a Service over store.
func New(store Store, cfg Config, opts ...Option) (*Service, error) {
	if err := cfg.Hash.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.Policy.Validate(); err != nil {
		return nil, err
	}
	if cfg.ClusterIssuer != "" && cfg.Issuer == "" {
		cfg.Issuer = cfg.ClusterIssuer
	}
	if cfg.ClusterIssuer != "" && cfg.Issuer != cfg.ClusterIssuer {
		return nil, fmt.Errorf("%w: issuer %q is not the cluster issuer %q", ErrInvalidInput, cfg.Issuer, cfg.ClusterIssuer)
	}
	audience := cfg.Audience // "": the token's own issuer, checked per token
	cfg.setDefaults()
	if cfg.OnLimit != "evict_oldest" && cfg.OnLimit != "deny" {
		return nil, fmt.Errorf("%w: on_limit %q", ErrInvalidInput, cfg.OnLimit)
	}
	if cfg.MaxFailedNamesPerAddress > fsm.MaxNamesPerAddressLimit {
		return nil, fmt.Errorf("%w: max_failed_names_per_address %d, at most %d", ErrInvalidInput,
			cfg.MaxFailedNamesPerAddress, fsm.MaxNamesPerAddressLimit)
	}
	if err := cfg.Retention.validate(); err != nil {
		return nil, err
	}
	if err := cfg.Incident.validate(); err != nil {
		return nil, err
	}
	s := &Service{store: store, cfg: cfg, clock: clock.Real{}, log: slog.New(slog.DiscardHandler),
		hashes: make(chan struct{}, cfg.MaxConcurrentHashes), checkpointLock: make(chan struct{}, 1)}
	for _, o := range opts {
		o(s)
	}
	if s.vault != nil {
		sig, _, err := loadSigner(s.vault, cfg.SigningAlg, s.log)
		if err != nil {
			return nil, err
		}
		s.signer.Store(&signerBox{sig})
		if err := s.loadIDKeys(); err != nil {
			return nil, err
		}
	}
	s.verifier = &verifier{keys: &stateKeys{store: store, cache: map[string]parsedKey{}},
		issuer: cfg.Issuer, node: cfg.NodeID, shared: cfg.ClusterIssuer != "", audience: audience,
		leeway: cfg.Leeway, maxLifetime: cfg.AccessTTL}
	if err := s.newRelyingParty(); err != nil {
		return nil, err
	}
	if s.pinHashes != nil {
		s.hashThreads = hashpool.New(cfg.MaxConcurrentHashes, *s.pinHashes)
	}
	return s, nil
}

// User is a user as callers see it: never the password hash.
type User struct {
	ID       string   `json:"id"`
	Username string   `json:"username"`
	Email    string   `json:"email,omitempty"`
	Roles    []string `json:"roles"`
	Disabled bool     `json:"disabled"`
	// Flagged: repeated refusals on admin routes revoked its sessions.
	Flagged   bool      `json:"flagged,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func publicUser(u *fsm.User) User {
	roles := u.Roles
	if roles == nil {
		roles = []string{}
	}
	return User{ID: u.ID, Username: u.Username, Email: u.Email, Roles: roles,
		Disabled: u.Disabled, Flagged: u.Flagged, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt}
}

// NewUser is a request to create a user.
type NewUser struct {
	Username string
	Password string
	Email    string
	Roles    []string
}

// CreateUser checks and normalises the request, hashes the password and
// proposes the user.
func (s *Service) CreateUser(ctx context.Context, req NewUser) (User, error) {
	name, err := NormalizeUsername(req.Username)
	if err != nil {
		return User{}, err
	}
	if err := s.cfg.Policy.Check(req.Password, name); err != nil {
		return User{}, err
	}
	if err := checkEmail(req.Email); err != nil {
		return User{}, err
	}
	roles, err := checkRoles(req.Roles)
	if err != nil {
		return User{}, err
	}
	// Refuse a taken name before paying for a hash; Apply checks again.
	if _, err := s.lookup(name); err == nil {
		return User{}, ErrUserExists
	}
	salt, err := NewSalt()
	if err != nil {
		return User{}, err
	}
	var phc string
	if err := s.withHashSlot(ctx, func() error {
		phc, err = HashPassword(req.Password, s.cfg.Hash, salt)
		return err
	}); err != nil {
		return User{}, err
	}
	id, err := newID()
	if err != nil {
		return User{}, err
	}
	cmd, err := fsm.NewCommand(fsm.TypeUserCreate, 1, s.now().UnixNano(), fsm.UserCreate{
		ID: id, Username: name, Email: req.Email, Roles: roles, PasswordHash: phc})
	if err != nil {
		return User{}, err
	}
	return s.applyUser(ctx, cmd, s.adminEvent(ctx, "user.create", id, map[string]string{"username": name, "roles": strings.Join(roles, " ")}))
}

// Users lists every user in name order.
func (s *Service) Users(ctx context.Context) ([]User, error) {
	out := []User{}
	err := s.store.View(func(r fsm.Reader) error {
		return r.Users(func(u *fsm.User) bool {
			out = append(out, publicUser(u))
			return true
		})
	})
	return out, err
}

// User finds a user by name (normalised here) or by id.
func (s *Service) User(ctx context.Context, nameOrID string) (User, error) {
	u, err := s.find(nameOrID)
	if err != nil {
		return User{}, err
	}
	return publicUser(u), nil
}

// SetDisabled disables or enables a user.
func (s *Service) SetDisabled(ctx context.Context, nameOrID string, disabled bool) (User, error) {
	u, err := s.find(nameOrID)
	if err != nil {
		return User{}, err
	}
	cmd, err := fsm.NewCommand(fsm.TypeUserSetDisabled, 1, s.now().UnixNano(),
		fsm.UserSetDisabled{ID: u.ID, Disabled: disabled})
	if err != nil {
		return User{}, err
	}
	event := "user.enable"
	if disabled {
		event = "user.disable"
	}
	return s.applyUser(ctx, cmd, s.adminEvent(ctx, event, u.ID, map[string]string{"username": u.Username}))
}

// Unflag clears the flag repeated admin-route refusals put on a user
// (incident.forbidden); the sessions it revoked stay revoked.
func (s *Service) Unflag(ctx context.Context, nameOrID string) (User, error) {
	u, err := s.find(nameOrID)
	if err != nil {
		return User{}, err
	}
	if !s.proposable(fsm.TypeUserUnflag, 1) {
		return User{}, ErrUpgradePending
	}
	cmd, err := fsm.NewCommand(fsm.TypeUserUnflag, 1, s.now().UnixNano(), fsm.UserUnflag{ID: u.ID})
	if err != nil {
		return User{}, err
	}
	return s.applyUser(ctx, cmd, s.adminEvent(ctx, "user.unflag", u.ID, map[string]string{"username": u.Username}))
}

// DeleteUser removes a user.
func (s *Service) DeleteUser(ctx context.Context, nameOrID string) error {
	u, err := s.find(nameOrID)
	if err != nil {
		return err
	}
	version := uint16(1)
	if s.proposable(fsm.TypeUserDelete, 2) { // and their consent grants
		version = 2
	}
	cmd, err := fsm.NewCommand(fsm.TypeUserDelete, version, s.now().UnixNano(), fsm.UserDelete{ID: u.ID})
	if err != nil {
		return err
	}
	_, err = s.apply(ctx, cmd, s.adminEvent(ctx, "user.delete", u.ID, map[string]string{"username": u.Username}))
	return err
}

// adminEvent is the audit entry of an administrator's action on a user.
func (s *Service) adminEvent(ctx context.Context, event, subject string, details map[string]string) fsm.AuditAppend {
	ri := requestInfo(ctx)
	actor := ri.Actor
	if actor == "" {
		actor = "unknown"
	}
	return fsm.AuditAppend{Type: event, Severity: fsm.AuditInfo, Actor: actor, Subject: subject,
		IP: ri.IP, UserAgent: ri.UserAgent, Details: details}
}

func (s *Service) applyUser(ctx context.Context, cmd fsm.Command, audit ...fsm.AuditAppend) (User, error) {
	u, err := applyAs[*fsm.User](ctx, s, cmd, audit...)
	if err != nil {
		return User{}, err
	}
	return publicUser(u), nil
}

// find resolves a name (normalised first) or, failing that, an id.
func (s *Service) find(nameOrID string) (*fsm.User, error) {
	if name, err := NormalizeUsername(nameOrID); err == nil {
		if u, err := s.lookup(name); err == nil || !errors.Is(err, fsm.ErrUserNotFound) {
			return u, err
		}
	}
	var u *fsm.User
	err := s.store.View(func(r fsm.Reader) error {
		var err error
		u, err = r.UserByID(nameOrID)
		return err
	})
	return u, err
}

// userByID reads a user by id alone (find also tries a username).
func (s *Service) userByID(id string) (*fsm.User, error) {
	var u *fsm.User
	err := s.store.View(func(r fsm.Reader) error {
		var err error
		u, err = r.UserByID(id)
		return err
	})
	return u, err
}

func (s *Service) lookup(name string) (*fsm.User, error) {
	var u *fsm.User
	err := s.store.View(func(r fsm.Reader) error {
		var err error
		u, err = r.UserByName(name)
		return err
	})
	return u, err
}

// withHashSlot runs fn, a password hash, once one of the bounded slots is
// free. Bounding hashes by the core count keeps a login flood from
// starving Raft's heartbeats; waiters give up after HashWait.
func (s *Service) withHashSlot(ctx context.Context, fn func() error) error {
	start := time.Now()
	s.hashRequests.Add(1)
	s.hashWaiting.Add(1)
	t := time.NewTimer(s.cfg.HashWait)
	defer t.Stop()
	var err error
	select {
	case s.hashes <- struct{}{}:
	case <-t.C:
		err = ErrBusy
		s.hashRefused.Add(1)
	case <-ctx.Done():
		err = ctx.Err()
		s.hashAbandoned.Add(1)
	}
	held := time.Now()
	s.hashWaiting.Add(-1)
	s.hashWaitNanos.Add(int64(held.Sub(start)))
	if err != nil {
		return err
	}
	defer func() {
		s.hashBusyNanos.Add(int64(time.Since(held)))
		<-s.hashes
	}()
	if s.hashThreads == nil {
		return fn()
	}
	if rerr := s.hashThreads.Run(func() { err = fn() }); rerr != nil {
		return rerr
	}
	return err
}

// Close stops the password hash threads of WithHashThreads once the
// hashes running end; password checks fail from then on.
func (s *Service) Close() {
	if s.hashThreads != nil {
		s.hashThreads.Close()
	}
}

// newID mints a 128-bit random user id.
func newID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

func checkEmail(e string) error {
	if e == "" {
		return nil
	}
	a, err := mail.ParseAddress(e)
	if err != nil || a.Address != e || a.Name != "" || len(e) > 254 {
		return fmt.Errorf("%w: email %q is not a plain address like user@example.com", ErrInvalidInput, e)
	}
	return nil
}

// checkRoles accepts up to 32 roles of 1 to 64 characters [a-z0-9_.:-],
// sorted and without duplicates.
func checkRoles(roles []string) ([]string, error) {
	if len(roles) > 32 {
		return nil, fmt.Errorf("%w: at most 32 roles", ErrInvalidInput)
	}
	seen := map[string]bool{}
	var out []string
	for _, r := range roles {
		if r == "" || len(r) > 64 {
			return nil, fmt.Errorf("%w: role %q must be 1 to 64 characters", ErrInvalidInput, r)
		}
		for _, c := range r {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == ':' || c == '-') {
				return nil, fmt.Errorf("%w: role %q may hold only a-z, 0-9, '_', '.', ':' and '-'", ErrInvalidInput, r)
			}
		}
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return out, nil
}
