package authcore

// Device tokens: OWASP's defence against lockout as a denial of service
// (the "device cookie" of the Authentication Cheat Sheet). A successful
// login answers a device token bound to its name (a MAC under the cluster
// data key, good for deviceTTL). While the name is locked by failures from
// elsewhere, a login that presents a valid device token for that name
// draws on a budget of its own, MaxFailedAttempts per LockoutDuration
// under the counter "device <hash>" (same reserve-before-check, same fail
// closed); spending that budget spends the token itself (ticket.spend),
// on every node, so a stolen device token buys an attacker no more than
// one budget.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
)

const (
	deviceTTL    = 90 * 24 * time.Hour
	devicePrefix = "bwd_"
)

type deviceClaims struct {
	Name    string `json:"n"`
	Nonce   string `json:"i"`
	Expires int64  `json:"e"` // Unix seconds
}

// device is a verified device token.
type device struct {
	hash    string // what the log knows it by
	expires time.Time
}

func deviceLockName(hash string) string { return "device " + hash }

// issueDevice makes a device token for name; "" if it cannot (no data
// key): a login does not fail for want of one.
func (s *Service) issueDevice(name string) string {
	if s.box == nil {
		return ""
	}
	var n [16]byte
	if _, err := rand.Read(n[:]); err != nil {
		return ""
	}
	b, err := json.Marshal(deviceClaims{Name: name, Nonce: base64.RawURLEncoding.EncodeToString(n[:]),
		Expires: s.now().Add(deviceTTL).Unix()})
	if err != nil {
		return ""
	}
	enc := base64.RawURLEncoding.EncodeToString(b)
	return devicePrefix + enc + "." + base64.RawURLEncoding.EncodeToString(s.box.mac(purposeDevice, []byte(enc)))
}

// parseDevice returns the device token's identity if it is genuine,
// unexpired and bound to name; nil otherwise (an invalid device token is
// no error: the login goes on without it).
func (s *Service) parseDevice(token, name string) *device {
	rest, ok := strings.CutPrefix(token, devicePrefix)
	if !ok || len(token) > 1024 || s.box == nil {
		return nil
	}
	enc, sig, ok := strings.Cut(rest, ".")
	mac, err := base64.RawURLEncoding.DecodeString(sig)
	if !ok || err != nil || !hmacEqual(mac, s.box.mac(purposeDevice, []byte(enc))) {
		return nil
	}
	var c deviceClaims
	b, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil || json.Unmarshal(b, &c) != nil || c.Name != name || c.Nonce == "" || s.now().Unix() >= c.Expires {
		return nil
	}
	h := sha256.Sum256([]byte("device " + c.Nonce))
	return &device{hash: hex.EncodeToString(h[:]), expires: time.Unix(c.Expires, 0)}
}

// deviceFailed turns a slot of a device's budget into a failure, counted
// against the address and the detection rules as any failed login is;
// when the budget is spent, so is the token.
func (s *Service) deviceFailed(ctx context.Context, dev *device, name string, u *fsm.User, ri RequestInfo, slot int64) {
	res := s.recordFailure(ctx, deviceLockName(dev.hash), name, u, ri, slot, map[string]string{"device": dev.hash[:16]})
	if !res.Locked {
		return
	}
	subject := ""
	if u != nil {
		subject = u.ID
	}
	spend, err := fsm.NewCommand(fsm.TypeTicketSpend, 1, s.now().UnixNano(), fsm.TicketSpend{Ticket: dev.hash, Expires: dev.expires.UnixNano()})
	if err == nil {
		_, err = s.apply(ctx, spend, fsm.AuditAppend{Type: "device.revoked", Severity: fsm.AuditWarning, Subject: subject,
			IP: ri.IP, UserAgent: ri.UserAgent, Details: map[string]string{"username": name, "device": dev.hash[:16],
				"reason": "its failed-attempt budget is spent"}})
	}
	if err != nil {
		s.log.Warn("could not revoke a device token whose budget is spent; it stays locked for the window", "error", err)
	}
}
