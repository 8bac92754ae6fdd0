package fsm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"time"
)

// Lockout commands of feature level 3 (see DESIGN.md, "Lockout from level
// 3"). They differ from v1 in three ways:
//
//   - Fail closed: a granted slot still pending PendingTTL after it was
//     granted is a failure, reported at that instant, and may lock the name
//     exactly as a reported failure would (with the same audit entry). v1
//     dropped such a slot, so a client that disconnected mid-check had its
//     guess for free.
//   - Bounded by address: the distinct names that failed from one client
//     address (IPv4, or IPv6 by /64) in a window are counted; once they
//     reach MaxNamesPerAddress, an attempt from that address for a name
//     with no live record is refused and writes nothing, so what
//     unauthenticated requests write is bounded per address and window.
//   - Indexed by expiry: every record written is indexed (bucketExpiry)
//     at the next instant it needs attention, so state.sweep v2 finds what
//     is due without reading what is not.
const (
	// TypeLoginRelease frees a granted slot whose password was provably
	// never checked (the node refused the hash as busy), without counting
	// a failure. Level 3.
	TypeLoginRelease Type = "login.release"
)

// MaxNamesPerAddressLimit is the highest MaxNamesPerAddress a command may
// carry; it bounds the size of an address's record.
const MaxNamesPerAddressLimit = 1000

// Bounds on the limits a level-3 lockout command carries: they keep every
// instant computed from them (a slot's deadline, a lock's end) far from
// overflow.
const (
	maxLockoutWindow = int64(366 * 24 * time.Hour)
	maxPendingTTL    = int64(24 * time.Hour)
)

// LockoutLimits are the limits a level-3 command carried when it last
// wrote a name's record. The record keeps them so that the sweep, which
// carries none, can resolve its expired slots and knows when it expires.
type LockoutLimits struct {
	MaxAttempts        int   `json:"max_attempts"`
	Window             int64 `json:"window"`
	PendingTTL         int64 `json:"pending_ttl"`
	MaxNamesPerAddress int   `json:"max_names_per_address,omitempty"`
}

func (lim LockoutLimits) valid() bool {
	return lim.MaxAttempts >= 1 && lim.MaxAttempts <= 1000 && lim.Window > 0 && lim.Window <= maxLockoutWindow &&
		lim.PendingTTL > 0 && lim.PendingTTL <= maxPendingTTL &&
		lim.MaxNamesPerAddress >= 0 && lim.MaxNamesPerAddress <= MaxNamesPerAddressLimit
}

// LoginAttemptV2 is the payload of login.attempt v2: v1's, with the cap on
// names per address. IP is the client's address; without a parsable one
// no address is counted.
type LoginAttemptV2 struct {
	Username    string `json:"username"`
	MaxAttempts int    `json:"max_attempts"`
	Window      int64  `json:"window"`      // nanoseconds: lockout_duration
	PendingTTL  int64  `json:"pending_ttl"` // nanoseconds a granted check may stay unresolved
	// MaxNamesPerAddress: max_failed_names_per_address; 0 turns the cap off.
	MaxNamesPerAddress int    `json:"max_names_per_address"`
	IP                 string `json:"ip,omitempty"`
	UserAgent          string `json:"user_agent,omitempty"`
}

// LoginFailureV2 is the payload of login.failure v2: v1's, with the limits
// the attempt carried (a failure resolves the name's expired slots too,
// and counts against the client's address).
type LoginFailureV2 struct {
	Username           string `json:"username"`
	Slot               int64  `json:"slot"`
	MaxAttempts        int    `json:"max_attempts"`
	Window             int64  `json:"window"`
	PendingTTL         int64  `json:"pending_ttl"`
	MaxNamesPerAddress int    `json:"max_names_per_address"`
	// For the lockout's audit entry, should this failure lock the name.
	Subject   string `json:"subject,omitempty"`
	IP        string `json:"ip,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`
}

// LoginRelease is the payload of login.release v1: Slot, granted to
// Username, was never used to check a password. A slot already past its
// PendingTTL has counted as a failure and stays one; an unknown slot
// changes nothing.
type LoginRelease struct {
	Username string `json:"username"`
	Slot     int64  `json:"slot"`
}

