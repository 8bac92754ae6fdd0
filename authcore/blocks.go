package authcore

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
)

// Threat response: blocked addresses and the detection rules that add
// them ([incident] in API.md). Blocks live in the replicated state
// (fsm/blocks.go), so every node refuses the same clients; a failed login
// carries the rules to the state machine (login.failure v3), which counts
// failures per address over the whole cluster's log and blocks an address
// in the same entry as the failure that crossed a threshold. Detection so
// costs a login no extra round trip: the failure was written anyway.

// IncidentConfig is [incident]'s detection rules. Zero values take
// API.md's defaults; a negative threshold turns its rule off. The ranges
// they never apply to are Config.IncidentExempt: never blocked, not by a
// rule, not by an operator (AddBlock refuses a range overlapping one), and
// a block that covers one (added by a node configured otherwise) is not
// enforced for it.
type IncidentConfig struct {
	// Window is how long failures from one address are counted together.
	Window time.Duration
	// BlockAfterFailures failed logins from one address in Window block it.
	BlockAfterFailures int
	// BlockAfterUsernames distinct names failed from one address in Window
	// block it (credential stuffing).
	BlockAfterUsernames int
	// BlockFor is how long a rule's block lasts, and a manual block's
	// default.
	BlockFor time.Duration
	// RevokeAfterForbidden refusals on admin routes by one account in
	// Window revoke its sessions and flag it (incident.forbidden).
	RevokeAfterForbidden int
}

func (c *IncidentConfig) setDefaults() {
	if c.Window <= 0 {
		c.Window = time.Minute
	}
	if c.BlockAfterFailures == 0 {
		c.BlockAfterFailures = 10
	}
	if c.BlockAfterUsernames == 0 {
		c.BlockAfterUsernames = 5
	}
	if c.BlockFor <= 0 {
		c.BlockFor = time.Hour
	}
	if c.RevokeAfterForbidden == 0 {
		c.RevokeAfterForbidden = 5
	}
}

func (c IncidentConfig) validate() error {
	switch {
	case c.Window > 366*24*time.Hour:
		return fmt.Errorf("%w: incident window %s is over 366 days", ErrInvalidInput, c.Window)
	case c.BlockFor > fsm.MaxBlockFor:
		return fmt.Errorf("%w: incident block_for %s is over %s", ErrInvalidInput, c.BlockFor, fsm.MaxBlockFor)
	case c.BlockAfterFailures > fsm.MaxBlockAfterFailures:
		return fmt.Errorf("%w: incident block_after_failures %d is over %d", ErrInvalidInput, c.BlockAfterFailures, fsm.MaxBlockAfterFailures)
	case c.BlockAfterUsernames > fsm.MaxBlockAfterUsernames:
		return fmt.Errorf("%w: incident block_after_usernames %d is over %d", ErrInvalidInput, c.BlockAfterUsernames, fsm.MaxBlockAfterUsernames)
	}
	return nil
}

// Errors of the blocklist.
var (
	// ErrBlockNotFound: no live block of exactly that range.
	ErrBlockNotFound = fsm.ErrBlockNotFound
	// ErrBlocksUnavailable: the cluster is below feature level 4, where
	// blocks exist; every member must run a binary that has them first.
	ErrBlocksUnavailable = errors.New("address blocks need cluster feature level 4: upgrade every member first")
)

// Block is one blocked range, as the blocklist commands and the admin API
// show it.
type Block struct {
	CIDR      string    `json:"cidr"`
	Until     time.Time `json:"until"`
	Reason    string    `json:"reason,omitempty"`
	Actor     string    `json:"actor,omitempty"` // who added it; empty for a rule's
	Auto      bool      `json:"auto"`            // added by a detection rule
	CreatedAt time.Time `json:"created_at"`
}

func blockOf(b fsm.Block) Block {
	return Block{CIDR: b.CIDR, Until: time.Unix(0, b.Until).UTC(), Reason: b.Reason, Actor: b.Actor, Auto: b.Auto,
		CreatedAt: time.Unix(0, b.CreatedAt).UTC()}
}

