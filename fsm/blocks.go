package fsm

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"time"
)

// Threat response of feature level 4 (see DESIGN.md, "Blocks and
// detection"): blocked address ranges, added by an operator (block.add) or
// by login.failure v3 when one address crosses a detection threshold, and
// removed by an operator (block.remove) or by the sweep once they expire.
// Every node holds the same blocks and refuses the same clients.
const (
	TypeBlockAdd    Type = "block.add"
	TypeBlockRemove Type = "block.remove"
)

// Bounds on what a block or a detection rule may carry.
const (
	// MaxBlockFor is the longest a block may last.
	MaxBlockFor = 366 * 24 * time.Hour
	// MaxBlockReason bounds a block's reason, in bytes.
	MaxBlockReason = 256
	// MaxBlockAfterFailures and MaxBlockAfterUsernames bound the
	// thresholds a login.failure v3 carries; the second bounds the size
	// of an address's detection record (one tag per name).
	MaxBlockAfterFailures  = 100000
	MaxBlockAfterUsernames = 100
)

// Block is one blocked range of client addresses.
type Block struct {
	CIDR      string `json:"cidr"`  // canonical: masked, IPv4 unmapped
	Until     int64  `json:"until"` // Unix nanoseconds; the block ends then
	Reason    string `json:"reason,omitempty"`
	Actor     string `json:"actor,omitempty"` // who added it; "" for a detection rule
	Auto      bool   `json:"auto,omitempty"`  // added by a detection rule
	CreatedAt int64  `json:"created_at"`
}

// Live reports whether b still blocks at now (Unix nanoseconds).
func (b Block) Live(now int64) bool { return b.Until > now }

// BlockAdd is the payload of block.add v1: block CIDR for For from the
// command's time. A live block of the same CIDR is replaced (an operator
// may shorten one so). Actor, IP and UserAgent go to its audit entry.
type BlockAdd struct {
	CIDR      string `json:"cidr"`
	For       int64  `json:"for"` // nanoseconds
	Reason    string `json:"reason,omitempty"`
	Actor     string `json:"actor,omitempty"`
	IP        string `json:"ip,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`
}

// BlockRemove is the payload of block.remove v1: lift the block of CIDR
// (exactly that range). ErrBlockNotFound if none is live.
type BlockRemove struct {
	CIDR      string `json:"cidr"`
	Actor     string `json:"actor,omitempty"`
	IP        string `json:"ip,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`
}

// DetectLimits are the detection rules ([incident]) a login.failure v3
// carries, decided by its proposer: an address from an exempt range
// carries none (all zero). A threshold of 0 turns its rule off.
type DetectLimits struct {
	Window              int64 `json:"window"` // nanoseconds
	BlockAfterFailures  int   `json:"block_after_failures"`
	BlockAfterUsernames int   `json:"block_after_usernames"`
	BlockFor            int64 `json:"block_for"` // nanoseconds
}

func (d DetectLimits) off() bool { return d.BlockAfterFailures == 0 && d.BlockAfterUsernames == 0 }

func (d DetectLimits) valid() bool {
	if d == (DetectLimits{}) {
		return true
	}
	return d.Window > 0 && d.Window <= maxLockoutWindow && d.BlockFor > 0 && d.BlockFor <= int64(MaxBlockFor) &&
		d.BlockAfterFailures >= 0 && d.BlockAfterFailures <= MaxBlockAfterFailures &&
		d.BlockAfterUsernames >= 0 && d.BlockAfterUsernames <= MaxBlockAfterUsernames
}

// LoginFailureV3 is the payload of login.failure v3: v2's, with the
// detection rules. The failure also counts against its address's
// detection record; when the address reaches either threshold in the
// window, the same entry blocks it for BlockFor, with an audit entry
// (address.block), and its record starts over.
type LoginFailureV3 struct {
	LoginFailureV2
	Detect DetectLimits `json:"detect"`
}

var blockCommands = []CommandSpec{
	{Type: TypeBlockAdd, Version: 1, Level: 4, Apply: applyBlockAdd, Result: reflect.TypeFor[Block]()},
	{Type: TypeBlockRemove, Version: 1, Level: 4, Apply: applyBlockRemove, Result: nil},
	{Type: TypeLoginFailure, Version: 3, Level: 4, Apply: applyLoginFailureV3, Result: reflect.TypeFor[FailureResult]()},
}