var lockoutCommands = []CommandSpec{
	{Type: TypeLoginAttempt, Version: 2, Level: 3, Apply: applyLoginAttemptV2, Result: reflect.TypeFor[AttemptResult]()},
	{Type: TypeLoginFailure, Version: 2, Level: 3, Apply: applyLoginFailureV2, Result: reflect.TypeFor[FailureResult]()},
	{Type: TypeLoginRelease, Version: 1, Level: 3, Apply: applyLoginRelease, Result: nil},
}

func validLockoutName(name string) bool { return name != "" && len(name) <= 1024 }

func validIP(ip string) bool { return len(ip) <= MaxAuditIP }

func applyLoginAttemptV2(t txn, c Command) (any, error) {
	var p LoginAttemptV2
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	return loginAttemptV2(t, c, p)
}

func loginAttemptV2(t txn, c Command, p LoginAttemptV2) (any, error) {
	lim := LockoutLimits{MaxAttempts: p.MaxAttempts, Window: p.Window, PendingTTL: p.PendingTTL, MaxNamesPerAddress: p.MaxNamesPerAddress}
	if !validLockoutName(p.Username) || !lim.valid() || !validIP(p.IP) {
		return nil, fmt.Errorf("%w: login.attempt v2 needs username, max_attempts, window, pending_ttl and max_names_per_address in range", ErrInvalidCommand)
	}
	now := c.Time
	op := newLockoutOp(t, now)
	l, err := op.lockout(p.Username, lim)
	if err != nil {
		return nil, err
	}
	if l.LockedUntil > now {
		return AttemptResult{Locked: true, RetryAfter: time.Duration(l.LockedUntil - now)}, nil
	}
	l.roll(now)
	addr := ""
	if lim.MaxNamesPerAddress > 0 {
		addr = addressKey(p.IP)
	}
	var a *addressRecord
	if addr != "" && !l.live(now) {
		// A name with nothing live: granting writes a record that would
		// not otherwise exist, so the address must have room for it.
		if a, err = op.address(addr, lim); err != nil {
			return nil, err
		}
		if !a.room(op, p.Username) {
			return AttemptResult{Locked: true, RetryAfter: a.retryAfter(t, now)}, nil
		}
	}
	if l.Failures+len(l.Pending) >= lim.MaxAttempts {
		if len(l.Pending) == 0 {
			// Failures counted under a higher maximum than this one:
			// the name is over this maximum until its window ends.
			return AttemptResult{Locked: true, RetryAfter: time.Duration(l.WindowStart + lim.Window - now)}, nil
		}
		// Every slot is held by a check in flight: one frees when it
		// resolves, or at the latest when the oldest expires.
		return AttemptResult{RetryAfter: time.Duration(l.Pending[0] + lim.PendingTTL - now)}, nil
	}
	l.Pending = append(l.Pending, now)
	op.changed = true
	if addr != "" {
		if l.PendingFrom == nil {
			l.PendingFrom = map[int64]string{}
		}
		l.PendingFrom[now] = p.IP
	}
	if a != nil {
		a.hold(now, p.Username)
		op.dirty[addr] = true
	}
	if err := op.commit(); err != nil {
		return nil, err
	}
	return AttemptResult{Granted: true, Slot: now}, nil
}

func applyLoginFailureV2(t txn, c Command) (any, error) {
	var p LoginFailureV2
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	return loginFailure(t, c, p, 2, DetectLimits{})
}

// loginFailure applies login.failure v2, or v3 with its detection rules
// (blocks.go): v2 is v3 with every rule off.
func loginFailure(t txn, c Command, p LoginFailureV2, version int, detect DetectLimits) (any, error) {
	return loginFailureAdmit(t, c, p, version, detect, nil)
}

