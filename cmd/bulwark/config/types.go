package config

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written as text in the file: Go syntax
// ("90m", "1h30m", "500ms") plus "d" for 24-hour days ("7d", "1d12h").
// Negative durations are rejected.
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler with the form ParseDuration
// reads back: whole days as "d", the rest in Go syntax without zero units.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(d.String()), nil
}

// String formats d as MarshalText does: "7d", "1d12h", "1h30m", "15m".
func (d Duration) String() string {
	v := d.Duration
	if v < 0 {
		return v.String()
	}
	const day = 24 * time.Hour
	days, rest := v/day, v%day
	var s string
	if rest != 0 || days == 0 {
		s = rest.String()
		if strings.HasSuffix(s, "m0s") {
			s = strings.TrimSuffix(s, "0s")
		}
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m")
		}
	}
	if days == 0 {
		return s
	}
	return strconv.FormatInt(int64(days), 10) + "d" + s
}

// ParseDuration parses Go duration syntax plus "d" for 24-hour days, also
// in compound forms such as "1d12h" or "1.5d". It refuses negative values.
// The daemon's flags (--ttl, --for) can use it too.
func ParseDuration(s string) (time.Duration, error) {
	bad := func(why string) error {
		return fmt.Errorf("invalid duration %q: %s (use Go syntax such as \"90m\" or \"1h30m\", or days such as \"7d\")", s, why)
	}
	rest := s
	if strings.HasPrefix(rest, "+") {
		rest = rest[1:]
	}
	switch {
	case s == "":
		return 0, bad("empty")
	case strings.HasPrefix(s, "-"):
		return 0, fmt.Errorf("invalid duration %q: must not be negative", s)
	case rest == "0":
		return 0, nil
	case rest == "":
		return 0, bad("expected a number")
	}
	var total time.Duration
	for rest != "" {
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		num := rest[:i]
		if num == "" || num == "." || strings.Count(num, ".") > 1 {
			return 0, bad("expected a number")
		}
		j := i
		for j < len(rest) && !(rest[j] >= '0' && rest[j] <= '9' || rest[j] == '.') {
			j++
		}
		unit := rest[i:j]
		rest = rest[j:]
		var part time.Duration
		switch unit {
		case "":
			return 0, bad("missing unit")
		case "d":
			h, err := time.ParseDuration(num + "h")
			if err != nil || h > math.MaxInt64/24 {
				return 0, bad("too large")
			}
			part = h * 24
		case "ns", "us", "µs", "μs", "ms", "s", "m", "h":
			var err error
			part, err = time.ParseDuration(num + unit)
			if err != nil {
				return 0, bad("too large")
			}
		default:
			return 0, bad(fmt.Sprintf("unknown unit %q", unit))
		}
		if total > math.MaxInt64-part {
			return 0, bad("too large")
		}
		total += part
	}
	return total, nil
}

// CIDR is an IP network in a list such as api.trusted_proxies. The file may
// give a prefix ("10.0.0.0/8", "fd00::/8") or a single address ("192.0.2.7",
// meaning /32 or /128). A prefix with host bits set ("10.1.2.3/8") is
// refused: it is usually a typo, and the message names the network meant.
type CIDR struct{ netip.Prefix }

// ParseCIDR parses a prefix or a single address as described for CIDR.
func ParseCIDR(s string) (CIDR, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return CIDR{}, fmt.Errorf("invalid CIDR %q: expected a network such as \"10.0.0.0/8\" or an address", s)
		}
		return CIDR{netip.PrefixFrom(a, a.BitLen())}, nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return CIDR{}, fmt.Errorf("invalid CIDR %q: expected a network such as \"10.0.0.0/8\"", s)
	}
	if m := p.Masked(); m != p {
		return CIDR{}, fmt.Errorf("invalid CIDR %q: host bits are set (did you mean %q?)", s, m.String())
	}
	return CIDR{p}, nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (c *CIDR) UnmarshalText(b []byte) error {
	v, err := ParseCIDR(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (c CIDR) MarshalText() ([]byte, error) {
	if !c.IsValid() {
		return nil, errors.New("invalid CIDR")
	}
	return []byte(c.Prefix.String()), nil
}

// MemoryLimit is server.memory_limit: "auto" (Bytes 0), or a size in
// GOMEMLIMIT's syntax, a whole number of bytes with an optional unit B,
// KiB, MiB, GiB or TiB ("192MiB", "1GiB").
type MemoryLimit struct{ Bytes int64 }

// ParseMemoryLimit parses "auto" or a size as described for MemoryLimit.
func ParseMemoryLimit(s string) (MemoryLimit, error) {
	if s == "auto" {
		return MemoryLimit{}, nil
	}
	num := strings.TrimRight(s, "BKMGTi")
	unit := s[len(num):]
	shift, ok := map[string]uint{"": 0, "B": 0, "KiB": 10, "MiB": 20, "GiB": 30, "TiB": 40}[unit]
	n, err := strconv.ParseInt(num, 10, 64)
	switch {
	case !ok:
		return MemoryLimit{}, fmt.Errorf("invalid memory limit %q: unknown unit %q (use B, KiB, MiB, GiB or TiB)", s, unit)
	case err != nil || n <= 0:
		return MemoryLimit{}, fmt.Errorf("invalid memory limit %q: expected \"auto\" or a positive whole number with a unit, such as \"192MiB\"", s)
	case n > math.MaxInt64>>shift:
		return MemoryLimit{}, fmt.Errorf("invalid memory limit %q: too large", s)
	}
	return MemoryLimit{n << shift}, nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *MemoryLimit) UnmarshalText(b []byte) error {
	v, err := ParseMemoryLimit(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// MarshalText implements encoding.TextMarshaler with the form
// ParseMemoryLimit reads back: "auto", or the largest unit that divides
// the size.
func (m MemoryLimit) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// String formats m as MarshalText does: "auto", "192MiB", "1536KiB".
func (m MemoryLimit) String() string {
	if m.Bytes == 0 {
		return "auto"
	}
	for _, u := range []struct {
		shift uint
		name  string
	}{{40, "TiB"}, {30, "GiB"}, {20, "MiB"}, {10, "KiB"}} {
		if m.Bytes%(1<<u.shift) == 0 {
			return strconv.FormatInt(m.Bytes>>u.shift, 10) + u.name
		}
	}
	return strconv.FormatInt(m.Bytes, 10) + "B"
}
