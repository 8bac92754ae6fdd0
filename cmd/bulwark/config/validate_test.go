package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// badValues holds, for every key, a value Validate or Load must refuse.
// wantKey is the key the message must name when it is not the key itself.
var badValues = []struct {
	key, value, wantKey string
}{
	{key: "node_name", value: `"bad name!"`},
	{key: "data_dir", value: `"relative/dir"`},
	{key: "api.listen", value: `":99999"`},
	{key: "api.tls_cert", value: `"/etc/bulwark/api.pem"`},
	{key: "api.tls_key", value: `"/etc/bulwark/api.key"`},
	{key: "api.tls_min_version", value: `"1.1"`},
	{key: "api.trusted_proxies", value: `["10.0.0.0/8", "10.1.2.3/8"]`},
	{key: "api.max_body_bytes", value: `100`},
	{key: "api.max_connections", value: `8`},
	{key: "api.max_connections_per_client", value: `5000`},
	{key: "api.admin_socket", value: `"relative.sock"`},
	{key: "cluster.listen", value: `"localhost"`},
	{key: "cluster.advertise", value: `":8444"`},
	{key: "cluster.max_staleness", value: `"2m"`},
	{key: "cluster.heartbeat_timeout", value: `"50ms"`},
	{key: "seal.mode", value: `"hsm"`},
	{key: "seal.device", value: `"tpm0"`},
	{key: "seal.pcrs", value: `[7, 24]`},
	{key: "seal.signing", value: `"hsm"`},
	{key: "auth.security.max_failed_attempts", value: `0`},
	{key: "auth.security.lockout_duration", value: `"0s"`},
	{key: "auth.security.max_failed_names_per_address", value: `1001`},
	{key: "auth.security.jwt_expiry", value: `"-1h"`},
	{key: "auth.security.refresh_token_expiry", value: `"30m"`},
	{key: "auth.security.require_mfa_for_admin", value: `"yes"`},
	{key: "auth.rate_limit.per_ip", value: `-1`},
	{key: "auth.rate_limit.per_ip_burst", value: `5`},
	{key: "auth.rate_limit.per_username", value: `-5`},
	{key: "auth.rate_limit.per_username_burst", value: `1`},
	{key: "auth.rate_limit.exempt", value: `["nonsense"]`},
	{key: "incident.window", value: `"0s"`},
	{key: "incident.block_after_failures", value: `-1`},
	{key: "audit.checkpoint_entries", value: `0`},
	{key: "audit.checkpoint_interval", value: `"1s"`},
	{key: "incident.block_after_usernames", value: `101`},
	{key: "incident.block_for", value: `"400d"`},
	{key: "retention.audit", value: `"12h"`},
	{key: "retention.expired_sessions", value: `"400d"`},
	{key: "retention.unknown_name_entries", value: `1001`},
	{key: "retention.unknown_name_window", value: `"0s"`},
	{key: "incident.revoke_after_forbidden", value: `1001`},
	{key: "auth.sessions.idle_timeout", value: `"abc"`},
	{key: "auth.sessions.max_per_user", value: `0`},
	{key: "auth.sessions.on_limit", value: `"kick"`},
	{key: "auth.password.min_length", value: `6`},
	{key: "auth.password.max_length", value: `5000`},
	{key: "auth.password.argon2_memory_kib", value: `1024`},
	{key: "auth.password.argon2_iterations", value: `0`},
	{key: "auth.password.argon2_parallelism", value: `256`},
	{key: "auth.password.pin_hash_threads", value: `"yes"`},
	{key: "tokens.issuer", value: `"http://id.example.com"`},
	{key: "tokens.algorithm", value: `"HS256"`},
	{key: "tokens.rotate_every", value: `"1x"`},
	{key: "mfa.webauthn_rp_id", value: `"https://id.example.com"`},
	{key: "mfa.webauthn_origins", value: `["id.example.com"]`},
	{key: "mfa.step_up_window", value: `"48h"`},
	{key: "incident.exempt", value: `["10.0.0.0/33"]`},
	{key: "incident.challenge_after_failures", value: `-1`},
	{key: "incident.webhooks", value: `[{url = "http://siem.example/x", secret_file = "/etc/s", min_severity = "critical"}]`},
	{key: "metrics.listen", value: `"127.0.0.1:0"`},
	{key: "metrics.pprof", value: `"on"`},
	{key: "log.level", value: `"trace"`},
	{key: "log.format", value: `"xml"`},
	// 64 MiB for the daemon and 19 MiB for one hash do not fit in 80 MiB.
	{key: "server.memory_limit", value: `"80MiB"`},
	{key: "server.memory_limit", value: `"192MB"`},
	{key: "server.memory_limit", value: `"-1GiB"`},
}