// loginFailureAdmit is loginFailure with admit deciding which of the
// handler's audit entries are appended (nil: all; login.failure v4).
func loginFailureAdmit(t txn, c Command, p LoginFailureV2, version int, detect DetectLimits, admit func(AuditAppend) (bool, error)) (any, error) {
	lim := LockoutLimits{MaxAttempts: p.MaxAttempts, Window: p.Window, PendingTTL: p.PendingTTL, MaxNamesPerAddress: p.MaxNamesPerAddress}
	if !validLockoutName(p.Username) || !lim.valid() || !validIP(p.IP) {
		return nil, fmt.Errorf("%w: login.failure v%d needs username, max_attempts, window, pending_ttl and max_names_per_address in range", ErrInvalidCommand, version)
	}
	now := c.Time
	op := newLockoutOp(t, now)
	op.admit = admit
	l, err := op.lockout(p.Username, lim)
	if err != nil {
		return nil, err
	}
	ip := p.IP
	if i := slices.Index(l.Pending, p.Slot); i >= 0 {
		l.Pending = slices.Delete(l.Pending, i, i+1)
		if from, ok := l.PendingFrom[p.Slot]; ok {
			ip = from
			delete(l.PendingFrom, p.Slot)
		}
	} else if p.Slot+lim.PendingTTL <= now {
		// The slot's time ran out before its failure arrived: it has
		// counted already, as a failure at its deadline (by lockout
		// above, or by an earlier command). Not twice.
		return FailureResult{Locked: len(op.audit) > 0}, op.commit()
	}
	// Otherwise a live slot, or one whose record was cleared since (an
	// unlock): a password was checked and failed, so it counts.
	op.changed = true
	if l.fail(now) {
		op.audit = append(op.audit, lockoutAudit(p.Username, l.LockedUntil, p.Subject, p.IP, p.UserAgent))
	}
	if lim.MaxNamesPerAddress > 0 {
		if err := op.addressFailure(addressKey(ip), p.Username, p.Slot, now, lim); err != nil {
			return nil, err
		}
	}
	locked := len(op.audit) > 0
	blocked, err := op.detect(ip, p.Username, detect)
	if err != nil {
		return nil, err
	}
	if err := op.commit(); err != nil {
		return nil, err
	}
	return FailureResult{Locked: locked, Blocked: blocked}, nil
}

func applyLoginRelease(t txn, c Command) (any, error) {
	var p LoginRelease
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if !validLockoutName(p.Username) || p.Slot <= 0 {
		return nil, fmt.Errorf("%w: login.release needs username and slot", ErrInvalidCommand)
	}
	now := c.Time
	op := newLockoutOp(t, now)
	l, err := op.lockout(p.Username, LockoutLimits{})
	if err != nil {
		return nil, err
	}
	i := slices.Index(l.Pending, p.Slot)
	if i < 0 {
		// Unknown, already resolved, or expired and counted.
		return nil, op.commit()
	}
	l.Pending = slices.Delete(l.Pending, i, i+1)
	if from, ok := l.PendingFrom[p.Slot]; ok {
		delete(l.PendingFrom, p.Slot)
		if addr := addressKey(from); addr != "" && l.Limits != nil && l.Limits.MaxNamesPerAddress > 0 {
			if err := op.release(addr, p.Username, p.Slot, *l.Limits); err != nil {
				return nil, err
			}
		}
	}
	op.changed = true
	return nil, op.commit()
}

// lockoutAudit is the audit entry of a name locked until until.
func lockoutAudit(name string, until int64, subject, ip, userAgent string) AuditAppend {
	return AuditAppend{Type: "lockout", Severity: AuditWarning, Subject: CleanAuditText(subject, MaxAuditSubject),
		IP: asciiIP(ip), UserAgent: CleanAuditText(userAgent, MaxAuditUserAgent),
		Details: map[string]string{"username": CleanAuditText(name, MaxAuditDetailValue),
			"until": time.Unix(0, until).UTC().Format(time.RFC3339)}}
}

// fail counts a failure at at, locking the name when the window's
// failures reach the maximum; it reports whether it locked. It is v1's
// login.failure, as of at.
func (l *Lockout) fail(at int64) bool {
	lim := l.Limits
	if l.LockedUntil != 0 && l.LockedUntil <= at {
		l.LockedUntil, l.Failures, l.WindowStart = 0, 0, at
	}
	if at-l.WindowStart >= lim.Window {
		l.Failures, l.WindowStart = 0, at
	}
	l.Failures++
	if l.Failures >= lim.MaxAttempts && l.LockedUntil <= at {
		l.LockedUntil = at + lim.Window
		return true
	}
	return false
}

