// Package config loads and validates bulwark.toml, the daemon's configuration
// file. It is imported only by cmd/bulwark, which turns the validated Config
// into plain values (addresses, durations, limits) for the other packages;
// nothing else may import it.
//
// The caller's sequence is:
//
//	cfg, err := config.Load(path)   // or config.Default() without --config
//	cfg.DataDir = dataDirFlag       // flag overrides, if any
//	if dev { cfg.ApplyDev(dataDirFlag) }
//	err = cfg.Resolve()             // hostname, absolute paths
//	err = cfg.Validate()            // every problem at once
//
// Every key is optional: Load starts from Default and overwrites what the file
// names. An unknown key, a value of the wrong type, a syntax error or a value
// Validate rejects is reported with the dotted key and, when the value came
// from the file, "file:line:". The example file packaging/bulwark.toml lists
// every key with its default.
package config

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Config is the whole of bulwark.toml. The toml tags are the key names of the
// contract (API.md); keep them.
type Config struct {
	// NodeName names this node in the cluster. Empty means the hostname,
	// filled in by Default and Resolve.
	NodeName string `toml:"node_name"`
	// DataDir holds the node's state. Resolve makes it absolute.
	DataDir string `toml:"data_dir"`

	API     API     `toml:"api"`
	Cluster Cluster `toml:"cluster"`
	Seal    Seal    `toml:"seal"`
	Auth    Auth    `toml:"auth"`
	Tokens  Tokens  `toml:"tokens"`
	Metrics Metrics `toml:"metrics"`
	MFA     MFA     `toml:"mfa"`
	// Incident is [incident]: detection, response and notification.
	Incident Incident `toml:"incident"`
	// Audit is [audit]: the signed checkpoints of the audit trail.
	Audit  Audit  `toml:"audit"`
	Log    Log    `toml:"log"`
	Server Server `toml:"server"`
	// Retention is [retention]: how long the replicated state keeps what
	// it no longer needs.
	Retention Retention `toml:"retention"`

	// src remembers where Load found each value, so Validate can name the
	// line. Nil for a Config that did not come from a file.
	src *source
}

// API is the [api] table: the public HTTPS listener.
type API struct {
	Listen string `toml:"listen"`
	// TLSCert and TLSKey are PEM files; both empty means a certificate
	// issued from the cluster CA.
	TLSCert       string `toml:"tls_cert"`
	TLSKey        string `toml:"tls_key"`
	TLSMinVersion string `toml:"tls_min_version"` // "1.2" or "1.3"
	// TrustedProxies are the peers whose X-Forwarded-For is believed.
	TrustedProxies []CIDR `toml:"trusted_proxies"`
	MaxBodyBytes   int64  `toml:"max_body_bytes"`
	// MaxConnections bounds the connections open at once (the longest
	// idle is closed to make room); MaxConnectionsPerClient those of one
	// client address (an IPv6 /64), 0 for no such bound. Trusted proxies
	// and rate_limit.exempt clients are held only to MaxConnections.
	MaxConnections          int `toml:"max_connections"`
	MaxConnectionsPerClient int `toml:"max_connections_per_client"`
	// AdminSocket is the admin Unix socket; empty means <data_dir>/admin.sock.
	// Use Config.AdminSocketPath.
	AdminSocket string `toml:"admin_socket"`
}

// Cluster is the [cluster] table: Raft and internal RPC over mTLS.
type Cluster struct {
	Listen string `toml:"listen"`
	// Advertise is the host:port other nodes dial; empty means derived by
	// the daemon.
	Advertise string `toml:"advertise"`
	// MaxStaleness is how long a node that has lost contact with the
	// leader keeps answering session checks from its own state; after
	// that they answer 503 no_leader, so a node cut off from the cluster
	// does not vouch for sessions revoked elsewhere.
	MaxStaleness Duration `toml:"max_staleness"`
	// HeartbeatTimeout is how long a follower waits without hearing
	// from the leader before it stands for election (Raft's heartbeat and
	// election timeouts; the leader's lease is half of it): it sets how
	// fast a dead leader is replaced, and how long a stall may last
	// before it costs a spurious election.
	HeartbeatTimeout Duration `toml:"heartbeat_timeout"`
}

// Seal is the [seal] table: how the key-encryption key is protected.
type Seal struct {
	Mode string `toml:"mode"` // "tpm" or "software"
	// Device is the TPM command channel: a character device ("/dev/tpmrm0"),
	// "tcp:HOST:PORT" or "unix:PATH" (swtpm and the like).
	Device string `toml:"device"`
	// PCRs the KEK is bound to, each 0..23.
	PCRs []int `toml:"pcrs"`
	// Signing is where the token signing key lives: "keystore" (in the
	// sealed keystore, signing in software) or "tpm-resident" (made inside
	// the TPM, never exported, every token signed by TPM2_Sign; needs
	// mode "tpm" and tokens.algorithm "ES256").
	Signing string `toml:"signing"`
}

