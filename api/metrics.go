package api

import (
	"net/http"
	"net/http/pprof"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/bulwark-auth/bulwark/authcore"
)

// Metrics are the figures /metrics serves (API.md "Metrics"). Counters
// move as things happen: HTTP requests (the API handler's middleware,
// with Options.Metrics) and security events (SecurityEvent, handed to
// authcore.WithSecurityObserver). Gauges are read at scrape time from
// MetricSources (Handler).
//
// Every label value comes from a fixed set, so the number of series is
// bounded whatever clients send: the route is the pattern a request
// matched ("POST /v1/auth/login"), never its path; a reason or kind
// outside the tables below is "other".
//
// Security counters count the events this node proposed, each once: the
// sum over a cluster's nodes is the cluster's figure.
type Metrics struct {
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	failed     *prometheus.CounterVec
	suspicious *prometheus.CounterVec
	logins     *prometheus.CounterVec
	lockouts   prometheus.Counter
	ipBlocks   prometheus.Counter
}

// Label values of the security counters. A new event type maps to these
// in securityEvents; a new value goes here too, so that its series
// exists (at 0) from the start and a rate over it sees the first event.
var (
	failureReasons  = []string{"wrong_password", "unknown_user", "disabled", "mfa", "other"}
	suspiciousKinds = []string{"refresh_reuse", "challenge_required", "mfa_lockout", "device_revoked", "lockdown", "account_flagged", "other"}
	loginResults    = []string{"success", "failure", "locked"}
)

// securityEvents maps each security event type (authcore.SecurityEvent,
// the audit entry's type) to the counters it moves. Types not listed
// move none. Threat response and MFA add their types here.
var securityEvents = map[string]func(m *Metrics, ev authcore.SecurityEvent){
	"login.success": func(m *Metrics, _ authcore.SecurityEvent) { m.logins.WithLabelValues("success").Inc() },
	"login.failure": func(m *Metrics, ev authcore.SecurityEvent) {
		m.logins.WithLabelValues("failure").Inc()
		m.failed.WithLabelValues(oneOf(ev.Details["reason"], failureReasons)).Inc()
	},
	authcore.EventLoginLocked: func(m *Metrics, _ authcore.SecurityEvent) { m.logins.WithLabelValues("locked").Inc() },
	"lockout":                 func(m *Metrics, _ authcore.SecurityEvent) { m.lockouts.Inc() },
	"refresh.reuse":           func(m *Metrics, _ authcore.SecurityEvent) { m.suspicious.WithLabelValues("refresh_reuse").Inc() },
	"mfa.failure":             func(m *Metrics, _ authcore.SecurityEvent) { m.failed.WithLabelValues("mfa").Inc() },
	"address.block":           func(m *Metrics, _ authcore.SecurityEvent) { m.ipBlocks.Inc() },
	authcore.EventChallengeRequired: func(m *Metrics, _ authcore.SecurityEvent) {
		m.suspicious.WithLabelValues("challenge_required").Inc()
	},
	"mfa.lockout": func(m *Metrics, _ authcore.SecurityEvent) {
		m.lockouts.Inc()
		m.suspicious.WithLabelValues("mfa_lockout").Inc()
	},
	"device.revoked":    func(m *Metrics, _ authcore.SecurityEvent) { m.suspicious.WithLabelValues("device_revoked").Inc() },
	"incident.lockdown": func(m *Metrics, _ authcore.SecurityEvent) { m.suspicious.WithLabelValues("lockdown").Inc() },
	"account.flagged":   func(m *Metrics, _ authcore.SecurityEvent) { m.suspicious.WithLabelValues("account_flagged").Inc() },
}

// oneOf is v if it is in set, else "other".
func oneOf(v string, set []string) string {
	for _, s := range set {
		if s == v {
			return v
		}
	}
	return "other"
}

// NewMetrics makes the event counters, each labelled series at 0.
func NewMetrics() *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulwark_http_requests_total",
			Help: "API requests answered, by route (the pattern matched; \"other\" for none) and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bulwark_http_request_duration_seconds",
			Help:    "Time to answer an API request, by route (the pattern matched; \"other\" for none).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulwark_failed_auth_attempts_total",
			Help: "Failed authentication attempts this node proposed, by reason: wrong_password, unknown_user, disabled, mfa, other.",
		}, []string{"reason"}),
		suspicious: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulwark_suspicious_activity_total",
			Help: "Suspicious activity this node detected, by kind: refresh_reuse (a rotated refresh token presented again; its session was revoked), challenge_required (a login refused for want of proof of work), mfa_lockout (a second factor locked), device_revoked (a device token's budget spent), lockdown (an operator's incident lockdown), account_flagged (repeated 403s on admin routes revoked an account's sessions), other.",
		}, []string{"kind"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulwark_logins_total",
			Help: "Password checks this node answered, by result: success, failure (wrong password, unknown or disabled user), locked (refused at once, 429).",
		}, []string{"result"}),
		lockouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bulwark_lockouts_total",
			Help: "Names locked by a failed attempt this node proposed.",
		}),
		ipBlocks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bulwark_ip_blocks_total",
			Help: "Client addresses blocked by a command this node proposed.",
		}),
	}
	for _, r := range failureReasons {
		m.failed.WithLabelValues(r)
	}
	for _, k := range suspiciousKinds {
		m.suspicious.WithLabelValues(k)
	}
	for _, r := range loginResults {
		m.logins.WithLabelValues(r)
	}
	return m
}

