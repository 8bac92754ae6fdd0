package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors, matched with errors.Is on what Load, Validate and Resolve
// return.
var (
	// ErrSyntax means the file is not valid TOML.
	ErrSyntax = errors.New("syntax error")
	// ErrUnknownKey means the file names a key bulwark does not have.
	ErrUnknownKey = errors.New("unknown key")
	// ErrInvalidValue means a value has the wrong type or is out of range.
	ErrInvalidValue = errors.New("invalid value")
)

// FieldError is one problem with one key.
type FieldError struct {
	File string // the config file, when the value came from one
	Line int    // 1-based line in File; 0 when the value is not from the file
	Key  string // dotted key such as "api.listen"; empty for syntax errors
	Msg  string // what is wrong; for ErrUnknownKey, a suggestion or empty
	Err  error  // ErrSyntax, ErrUnknownKey or ErrInvalidValue
}

// Error formats the problem as `bulwark.toml:7: api.listen: <msg>`, or
// `bulwark.toml:7: unknown key "api.lisen" (did you mean "api.listen"?)`.
func (e FieldError) Error() string {
	var b strings.Builder
	switch {
	case e.Line > 0 && e.File != "":
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	case e.File != "" && e.Key == "":
		fmt.Fprintf(&b, "%s: ", e.File)
	}
	switch e.Err {
	case ErrUnknownKey:
		fmt.Fprintf(&b, "unknown key %q", e.Key)
		if e.Msg != "" {
			fmt.Fprintf(&b, " (%s)", e.Msg)
		}
	case ErrSyntax:
		b.WriteString("syntax error: " + e.Msg)
	default:
		b.WriteString(e.Key + ": " + e.Msg)
	}
	return b.String()
}

// Unwrap returns the sentinel.
func (e FieldError) Unwrap() error { return e.Err }

// ValidationErrors is every problem found at once, in file or struct order.
type ValidationErrors []FieldError

// Error joins the problems with "; " so that the daemon's one-line reason
// holds them all; range over the slice to print one per line.
func (v ValidationErrors) Error() string {
	s := make([]string, len(v))
	for i, e := range v {
		s[i] = e.Error()
	}
	return strings.Join(s, "; ")
}

// Unwrap lets errors.Is and errors.As see each FieldError.
func (v ValidationErrors) Unwrap() []error {
	errs := make([]error, len(v))
	for i := range v {
		errs[i] = v[i]
	}
	return errs
}

// MemoryReserve is the part of server.memory_limit kept for everything
// but password hashes (connections, requests, Raft, caches): the hashes
// allowed at once are as many argon2id memories as fit in the rest.
const MemoryReserve = 64 << 20

// Limits enforced by Validate.
const (
	maxNodeName        = 64
	maxSocketPath      = 107 // sun_path is 108 bytes on Linux, NUL included
	minBodyBytes       = 1 << 10
	maxBodyBytes       = 16 << 20
	minArgon2MemoryKiB = 8 << 10
	maxArgon2MemoryKiB = 4 << 20 // 4 GiB
	minPasswordLength  = 8       // NIST SP 800-63B
	maxPasswordLength  = 4096
	maxSessionsPerUser = 10000
	// maxFailedNamesPerAddress is fsm.MaxNamesPerAddressLimit: the most
	// names one address's counter may hold.
	maxFailedNamesPerAddress = 1000
	// The bounds of fsm's login.failure v3 and block.add (fsm.MaxBlockFor,
	// fsm.MaxBlockAfterFailures, fsm.MaxBlockAfterUsernames).
	maxIncidentDuration    = 366 * 24 * time.Hour
	maxBlockAfterFailures  = 100000
	maxBlockAfterUsernames = 100
	// maxUnknownNameEntries is fsm.MaxAuditCapEntries (login.failure v4).
	maxUnknownNameEntries = 1000
)