// Auth is the [auth] table.
type Auth struct {
	Security  Security  `toml:"security"`
	RateLimit RateLimit `toml:"rate_limit"`
	Sessions  Sessions  `toml:"sessions"`
	Password  Password  `toml:"password"`
}

// Security is [auth.security].
type Security struct {
	MaxFailedAttempts  int      `toml:"max_failed_attempts"`
	LockoutDuration    Duration `toml:"lockout_duration"`
	JWTExpiry          Duration `toml:"jwt_expiry"`
	RefreshTokenExpiry Duration `toml:"refresh_token_expiry"`
	RequireMFAForAdmin bool     `toml:"require_mfa_for_admin"`

	// MaxFailedNamesPerAddress: distinct names that may fail from one
	// client address (IPv6: its /64) per lockout_duration before the
	// address is refused for names with no failures counted; 0: no cap.
	MaxFailedNamesPerAddress int `toml:"max_failed_names_per_address"`
}

// RateLimit is [auth.rate_limit], per node. Rates are requests per second;
// a rate of 0 turns that limit off.
type RateLimit struct {
	PerIP            int    `toml:"per_ip"`
	PerIPBurst       int    `toml:"per_ip_burst"`
	PerUsername      int    `toml:"per_username"`
	PerUsernameBurst int    `toml:"per_username_burst"`
	Exempt           []CIDR `toml:"exempt"`
}

// Sessions is [auth.sessions].
type Sessions struct {
	IdleTimeout Duration `toml:"idle_timeout"`
	MaxPerUser  int      `toml:"max_per_user"`
	OnLimit     string   `toml:"on_limit"` // "evict_oldest" or "deny"
}

// Password is [auth.password]: the password policy and the Argon2id cost.
// The ints fit the argon2 package's types once Validate has passed
// (memory and iterations uint32, parallelism uint8).
type Password struct {
	MinLength         int `toml:"min_length"` // in runes
	MaxLength         int `toml:"max_length"` // in runes
	Argon2MemoryKiB   int `toml:"argon2_memory_kib"`
	Argon2Iterations  int `toml:"argon2_iterations"`
	Argon2Parallelism int `toml:"argon2_parallelism"`
	// PinHashThreads pins each password hash thread to a CPU of its own
	// (Linux; see authcore.WithHashThreads).
	PinHashThreads bool `toml:"pin_hash_threads"`
}

// Tokens is the [tokens] table.
type Tokens struct {
	// Issuer is the iss claim, the cluster's and the same on every member
	// (authcore.Config.ClusterIssuer); empty means each node's own
	// https://<advertised host>:<api port>.
	Issuer      string   `toml:"issuer"`
	Algorithm   string   `toml:"algorithm"` // ES256, EdDSA, RS256 or ML-DSA-65
	RotateEvery Duration `toml:"rotate_every"`
}

// Metrics is the [metrics] table: the Prometheus listener.
type Metrics struct {
	Listen string `toml:"listen"`
	// Pprof also serves Go's profiler at /debug/pprof/ on the metrics
	// listener, for diagnosing performance. Off by default: profiles and
	// traces reveal internals (never keys).
	Pprof bool `toml:"pprof"`
}

// Audit is the [audit] table: when the leader signs a checkpoint of the
// audit trail (authcore/checkpoint.go): after CheckpointEntries entries
// or CheckpointInterval, whichever comes first (and at stop, before a
// backup or a forensic copy). A shorter schedule bounds how much of the
// trail's tail an attacker who takes a node could rewrite unnoticed.
type Audit struct {
	CheckpointEntries  int      `toml:"checkpoint_entries"`
	CheckpointInterval Duration `toml:"checkpoint_interval"`
}

// MFA is the [mfa] table: second factors.
type MFA struct {
	// WebAuthnRPID is the WebAuthn relying-party id (a host name);
	// empty: the issuer's host.
	WebAuthnRPID string `toml:"webauthn_rp_id"`
	// WebAuthnOrigins are the origins passkey ceremonies may come from;
	// empty: the issuer's origin.
	WebAuthnOrigins []string `toml:"webauthn_origins"`
	// StepUpWindow is how recent a second factor sensitive actions need
	// (RFC 9470 step-up).
	StepUpWindow Duration `toml:"step_up_window"`
}