// docFor writes key = value in its table, on line 3 of the document.
func docFor(key, value string) string {
	i := strings.LastIndexByte(key, '.')
	if i < 0 {
		return fmt.Sprintf("# bad %s\n\n%s = %s\n", key, key, value)
	}
	return fmt.Sprintf("# bad %s\n[%s]\n%s = %s\n", key, key[:i], key[i+1:], value)
}

// loadAndValidate returns the error of Load, or else of Validate.
func loadAndValidate(t *testing.T, path string) error {
	t.Helper()
	cfg, err := Load(path)
	if err != nil {
		return err
	}
	return cfg.Validate()
}

func TestEveryKeyHasABadValue(t *testing.T) {
	t.Parallel()
	covered := make(map[string]bool)
	for _, tt := range badValues {
		covered[tt.key] = true
	}
	for _, key := range leafKeys() {
		if !covered[key] {
			t.Errorf("key %q has no case in badValues", key)
		}
	}
}

func TestBadValueFromFile(t *testing.T) {
	t.Parallel()
	for _, tt := range badValues {
		t.Run(tt.key, func(t *testing.T) {
			t.Parallel()
			path := writeConfig(t, docFor(tt.key, tt.value))
			err := loadAndValidate(t, path)
			want := tt.wantKey
			if want == "" {
				want = tt.key
			}
			wantMessages(t, err, path, fmt.Sprintf("$F:3: %s: ", want))
			var verrs ValidationErrors
			if !errors.As(err, &verrs) || len(verrs) != 1 {
				t.Errorf("want exactly one problem, got %v", err)
			}
		})
	}
}