// Validate checks every value and returns nil or ValidationErrors holding
// every problem, each naming its dotted key and, when the value came from
// the file, the file and line. Run it after Resolve.
func (c *Config) Validate() error {
	v := &validator{c: c}

	switch {
	case c.NodeName == "":
		v.add("node_name", "must not be empty (the hostname could not be read)")
	case len(c.NodeName) > maxNodeName:
		v.add("node_name", "%q is longer than %d characters", c.NodeName, maxNodeName)
	case strings.Trim(c.NodeName, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "":
		v.add("node_name", "%q may contain only letters, digits, '.', '_' and '-'", c.NodeName)
	}
	switch {
	case c.DataDir == "":
		v.add("data_dir", "must not be empty")
	case !filepath.IsAbs(c.DataDir):
		v.add("data_dir", "%q is not an absolute path", c.DataDir)
	}

	v.listen("api.listen", c.API.Listen)
	// Blame the key that is set: it is the one in the file.
	switch {
	case c.API.TLSCert != "" && c.API.TLSKey == "":
		v.add("api.tls_cert", "%q is set but api.tls_key is empty (set both or neither)", c.API.TLSCert)
	case c.API.TLSCert == "" && c.API.TLSKey != "":
		v.add("api.tls_key", "%q is set but api.tls_cert is empty (set both or neither)", c.API.TLSKey)
	}
	v.oneOf("api.tls_min_version", c.API.TLSMinVersion, "1.2", "1.3")
	v.cidrs("api.trusted_proxies", c.API.TrustedProxies)
	between(v, "api.max_body_bytes", c.API.MaxBodyBytes, minBodyBytes, maxBodyBytes)
	if between(v, "api.max_connections", c.API.MaxConnections, 16, 1<<20) {
		between(v, "api.max_connections_per_client", c.API.MaxConnectionsPerClient, 0, c.API.MaxConnections)
	}
	if c.API.AdminSocket != "" && !filepath.IsAbs(c.API.AdminSocket) {
		v.add("api.admin_socket", "%q is not an absolute path", c.API.AdminSocket)
	}
	if p := c.AdminSocketPath(); len(p) > maxSocketPath {
		how := ""
		if c.API.AdminSocket == "" {
			how = " (derived from data_dir, set api.admin_socket to a shorter path)"
		}
		v.add("api.admin_socket", "%q is %d bytes, longer than a Unix socket path may be (%d)%s", p, len(p), maxSocketPath, how)
	}

	v.listen("cluster.listen", c.Cluster.Listen)
	if a := c.Cluster.Advertise; a != "" {
		if msg := checkHostPort(a, true); msg != "" {
			v.add("cluster.advertise", "%s", msg)
		} else if host, _, _ := net.SplitHostPort(a); isUnspecified(host) {
			v.add("cluster.advertise", "%q: other nodes cannot dial an unspecified address, name this node's address", a)
		}
	}

	if v.positive("cluster.max_staleness", c.Cluster.MaxStaleness) && c.Cluster.MaxStaleness.Duration > time.Minute {
		v.add("cluster.max_staleness", "%s is too long: a node cut off from the cluster would vouch for revoked sessions that long; at most 1m", c.Cluster.MaxStaleness)
	}
	if hb := c.Cluster.HeartbeatTimeout; v.positive("cluster.heartbeat_timeout", hb) {
		switch {
		case hb.Duration < 100*time.Millisecond:
			v.add("cluster.heartbeat_timeout", "%s is too short: a pause of the leader or the network that long would cost an election; at least 100ms", hb)
		case hb.Duration > 10*time.Second:
			v.add("cluster.heartbeat_timeout", "%s is too long: a dead leader would stop every write that long; at most 10s", hb)
		case hb.Duration >= c.Cluster.MaxStaleness.Duration:
			v.add("cluster.heartbeat_timeout", "%s is not below cluster.max_staleness (%s): followers would stop vouching for sessions before they could notice a dead leader", hb, c.Cluster.MaxStaleness)
		}
	}

	v.oneOf("seal.mode", c.Seal.Mode, "tpm", "software")
	if msg := checkDevice(c.Seal.Device); msg != "" {
		v.add("seal.device", "%s", msg)
	}
	seen := make(map[int]bool)
	for _, p := range c.Seal.PCRs {
		switch {
		case p < 0 || p > 23:
			v.add("seal.pcrs", "PCR %d is out of range 0..23", p)
		case seen[p]:
			v.add("seal.pcrs", "PCR %d is listed twice", p)
		}
		seen[p] = true
	}
	// Blame seal.signing for the combinations: it is the key that asks for
	// the TPM.
	v.oneOf("seal.signing", c.Seal.Signing, "keystore", "tpm-resident")
	if c.Seal.Signing == "tpm-resident" {
		if c.Seal.Mode != "tpm" {
			v.add("seal.signing", "%q needs seal.mode = \"tpm\", not %q", c.Seal.Signing, c.Seal.Mode)
		}
		if c.Tokens.Algorithm != "ES256" {
			v.add("seal.signing", "%q signs with ECDSA P-256 only: it needs tokens.algorithm = \"ES256\", not %q",
				c.Seal.Signing, c.Tokens.Algorithm)
		}
	}

	sec := c.Auth.Security
	between(v, "auth.security.max_failed_attempts", sec.MaxFailedAttempts, 1, 1000)
	v.positive("auth.security.lockout_duration", sec.LockoutDuration)
	between(v, "auth.security.max_failed_names_per_address", sec.MaxFailedNamesPerAddress, 0, maxFailedNamesPerAddress)
	v.positive("auth.security.jwt_expiry", sec.JWTExpiry)
	if v.positive("auth.security.refresh_token_expiry", sec.RefreshTokenExpiry) &&
		sec.JWTExpiry.Duration > 0 && sec.RefreshTokenExpiry.Duration <= sec.JWTExpiry.Duration {
		v.add("auth.security.refresh_token_expiry", "%s must be longer than auth.security.jwt_expiry (%s)", sec.RefreshTokenExpiry, sec.JWTExpiry)
	}

	rl := c.Auth.RateLimit
	v.rate("auth.rate_limit.per_ip", rl.PerIP, rl.PerIPBurst)
	v.rate("auth.rate_limit.per_username", rl.PerUsername, rl.PerUsernameBurst)
	v.cidrs("auth.rate_limit.exempt", rl.Exempt)

	ses := c.Auth.Sessions
	v.positive("auth.sessions.idle_timeout", ses.IdleTimeout)
	between(v, "auth.sessions.max_per_user", ses.MaxPerUser, 1, maxSessionsPerUser)
	v.oneOf("auth.sessions.on_limit", ses.OnLimit, "evict_oldest", "deny")

	pw := c.Auth.Password
	if between(v, "auth.password.min_length", pw.MinLength, minPasswordLength, maxPasswordLength) &&
		between(v, "auth.password.max_length", pw.MaxLength, minPasswordLength, maxPasswordLength) &&
		pw.MinLength > pw.MaxLength {
		v.add("auth.password.min_length", "%d is more than auth.password.max_length (%d)", pw.MinLength, pw.MaxLength)
	}
	between(v, "auth.password.argon2_memory_kib", pw.Argon2MemoryKiB, minArgon2MemoryKiB, maxArgon2MemoryKiB)
	between(v, "auth.password.argon2_iterations", pw.Argon2Iterations, 1, 1<<20)
	between(v, "auth.password.argon2_parallelism", pw.Argon2Parallelism, 1, 255)

	if msg := checkIssuer(c.Tokens.Issuer); msg != "" {
		v.add("tokens.issuer", "%s", msg)
	}
	v.oneOf("tokens.algorithm", c.Tokens.Algorithm, "ES256", "EdDSA", "RS256", "ML-DSA-65")
	v.positive("tokens.rotate_every", c.Tokens.RotateEvery)
	if n := c.Incident.RevokeAfterForbidden; n < 0 || n > 1000 {
		v.add("incident.revoke_after_forbidden", "%d is not 0 (off) to 1000", n)
	}
	if n := c.Incident.ChallengeAfterFailures; n < 0 || n > 1000 {
		v.add("incident.challenge_after_failures", "%d is not 0 (off) to 1000", n)
	}
	for i, w := range c.Incident.Webhooks {
		if u, err := url.Parse(w.URL); err != nil || u.Host == "" || u.User != nil ||
			!(u.Scheme == "https" || u.Scheme == "http" && isLoopbackHost(u.Hostname())) {
			v.add("incident.webhooks", "webhook %d: url %q must be https://, or http:// to a loopback address", i+1, w.URL)
		}
		if w.SecretFile == "" || !filepath.IsAbs(w.SecretFile) {
			v.add("incident.webhooks", "webhook %d: secret_file must be the absolute path of a file holding the whsec_ secret", i+1)
		}
		if w.MinSeverity != "" { // empty: critical
			if !slices.Contains([]string{"info", "warning", "critical"}, w.MinSeverity) {
				v.add("incident.webhooks", "webhook %d: min_severity %q is not info, warning or critical", i+1, w.MinSeverity)
			}
		}
	}
	v.positive("mfa.step_up_window", c.MFA.StepUpWindow)
	if c.MFA.StepUpWindow.Duration > 24*time.Hour {
		v.add("mfa.step_up_window", "%s is longer than a day: a step-up that old proves nothing", c.MFA.StepUpWindow.Duration)
	}
	if c.MFA.WebAuthnRPID != "" && (strings.ContainsAny(c.MFA.WebAuthnRPID, ":/ ") || strings.ToLower(c.MFA.WebAuthnRPID) != c.MFA.WebAuthnRPID) {
		v.add("mfa.webauthn_rp_id", "%q is not a lower-case host name (a WebAuthn RP id is a domain, no scheme or port)", c.MFA.WebAuthnRPID)
	}
	for i, o := range c.MFA.WebAuthnOrigins {
		if u, err := url.Parse(o); err != nil || (u.Scheme != "https" && !(u.Scheme == "http" && u.Hostname() == "localhost")) ||
			u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			v.add("mfa.webauthn_origins", "entry %d, %q, is not an origin (https://host[:port])", i+1, o)
		}
	}

	v.listen("metrics.listen", c.Metrics.Listen)

	if lim := c.Server.MemoryLimit.Bytes; lim > 0 && pw.Argon2MemoryKiB > 0 && lim < MemoryReserve+int64(pw.Argon2MemoryKiB)<<10 {
		v.add("server.memory_limit", "%s leaves no room for one password hash: the daemon needs %d MiB beside auth.password.argon2_memory_kib (%d KiB); at least %d MiB",
			c.Server.MemoryLimit, MemoryReserve>>20, pw.Argon2MemoryKiB, (MemoryReserve+int64(pw.Argon2MemoryKiB)<<10+1<<20-1)>>20)
	}

	inc := c.Incident
	v.cidrs("incident.exempt", inc.Exempt)
	for _, key := range []string{"incident.window", "incident.block_for"} {
		d := inc.Window
		if key == "incident.block_for" {
			d = inc.BlockFor
		}
		if v.positive(key, d) && d.Duration > maxIncidentDuration {
			v.add(key, "%s is longer than 366d", d)
		}
	}
	between(v, "incident.block_after_failures", inc.BlockAfterFailures, 0, maxBlockAfterFailures)
	between(v, "incident.block_after_usernames", inc.BlockAfterUsernames, 0, maxBlockAfterUsernames)

	between(v, "audit.checkpoint_entries", c.Audit.CheckpointEntries, 1, 1_000_000)
	if v.positive("audit.checkpoint_interval", c.Audit.CheckpointInterval) &&
		(c.Audit.CheckpointInterval.Duration < 10*time.Second || c.Audit.CheckpointInterval.Duration > 24*time.Hour) {
		v.add("audit.checkpoint_interval", "%s is not 10s to 24h", c.Audit.CheckpointInterval)
	}

	ret := c.Retention
	if d := ret.Audit.Duration; d < 0 || d > 0 && d < 24*time.Hour {
		v.add("retention.audit", "%s is not 0 (keep for ever) or at least 1d", ret.Audit)
	}
	if d := ret.ExpiredSessions.Duration; d < 0 || d > maxIncidentDuration {
		v.add("retention.expired_sessions", "%s is not 0 (to the absolute lifetime) to 366d", ret.ExpiredSessions)
	}
	between(v, "retention.unknown_name_entries", ret.UnknownNameEntries, 0, maxUnknownNameEntries)
	if v.positive("retention.unknown_name_window", ret.UnknownNameWindow) && ret.UnknownNameWindow.Duration > maxIncidentDuration {
		v.add("retention.unknown_name_window", "%s is longer than 366d", ret.UnknownNameWindow)
	}

	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", c.Log.Format, "text", "json")

	if len(v.errs) == 0 {
		return nil
	}
	return v.errs
}

