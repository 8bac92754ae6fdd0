package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// writeConfig writes content to bulwark.toml in a fresh directory and
// returns its path.
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bulwark.toml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// loadErrors loads content and returns the ValidationErrors Load reports,
// failing the test if Load succeeds or returns anything else.
func loadErrors(t *testing.T, content string) (string, ValidationErrors) {
	t.Helper()
	path := writeConfig(t, content)
	_, err := Load(path)
	var verrs ValidationErrors
	if !errors.As(err, &verrs) {
		t.Fatalf("Load(%q) = %v (%T), want ValidationErrors", content, err, err)
	}
	return path, verrs
}

// wantMessages checks that err's text holds every want, in order, with path
// standing for "$F".
func wantMessages(t *testing.T, err error, path string, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %q", want)
	}
	got := err.Error()
	rest := got
	for _, w := range want {
		w = strings.ReplaceAll(w, "$F", path)
		i := strings.Index(rest, w)
		if i < 0 {
			t.Errorf("error %q\ndoes not contain (in order) %q", got, w)
			return
		}
		rest = rest[i+len(w):]
	}
}

func TestLoadMissingFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "nope.toml")
	_, err := Load(path)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load(missing) = %v, want fs.ErrNotExist", err)
	}
	wantMessages(t, err, path, "$F")
}

func TestLoadEmptyFileIsDefault(t *testing.T) {
	t.Parallel()
	cfg, err := Load(writeConfig(t, "# nothing\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.src = nil
	if want := Default(); !reflect.DeepEqual(cfg, want) {
		t.Errorf("Load(empty) = %+v\nwant Default() = %+v", cfg, want)
	}
}

func TestLoadValues(t *testing.T) {
	t.Parallel()
	cfg, err := Load(writeConfig(t, `
node_name = "n1"
[api]
listen = "0.0.0.0:443"
trusted_proxies = ["10.0.0.0/8", "192.0.2.7"]
[auth.security]
refresh_token_expiry = "1d12h"
[auth]
rate_limit = { per_ip = 0, exempt = ["::1"] }
[seal]
pcrs = [7, 11]
`))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.NodeName = "n1"
	want.API.Listen = "0.0.0.0:443"
	want.API.TrustedProxies = []CIDR{mustCIDR(t, "10.0.0.0/8"), mustCIDR(t, "192.0.2.7/32")}
	want.Auth.Security.RefreshTokenExpiry = Duration{36 * time.Hour}
	want.Auth.RateLimit.PerIP = 0
	want.Auth.RateLimit.Exempt = []CIDR{mustCIDR(t, "::1/128")}
	want.Seal.PCRs = []int{7, 11}
	got := cfg
	got.src = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load = %+v\nwant %+v", got, want)
	}
	for key, line := range map[string]int{
		"node_name": 2, "api.listen": 4, "api.trusted_proxies": 5,
		"auth.security.refresh_token_expiry": 7, "auth.rate_limit.per_ip": 9,
		"auth.rate_limit.exempt": 9, "seal.pcrs": 11,
	} {
		if got := cfg.lineOf(key); got != line {
			t.Errorf("lineOf(%q) = %d, want %d", key, got, line)
		}
	}
}

func mustCIDR(t *testing.T, s string) CIDR {
	t.Helper()
	c, err := ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLoadUnknownKeys(t *testing.T) {
	t.Parallel()
	path, errs := loadErrors(t, `node_name = "n1"
nodename = "x"
[api]
lisen = ":1"
listen = ":8443"
[auth.ratelimit]
per_ip = 1
per_ip_burst = 2
[api2]
[auth]
sessions = { max_per_user = 3, maxperuser = 4 }
[tokens]
jwt_expiry = "1h"
`)
	wantMessages(t, errs, path,
		`$F:2: unknown key "nodename" (did you mean "node_name"?)`,
		`$F:4: unknown key "api.lisen" (did you mean "api.listen"?)`,
		`$F:6: unknown key "auth.ratelimit" (did you mean "auth.rate_limit"?)`,
		`$F:9: unknown key "api2"`,
		`$F:11: unknown key "auth.sessions.maxperuser" (did you mean "auth.sessions.max_per_user"?)`,
		`$F:13: unknown key "tokens.jwt_expiry" (did you mean "auth.security.jwt_expiry"?)`,
	)
	if len(errs) != 6 {
		t.Errorf("got %d errors, want 6: %v", len(errs), errs)
	}
	for _, e := range errs {
		if !errors.Is(e, ErrUnknownKey) {
			t.Errorf("%v: not ErrUnknownKey", e)
		}
	}
}

func TestLoadSyntaxError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		doc  string
		want string
	}{
		{"[api]\nlisten = \":8443\n", "$F:2: syntax error: "},
		{"a = 1\n\n[api\n", "$F:3: syntax error: "},
		{"node_name = \n", "$F:1: syntax error: "},
		{"x = [1,\n", "$F:1: syntax error: "},
	}
	for _, tt := range tests {
		path, errs := loadErrors(t, tt.doc)
		wantMessages(t, errs, path, tt.want)
		if !errors.Is(errs, ErrSyntax) {
			t.Errorf("%v: not ErrSyntax", errs)
		}
	}
}