// Incident is the [incident] table: detection rules, automated response
// and notification.
type Incident struct {
	// Exempt are clients never blocked or challenged, and allowed to
	// sign in during a lockdown.
	Exempt []CIDR `toml:"exempt"`
	// ChallengeAfterFailures: failures of a name, or names failed from an
	// address, within auth.security.lockout_duration after which a login
	// needs a solved proof-of-work challenge (428); 0 turns it off.
	ChallengeAfterFailures int `toml:"challenge_after_failures"`
	// Window is how long failed logins from one address count together.
	Window Duration `toml:"window"`
	// BlockAfterFailures failed logins from one address (IPv6: its /64)
	// in Window block it for BlockFor; 0 turns the rule off.
	BlockAfterFailures int `toml:"block_after_failures"`
	// BlockAfterUsernames distinct names failed from one address in Window
	// block it (credential stuffing); 0 turns the rule off.
	BlockAfterUsernames int `toml:"block_after_usernames"`
	// BlockFor is how long a rule's block lasts, and a manual block's
	// default (bulwark blocklist add without --for).
	BlockFor Duration `toml:"block_for"`
	// RevokeAfterForbidden refusals on admin routes by one signed-in
	// account within window revoke its sessions and flag it; 0 turns the
	// rule off.
	RevokeAfterForbidden int `toml:"revoke_after_forbidden"`
	// Webhooks are [[incident.webhooks]]: where security events go.
	Webhooks []Webhook `toml:"webhooks"`
}

// Webhook is one [[incident.webhooks]] entry.
type Webhook struct {
	URL        string `toml:"url"`         // https://, or http:// to loopback only
	SecretFile string `toml:"secret_file"` // holds the whsec_… secret
	// MinSeverity: events at or above it are sent (info, warning,
	// critical); empty means critical.
	MinSeverity string `toml:"min_severity"`
}

// Retention is the [retention] table (authcore/retention.go).
type Retention struct {
	// Audit: audit entries older than this are pruned, up to the newest
	// signed checkpoint that old, so the kept trail verifies from it; 0
	// keeps them for ever. At least 1d otherwise.
	Audit Duration `toml:"audit"`
	// ExpiredSessions: how long a dead session's record is kept. One past
	// its absolute lifetime goes at once (the sweep); one dead of
	// idleness within this (and an hour) of its death. 0 leaves those to
	// their absolute lifetime.
	ExpiredSessions Duration `toml:"expired_sessions"`
	// UnknownNameEntries: failed logins for names no user has, per client
	// address (IPv6: its /64) and UnknownNameWindow, that get an audit
	// entry each; the rest are counted into one summary entry per window
	// (the metrics count every one). 0 turns the cap off.
	UnknownNameEntries int      `toml:"unknown_name_entries"`
	UnknownNameWindow  Duration `toml:"unknown_name_window"`
}

// Server is the [server] table: how the daemon's process uses the machine.
type Server struct {
	// MemoryLimit is the Go runtime's soft memory limit (GOMEMLIMIT; see
	// runtime/debug.SetMemoryLimit): the collector works harder as the
	// heap nears it. "auto" takes GOMEMLIMIT from the environment, else
	// three quarters of the cgroup's memory.max (systemd MemoryMax=),
	// else 64 MiB plus one argon2id memory per CPU. The password hashes
	// allowed at once are as many as fit beside 64 MiB for the rest,
	// at most one per CPU.
	MemoryLimit MemoryLimit `toml:"memory_limit"`
}

// Log is the [log] table.
type Log struct {
	Level  string `toml:"level"`  // "debug", "info", "warn" or "error"
	Format string `toml:"format"` // "text" or "json"
}

// Default returns the configuration used for every key a file leaves out.
// node_name is the hostname, or empty (rejected by Validate) if it cannot be
// read.
func Default() Config {
	host, _ := os.Hostname()
	return Config{
		NodeName: host,
		DataDir:  "/var/lib/bulwark",
		API: API{
			Listen:         ":8443",
			TLSMinVersion:  "1.3",
			TrustedProxies: []CIDR{},
			MaxBodyBytes:   64 << 10,
			MaxConnections: 4096, MaxConnectionsPerClient: 256,
		},
		Cluster: Cluster{Listen: ":8444", MaxStaleness: Duration{2 * time.Second}, HeartbeatTimeout: Duration{300 * time.Millisecond}},
		Seal:    Seal{Mode: "tpm", Device: "/dev/tpmrm0", PCRs: []int{}, Signing: "keystore"},
		Auth: Auth{
			Security: Security{
				MaxFailedAttempts:  5,
				LockoutDuration:    Duration{15 * time.Minute},
				JWTExpiry:          Duration{time.Hour},
				RefreshTokenExpiry: Duration{7 * 24 * time.Hour},
				RequireMFAForAdmin: true,

				MaxFailedNamesPerAddress: 100,
			},
			RateLimit: RateLimit{
				PerIP:            10,
				PerIPBurst:       30,
				PerUsername:      5,
				PerUsernameBurst: 10,
				Exempt:           []CIDR{},
			},
			Sessions: Sessions{
				IdleTimeout: Duration{24 * time.Hour},
				MaxPerUser:  10,
				OnLimit:     "evict_oldest",
			},
			// OWASP Password Storage Cheat Sheet: Argon2id, m=19 MiB, t=2, p=1.
			Password: Password{
				MinLength:         12,
				MaxLength:         128,
				Argon2MemoryKiB:   19456,
				Argon2Iterations:  2,
				Argon2Parallelism: 1,
				PinHashThreads:    true,
			},
		},
		Tokens: Tokens{
			Algorithm:   "ES256",
			RotateEvery: Duration{720 * time.Hour},
		},
		Metrics: Metrics{Listen: "127.0.0.1:9464"},
		MFA:     MFA{WebAuthnOrigins: []string{}, StepUpWindow: Duration{10 * time.Minute}},
		Incident: Incident{Exempt: []CIDR{}, ChallengeAfterFailures: 3, Webhooks: []Webhook{},
			Window: Duration{time.Minute}, BlockAfterFailures: 10, BlockAfterUsernames: 5, BlockFor: Duration{time.Hour},
			RevokeAfterForbidden: 5},
		Audit:     Audit{CheckpointEntries: 1000, CheckpointInterval: Duration{5 * time.Minute}},
		Log:       Log{Level: "info", Format: "text"},
		Server:    Server{MemoryLimit: MemoryLimit{}},
		Retention: Retention{Audit: Duration{400 * 24 * time.Hour}, ExpiredSessions: Duration{7 * 24 * time.Hour}, UnknownNameEntries: 10, UnknownNameWindow: Duration{time.Hour}},
	}
}

