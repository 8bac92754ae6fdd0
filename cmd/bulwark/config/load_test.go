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
// types refuse. All are reported at once with key and line.
func TestLoadBadValues(t *testing.T) {
	t.Parallel()
	path, errs := loadErrors(t, `node_name = 7
[api]
listen = 8443
max_body_bytes = "64k"
trusted_proxies = ["10.1.2.3/8"]
[auth.security]
jwt_expiry = 3600
lockout_duration = "15 minutes"
require_mfa_for_admin = "yes"
[seal]
pcrs = [1, "7"]
[bogus]
x = 1
[metrics.listen]
`)
	wantMessages(t, errs, path,
		`$F:1: node_name: expected a string, found an integer`,
		`$F:3: api.listen: expected a string, found an integer`,
		`$F:4: api.max_body_bytes: expected an integer, found a string`,
		`$F:5: api.trusted_proxies: invalid CIDR "10.1.2.3/8": host bits are set (did you mean "10.0.0.0/8"?)`,
		`$F:7: auth.security.jwt_expiry: invalid duration "3600": missing unit`,
		`$F:8: auth.security.lockout_duration: invalid duration "15 minutes"`,
		`$F:9: auth.security.require_mfa_for_admin: expected true or false, found a string`,
		`$F:11: seal.pcrs: expected an array of integers, found a string`,
		`$F:12: unknown key "bogus"`,
		`$F:14: metrics.listen: expected a string, found a table`,
	)
	if len(errs) != 10 {
		t.Errorf("got %d errors, want 10:\n%s", len(errs), strings.ReplaceAll(errs.Error(), "; ", "\n"))
	}
}

func TestLoadDuplicateKey(t *testing.T) {
	t.Parallel()
	path, errs := loadErrors(t, "[api]\nlisten = \":1\"\n\nlisten = \":2\"\n")
	wantMessages(t, errs, path, "$F:4: api.listen: ", "already defined")
}

func TestLoadCRLF(t *testing.T) {
	t.Parallel()
	path, errs := loadErrors(t, "[api]\r\nlisten = 1\r\nlisen = \"x\"\r\n")
	wantMessages(t, errs, path, "$F:2: api.listen: expected a string", `$F:3: unknown key "api.lisen"`)
}