// TestLoadBadValues covers values go-toml refuses: wrong types, and text our
// types refuse. go-toml stops at the first; each is reported with key and
// line, in go-toml's words or our type's.
func TestLoadBadValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		doc  string
		want []string
	}{
		{"node_name = 7\n", []string{"$F:1: node_name: ", "integer"}},
		{"[api]\nlisten = 8443\n", []string{"$F:2: api.listen: ", "integer"}},
		{"[api]\nmax_body_bytes = \"64k\"\n", []string{"$F:2: api.max_body_bytes: ", "string"}},
		{"[api]\ntrusted_proxies = [\"10.1.2.3/8\"]\n", []string{`$F:2: api.trusted_proxies: invalid CIDR "10.1.2.3/8": host bits are set (did you mean "10.0.0.0/8"?)`}},
		{"[auth.security]\njwt_expiry = 3600\n", []string{`$F:2: auth.security.jwt_expiry: invalid duration "3600": missing unit`}},
		{"[auth]\nsecurity = { max_failed_attempts = 1, jwt_expiry = 3600 }\n", []string{`$F:2: auth.security.jwt_expiry: invalid duration "3600"`}},
		{"[auth.security]\nlockout_duration = \"15 minutes\"\n", []string{`$F:2: auth.security.lockout_duration: invalid duration "15 minutes"`}},
		{"[auth.security]\nrequire_mfa_for_admin = \"yes\"\n", []string{"$F:2: auth.security.require_mfa_for_admin: ", "string"}},
		{"[seal]\npcrs = [1, \"7\"]\n", []string{"$F:2: seal.pcrs: ", "string"}},
		{"[metrics.listen]\n", []string{"$F:1: metrics.listen: ", "table"}},
		{"[auth]\nrate_limit = { per_ip = \"x\" }\n", []string{"$F:2: auth.rate_limit.per_ip: ", "string"}},
	}
	for _, tt := range tests {
		path, errs := loadErrors(t, tt.doc)
		wantMessages(t, errs, path, tt.want...)
		if len(errs) != 1 || !errors.Is(errs, ErrInvalidValue) {
			t.Errorf("%q: got %v, want one ErrInvalidValue", tt.doc, errs)
		}
	}
}

func TestLoadDuplicateKey(t *testing.T) {
	t.Parallel()
	path, errs := loadErrors(t, "[api]\nlisten = \":1\"\n\nlisten = \":2\"\n")
	wantMessages(t, errs, path, "$F:4: api.listen: ", "already defined")
}

func TestLoadCRLF(t *testing.T) {
	t.Parallel()
	path, errs := loadErrors(t, "[api]\r\nlisten = \"x\"\r\nlisen = \"x\"\r\n")
	wantMessages(t, errs, path, `$F:3: unknown key "api.lisen"`)
	path, errs = loadErrors(t, "[api]\r\n\r\nlisten = 1\r\n")
	wantMessages(t, errs, path, "$F:3: api.listen: ")
}