// CanonicalCIDR parses an address ("192.0.2.7", a bare address is its
// /32 or /128) or a CIDR ("192.0.2.0/24", "2001:db8::/48") and returns
// the range in the one form the state keys blocks by: masked, an IPv4
// address in IPv6 unmapped, no zone.
func CanonicalCIDR(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q has a zone", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is neither an IP address nor a CIDR", s)
	}
	a := p.Addr()
	if a.Is4In6() {
		bits := p.Bits() - 96
		if bits < 0 {
			return netip.Prefix{}, fmt.Errorf("%q is an IPv4-mapped range shorter than ::ffff:0:0/96", s)
		}
		p = netip.PrefixFrom(a.Unmap(), bits)
	}
	return p.Masked(), nil
}

// canonical reports whether s is a CIDR as CanonicalCIDR writes it.
func canonical(s string) (netip.Prefix, bool) {
	p, err := CanonicalCIDR(s)
	return p, err == nil && p.String() == s
}

func applyBlockAdd(t txn, c Command) (any, error) {
	var p BlockAdd
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if _, ok := canonical(p.CIDR); !ok || p.For <= 0 || p.For > int64(MaxBlockFor) || len(p.Reason) > MaxBlockReason ||
		len(p.Actor) > MaxAuditActor || !validIP(p.IP) {
		return nil, fmt.Errorf("%w: block.add needs a canonical cidr, 0 < for <= %s and a reason of at most %d bytes",
			ErrInvalidCommand, MaxBlockFor, MaxBlockReason)
	}
	b := Block{CIDR: p.CIDR, Until: c.Time + p.For, Reason: CleanAuditText(p.Reason, MaxBlockReason), Actor: p.Actor, CreatedAt: c.Time}
	ev := blockAudit(b, AuditWarning, p.IP, p.UserAgent)
	if err := ev.Validate(); err != nil {
		return nil, err
	}
	if err := t.putBlock(b); err != nil {
		return nil, err
	}
	if _, err := appendAudit(t, c.Time, ev); err != nil {
		return nil, err
	}
	return b, nil
}

func applyBlockRemove(t txn, c Command) (any, error) {
	var p BlockRemove
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if _, ok := canonical(p.CIDR); !ok || len(p.Actor) > MaxAuditActor || !validIP(p.IP) {
		return nil, fmt.Errorf("%w: block.remove needs a canonical cidr", ErrInvalidCommand)
	}
	b, found, err := t.block(p.CIDR)
	if err != nil {
		return nil, err
	}
	if !found || !b.Live(c.Time) {
		return nil, ErrBlockNotFound
	}
	ev := AuditAppend{Type: "address.unblock", Severity: AuditWarning, Actor: p.Actor, IP: asciiIP(p.IP),
		UserAgent: CleanAuditText(p.UserAgent, MaxAuditUserAgent), Details: map[string]string{"address": p.CIDR}}
	if err := ev.Validate(); err != nil {
		return nil, err
	}
	if err := t.tx.Bucket(bucketBlocks).Delete([]byte(p.CIDR)); err != nil {
		return nil, err
	}
	_, err = appendAudit(t, c.Time, ev)
	return nil, err
}

// blockAudit is the audit entry of a block added.
func blockAudit(b Block, severity, ip, userAgent string) AuditAppend {
	d := map[string]string{"address": b.CIDR, "until": time.Unix(0, b.Until).UTC().Format(time.RFC3339)}
	if b.Reason != "" {
		d["reason"] = b.Reason
	}
	return AuditAppend{Type: "address.block", Severity: severity, Actor: b.Actor, IP: asciiIP(ip),
		UserAgent: CleanAuditText(userAgent, MaxAuditUserAgent), Details: d}
}

func (t txn) block(cidr string) (Block, bool, error) {
	b, err := getJSON[Block](t.tx, bucketBlocks, cidr, nil)
	if b == nil {
		return Block{}, false, err
	}
	return *b, true, nil
}

// putBlock stores b and enters it in the expiry index at its end.
func (t txn) putBlock(b Block) error {
	if err := t.putJSON(bucketBlocks, b.CIDR, b); err != nil {
		return err
	}
	return t.index(b.Until, expiryBlock, b.CIDR)
}

func applyLoginFailureV3(t txn, c Command) (any, error) {
	var p LoginFailureV3
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if !p.Detect.valid() {
		return nil, fmt.Errorf("%w: login.failure v3 needs detection limits in range, or none", ErrInvalidCommand)
	}
	return loginFailure(t, c, p.LoginFailureV2, 3, p.Detect)
}

// detectRecord counts, for one client address (IPv4, or the /64 of IPv6)
// in one window, the failed logins from it and the distinct names they
// were for (Names: the first 8 bytes of each name's SHA-256, hex, at most
// the usernames threshold). Stored in bucketDetect under the address,
// indexed at the window's end, deleted by the sweep then.
type detectRecord struct {
	WindowStart int64    `json:"window_start"`
	Window      int64    `json:"window"`
	Failures    int      `json:"failures"`
	Names       []string `json:"names,omitempty"`
}