type validator struct {
	c    *Config
	errs ValidationErrors
	// listeners seen so far, to catch two on the same port.
	ports []struct{ key, host, port string }
}

func (v *validator) add(key, format string, args ...any) {
	e := FieldError{Key: key, Msg: fmt.Sprintf(format, args...), Err: ErrInvalidValue}
	if e.Line = v.c.lineOf(key); e.Line > 0 {
		e.File = v.c.src.file
	}
	v.errs = append(v.errs, e)
}

func (v *validator) oneOf(key, val string, allowed ...string) {
	if !slices.Contains(allowed, val) {
		v.add(key, "%q is not one of %s", val, quoteList(allowed))
	}
}

func quoteList(s []string) string {
	q := make([]string, len(s))
	for i := range s {
		q[i] = strconv.Quote(s[i])
	}
	return strings.Join(q, ", ")
}

func between[T int | int64](v *validator, key string, val, lo, hi T) bool {
	if val < lo || val > hi {
		v.add(key, "%d is out of range %d..%d", val, lo, hi)
		return false
	}
	return true
}

func (v *validator) positive(key string, d Duration) bool {
	if d.Duration <= 0 {
		v.add(key, "must be a positive duration such as %q, not %q", "15m", d.String())
		return false
	}
	return true
}

// rate checks a rate (0 turns it off) and its burst.
func (v *validator) rate(key string, rate, burst int) {
	switch {
	case rate < 0:
		v.add(key, "%d is negative (0 turns the limit off)", rate)
	case burst < 0:
		v.add(key+"_burst", "%d is negative", burst)
	case rate > 0 && burst < rate:
		v.add(key+"_burst", "%d is less than %s (%d)", burst, key, rate)
	}
}

