package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"log"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/bulwark-auth/bulwark/authcore"
)

// UserAdmin is what the user-administration routes need from the auth
// service (authcore.Service satisfies it).
type UserAdmin interface {
	CreateUser(ctx context.Context, req authcore.NewUser) (authcore.User, error)
	Users(ctx context.Context) ([]authcore.User, error)
	User(ctx context.Context, nameOrID string) (authcore.User, error)
	SetDisabled(ctx context.Context, nameOrID string, disabled bool) (authcore.User, error)
	// Unflag clears the flag repeated admin-route refusals set.
	Unflag(ctx context.Context, nameOrID string) (authcore.User, error)
	DeleteUser(ctx context.Context, nameOrID string) error
	// ReadBarrier returns once the local state holds every write the
	// cluster acknowledged before the call (authcore.Service.ReadBarrier).
	ReadBarrier(ctx context.Context) error
}

// Readiness reports whether this node can serve, and if not, why (the node
// satisfies it).
type Readiness interface {
	Ready() (ok bool, reason string)
}

// Options configure the API handler.
type Options struct {
	// Logger receives the access log and errors; nil discards.
	Logger *slog.Logger
	// MaxBodyBytes bounds every request body; zero means 64 KiB.
	MaxBodyBytes int64
	// TrustedProxies are the peers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// SealMode is "tpm" or "software", reported by /readyz.
	SealMode string
	// NodeID names this node in /readyz.
	NodeID string
	// IsNoLeader reports whether an error from below means no cluster
	// leader is known, answered as 503 no_leader. Nil: none does.
	IsNoLeader func(error) bool
	// RateLimit limits the /v1/auth/ routes per client address and failed
	// logins per username; nil means no limit. Build it with the same
	// TrustedProxies.
	RateLimit *RateLimiter
	// Cluster answers GET /v1/admin/cluster and, on the admin socket, the
	// cluster routes; nil: 404 there.
	Cluster ClusterAdmin
	// Backup streams GET /admin/v1/backup on the admin socket; nil: 404.
	Backup BackupFunc
	// DataKey serves the data-key routes of the admin socket; nil: 404.
	DataKey DataKeyAdmin
	// Forensics runs after a lockdown commits (AdminForensics); nil: none.
	Forensics ForensicsFunc
	// Metrics counts every request by route and status, and times it;
	// nil: no request metrics.
	Metrics *Metrics
	// OIDC serves the OpenID Connect provider (discovery, /oauth2/ and
	// its login step) and, on the admin socket, the client routes; nil:
	// 404 there.
	OIDC OIDC
	// Clients serves the admin socket's client routes; nil: 404.
	Clients ClientAdmin
	// DataSubject serves the export and erase routes (datasubject.go);
	// nil: 404.
	DataSubject DataSubject
	// Blocklist refuses blocked client addresses (403 address_blocked)
	// on every route but /healthz and /readyz, and serves
	// /v1/admin/blocklist (the admin socket's with AdminBlocklist); nil:
	// no address is refused and those routes are 404.
	Blocklist Blocklist
	// Scorecard serves GET /v1/admin/scorecard (and, with
	// AdminScorecard, the admin socket's); nil: 404 there.
	Scorecard ScorecardFunc
	// CRL serves GET /pki/cluster-ca.crl, the cluster CA's revocation
	// list (crl.go); nil: 404 there.
	CRL CRLFunc
}