// exemptAddr reports whether a is in an exempt range.
func (s *Service) exemptAddr(a netip.Addr) bool {
	a = a.Unmap()
	return slices.ContainsFunc(s.cfg.IncidentExempt, func(p netip.Prefix) bool { return p.Contains(a) })
}

// detectLimits are the rules a failure from ip carries: none for an
// exempt address, or one without an address.
func (s *Service) detectLimits(ip string) fsm.DetectLimits {
	a, err := netip.ParseAddr(ip)
	if err != nil || s.exemptAddr(a) {
		return fsm.DetectLimits{}
	}
	in := s.cfg.Incident
	return fsm.DetectLimits{Window: int64(in.Window), BlockAfterFailures: max(in.BlockAfterFailures, 0),
		BlockAfterUsernames: max(in.BlockAfterUsernames, 0), BlockFor: int64(in.BlockFor)}
}

// Blocks returns the live blocks, by range.
func (s *Service) Blocks(ctx context.Context) ([]Block, error) {
	now := s.now().UnixNano()
	out := []Block{}
	err := s.store.View(func(r fsm.Reader) error {
		bs, err := r.Blocks()
		for _, b := range bs {
			if b.Live(now) {
				out = append(out, blockOf(b))
			}
		}
		return err
	})
	return out, err
}