func (v *validator) cidrs(key string, list []CIDR) {
	for _, p := range list {
		if !p.IsValid() {
			v.add(key, "holds an invalid CIDR")
		}
	}
}

// listen checks a listen address and that no two listeners share a port.
func (v *validator) listen(key, addr string) {
	if msg := checkHostPort(addr, false); msg != "" {
		v.add(key, "%s", msg)
		return
	}
	host, port, _ := net.SplitHostPort(addr)
	for _, o := range v.ports {
		if o.port == port && (o.host == host || isUnspecified(o.host) || isUnspecified(host)) {
			v.add(key, "%q uses the port of %s (%q)", addr, o.key, net.JoinHostPort(o.host, o.port))
		}
	}
	v.ports = append(v.ports, struct{ key, host, port string }{key, host, port})
}

func isUnspecified(host string) bool {
	a, err := netip.ParseAddr(host)
	return host == "" || err == nil && a.IsUnspecified()
}

// checkHostPort returns what is wrong with a host:port address, "" if
// nothing. The host may be empty (all interfaces) unless needHost.
func checkHostPort(addr string, needHost bool) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Sprintf("%q is not a host:port address such as \":8443\" or \"127.0.0.1:8443\"", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Sprintf("%q: port must be a number from 1 to 65535", addr)
	}
	switch {
	case host == "" && needHost:
		return fmt.Sprintf("%q has no host", addr)
	case host == "":
	case validHost(host):
	default:
		return fmt.Sprintf("%q: %q is neither an IP address nor a host name", addr, host)
	}
	return ""
}