// roll ends a lock or a window that is over as of now (v1's refresh
// without dropping pending slots: those are resolved, never dropped).
func (l *Lockout) roll(now int64) {
	if (l.LockedUntil != 0 && l.LockedUntil <= now) || now-l.WindowStart >= l.Limits.Window {
		l.Failures, l.LockedUntil, l.WindowStart = 0, 0, now
	}
}

// live reports whether the record still holds anything that counts at
// now: a failure of the current window, a check in flight, or a lock.
// Call it after roll.
func (l *Lockout) live(now int64) bool {
	return l.Failures > 0 || len(l.Pending) > 0 || l.LockedUntil > now
}

// next is the instant the record next needs the sweep: when its oldest
// pending slot expires (and becomes a failure), or, with none pending,
// when it stops mattering: its lock and its window are over. A record
// whose next is not after now can be deleted.
func (l *Lockout) next() int64 {
	if l.Limits == nil {
		return l.legacyExpiry()
	}
	if len(l.Pending) > 0 {
		return slices.Min(l.Pending) + l.Limits.PendingTTL
	}
	end := l.LockedUntil
	if l.Failures > 0 {
		end = max(end, l.WindowStart+l.Limits.Window)
	}
	return end
}

// legacyExpiry is when state.sweep v1 would delete a record written
// without limits (before level 3): a day after its window start and its
// newest pending slot, and not before its lock ends.
func (l *Lockout) legacyExpiry() int64 {
	day := int64(24 * time.Hour)
	end := max(l.LockedUntil, l.WindowStart+day+1)
	if len(l.Pending) > 0 {
		end = max(end, slices.Max(l.Pending)+day+1)
	}
	return end
}

// resolved is a pending slot that ran out: a failure at its deadline.
type resolved struct {
	slot, at int64
	ip       string
	locked   bool
}

// settle turns every pending slot whose PendingTTL has run out by now
// into a failure at its deadline, oldest first, as if each had been
// reported at the last instant it could be. Records without limits
// (written before level 3) are left as they are.
func (l *Lockout) settle(now int64) []resolved {
	if l.Limits == nil {
		return nil
	}
	slices.Sort(l.Pending)
	var out []resolved
	for len(l.Pending) > 0 && l.Pending[0]+l.Limits.PendingTTL <= now {
		slot := l.Pending[0]
		l.Pending = l.Pending[1:]
		ip := l.PendingFrom[slot]
		delete(l.PendingFrom, slot)
		at := slot + l.Limits.PendingTTL
		out = append(out, resolved{slot: slot, at: at, ip: ip, locked: l.fail(at)})
	}
	if len(l.Pending) == 0 {
		l.Pending = nil
	}
	// A v1 command may have resolved a slot without knowing this map.
	for slot := range l.PendingFrom {
		if !slices.Contains(l.Pending, slot) {
			delete(l.PendingFrom, slot)
		}
	}
	if len(l.PendingFrom) == 0 {
		l.PendingFrom = nil
	}
	return out
}

// addressKey is what names are counted by: an IPv4 address, or the /64
// of an IPv6 one (one host commonly holds a whole /64). "" for an address
// that does not parse: nothing is counted for it.
func addressKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ""
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	p, err := a.Prefix(64)
	if err != nil {
		return ""
	}
	return p.String()
}

// addressRecord counts, for one client address in one window, the
// distinct names that failed from it (Failed), and the slots granted to
// it for names that had no live record (Held): each of those wrote a
// record that would not otherwise exist, and may still fail. The record
// itself is small and fixed in size; the names and slots are members,
// keys of their own beside it in bucketAddresses, so counting one more
// costs a key, not a rewrite of every name counted so far:
//
//	addr                          → the record (JSON)
//	addr 0x00 'f' tag             → nil: tag = SHA-256(name)[:8] failed this window
//	addr 0x00 'h' slot(8) name    → nil: a held slot
//
// (An address's text never holds 0x00.)
type addressRecord struct {
	WindowStart int64 `json:"window_start"`
	Window      int64 `json:"window"`
	PendingTTL  int64 `json:"pending_ttl"`
	Max         int   `json:"max"` // the cap the last command that wrote it carried
	Failed      int   `json:"failed"`
	Held        int   `json:"held"`
	// LastHeld is the newest slot ever held (members may be gone).
	LastHeld int64 `json:"last_held,omitempty"`

	key    string
	rolled bool            // stored 'f' members are of an older window
	put    map[string]bool // members to write
	del    map[string]bool // members to delete
}