func TestDefaultIsValid(t *testing.T) {
	t.Parallel()
	cfg := Default()
	cfg.NodeName = "node1" // the test machine's hostname may not qualify
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestValidateReportsEverything sets many bad values without a file: every
// problem comes back at once, each naming its key, none with a line.
func TestValidateReportsEverything(t *testing.T) {
	t.Parallel()
	cfg := Default()
	cfg.NodeName = strings.Repeat("n", 65)
	cfg.DataDir = ""
	cfg.API.Listen = "nohost"
	cfg.API.TLSKey = "/k.pem"
	cfg.API.MaxBodyBytes = 32 << 20
	cfg.API.TrustedProxies = []CIDR{{}}
	cfg.Cluster.Listen = ":8443" // same port as api.listen would be
	cfg.Cluster.Advertise = "0.0.0.0:8444"
	cfg.Seal.Device = "tcp:host"
	cfg.Seal.PCRs = []int{7, 7, -1}
	cfg.Auth.Security.JWTExpiry = Duration{10 * 24 * time.Hour}
	cfg.Auth.Security.LockoutDuration = Duration{-time.Second}
	cfg.Auth.RateLimit.PerIPBurst = -1
	cfg.Auth.Password.MinLength = 64
	cfg.Auth.Password.MaxLength = 32
	cfg.Tokens.Issuer = "https://id.example.com/?x=1"
	cfg.Metrics.Listen = ":8443"
	err := cfg.Validate()
	want := []string{
		"node_name: ", "data_dir: must not be empty",
		`api.listen: "nohost" is not a host:port`,
		"api.tls_key: ", "api.trusted_proxies: ", "api.max_body_bytes: ",
		`cluster.advertise: "0.0.0.0:8444"`,
		`seal.device: "tcp:host"`,
		"seal.pcrs: PCR 7 is listed twice", "seal.pcrs: PCR -1 is out of range",
		"auth.security.lockout_duration: ",
		"auth.security.refresh_token_expiry: 7d must be longer than auth.security.jwt_expiry (10d)",
		"auth.rate_limit.per_ip_burst: ",
		"auth.password.min_length: 64 is more than auth.password.max_length (32)",
		"tokens.issuer: ", "metrics.listen: ",
	}
	wantMessages(t, err, "", want...)
	var verrs ValidationErrors
	if !errors.As(err, &verrs) || len(verrs) != len(want) {
		t.Errorf("got %d problems, want %d:\n%s", len(verrs), len(want), strings.ReplaceAll(fmt.Sprint(err), "; ", "\n"))
	}
	for _, e := range verrs {
		if e.Line != 0 || e.File != "" || !errors.Is(e, ErrInvalidValue) {
			t.Errorf("%#v: want no file, no line, ErrInvalidValue", e)
		}
	}
	if !errors.Is(err, ErrInvalidValue) {
		t.Error("errors.Is(err, ErrInvalidValue) = false")
	}
}

func TestValidateSeveralFromFile(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, `[api]
listen = ":0"
tls_min_version = "1.0"
[tokens]
algorithm = "none"
[log]
level = "loud"
`)
	err := loadAndValidate(t, path)
	wantMessages(t, err, path,
		`$F:2: api.listen: ":0": port must be a number from 1 to 65535`,
		`$F:3: api.tls_min_version: "1.0" is not one of "1.2", "1.3"`,
		`$F:5: tokens.algorithm: "none" is not one of "ES256", "EdDSA", "RS256", "ML-DSA-65"`,
		`$F:7: log.level: "loud" is not one of "debug", "info", "warn", "error"`,
	)
}

// TestSigningNeedsTPM: seal.signing = "tpm-resident" with another seal
// mode and algorithm is blamed on seal.signing's line, once per conflict.
func TestSigningNeedsTPM(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, `[seal]
mode = "software"
signing = "tpm-resident"
[tokens]
algorithm = "RS256"
`)
	err := loadAndValidate(t, path)
	wantMessages(t, err, path,
		`$F:3: seal.signing: "tpm-resident" needs seal.mode = "tpm", not "software"`,
		`$F:3: seal.signing: "tpm-resident" signs with ECDSA P-256 only: it needs tokens.algorithm = "ES256", not "RS256"`,
	)
	var verrs ValidationErrors
	if !errors.As(err, &verrs) || len(verrs) != 2 {
		t.Errorf("want exactly two problems, got %v", err)
	}
}