// detect counts a failure for name from ip at now against the detection
// rules, and blocks the address when it reaches a threshold. It reports
// whether it blocked.
func (op *lockoutOp) detect(ip, name string, d DetectLimits) (bool, error) {
	addr := addressKey(ip)
	if addr == "" || d.off() {
		return false, nil
	}
	bucket := op.t.tx.Bucket(bucketDetect)
	var r detectRecord
	if v := bucket.Get([]byte(addr)); v != nil {
		if err := json.Unmarshal(v, &r); err != nil {
			return false, err
		}
	}
	if r.Window == 0 || op.now-r.WindowStart >= r.Window || op.now-r.WindowStart >= d.Window || op.now < r.WindowStart {
		r = detectRecord{WindowStart: op.now}
	}
	r.Window = d.Window
	r.Failures++
	if tag := hex.EncodeToString([]byte(nameTag(name))); !slices.Contains(r.Names, tag) && len(r.Names) < d.BlockAfterUsernames {
		r.Names = append(r.Names, tag)
	}
	var reason, severity string
	switch {
	case d.BlockAfterUsernames > 0 && len(r.Names) >= d.BlockAfterUsernames:
		reason, severity = fmt.Sprintf("credential stuffing: %d names failed within %s", len(r.Names), time.Duration(d.Window)), AuditCritical
	case d.BlockAfterFailures > 0 && r.Failures >= d.BlockAfterFailures:
		reason, severity = fmt.Sprintf("brute force: %d failed logins within %s", r.Failures, time.Duration(d.Window)), AuditWarning
	}
	if reason == "" {
		if err := op.t.putJSON(bucketDetect, addr, r); err != nil {
			return false, err
		}
		return false, op.t.index(r.WindowStart+r.Window, expiryDetect, addr)
	}
	// Blocked: the record starts over (its index entry dangles until the
	// sweep reaches it), and the address's block lasts BlockFor from now,
	// or longer if a live block of it already does.
	if err := bucket.Delete([]byte(addr)); err != nil {
		return false, err
	}
	cidr := addr
	if a, err := netip.ParseAddr(addr); err == nil {
		cidr = netip.PrefixFrom(a, a.BitLen()).String()
	}
	b := Block{CIDR: cidr, Until: op.now + d.BlockFor, Reason: reason, Auto: true, CreatedAt: op.now}
	old, found, err := op.t.block(cidr)
	if err != nil {
		return false, err
	}
	if found && old.Until > b.Until {
		b.Until = old.Until
	}
	if err := op.t.putBlock(b); err != nil {
		return false, err
	}
	op.audit = append(op.audit, blockAudit(b, severity, ip, ""))
	return true, nil
}

// Blocks returns every stored block, live or not yet swept, in CIDR
// order; callers judge liveness with their clock (Block.Live).
func (r Reader) Blocks() ([]Block, error) {
	var out []Block
	err := r.tx.Bucket(bucketBlocks).ForEach(func(k, v []byte) error {
		var b Block
		if err := json.Unmarshal(v, &b); err != nil {
			return err
		}
		out = append(out, b)
		return nil
	})
	return out, err
}

// BlocksGeneration changes (on this node) whenever a command that adds or
// removes a block has been applied, or the state was restored from a
// snapshot: a blocklist derived from Blocks is current while it is
// unchanged (expired blocks aside, which Live tells). Read when the view
// begins, like KeysGeneration; local, not replicated.
func (r Reader) BlocksGeneration() uint64 { return r.blocksGen }

// BlocksGeneration is Reader.BlocksGeneration without a read transaction:
// a caller whose blocklist was built at this generation may use it as
// current without opening a view.
func (s *Store) BlocksGeneration() uint64 { return s.blocksGen.Load() }

// changesBlocks reports whether a command's result changed the blocks:
// block.add or block.remove succeeded, or a login failure (or an
// unsolved challenge, login.attempt v4) blocked its address. (The sweep deletes only blocks already over, which Live
// excludes anyway.)
func changesBlocks(t Type, r Result) bool {
	if r.Err != nil {
		return false
	}
	switch t {
	case TypeBlockAdd, TypeBlockRemove:
		return true
	case TypeLoginFailure:
		fr, ok := r.Value.(FailureResult)
		return ok && fr.Blocked
	case TypeLoginAttempt:
		ar, ok := r.Value.(AttemptResult)
		return ok && ar.Blocked
	}
	return false
}