func nameTag(name string) string {
	h := sha256.Sum256([]byte(name))
	return string(h[:8])
}

func (a *addressRecord) member(kind byte, rest string) string {
	return a.key + "\x00" + string(kind) + rest
}

func (a *addressRecord) heldKey(slot int64, name string) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(slot))
	return a.member('h', string(b[:])+name)
}

// has reports whether a member exists as of this command.
func (a *addressRecord) has(t txn, key string) bool {
	switch {
	case a.put[key]:
		return true
	case a.del[key], a.rolled && key[len(a.key)+1] == 'f':
		return false
	}
	return t.tx.Bucket(bucketAddresses).Get([]byte(key)) != nil
}

func (a *addressRecord) add(key string) {
	delete(a.del, key)
	a.put[key] = true
}

func (a *addressRecord) remove(key string) {
	delete(a.put, key)
	a.del[key] = true
}

// roll starts a new window at at if the current one is over: the names
// failed in it no longer count. Held slots stay: their checks are still
// to resolve.
func (a *addressRecord) roll(at int64) {
	if at-a.WindowStart < a.Window {
		return
	}
	a.Failed, a.WindowStart, a.rolled = 0, at, true
	for k := range a.put {
		if k[len(a.key)+1] == 'f' {
			delete(a.put, k)
		}
	}
}

// fail counts name as failed from the address, once per window, up to
// the cap.
func (a *addressRecord) fail(t txn, name string) {
	if k := a.member('f', nameTag(name)); !a.has(t, k) && a.Failed < a.Max {
		a.add(k)
		a.Failed++
	}
}

func (a *addressRecord) hold(slot int64, name string) {
	a.add(a.heldKey(slot, name))
	a.Held++
	a.LastHeld = max(a.LastHeld, slot)
}

func (a *addressRecord) unhold(t txn, slot int64, name string) {
	if k := a.heldKey(slot, name); a.has(t, k) {
		a.remove(k)
		a.Held--
	}
}

