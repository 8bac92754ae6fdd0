package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string // substring; "" means success
	}{
		{in: "7d", want: 7 * 24 * time.Hour},
		{in: "1d12h", want: 36 * time.Hour},
		{in: "1.5d", want: 36 * time.Hour},
		{in: "90m", want: 90 * time.Minute},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "500ms", want: 500 * time.Millisecond},
		{in: "2d3h4m5s", want: 51*time.Hour + 4*time.Minute + 5*time.Second},
		{in: "+1h", want: time.Hour},
		{in: "0", want: 0},
		{in: "0s", want: 0},
		{in: "-1h", wantErr: "must not be negative"},
		{in: "-1d", wantErr: "must not be negative"},
		{in: "abc", wantErr: "expected a number"},
		{in: "1x", wantErr: `unknown unit "x"`},
		{in: "1", wantErr: "missing unit"},
		{in: "", wantErr: "empty"},
		{in: "+", wantErr: "expected a number"},
		{in: "1.2.3h", wantErr: "expected a number"},
		{in: "h", wantErr: "expected a number"},
		{in: " 1h", wantErr: "expected a number"},
		{in: "200000d", wantErr: "too large"},
		{in: "106751d106751d", wantErr: "too large"},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseDuration(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			} else if !strings.Contains(err.Error(), `"`+tt.in+`"`) {
				t.Errorf("ParseDuration(%q): error %q does not quote the input", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestDurationText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		d    time.Duration
		want string
	}{
		{7 * 24 * time.Hour, "7d"},
		{36 * time.Hour, "1d12h"},
		{720 * time.Hour, "30d"},
		{time.Hour, "1h"},
		{90 * time.Minute, "1h30m"},
		{15 * time.Minute, "15m"},
		{90 * time.Second, "1m30s"},
		{24*time.Hour + time.Second, "1d1s"},
		{1500 * time.Millisecond, "1.5s"},
		{0, "0s"},
	}
	for _, tt := range tests {
		b, err := Duration{tt.d}.MarshalText()
		if err != nil || string(b) != tt.want {
			t.Errorf("MarshalText(%v) = %q, %v; want %q", tt.d, b, err, tt.want)
			continue
		}
		var back Duration
		if err := back.UnmarshalText(b); err != nil || back.Duration != tt.d {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", b, back.Duration, err, tt.d)
		}
	}
}

func TestParseCIDR(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want, wantErr string
	}{
		{in: "10.0.0.0/8", want: "10.0.0.0/8"},
		{in: "fd00::/8", want: "fd00::/8"},
		{in: "192.0.2.7", want: "192.0.2.7/32"},
		{in: "::1", want: "::1/128"},
		{in: "10.1.2.3/8", wantErr: `did you mean "10.0.0.0/8"?`},
		{in: "10.0.0.0/33", wantErr: "invalid CIDR"},
		{in: "nonsense", wantErr: "invalid CIDR"},
		{in: "fe80::1%eth0", wantErr: "invalid CIDR"},
		{in: "", wantErr: "invalid CIDR"},
	}
	for _, tt := range tests {
		got, err := ParseCIDR(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseCIDR(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("ParseCIDR(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

func TestParseMemoryLimit(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		text string // what MarshalText writes back
	}{
		{"auto", 0, "auto"},
		{"192MiB", 192 << 20, "192MiB"},
		{"1GiB", 1 << 30, "1GiB"},
		{"1536KiB", 1536 << 10, "1536KiB"},
		{"2048MiB", 2 << 30, "2GiB"},
		{"1000", 1000, "1000B"},
		{"4096B", 4096, "4KiB"},
	} {
		got, err := ParseMemoryLimit(tt.in)
		if err != nil || got.Bytes != tt.want {
			t.Errorf("ParseMemoryLimit(%q) = %d, %v; want %d", tt.in, got.Bytes, err, tt.want)
			continue
		}
		if got.String() != tt.text {
			t.Errorf("%q written back as %q, want %q", tt.in, got.String(), tt.text)
		}
	}
	for _, bad := range []string{"", "0", "-5MiB", "192MB", "1.5GiB", "MiB", "auto ", "9999999999TiB", "12 MiB"} {
		if _, err := ParseMemoryLimit(bad); err == nil {
			t.Errorf("ParseMemoryLimit(%q) accepted", bad)
		}
	}
}