func validHost(host string) bool {
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	if len(host) > 253 {
		return false
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(host, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		if strings.Trim(label, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != "" {
			return false
		}
	}
	return true
}

// checkDevice checks seal.device: "/dev/...", "tcp:HOST:PORT" or "unix:PATH".
func checkDevice(dev string) string {
	switch {
	case strings.HasPrefix(dev, "/dev/") && len(dev) > len("/dev/"):
		return ""
	case strings.HasPrefix(dev, "tcp:"):
		if msg := checkHostPort(strings.TrimPrefix(dev, "tcp:"), true); msg != "" {
			return fmt.Sprintf("%q: %s", dev, msg)
		}
		return ""
	case strings.HasPrefix(dev, "unix:") && len(dev) > len("unix:"):
		return ""
	}
	return fmt.Sprintf("%q is not a device (\"/dev/tpmrm0\"), \"tcp:HOST:PORT\" or \"unix:PATH\"", dev)
}

// checkIssuer checks tokens.issuer: empty, or an https URL without query or
// fragment (OpenID Connect Discovery 1.0, section 3).
func checkIssuer(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Sprintf("%q is not a URL", s)
	case u.Scheme != "https":
		return fmt.Sprintf("%q must be an https URL", s)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Sprintf("%q has no host", s)
	case u.User != nil:
		return fmt.Sprintf("%q must not contain user information", s)
	case u.RawQuery != "" || u.ForceQuery:
		return fmt.Sprintf("%q must not have a query", s)
	case u.Fragment != "" || strings.Contains(s, "#"):
		return fmt.Sprintf("%q must not have a fragment", s)
	}
	return ""
}

// isLoopbackHost reports whether host is localhost or a loopback address.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