// DevDataDir is the data directory of the --dev profile when --data-dir is
// not given.
const DevDataDir = "./bulwark-data"

// ApplyDev applies the --dev profile. dataDir is the --data-dir flag, empty
// when not given; then the data directory is ./bulwark-data.
//
// Dev forces loopback: api.listen, cluster.listen, metrics.listen and a
// non-empty cluster.advertise keep their port but their host becomes
// 127.0.0.1, whatever the file says, so a dev node is never reachable from
// the network. Sealing becomes "software", and so the signing key is kept in
// the keystore; the caller prints the warning.
func (c *Config) ApplyDev(dataDir string) {
	if dataDir == "" {
		dataDir = DevDataDir
	}
	c.DataDir = dataDir
	c.API.Listen = loopback(c.API.Listen)
	c.Cluster.Listen = loopback(c.Cluster.Listen)
	c.Metrics.Listen = loopback(c.Metrics.Listen)
	if c.Cluster.Advertise != "" {
		c.Cluster.Advertise = loopback(c.Cluster.Advertise)
	}
	c.Seal.Mode = "software"
	c.Seal.Signing = "keystore"
}

// loopback replaces the host of addr by 127.0.0.1. An address that does not
// parse is left for Validate to report.
func loopback(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return net.JoinHostPort("127.0.0.1", port)
}

// Resolve fills what depends on the machine: an empty node_name becomes the
// hostname, and data_dir, api.admin_socket, api.tls_cert and api.tls_key
// become absolute paths (relative ones are taken from the working
// directory). Run it after flag overrides and ApplyDev, before Validate.
func (c *Config) Resolve() error {
	if c.NodeName == "" {
		if host, err := os.Hostname(); err == nil {
			c.set("node_name", &c.NodeName, host)
		}
	}
	for _, p := range []struct {
		key string
		ptr *string
	}{
		{"data_dir", &c.DataDir},
		{"api.admin_socket", &c.API.AdminSocket},
		{"api.tls_cert", &c.API.TLSCert},
		{"api.tls_key", &c.API.TLSKey},
	} {
		if *p.ptr == "" || filepath.IsAbs(*p.ptr) {
			continue
		}
		abs, err := filepath.Abs(*p.ptr)
		if err != nil {
			return &FieldError{Key: p.key, Msg: err.Error(), Err: ErrInvalidValue}
		}
		c.set(p.key, p.ptr, abs)
	}
	return nil
}

// set changes a string value and, when the old value came from the file,
// keeps the file's line attached to the new one.
func (c *Config) set(key string, ptr *string, v string) {
	if c.src != nil && c.lineOf(key) > 0 {
		c.src.values[key] = v
	}
	*ptr = v
}

// AdminSocketPath is the admin Unix socket: api.admin_socket, or
// <data_dir>/admin.sock when that is empty.
func (c Config) AdminSocketPath() string {
	if c.API.AdminSocket != "" {
		return c.API.AdminSocket
	}
	return filepath.Join(c.DataDir, "admin.sock")
}

// TLSMinVersion is api.tls_min_version as a crypto/tls constant. Anything but
// "1.2" (which Validate rejects) gives TLS 1.3.
func (c Config) TLSMinVersion() uint16 {
	if c.API.TLSMinVersion == "1.2" {
		return tls.VersionTLS12
	}
	return tls.VersionTLS13
}