func TestValidateChecks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		modify func(*Config)
		want   string // "" means valid
	}{
		{"ipv6 listen", func(c *Config) { c.API.Listen = "[::1]:8443" }, ""},
		{"hostname listen", func(c *Config) { c.API.Listen = "auth.example.com:8443" }, ""},
		{"bad host", func(c *Config) { c.API.Listen = "a b:8443" }, "api.listen: "},
		{"named port", func(c *Config) { c.API.Listen = ":https" }, "api.listen: "},
		{"same port", func(c *Config) { c.Metrics.Listen = "127.0.0.1:8443" }, "metrics.listen: "},
		{"same port other host", func(c *Config) {
			c.API.Listen = "127.0.0.1:9000"
			c.Cluster.Listen = "127.0.0.2:9000"
		}, ""},
		{"advertise", func(c *Config) { c.Cluster.Advertise = "10.0.0.1:8444" }, ""},
		{"tls pair", func(c *Config) { c.API.TLSCert, c.API.TLSKey = "/c.pem", "/k.pem" }, ""},
		{"tls 1.2", func(c *Config) { c.API.TLSMinVersion = "1.2" }, ""},
		{"device tcp", func(c *Config) { c.Seal.Device = "tcp:127.0.0.1:2321" }, ""},
		{"device unix", func(c *Config) { c.Seal.Device = "unix:/run/swtpm.sock" }, ""},
		{"device empty unix", func(c *Config) { c.Seal.Device = "unix:" }, "seal.device: "},
		{"device dev", func(c *Config) { c.Seal.Device = "/dev/" }, "seal.device: "},
		{"pcrs", func(c *Config) { c.Seal.PCRs = []int{0, 7, 23} }, ""},
		{"tpm-resident", func(c *Config) { c.Seal.Signing = "tpm-resident" }, ""},
		{"tpm-resident software", func(c *Config) { c.Seal.Signing, c.Seal.Mode = "tpm-resident", "software" },
			`seal.signing: "tpm-resident" needs seal.mode = "tpm", not "software"`},
		{"tpm-resident EdDSA", func(c *Config) { c.Seal.Signing, c.Tokens.Algorithm = "tpm-resident", "EdDSA" },
			`seal.signing: "tpm-resident" signs with ECDSA P-256 only: it needs tokens.algorithm = "ES256", not "EdDSA"`},
		{"keystore EdDSA software", func(c *Config) { c.Tokens.Algorithm, c.Seal.Mode = "EdDSA", "software" }, ""},
		{"rate off", func(c *Config) { c.Auth.RateLimit.PerIP, c.Auth.RateLimit.PerIPBurst = 0, 0 }, ""},
		{"burst negative", func(c *Config) { c.Auth.RateLimit.PerUsernameBurst = -1 }, "auth.rate_limit.per_username_burst: "},
		{"refresh equal jwt", func(c *Config) { c.Auth.Security.RefreshTokenExpiry = Duration{time.Hour} }, "auth.security.refresh_token_expiry: "},
		{"issuer path", func(c *Config) { c.Tokens.Issuer = "https://id.example.com/realm" }, ""},
		{"issuer fragment", func(c *Config) { c.Tokens.Issuer = "https://id.example.com#x" }, "tokens.issuer: "},
		{"issuer empty query", func(c *Config) { c.Tokens.Issuer = "https://id.example.com?" }, "tokens.issuer: "},
		{"issuer user", func(c *Config) { c.Tokens.Issuer = "https://u@id.example.com" }, "tokens.issuer: "},
		{"issuer no host", func(c *Config) { c.Tokens.Issuer = "https:///x" }, "tokens.issuer: "},
		{"password equal", func(c *Config) { c.Auth.Password.MinLength, c.Auth.Password.MaxLength = 8, 8 }, ""},
		{"argon2 max", func(c *Config) { c.Auth.Password.Argon2MemoryKiB = 4 << 20 }, ""},
		{"argon2 too much", func(c *Config) { c.Auth.Password.Argon2MemoryKiB = 4<<20 + 1 }, "auth.password.argon2_memory_kib: "},
		{"node name chars", func(c *Config) { c.NodeName = "node-1.dc_2" }, ""},
		{"node name empty", func(c *Config) { c.NodeName = "" }, "node_name: must not be empty"},
		{"long socket", func(c *Config) { c.DataDir = "/" + strings.Repeat("d", 100) }, "api.admin_socket: "},
		{"admin socket", func(c *Config) { c.API.AdminSocket = "/run/bulwark/admin.sock" }, ""},
	}
	for _, tt := range tests {
		cfg := Default()
		cfg.NodeName = "node1"
		tt.modify(&cfg)
		err := cfg.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: Validate() = %v, want nil", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: Validate() = %v, want %q", tt.name, err, tt.want)
		}
	}
}

// TestOverrideDropsLine: once a flag or ApplyDev changes a value the file
// set, its problems are no longer blamed on the file.
func TestOverrideDropsLine(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, "node_name = \"n1\"\ndata_dir = \"/srv/bulwark\"\n[api]\nlisten = \":1\"\n")
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = "relative" // as --data-dir would, without Resolve
	cfg.API.Listen = ":0"
	err = cfg.Validate()
	wantMessages(t, err, path, `data_dir: "relative" is not an absolute path`, `api.listen: ":0"`)
	if strings.Contains(err.Error(), path) {
		t.Errorf("overridden values blamed on the file: %v", err)
	}
}