// held calls fn with the n oldest held slots as of this command.
func (a *addressRecord) held(t txn, n int, fn func(slot int64, name string)) {
	prefix := a.member('h', "")
	var keys []string
	c := t.tx.Bucket(bucketAddresses).Cursor()
	for k, _ := c.Seek([]byte(prefix)); k != nil && bytes.HasPrefix(k, []byte(prefix)) && len(keys) < n; k, _ = c.Next() {
		if !a.del[string(k)] && !a.put[string(k)] {
			keys = append(keys, string(k))
		}
	}
	for k := range a.put {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys[:min(n, len(keys))] {
		rest := k[len(prefix):]
		fn(int64(binary.BigEndian.Uint64([]byte(rest[:8]))), rest[8:])
	}
}

// maxHeldChecks bounds the records one attempt at an address's cap reads
// to find held slots resolved otherwise than by a failure: the oldest are
// the likeliest. Past them, the attempt is refused (fail closed).
const maxHeldChecks = 32

// room reports whether the address may hold one more name. At the cap it
// first drops held slots that resolved otherwise than by a failure (a
// successful login deleted the name's record; a release freed it): the
// name's record no longer holds the slot. A held slot that ran out
// unresolved still holds it, and counts, as the failure it is. A refusal
// changes nothing.
func (a *addressRecord) room(op *lockoutOp, current string) bool {
	switch {
	case a.Failed+a.Held < a.Max:
		return true
	case a.Failed >= a.Max:
		return false
	}
	type slot struct {
		at   int64
		name string
	}
	var stale []slot
	a.held(op.t, maxHeldChecks, func(at int64, name string) {
		var pending []int64
		if name == current {
			pending = op.current.Pending
		} else if v := op.t.tx.Bucket(bucketLockout).Get([]byte(name)); v != nil {
			var l Lockout
			if json.Unmarshal(v, &l) == nil {
				pending = l.Pending
			}
		}
		if !slices.Contains(pending, at) {
			stale = append(stale, slot{at, name})
		}
	})
	if a.Failed+a.Held-len(stale) >= a.Max {
		return false
	}
	for _, s := range stale {
		a.unhold(op.t, s.at, s.name)
	}
	return true
}

// retryAfter is how long an address at its cap waits: until its window
// ends, or, if checks in flight keep it there, until the oldest resolves.
func (a *addressRecord) retryAfter(t txn, now int64) time.Duration {
	end := a.WindowStart + a.Window
	if a.Failed < a.Max && a.Held > 0 {
		a.held(t, 1, func(slot int64, _ string) { end = slot + a.PendingTTL })
	}
	return time.Duration(max(end-now, int64(time.Second)))
}

// expiry is when the record stops mattering: its window is over, and so
// is the window of any held slot's failure, should it run out unresolved
// (by then the sweep has settled it: a name's entry comes at its slot's
// deadline).
func (a *addressRecord) expiry() int64 {
	var end int64
	if a.Failed > 0 {
		end = a.WindowStart + a.Window
	}
	if a.Held > 0 {
		end = max(end, a.LastHeld+a.PendingTTL+a.Window)
	}
	return end
}

// lockoutOp gathers what one lockout command changes, so that nothing is
// written unless the command decides to (a refused attempt writes
// nothing), and every change is written once, indexed, at the end.
type lockoutOp struct {
	t       txn
	now     int64
	name    string
	current *Lockout // the command's name's record
	found   bool     // it was stored
	changed bool     // current needs writing (beyond a grant or failure)
	*addressSet
	audit []AuditAppend
	// admit, when set, decides which of audit are appended (login.failure
	// v4 caps an unknown name's entries per address, auditcap.go).
	admit func(AuditAppend) (bool, error)
	// shared: the address records belong to a caller that writes them
	// (the sweep, once for all the names it settles).
	shared bool
}

// addressSet holds the address records a command has read, and which of
// them it changed.
type addressSet struct {
	addrs map[string]*addressRecord
	dirty map[string]bool
}

func newAddressSet() *addressSet {
	return &addressSet{addrs: map[string]*addressRecord{}, dirty: map[string]bool{}}
}

func newLockoutOp(t txn, now int64) *lockoutOp {
	return &lockoutOp{t: t, now: now, addressSet: newAddressSet()}
}

// lockout loads name's record, adopts lim (unless zero: the record keeps
// its own), and settles its expired slots: each is a failure, counted
// against the address it came from, and a lock among them is audited.
func (op *lockoutOp) lockout(name string, lim LockoutLimits) (*Lockout, error) {
	l := &Lockout{}
	v := op.t.tx.Bucket(bucketLockout).Get([]byte(name))
	if v != nil {
		if err := json.Unmarshal(v, l); err != nil {
			return nil, err
		}
	}
	op.name, op.current, op.found = name, l, v != nil
	if lim.MaxAttempts != 0 {
		l.Limits = &lim
	}
	return l, op.settle(name, l)
}

func (op *lockoutOp) settle(name string, l *Lockout) error {
	for _, r := range l.settle(op.now) {
		op.changed = true
		if r.locked {
			op.audit = append(op.audit, lockoutAudit(name, l.LockedUntil, op.subject(name), r.ip, ""))
		}
		if l.Limits.MaxNamesPerAddress > 0 {
			if err := op.addressFailure(addressKey(r.ip), name, r.slot, r.at, *l.Limits); err != nil {
				return err
			}
		}
	}
	return nil
}

// subject is the audit subject of a lockout of name: its user's id, as
// login.failure's proposer gives it, or "" for an unknown name.
func (op *lockoutOp) subject(name string) string {
	return string(op.t.tx.Bucket(bucketUsernames).Get([]byte(name)))
}

// address returns the record of addr (a new one if none), with lim's
// window and cap, rolled to now.
func (op *lockoutOp) address(addr string, lim LockoutLimits) (*addressRecord, error) {
	a, _, err := op.load(op.t, addr, op.now)
	if err != nil {
		return nil, err
	}
	a.Window, a.PendingTTL, a.Max = lim.Window, lim.PendingTTL, lim.MaxNamesPerAddress
	a.roll(op.now)
	return a, nil
}

// load returns addr's record as the set holds it, reading it the first
// time; found is false for a new one (a window starting at now).
func (as *addressSet) load(t txn, addr string, now int64) (a *addressRecord, found bool, err error) {
	if a := as.addrs[addr]; a != nil {
		return a, true, nil
	}
	a = &addressRecord{WindowStart: now}
	v := t.tx.Bucket(bucketAddresses).Get([]byte(addr))
	if v != nil {
		if err := json.Unmarshal(v, a); err != nil {
			return nil, false, err
		}
	}
	a.key, a.put, a.del = addr, map[string]bool{}, map[string]bool{}
	as.addrs[addr] = a
	return a, v != nil, nil
}

// write stores every changed address record and its members, indexed at
// its expiry, or deletes it with its members if it no longer matters at
// now; it returns how many it deleted.
func (as *addressSet) write(t txn, now int64) (int, error) {
	deleted := 0
	b := t.tx.Bucket(bucketAddresses)
	for _, addr := range sortedKeys(as.dirty) {
		a := as.addrs[addr]
		gone := a.expiry() <= now
		var drop [][]byte // members to delete
		if gone || a.rolled {
			prefix := []byte(a.member('f', ""))
			if gone {
				prefix = prefix[:len(prefix)-1] // every member
			}
			c := b.Cursor()
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				drop = append(drop, bytes.Clone(k))
			}
		}
		if gone {
			deleted++
			drop = append(drop, []byte(addr))
		} else {
			for _, k := range sortedKeys(a.del) {
				drop = append(drop, []byte(k))
			}
		}
		for _, k := range drop {
			if err := b.Delete(k); err != nil {
				return deleted, err
			}
		}
		if !gone {
			for _, k := range sortedKeys(a.put) {
				if err := b.Put([]byte(k), nil); err != nil {
					return deleted, err
				}
			}
			if err := t.putJSON(bucketAddresses, addr, a); err != nil {
				return deleted, err
			}
			if err := t.index(a.expiry(), expiryAddress, addr); err != nil {
				return deleted, err
			}
		}
		// Written: what the set holds is now what is stored.
		if gone {
			delete(as.addrs, addr)
		}
		a.rolled = false
		clear(a.put)
		clear(a.del)
	}
	clear(as.dirty)
	return deleted, nil
}