// NewHandler returns the API handler served over TLS. ready is asked by
// /readyz; users backs the user administration routes; auth backs the
// login, session, self-service, JWKS and audit routes. None may be nil.
// Every route's context carries an authcore.RequestInfo (client address
// per Options.TrustedProxies, User-Agent, and the caller's user id once a
// Bearer token is checked). Options.RateLimit, when set, limits every
// /v1/auth/ route per client address and failed logins per name.
func NewHandler(opts Options, ready Readiness, users UserAdmin, auth Auth) http.Handler {
	a := &apiHandlers{opts: opts, ready: ready, users: users, auth: auth, limit: opts.RateLimit}
	return newRouter(opts, func(mux *http.ServeMux) {
		mux.Handle("GET /healthz", a.public(a.healthz))
		mux.Handle("GET /readyz", a.public(a.readyz))
		mux.Handle("GET /.well-known/jwks.json", a.public(a.jwks))

		mux.Handle("POST /v1/auth/login", a.limited(a.login))
		mux.Handle("POST /v1/auth/refresh", a.limited(a.refresh))
		mux.Handle("POST /v1/auth/logout", a.limited(a.bearer(a.logout)))
		mux.Handle("POST /v1/auth/mfa", a.limited(a.verifyMFA))
		mux.Handle("GET /v1/auth/challenge", a.limited(a.challenge))
		mux.Handle("GET /assets/", assetHandler())
		mux.Handle("POST /v1/auth/webauthn/begin", a.limited(a.webauthnLoginBegin))
		mux.Handle("POST /v1/auth/webauthn/finish", a.limited(a.webauthnLoginFinish))

		mux.Handle("GET /v1/me", a.bearer(a.me))
		mux.Handle("GET /v1/me/sessions", a.bearer(a.mySessions))
		mux.Handle("DELETE /v1/me/sessions/{id}", a.bearer(a.revokeMySession))
		mux.Handle("POST /v1/me/password", a.bearer(a.changePassword))
		mux.Handle("GET /v1/me/mfa", a.bearer(a.myMFA))
		mux.Handle("POST /v1/me/mfa/totp", a.bearer(a.enrollTOTP))
		mux.Handle("POST /v1/me/mfa/totp/confirm", a.bearer(a.confirmTOTP))
		mux.Handle("DELETE /v1/me/mfa/totp", a.bearer(a.removeTOTP))
		mux.Handle("POST /v1/me/mfa/recovery-codes", a.bearer(a.regenerateRecoveryCodes))
		mux.Handle("POST /v1/me/mfa/webauthn/begin", a.bearer(a.webauthnRegisterBegin))
		mux.Handle("POST /v1/me/mfa/webauthn/finish", a.bearer(a.webauthnRegisterFinish))
		mux.Handle("PATCH /v1/me/mfa/webauthn/{id}", a.bearer(a.webauthnRename))
		mux.Handle("DELETE /v1/me/mfa/webauthn/{id}", a.bearer(a.webauthnRemove))

		ur := userRoutes{users: users, base: "/v1/admin/users/"}
		// Every administrator's write needs a recent second factor too
		// (adminWrite, RFC 9470 step-up).
		mux.Handle("POST /v1/admin/users", a.adminWrite(anyPrincipal(ur.create)))
		// The admin API's reads are linearizable: an admin sees every
		// change acknowledged anywhere in the cluster before asking.
		mux.Handle("GET /v1/admin/users", a.admin(anyPrincipal(a.linearizable(ur.list))))
		mux.Handle("GET /v1/admin/users/{user}", a.admin(anyPrincipal(a.linearizable(ur.get))))
		mux.Handle("PATCH /v1/admin/users/{user}", a.adminWrite(a.adminPatchUser))
		mux.Handle("DELETE /v1/admin/users/{user}", a.adminWrite(anyPrincipal(ur.delete)))
		mux.Handle("POST /v1/admin/users/{user}/unlock", a.adminWrite(a.adminUnlockUser))
		mux.Handle("DELETE /v1/admin/users/{user}/sessions", a.adminWrite(a.adminRevokeUserSessions))
		mux.Handle("DELETE /v1/admin/users/{user}/mfa", a.adminWrite(anyPrincipal(resetMFA(a.auth))))
		mux.Handle("GET /v1/admin/audit", a.admin(anyPrincipal(a.linearizable(func(w http.ResponseWriter, r *http.Request) {
			serveAudit(w, r, a.auth)
		}))))
		mux.Handle("GET /v1/admin/cluster", a.admin(anyPrincipal(clusterHandlers{c: opts.Cluster}.status)))
		ir := incidentRoutes{auth: auth, forensics: opts.Forensics}
		mux.Handle("GET /v1/admin/incident", a.admin(anyPrincipal(ir.status)))
		mux.Handle("POST /v1/admin/incident/lockdown", a.adminWrite(anyPrincipal(ir.lockdown)))
		mux.Handle("POST /v1/admin/incident/release", a.adminWrite(anyPrincipal(ir.release)))
		if opts.OIDC != nil {
			oh := newOIDCHandler(a, opts.OIDC)
			mux.Handle("GET /.well-known/openid-configuration", oh)
			mux.Handle("/oauth2/", oh)
			mux.Handle("GET "+consentPath, a.public(a.consentPage))
			mux.Handle("POST "+consentPath, a.pageLimited(a.consentSubmit))
			mux.Handle("GET /v1/me/grants", a.bearer(a.myGrants))
			mux.Handle("DELETE /v1/me/grants", a.bearer(a.revokeMyGrants))
			mux.Handle("DELETE /v1/me/grants/{client_id}", a.bearer(a.revokeMyGrant))
		}
		a.pageRoutes(mux)
		if opts.Scorecard != nil {
			mux.Handle("GET /v1/admin/scorecard", a.admin(anyPrincipal(serveScorecard(opts.Scorecard))))
		}
		if opts.CRL != nil {
			mux.Handle("GET "+CRLPath, a.public(serveCRL(opts.CRL)))
		}
		a.dataSubjectRoutes(mux) // datasubject.go
		if opts.Blocklist != nil {
			br := blocklistRoutes{opts.Blocklist}
			mux.Handle("GET /v1/admin/blocklist", a.admin(anyPrincipal(a.linearizable(br.list))))
			mux.Handle("POST /v1/admin/blocklist", a.adminWrite(anyPrincipal(br.add)))
			mux.Handle("DELETE /v1/admin/blocklist/{cidr...}", a.adminWrite(anyPrincipal(br.remove)))
		}
	})
}