// SecurityEvent counts ev (authcore.WithSecurityObserver calls it).
func (m *Metrics) SecurityEvent(ev authcore.SecurityEvent) {
	if count := securityEvents[ev.Type]; count != nil {
		count(m, ev)
	}
}

// observeRequest counts one answered request.
func (m *Metrics) observeRequest(route string, status int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}

// RaftStats is a node's Raft state as the metrics read it.
type RaftStats struct {
	Leader        bool // this node leads
	Ready         bool // the node can serve (node.Ready)
	Applied       uint64
	Commit        uint64
	Last          uint64
	LeaderChanges uint64 // leaders seen taking over since start
}

// AuthStats is what the metrics read from the auth service
// (authcore.Service satisfies it).
type AuthStats interface {
	PasswordChecks() int64
	HashStats() authcore.HashStats
	SessionCount() (int, error)
	SigningKeyAge() (time.Duration, error)
	AuditVerification() authcore.AuditVerification
}

// BlockedAddresses counts the addresses blocked now, cluster-wide
// (authcore.Service satisfies it; the blocklist refines what it counts).
type BlockedAddresses interface {
	BlockedAddresses() (int, error)
}

// MetricSources are what the gauges read at scrape time. None may be nil.
type MetricSources struct {
	SealMode string // "tpm" or "software"
	Raft     func() RaftStats
	Auth     AuthStats
	Blocks   BlockedAddresses
	// CertExpiry is when the node certificate the cluster port presents
	// expires.
	CertExpiry func() time.Time
	// RotateEvery is tokens.rotate_every (0: no scheduled rotation),
	// served so that an alert can compare the key's age with it.
	RotateEvery time.Duration
	// BlocksCacheFor is how long a count of blocked addresses is
	// served before it is read again; zero means 5 s.
	BlocksCacheFor time.Duration
	// Conns reads the API listener's connections (ConnLimiter.Stats).
	Conns func() ConnStats
}

// Handler serves /metrics from a registry of its own: m's counters, the
// gauges read from src, and Go runtime and process metrics; with
// profiling (metrics.pprof), /debug/pprof/ too.
func (m *Metrics) Handler(src MetricSources, profiling bool) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.duration, m.failed, m.suspicious, m.logins, m.lockouts, m.ipBlocks)
	seal := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bulwark_seal_info",
		Help: "How this node's keys are sealed: 1 for the mode in use (tpm or software).",
	}, []string{"mode"})
	seal.WithLabelValues(src.SealMode).Set(1)
	certExpiry := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "bulwark_node_cert_expiry_timestamp_seconds",
		Help: "When the node certificate the cluster port presents expires (Unix time); renewed 30 days ahead.",
	}, func() float64 { return float64(src.CertExpiry().Unix()) })
	rotateEvery := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "bulwark_signing_key_rotation_period_seconds",
		Help: "tokens.rotate_every: how often this node rotates its signing key; 0 when it does not.",
	}, func() float64 { return src.RotateEvery.Seconds() })
	blocksFor := src.BlocksCacheFor
	if blocksFor <= 0 {
		blocksFor = 5 * time.Second
	}
	blocks := &cachedCount{read: src.Blocks.BlockedAddresses, ttl: blocksFor}
	reg.MustRegister(seal, certExpiry, rotateEvery, raftCollector{src.Raft}, authCollector{src.Auth, blocks}, connCollector{src.Conns})

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	if profiling {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// cachedCount reads a count at most once per ttl; scrapes in between
// (several Prometheus servers, a dashboard) get the last one.
type cachedCount struct {
	read func() (int, error)
	ttl  time.Duration

	mu    sync.Mutex
	at    time.Time
	n     int
	err   error
	now   func() time.Time // nil: time.Now
	reads int              // reads made (tests)
}

func (c *cachedCount) get() (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now
	if c.now != nil {
		now = c.now
	}
	if t := now(); c.at.IsZero() || t.Sub(c.at) >= c.ttl {
		c.n, c.err = c.read()
		c.at = t
		c.reads++
	}
	return c.n, c.err
}

var (
	descLeader        = prometheus.NewDesc("bulwark_raft_leader", "1 if this node is the Raft leader.", nil, nil)
	descReady         = prometheus.NewDesc("bulwark_ready", "1 if this node is ready to serve.", nil, nil)
	descApplied       = prometheus.NewDesc("bulwark_raft_applied_index", "Last log index applied to state.db.", nil, nil)
	descCommit        = prometheus.NewDesc("bulwark_raft_commit_index", "Last log index known committed.", nil, nil)
	descLast          = prometheus.NewDesc("bulwark_raft_last_index", "Last log index stored.", nil, nil)
	descLeaderChanges = prometheus.NewDesc("bulwark_leader_changes_total",
		"Times this node has seen a new Raft leader take over since it started (the first leader included).", nil, nil)
)

// raftCollector reads the node's Raft state at scrape time.
type raftCollector struct{ stats func() RaftStats }

func (c raftCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLeader, descReady, descApplied, descCommit, descLast, descLeaderChanges} {
		ch <- d
	}
}