// addressFailure counts name as failed from addr at at, and drops the
// held slot it came from.
func (op *lockoutOp) addressFailure(addr, name string, slot, at int64, lim LockoutLimits) error {
	if addr == "" {
		return nil
	}
	a, err := op.address(addr, lim)
	if err != nil {
		return err
	}
	a.unhold(op.t, slot, name)
	op.dirty[addr] = true
	if at+a.Window <= op.now {
		return nil // resolved so late that no window it could count in is left
	}
	a.fail(op.t, name)
	return nil
}

// release drops a held slot of addr.
func (op *lockoutOp) release(addr, name string, slot int64, lim LockoutLimits) error {
	a, err := op.address(addr, lim)
	if err != nil {
		return err
	}
	a.unhold(op.t, slot, name)
	op.dirty[addr] = true
	return nil
}

// commit validates the audit entries, then writes the name's record and
// every address record changed, each indexed at its next instant (or
// deleted if it no longer matters), then appends the audit entries.
func (op *lockoutOp) commit() error {
	for _, ev := range op.audit {
		if err := ev.Validate(); err != nil {
			return err
		}
	}
	if op.changed {
		l := op.current
		var err error
		if l.Limits != nil && l.next() <= op.now {
			err = op.t.tx.Bucket(bucketLockout).Delete([]byte(op.name))
		} else {
			err = op.t.putLockout(op.name, l, true)
		}
		if err != nil {
			return err
		}
	}
	if !op.shared {
		if _, err := op.write(op.t, op.now); err != nil {
			return err
		}
	}
	for _, ev := range op.audit {
		if op.admit != nil {
			ok, err := op.admit(ev)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
		}
		if _, err := appendAudit(op.t, op.now, ev); err != nil {
			return err
		}
	}
	return nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// putLockout writes name's record; indexed (from level 3), it also
// enters it in the expiry index at its next instant. An entry left at an
// earlier instant dangles; the sweep drops it.
func (t txn) putLockout(name string, l *Lockout, indexed bool) error {
	if err := t.putJSON(bucketLockout, name, l); err != nil {
		return err
	}
	if !indexed {
		return nil
	}
	return t.index(l.next(), expiryLockout, name)
}