// linearizable serves h after a read barrier, so the local state it reads
// holds every write acknowledged before the request.
func (a *apiHandlers) linearizable(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := a.users.ReadBarrier(r.Context()); err != nil {
			writeError(w, r, err)
			return
		}
		h(w, r)
	}
}

// newRouter builds a mux with register's routes behind the middleware, and
// answers unknown paths and wrong methods with JSON errors instead of the
// mux's text.
func newRouter(opts Options, register func(mux *http.ServeMux)) http.Handler {
	mux := http.NewServeMux()
	register(mux)
	logger := opts.Logger
	if logger == nil {
		logger = discardLogger()
	}
	maxBody := opts.MaxBodyBytes
	if maxBody <= 0 {
		maxBody = defaultMaxBodyBytes
	}
	return &middleware{next: jsonFallbacks{mux}, log: logger, trusted: opts.TrustedProxies,
		maxBody: maxBody, isNoLeader: opts.IsNoLeader, metrics: opts.Metrics,
		blocks: opts.Blocklist}
}

// jsonFallbacks replaces the mux's plain-text 404 and 405 with JSON.
type jsonFallbacks struct{ mux *http.ServeMux }

func (j jsonFallbacks) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := j.mux.Handler(r)
	if pattern != "" { // a route, or the mux's redirect to a clean path
		// A registered pattern: a bounded label. (A CONNECT's redirect
		// would name the cleaned path instead; it is left "other".)
		if r.Method != http.MethodConnect {
			scopeOf(r).route = pattern
		}
		j.mux.ServeHTTP(w, r)
		return
	}
	// No route: let the mux's own answer say whether the path exists
	// under other methods (405 with Allow) or not at all (404).
	probe := &probeWriter{header: http.Header{}}
	h.ServeHTTP(probe, r)
	if probe.status == http.StatusMethodNotAllowed {
		allow := probe.header.Get("Allow")
		w.Header().Set("Allow", allow)
		writeError(w, r, errMethodNotAllowed(r.Method, allow))
		return
	}
	writeError(w, r, errNotFound())
}