func (c raftCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	ch <- prometheus.MustNewConstMetric(descLeader, prometheus.GaugeValue, b2f(s.Leader))
	ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, b2f(s.Ready))
	ch <- prometheus.MustNewConstMetric(descApplied, prometheus.CounterValue, float64(s.Applied))
	ch <- prometheus.MustNewConstMetric(descCommit, prometheus.CounterValue, float64(s.Commit))
	ch <- prometheus.MustNewConstMetric(descLast, prometheus.CounterValue, float64(s.Last))
	ch <- prometheus.MustNewConstMetric(descLeaderChanges, prometheus.CounterValue, float64(s.LeaderChanges))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

var (
	descChecks = prometheus.NewDesc("bulwark_password_checks_total",
		"Password hashes verified by this node (logins and password changes).", nil, nil)
	descSessions = prometheus.NewDesc("bulwark_active_sessions",
		"Sessions in the replicated state, the cluster's: not revoked, evicted or past their lifetime (one ended by its idle timeout counts until its lifetime ends).", nil, nil)
	descBlocked = prometheus.NewDesc("bulwark_blocked_addresses",
		"Client addresses blocked now, cluster-wide.", nil, nil)
	descKeyAge = prometheus.NewDesc("bulwark_signing_key_age_seconds",
		"How long ago this node's current signing key was published; absent until it is.", nil, nil)
	descAuditVerified = prometheus.NewDesc("bulwark_audit_verified_seq",
		"The audit trail is verified from seq 1 through this seq (the background chain check).", nil, nil)
	descAuditLast = prometheus.NewDesc("bulwark_audit_last_seq",
		"The newest audit seq in this node's state, as the chain check last saw it.", nil, nil)
	descAuditBroken = prometheus.NewDesc("bulwark_audit_chain_broken",
		"1 once the chain check found an altered, missing or inserted audit entry (the log names its seq).", nil, nil)

	descHashSlots = prometheus.NewDesc("bulwark_password_hash_slots",
		"Password hashes this node runs at once: its core count, or fewer when server.memory_limit holds fewer (the log says so at start).", nil, nil)
	descHashInFlight = prometheus.NewDesc("bulwark_password_hash_in_flight", "Password hashes running now.", nil, nil)
	descHashWaiting  = prometheus.NewDesc("bulwark_password_hash_waiting", "Requests waiting for a password hash slot now.", nil, nil)
	descHashRequests = prometheus.NewDesc("bulwark_password_hash_requests_total",
		"Requests that asked for a hash slot (logins, password changes, user creation), whatever came of it.", nil, nil)
	descHashBusy = prometheus.NewDesc("bulwark_password_hash_busy_seconds_total",
		"Time the hash slots were held; its rate over bulwark_password_hash_slots is the share of hashing capacity in use.", nil, nil)
	descHashWait = prometheus.NewDesc("bulwark_password_hash_wait_seconds_total",
		"Time requests waited for a hash slot; its rate over that of bulwark_password_hash_requests_total is the mean wait.", nil, nil)
	descHashRefused = prometheus.NewDesc("bulwark_password_hash_refused_total",
		"Requests refused as busy (503) after waiting 5 s for a hash slot.", nil, nil)
	descHashAbandoned = prometheus.NewDesc("bulwark_password_hash_abandoned_total",
		"Requests that ended (client gone, timeout) while waiting for a hash slot.", nil, nil)
	descHashPinned = prometheus.NewDesc("bulwark_password_hash_threads_pinned",
		"Password hash threads pinned to a CPU of their own (auth.password.pin_hash_threads); below bulwark_password_hash_slots, the log says why.", nil, nil)
)

