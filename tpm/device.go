package tpm

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultDevice is the kernel's TPM resource manager, the device used unless
// configured otherwise.
const DefaultDevice = "/dev/tpmrm0"

// Device kinds.
const (
	DeviceKindPath = "path" // a character device such as /dev/tpmrm0
	DeviceKindTCP  = "tcp"  // a TPM command channel over TCP (swtpm --server type=tcp)
	DeviceKindUnix = "unix" // a TPM command channel over a Unix socket (swtpm --server type=unixio)
)

// Device says where the TPM is. ParseDevice builds it from the config string.
type Device struct {
	Kind string // DeviceKindPath, DeviceKindTCP or DeviceKindUnix
	Addr string // absolute path, or host:port for DeviceKindTCP
}

// String returns the canonical config form of d, which ParseDevice accepts.
func (d Device) String() string {
	if d.Kind == DeviceKindPath {
		return d.Addr
	}
	return d.Kind + ":" + d.Addr
}

// ParseDevice parses a TPM device string: an absolute device path
// ("/dev/tpmrm0"), "tcp:HOST:PORT" (IPv6 hosts in brackets) or "unix:PATH"
// with an absolute PATH. Errors wrap ErrInvalidDevice.
func ParseDevice(s string) (Device, error) {
	bad := func(format string, args ...any) (Device, error) {
		return Device{}, fmt.Errorf("%w %q: %s", ErrInvalidDevice, s, fmt.Sprintf(format, args...))
	}
	if s == "" {
		return bad("empty; use %s, tcp:HOST:PORT or unix:PATH", DefaultDevice)
	}
	if strings.TrimSpace(s) != s {
		return bad("leading or trailing white space")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return bad("control character")
		}
	}
	switch {
	case strings.HasPrefix(s, "tcp:"):
		addr := strings.TrimPrefix(s, "tcp:")
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return bad("want tcp:HOST:PORT: %v", err)
		}
		if host == "" {
			return bad("missing host")
		}
		if ip := net.ParseIP(host); ip == nil && !validHostname(host) {
			return bad("host %q is neither an IP address nor a valid host name", host)
		}
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return bad("port %q is not a number in 1-65535", port)
		}
		return Device{Kind: DeviceKindTCP, Addr: net.JoinHostPort(host, port)}, nil
	case strings.HasPrefix(s, "unix:"):
		p := strings.TrimPrefix(s, "unix:")
		if !filepath.IsAbs(p) {
			return bad("socket path must be absolute")
		}
		return Device{Kind: DeviceKindUnix, Addr: filepath.Clean(p)}, nil
	case filepath.IsAbs(s):
		return Device{Kind: DeviceKindPath, Addr: filepath.Clean(s)}, nil
	default:
		return bad("want an absolute device path (%s), tcp:HOST:PORT or unix:PATH", DefaultDevice)
	}
}

// validHostname reports whether h is a DNS host name: labels of 1-63
// letters, digits and inner hyphens, 253 bytes at most.
func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