// probeWriter captures the status and headers of the mux's fallback.
type probeWriter struct {
	header http.Header
	status int
}

func (p *probeWriter) Header() http.Header         { return p.header }
func (p *probeWriter) Write(b []byte) (int, error) { return len(b), nil }
func (p *probeWriter) WriteHeader(code int)        { p.status = code }

type apiHandlers struct {
	opts  Options
	ready Readiness
	users UserAdmin
	auth  Auth
	limit *RateLimiter // nil: no limit
}

func (a *apiHandlers) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, r, http.StatusOK, map[string]string{"status": "ok"})
}

type readyBody struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
	Seal   string `json:"seal"`
	Node   string `json:"node"`
}

func (a *apiHandlers) readyz(w http.ResponseWriter, r *http.Request) {
	seal := a.opts.SealMode
	if seal == "" {
		seal = "unknown"
	}
	ok, reason := false, "starting"
	if a.ready != nil {
		ok, reason = a.ready.Ready()
	}
	if ok {
		writeJSON(w, r, http.StatusOK, readyBody{Status: "ready", Seal: seal, Node: a.opts.NodeID})
		return
	}
	if reason == "" {
		reason = "not ready"
	}
	writeJSON(w, r, http.StatusServiceUnavailable,
		readyBody{Status: "unavailable", Reason: reason, Seal: seal, Node: a.opts.NodeID})
}

// writeJSON writes a successful (or, for /readyz, a 503 status) answer.
func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// NewServer returns an http.Server for h with bounded timeouts and header
// size, tlsCfg for ServeTLS (nil for plain HTTP, as on the admin socket),
// and the server's own error log routed to logger.
func NewServer(addr string, h http.Handler, tlsCfg *tls.Config, logger *slog.Logger) *http.Server {
	if logger == nil {
		logger = discardLogger()
	}
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          serverErrorLog(logger),
		// OPTIONS * goes to the router like every request (and gets JSON).
		DisableGeneralOptionsHandler: true,
		// HTTP/2: what one connection may make the server buffer. Frames
		// of at most 16 KiB (the protocol's initial size; Go allows 1
		// MiB), and request bodies not yet read by their handlers held
		// to 64 KiB per stream and 256 KiB per connection (Go: 1 MiB
		// each), so api.max_connections idle-but-sending HTTP/2
		// connections cost at most 256 KiB each.
		HTTP2: &http.HTTP2Config{MaxConcurrentStreams: maxHTTP2Streams, MaxReadFrameSize: 16 << 10,
			MaxReceiveBufferPerStream: 64 << 10, MaxReceiveBufferPerConnection: 256 << 10},
	}
}

// maxHTTP2Streams is how many requests one HTTP/2 connection may have in
// flight, as many as 512 HTTP/1.1 connections would (each request is
// bounded by the same timeouts and body limit either way). Go's default,
// 250, is below what one application server's connection carries under
// load, and net/http's client, told to keep to one connection
// (HTTP2Config.StrictMaxConcurrentRequests), stalls until its timeout
// once more requests than that are waiting: in bulwark-bench, 256
// workers on one connection got 98 refreshes, then 256 timeouts.
const maxHTTP2Streams = 512

// serverErrorLog adapts net/http's log.Logger to slog. TLS handshake
// failures (scanners, clients that do not trust the CA) are routine and go
// to debug; everything else is a warning.
func serverErrorLog(logger *slog.Logger) *log.Logger {
	return log.New(logWriter{logger}, "", 0)
}

type logWriter struct{ log *slog.Logger }

func (lw logWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	level := slog.LevelWarn
	if strings.HasPrefix(msg, "http: TLS handshake error") {
		level = slog.LevelDebug
	}
	lw.log.Log(context.Background(), level, msg, "source", "net/http")
	return len(p), nil
}