// authCollector reads the auth service's figures at scrape time. A
// figure that cannot be read (the state closing) is left out of the
// scrape rather than reported as 0.
type authCollector struct {
	auth   AuthStats
	blocks *cachedCount
}

func (c authCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descChecks, descSessions, descBlocked, descKeyAge, descAuditVerified,
		descAuditLast, descAuditBroken, descHashSlots, descHashInFlight, descHashWaiting, descHashRequests,
		descHashBusy, descHashWait, descHashRefused, descHashAbandoned, descHashPinned} {
		ch <- d
	}
}

func (c authCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descChecks, prometheus.CounterValue, float64(c.auth.PasswordChecks()))
	if n, err := c.auth.SessionCount(); err == nil {
		ch <- prometheus.MustNewConstMetric(descSessions, prometheus.GaugeValue, float64(n))
	}
	if n, err := c.blocks.get(); err == nil {
		ch <- prometheus.MustNewConstMetric(descBlocked, prometheus.GaugeValue, float64(n))
	}
	if age, err := c.auth.SigningKeyAge(); err == nil {
		ch <- prometheus.MustNewConstMetric(descKeyAge, prometheus.GaugeValue, age.Seconds())
	}
	av := c.auth.AuditVerification()
	ch <- prometheus.MustNewConstMetric(descAuditVerified, prometheus.GaugeValue, float64(av.Verified))
	ch <- prometheus.MustNewConstMetric(descAuditLast, prometheus.GaugeValue, float64(av.Last))
	ch <- prometheus.MustNewConstMetric(descAuditBroken, prometheus.GaugeValue, b2f(av.BrokenAt != 0))

	st := c.auth.HashStats()
	ch <- prometheus.MustNewConstMetric(descHashSlots, prometheus.GaugeValue, float64(st.Slots))
	ch <- prometheus.MustNewConstMetric(descHashInFlight, prometheus.GaugeValue, float64(st.InFlight))
	ch <- prometheus.MustNewConstMetric(descHashWaiting, prometheus.GaugeValue, float64(st.Waiting))
	ch <- prometheus.MustNewConstMetric(descHashRequests, prometheus.CounterValue, float64(st.Requests))
	ch <- prometheus.MustNewConstMetric(descHashBusy, prometheus.CounterValue, st.Busy.Seconds())
	ch <- prometheus.MustNewConstMetric(descHashWait, prometheus.CounterValue, st.Waited.Seconds())
	ch <- prometheus.MustNewConstMetric(descHashRefused, prometheus.CounterValue, float64(st.Refused))
	ch <- prometheus.MustNewConstMetric(descHashAbandoned, prometheus.CounterValue, float64(st.Abandoned))
	ch <- prometheus.MustNewConstMetric(descHashPinned, prometheus.GaugeValue, float64(st.PinnedThreads))
}

var (
	descConnsOpen = prometheus.NewDesc("bulwark_connections_open",
		"API connections open now (api.max_connections bounds them).", nil, nil)
	descConnsIdle = prometheus.NewDesc("bulwark_connections_idle",
		"API connections open now with no request under way.", nil, nil)
	descConnsRefused = prometheus.NewDesc("bulwark_connections_refused_total",
		"API connections refused, by reason: per_client (closed as soon as accepted, its client holding api.max_connections_per_client), max_connections (api.max_connections reached with none idle: held unanswered until a connection closed).",
		[]string{"reason"}, nil)
	descConnsClosedIdle = prometheus.NewDesc("bulwark_connections_idle_closed_total",
		"Idle API connections closed to make room under api.max_connections.", nil, nil)
)

// connCollector reads the API listener's connection figures at scrape time.
type connCollector struct{ stats func() ConnStats }

func (c connCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnsOpen, descConnsIdle, descConnsRefused, descConnsClosedIdle} {
		ch <- d
	}
}

func (c connCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	ch <- prometheus.MustNewConstMetric(descConnsOpen, prometheus.GaugeValue, float64(st.Open))
	ch <- prometheus.MustNewConstMetric(descConnsIdle, prometheus.GaugeValue, float64(st.Idle))
	ch <- prometheus.MustNewConstMetric(descConnsRefused, prometheus.CounterValue, float64(st.RefusedPerClient), "per_client")
	ch <- prometheus.MustNewConstMetric(descConnsRefused, prometheus.CounterValue, float64(st.WaitedMax), "max_connections")
	ch <- prometheus.MustNewConstMetric(descConnsClosedIdle, prometheus.CounterValue, float64(st.ClosedIdle))
}