func TestApplyDev(t *testing.T) {
	t.Parallel()
	cfg := Default()
	cfg.ApplyDev("")
	if cfg.DataDir != "./bulwark-data" || cfg.API.Listen != "127.0.0.1:8443" ||
		cfg.Cluster.Listen != "127.0.0.1:8444" || cfg.Metrics.Listen != "127.0.0.1:9464" ||
		cfg.Cluster.Advertise != "" || cfg.Seal.Mode != "software" {
		t.Errorf("ApplyDev(\"\") = %+v", cfg)
	}

	// Dev keeps the ports a file chose but forces loopback, and takes
	// --data-dir.
	path := writeConfig(t, `data_dir = "/srv/b"
[api]
listen = "0.0.0.0:9443"
[cluster]
listen = "[::]:9444"
advertise = "10.0.0.5:9444"
[metrics]
listen = "10.0.0.5:9465"
[seal]
mode = "tpm"
signing = "tpm-resident"
`)
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ApplyDev("/tmp/dev1")
	if cfg.DataDir != "/tmp/dev1" || cfg.API.Listen != "127.0.0.1:9443" ||
		cfg.Cluster.Listen != "127.0.0.1:9444" || cfg.Cluster.Advertise != "127.0.0.1:9444" ||
		cfg.Metrics.Listen != "127.0.0.1:9465" || cfg.Seal.Mode != "software" || cfg.Seal.Signing != "keystore" {
		t.Errorf("ApplyDev(/tmp/dev1) = %+v", cfg)
	}
	if err := cfg.Resolve(); err != nil {
		t.Fatal(err)
	}
	cfg.NodeName = "dev"
	if err := cfg.Validate(); err != nil {
		t.Errorf("dev profile does not validate: %v", err)
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	cfg := Default()
	cfg.NodeName = ""
	cfg.ApplyDev("")
	cfg.API.TLSCert, cfg.API.TLSKey = "api.pem", "/etc/api.key"
	if err := cfg.Resolve(); err != nil {
		t.Fatal(err)
	}
	if host, err := os.Hostname(); err == nil && cfg.NodeName != host {
		t.Errorf("NodeName = %q, want hostname %q", cfg.NodeName, host)
	}
	if want := filepath.Join(wd, "bulwark-data"); cfg.DataDir != want {
		t.Errorf("DataDir = %q, want %q", cfg.DataDir, want)
	}
	if want := filepath.Join(wd, "api.pem"); cfg.API.TLSCert != want || cfg.API.TLSKey != "/etc/api.key" {
		t.Errorf("TLS = %q, %q", cfg.API.TLSCert, cfg.API.TLSKey)
	}
	if want := filepath.Join(wd, "bulwark-data", "admin.sock"); cfg.AdminSocketPath() != want {
		t.Errorf("AdminSocketPath() = %q, want %q", cfg.AdminSocketPath(), want)
	}
}

// TestResolveKeepsLine: a relative path from the file made absolute is still
// the file's value.
func TestResolveKeepsLine(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, "\n[api]\nadmin_socket = \""+strings.Repeat("s", 120)+"\"\n")
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Resolve(); err != nil {
		t.Fatal(err)
	}
	wantMessages(t, cfg.Validate(), path, "$F:3: api.admin_socket: ")
}

func TestHelpers(t *testing.T) {
	t.Parallel()
	cfg := Default()
	if got := cfg.AdminSocketPath(); got != "/var/lib/bulwark/admin.sock" {
		t.Errorf("AdminSocketPath() = %q", got)
	}
	cfg.API.AdminSocket = "/run/b.sock"
	if got := cfg.AdminSocketPath(); got != "/run/b.sock" {
		t.Errorf("AdminSocketPath() = %q", got)
	}
	if got := cfg.TLSMinVersion(); got != tls.VersionTLS13 {
		t.Errorf("TLSMinVersion() = %x", got)
	}
	cfg.API.TLSMinVersion = "1.2"
	if got := cfg.TLSMinVersion(); got != tls.VersionTLS12 {
		t.Errorf("TLSMinVersion() = %x", got)
	}
}