// AddBlock blocks cidr (an address is its /32 or /128) for d (zero: the
// rule's block_for) on every node, replacing a live block of the same
// range. A range that overlaps an exempt one is refused: exempt means
// never blocked. The actor is the request's.
func (s *Service) AddBlock(ctx context.Context, cidr string, d time.Duration, reason string) (Block, error) {
	p, err := fsm.CanonicalCIDR(cidr)
	if err != nil {
		return Block{}, fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	if d == 0 {
		d = s.cfg.Incident.BlockFor
	}
	switch {
	case d < time.Second || d > fsm.MaxBlockFor:
		return Block{}, fmt.Errorf("%w: a block lasts from 1s to %s, not %s", ErrInvalidInput, fsm.MaxBlockFor, d)
	case len(reason) > fsm.MaxBlockReason:
		return Block{}, fmt.Errorf("%w: the reason is over %d bytes", ErrInvalidInput, fsm.MaxBlockReason)
	case fsm.CleanAuditText(reason, fsm.MaxBlockReason) != reason:
		return Block{}, fmt.Errorf("%w: the reason must be printable text", ErrInvalidInput)
	}
	if i := slices.IndexFunc(s.cfg.IncidentExempt, p.Overlaps); i >= 0 {
		return Block{}, fmt.Errorf("%w: %s overlaps the exempt range %s ([incident] exempt), which is never blocked",
			ErrInvalidInput, p, s.cfg.IncidentExempt[i])
	}
	if !s.proposable(fsm.TypeBlockAdd, 1) {
		return Block{}, ErrBlocksUnavailable
	}
	ri := requestInfo(ctx)
	cmd, err := fsm.NewCommand(fsm.TypeBlockAdd, 1, s.now().UnixNano(), fsm.BlockAdd{CIDR: p.String(), For: int64(d),
		Reason: reason, Actor: ri.Actor, IP: ri.IP, UserAgent: ri.UserAgent})
	if err != nil {
		return Block{}, err
	}
	b, err := proposeAs[fsm.Block](ctx, s, cmd)
	if err != nil {
		return Block{}, err
	}
	// Logged, and reported to the metrics (bulwark_ip_blocks_total), as
	// the entry Apply appended says it.
	s.logAudit([]fsm.AuditAppend{{Type: "address.block", Severity: fsm.AuditWarning, Actor: ri.Actor, IP: ri.IP,
		Details: map[string]string{"address": b.CIDR, "until": time.Unix(0, b.Until).UTC().Format(time.RFC3339)}}}, nil)
	return blockOf(b), nil
}

// RemoveBlock lifts the block of exactly cidr on every node:
// ErrBlockNotFound if there is no live one.
func (s *Service) RemoveBlock(ctx context.Context, cidr string) error {
	p, err := fsm.CanonicalCIDR(cidr)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	if !s.proposable(fsm.TypeBlockRemove, 1) {
		return ErrBlocksUnavailable
	}
	ri := requestInfo(ctx)
	cmd, err := fsm.NewCommand(fsm.TypeBlockRemove, 1, s.now().UnixNano(), fsm.BlockRemove{CIDR: p.String(),
		Actor: ri.Actor, IP: ri.IP, UserAgent: ri.UserAgent})
	if err != nil {
		return err
	}
	if _, err := s.propose(ctx, cmd); err != nil {
		return err
	}
	s.logAudit([]fsm.AuditAppend{{Type: "address.unblock", Severity: fsm.AuditWarning, Actor: ri.Actor, IP: ri.IP,
		Details: map[string]string{"address": p.String()}}}, nil)
	return nil
}

// blockList is the live blocks compiled for lookups, as of a
// BlocksGeneration: host routes and IPv6 /64s (what the rules add) by map,
// other ranges in a list.
type blockList struct {
	gen    uint64
	exact  map[netip.Prefix]int64 // /32, /128 and /64 → until
	ranges []fsm.Block
	parsed []netip.Prefix // of ranges
}

func newBlockList(gen uint64, bs []fsm.Block) *blockList {
	l := &blockList{gen: gen, exact: map[netip.Prefix]int64{}}
	for _, b := range bs {
		p, err := netip.ParsePrefix(b.CIDR)
		if err != nil {
			continue // Apply stores canonical ranges only
		}
		if p.Bits() == p.Addr().BitLen() || p.Addr().Is6() && p.Bits() == 64 {
			l.exact[p] = max(l.exact[p], b.Until)
			continue
		}
		l.ranges = append(l.ranges, b)
		l.parsed = append(l.parsed, p)
	}
	return l
}

// until is the latest end of a block covering a, 0 if none.
func (l *blockList) until(a netip.Addr) int64 {
	var end int64
	host := netip.PrefixFrom(a, a.BitLen())
	end = l.exact[host]
	if a.Is6() {
		if p, err := a.Prefix(64); err == nil {
			end = max(end, l.exact[p])
		}
	}
	for i, p := range l.parsed {
		if p.Contains(a) {
			end = max(end, l.ranges[i].Until)
		}
	}
	return end
}

// blocks caches the compiled list between changes.
type blocks struct{ list atomic.Pointer[blockList] }

// Blocked reports whether a client at a is blocked, and for how long yet.
// It reads the local state only when a block was added or removed since
// it last did (BlocksGeneration): else it compares a generation (in a read
// transaction, unless the store tells it without one) and looks the
// address up in memory. An exempt address is never blocked.
func (s *Service) Blocked(a netip.Addr) (time.Duration, bool) {
	if !a.IsValid() {
		return 0, false
	}
	a = a.Unmap().WithZone("")
	l := s.blocks.list.Load()
	if g, ok := s.store.(blocksGenerationer); ok && l != nil && l.gen == g.BlocksGeneration() {
		return s.blockedBy(l, a)
	}
	err := s.store.View(func(r fsm.Reader) error {
		if l != nil && l.gen == r.BlocksGeneration() {
			return nil
		}
		bs, err := r.Blocks()
		if err != nil {
			return err
		}
		l = newBlockList(r.BlocksGeneration(), bs)
		s.blocks.list.Store(l)
		return nil
	})
	if err != nil || l == nil {
		// The state cannot be read: the request fails there anyway.
		return 0, false
	}
	return s.blockedBy(l, a)
}

// blocksGenerationer is a Store that tells its blocks generation without
// a read transaction (fsm.Store.BlocksGeneration, through node): Blocked
// then opens none while the blocks are unchanged.
type blocksGenerationer interface{ BlocksGeneration() uint64 }

func (s *Service) blockedBy(l *blockList, a netip.Addr) (time.Duration, bool) {
	if len(l.exact) == 0 && len(l.ranges) == 0 {
		return 0, false
	}
	left := time.Duration(l.until(a) - s.now().UnixNano())
	if left <= 0 || s.exemptAddr(a) {
		return 0, false
	}
	return left, true
}
