package fsm

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

// The audit trail is an append-only, hash-chained list of security events
// in bucketAudit, keyed by the big-endian uint64 seq (1, 2, 3, …). Each
// entry's Hash covers its own fields and the previous entry's hash, so
// changing, inserting or deleting any entry but the newest breaks the chain
// at that seq. Entries are appended by the audit.append command, or by
// another command's handler in the same transaction as the state change
// it records (see appendAudit). Like every write, an append is decided by
// the proposer: Apply adds only the seq and the hashes, both functions of
// the state.

// TypeAuditAppend appends one entry to the audit trail. Version 1 carries
// an AuditAppend; its result is the stored *AuditEntry.
const TypeAuditAppend Type = "audit.append"

// Severities of an audit entry.
const (
	AuditInfo     = "info"
	AuditWarning  = "warning"
	AuditCritical = "critical"
)

// Limits of an audit entry, in bytes. Apply refuses, never truncates: a
// proposer holding a longer or untrusted value (a user agent, say) passes
// it through CleanAuditText before proposing.
const (
	MaxAuditType        = 64   // event type: 1..64 of [a-z0-9._]
	MaxAuditActor       = 256  // who acted: user id, "admin:<id>", "system"…
	MaxAuditSubject     = 256  // whom or what it concerned
	MaxAuditIP          = 64   // client address, printable ASCII
	MaxAuditUserAgent   = 512  // client's User-Agent
	MaxAuditDetails     = 32   // entries in Details
	MaxAuditDetailKey   = 64   // key: 1..64 of [a-z0-9._-]
	MaxAuditDetailValue = 1024 // value
)

// AuditGenesisHash is the PrevHash of entry 1: 64 zeros.
const AuditGenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// AuditChainError locates the first break in an audit chain. It unwraps to
// ErrAuditChainBroken.
type AuditChainError struct {
	Seq uint64 `json:"seq"` // the first seq found bad (or missing)
	// From, when not 0, says the bad entry is one of From..Seq, and the
	// trail cannot tell which: a signed checkpoint at Seq disagrees with
	// a chain that was recomputed after the change.
	From   uint64 `json:"from,omitempty"`
	Reason string `json:"reason"`
}

func (e *AuditChainError) Error() string {
	if e.From != 0 && e.From < e.Seq {
		return fmt.Sprintf("%v at seq %d (the altered entry is one of seq %d..%d): %s", ErrAuditChainBroken, e.Seq, e.From, e.Seq, e.Reason)
	}
	return fmt.Sprintf("%v at seq %d: %s", ErrAuditChainBroken, e.Seq, e.Reason)
}

func (e *AuditChainError) Unwrap() error { return ErrAuditChainBroken }

// AuditAppend is the payload of audit.append v1, and what other handlers
// pass to appendAudit. Empty Actor, Subject, IP and UserAgent are allowed
// (a system event has no client).
type AuditAppend struct {
	// Type names the event: "login.success", "login.failure", "lockout",
	// "unlock", "logout", "refresh.reuse", "password.change",
	// "session.revoke", "user.create", "user.disable", … 1..64 of [a-z0-9._].
	Type      string            `json:"type"`
	Severity  string            `json:"severity"` // AuditInfo, AuditWarning or AuditCritical
	Actor     string            `json:"actor,omitempty"`
	Subject   string            `json:"subject,omitempty"`
	IP        string            `json:"ip,omitempty"`
	UserAgent string            `json:"user_agent,omitempty"`
	Details   map[string]string `json:"details,omitempty"`
}

// AuditEntry is one stored entry of the audit trail, as the admin API and
// `bulwark audit` show it.
type AuditEntry struct {
	Seq       uint64            `json:"seq"`
	Time      time.Time         `json:"time"` // the command's time, UTC
	Type      string            `json:"type"`
	Severity  string            `json:"severity"`
	Actor     string            `json:"actor"`
	Subject   string            `json:"subject"`
	IP        string            `json:"ip"`
	UserAgent string            `json:"user_agent"`
	Details   map[string]string `json:"details,omitempty"`
	PrevHash  string            `json:"prev_hash"`
	Hash      string            `json:"hash"`
	// Erased, when set, lists the seqs of the user.erase entries that
	// replaced a name or email in this entry with a pseudonym (erase.go).
	// Hash is then the original entry's, kept so the chain and the signed
	// checkpoints still hold; it is not recomputed from the fields. Not
	// part of the hash's encoding.
	Erased []uint64 `json:"erased,omitempty"`
}

// auditCommands are the audit commands' rows of the dispatch table.
var auditCommands = []CommandSpec{
	{Type: TypeAuditAppend, Version: 1, Level: 1, Apply: applyAuditAppend, Result: reflect.TypeFor[*AuditEntry]()},
}

func applyAuditAppend(t txn, c Command) (any, error) {
	var p AuditAppend
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	e, err := appendAudit(t, c.Time, p)
	if err != nil {
		return nil, err // an untyped nil: Result.Value stays nil
	}
	return e, nil
}

// Validate checks e against the rules Apply enforces, so a proposer can
// refuse bad input before it reaches the log, and a handler can check an
// entry it will append before its own first write. Errors wrap
// ErrInvalidCommand.
//
// Text fields must be valid UTF-8 without control characters (Unicode
// category Cc, a fixed set, so every binary agrees), which keeps terminal
// escapes and forged line breaks out of the trail.
func (e *AuditAppend) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: audit: "+format, append([]any{ErrInvalidCommand}, args...)...)
	}
	if !validAuditName(e.Type, MaxAuditType, false) {
		return bad("type must be 1..%d of [a-z0-9._]", MaxAuditType)
	}
	switch e.Severity {
	case AuditInfo, AuditWarning, AuditCritical:
	default:
		return bad("severity must be info, warning or critical")
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{
		{"actor", e.Actor, MaxAuditActor},
		{"subject", e.Subject, MaxAuditSubject},
		{"user_agent", e.UserAgent, MaxAuditUserAgent},
	} {
		if len(f.v) > f.max {
			return bad("%s is %d bytes, over %d", f.name, len(f.v), f.max)
		}
		if !validAuditText(f.v) {
			return bad("%s is not UTF-8 text without control characters", f.name)
		}
	}
	if len(e.IP) > MaxAuditIP {
		return bad("ip is %d bytes, over %d", len(e.IP), MaxAuditIP)
	}
	for i := 0; i < len(e.IP); i++ {
		if e.IP[i] < 0x21 || e.IP[i] > 0x7e {
			return bad("ip must be printable ASCII")
		}
	}
	if len(e.Details) > MaxAuditDetails {
		return bad("%d details, over %d", len(e.Details), MaxAuditDetails)
	}
	for _, k := range auditSortedKeys(e.Details) { // the same first error on every node
		v := e.Details[k]
		if !validAuditName(k, MaxAuditDetailKey, true) {
			return bad("detail key %q must be 1..%d of [a-z0-9._-]", k, MaxAuditDetailKey)
		}
		if len(v) > MaxAuditDetailValue {
			return bad("detail %q is %d bytes, over %d", k, len(v), MaxAuditDetailValue)
		}
		if !validAuditText(v) {
			return bad("detail %q is not UTF-8 text without control characters", k)
		}
	}
	return nil
}

// validAuditName accepts 1..max bytes of [a-z0-9._], and '-' when dash is set.
func validAuditName(s string, max int, dash bool) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || dash && c == '-') {
			return false
		}
	}
	return true
}

func validAuditText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// CleanAuditText makes s fit a free-text audit field of at most max bytes
// (Actor, Subject, UserAgent, a detail value): invalid UTF-8 and control
// characters become U+FFFD, and the result is cut to max bytes on a rune
// boundary. Proposers and handlers pass client-supplied text (a User-Agent)
// through it, so an attacker cannot make an audit append fail. It is
// deterministic and may be used inside Apply.
func CleanAuditText(s string, max int) string {
	if len(s) <= max && validAuditText(s) {
		return s
	}
	var b strings.Builder
	for _, r := range s { // invalid UTF-8 arrives as utf8.RuneError
		if unicode.IsControl(r) {
			r = utf8.RuneError
		}
		if b.Len()+utf8.RuneLen(r) > max {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// appendAudit appends e to the audit trail inside t, stamped with at (the
// command's time, Unix nanoseconds), and returns the stored entry.
//
// Other commands' handlers call it to record a security event in the same
// transaction as the state change it describes (a lockout, a session
// revocation), so the change and its record commit together or not at all:
//
//	ev := AuditAppend{Type: "lockout", Severity: AuditWarning, Subject: id, …}
//	if err := ev.Validate(); err != nil { // before the handler's first write
//		return nil, err
//	}
//	… the handler's own writes …
//	if _, err := appendAudit(t, c.Time, ev); err != nil {
//		return nil, err
//	}
//
// Validate first: a batch shares one bbolt transaction, so a handler that
// fails after writing leaves its writes in place. appendAudit validates
// again and writes nothing when it fails; once e is valid it fails only if
// the stored newest entry is unreadable or the write itself fails.
func appendAudit(t txn, at int64, e AuditAppend) (*AuditEntry, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	b := t.tx.Bucket(bucketAudit)
	seq, prev := uint64(1), AuditGenesisHash
	if last, err := lastAudit(b); err != nil {
		return nil, err
	} else if last != nil {
		if last.Seq == math.MaxUint64 {
			return nil, fmt.Errorf("fsm: audit seq exhausted")
		}
		seq, prev = last.Seq+1, last.Hash
	}
	entry := &AuditEntry{
		Seq: seq, Time: time.Unix(0, at).UTC(),
		Type: e.Type, Severity: e.Severity, Actor: e.Actor, Subject: e.Subject,
		IP: e.IP, UserAgent: e.UserAgent, PrevHash: prev,
	}
	if len(e.Details) > 0 {
		entry.Details = make(map[string]string, len(e.Details))
		for k, v := range e.Details {
			entry.Details[k] = v
		}
	}
	entry.Hash = entry.ComputeHash()
	v, err := json.Marshal(entry) // map keys sorted: same bytes on every node
	if err != nil {
		return nil, err
	}
	if err := b.Put(auditKey(seq), v); err != nil {
		return nil, err
	}
	return entry, nil
}

func auditKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func lastAudit(b *bolt.Bucket) (*AuditEntry, error) {
	k, v := b.Cursor().Last()
	if k == nil {
		return nil, nil
	}
	return decodeAudit(k, v)
}

func decodeAudit(k, v []byte) (*AuditEntry, error) {
	var e AuditEntry
	if len(k) != 8 {
		return nil, fmt.Errorf("fsm: audit key %x is not a seq", k)
	}
	if err := json.Unmarshal(v, &e); err != nil {
		return nil, fmt.Errorf("fsm: stored audit entry %d: %w", binary.BigEndian.Uint64(k), err)
	}
	return &e, nil
}

// ComputeHash returns the lowercase hex SHA-256 of the entry's canonical
// encoding; Hash itself is not part of it. The encoding, for anyone
// verifying an export without this code:
//
//	u64(n)  = n as 8 bytes, big endian
//	str(s)  = u64(len(s) in bytes) || the bytes of s, as stored (UTF-8)
//
//	str("bulwark.audit.v1")
//	u64(seq)
//	u64(time as Unix nanoseconds, two's complement)
//	str(type) str(severity) str(actor) str(subject) str(ip) str(user_agent)
//	u64(number of details)
//	  then for each detail in ascending bytewise order of key: str(key) str(value)
//	str(prev_hash)   (the previous entry's hash as 64 hex characters;
//	                  AuditGenesisHash for seq 1)
//
// Every variable-length field carries its length, and the count precedes
// the details, so two different entries never share an encoding. An absent
// field and an empty one encode alike (str("")), as do no details and an
// empty map.
//
// An entry with "erased" set was pseudonymised by user.erase after it was
// written: its hash is the original's and does not match its fields; the
// user.erase entries it names vouch for it instead (erase.go).
func (e *AuditEntry) ComputeHash() string {
	sum := sha256.Sum256(auditPreimage(e))
	return hex.EncodeToString(sum[:])
}

const auditHashDomain = "bulwark.audit.v1"

func auditPreimage(e *AuditEntry) []byte {
	n := 8*12 + len(auditHashDomain) + len(e.Type) + len(e.Severity) + len(e.Actor) +
		len(e.Subject) + len(e.IP) + len(e.UserAgent) + len(e.PrevHash)
	for k, v := range e.Details {
		n += 16 + len(k) + len(v)
	}
	b := make([]byte, 0, n)
	str := func(s string) {
		b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
		b = append(b, s...)
	}
	str(auditHashDomain)
	b = binary.BigEndian.AppendUint64(b, e.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time.UnixNano()))
	str(e.Type)
	str(e.Severity)
	str(e.Actor)
	str(e.Subject)
	str(e.IP)
	str(e.UserAgent)
	keys := auditSortedKeys(e.Details)
	b = binary.BigEndian.AppendUint64(b, uint64(len(keys)))
	for _, k := range keys {
		str(k)
		str(e.Details[k])
	}
	str(e.PrevHash)
	return b
}

// auditSortedKeys returns m's keys in ascending bytewise order (Go compares
// strings by bytes).
func auditSortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// auditChain checks entries one at a time, in seq order.
type auditChain struct {
	prev    string // hash the next entry must name as PrevHash
	nextSeq uint64 // seq the next entry must carry; 0 when not yet known
	// start is the first seq this view checks: a walk resumed in a later
	// view (ContinueAuditWalk) saw the entries before it in earlier ones,
	// perhaps before an erase rewrote them.
	start uint64
	// erased gathers, per user.erase entry not yet reached, the seqs of
	// the entries that say it rewrote them (erase.go).
	erased map[uint64]*erasureCheck
}

func (c *auditChain) check(e *AuditEntry) error {
	if e == nil {
		return &AuditChainError{Seq: c.nextSeq, Reason: "missing entry"}
	}
	switch {
	case e.Seq == 0:
		return &AuditChainError{Seq: 0, Reason: "seq 0 is not a valid seq"}
	case c.nextSeq != 0 && e.Seq > c.nextSeq:
		return &AuditChainError{Seq: c.nextSeq, Reason: fmt.Sprintf("entry missing (next present is %d)", e.Seq)}
	case c.nextSeq != 0 && e.Seq != c.nextSeq:
		return &AuditChainError{Seq: e.Seq, Reason: fmt.Sprintf("out of order, expected seq %d", c.nextSeq)}
	case e.PrevHash != c.prev:
		return &AuditChainError{Seq: e.Seq, Reason: "prev_hash does not match the previous entry's hash"}
	case len(e.Erased) == 0 && e.ComputeHash() != e.Hash:
		return &AuditChainError{Seq: e.Seq, Reason: "hash does not match the entry's contents"}
	case len(e.Erased) > 0 && (e.Type == TypeUserEraseEvent || !erasedSeqsValid(e)):
		return &AuditChainError{Seq: e.Seq, Reason: "hash does not match the entry's contents, and its erasures are not valid"}
	}
	if c.start == 0 {
		c.start = e.Seq
	}
	if len(e.Erased) > 0 {
		c.noteErased(e)
	}
	if e.Type == TypeUserEraseEvent {
		if err := c.checkErasure(e); err != nil {
			return err
		}
	} else if _, ok := c.erased[e.Seq]; ok {
		return &AuditChainError{Seq: c.erased[e.Seq].seqs[0], Reason: fmt.Sprintf(
			"the entry says erasure %d rewrote it, and entry %d is no erasure", e.Seq, e.Seq)}
	}
	c.nextSeq = e.Seq + 1
	c.prev = e.Hash
	return nil
}

// VerifyAuditChain checks that entries form an unbroken chain continuing
// from prevHash: seqs consecutive, each PrevHash equal to the previous
// Hash (the first to prevHash), and each Hash recomputed from the entry.
// Pass AuditGenesisHash for a chain that starts at seq 1; its first entry
// must then be seq 1. It returns nil, or an *AuditChainError wrapping
// ErrAuditChainBroken that names the first bad seq.
//
// A chain proves nothing about entries after its last one: a trail cut
// short verifies. Compare the newest seq and hash with a copy kept
// elsewhere (an export) to notice that.
func VerifyAuditChain(entries []*AuditEntry, prevHash string) error {
	c := auditChain{prev: prevHash}
	if prevHash == AuditGenesisHash {
		c.nextSeq = 1
	}
	for _, e := range entries {
		if err := c.check(e); err != nil {
			return err
		}
	}
	return nil
}

// AuditAfter calls fn for each audit entry with a seq above after, in seq
// order, until fn returns false or limit entries were given; limit <= 0
// means no limit. Pass the last seq of one page as after to get the next.
func (r Reader) AuditAfter(after uint64, limit int, fn func(*AuditEntry) bool) error {
	if after == math.MaxUint64 {
		return nil
	}
	c := r.tx.Bucket(bucketAudit).Cursor()
	n := 0
	for k, v := c.Seek(auditKey(after + 1)); k != nil; k, v = c.Next() {
		if limit > 0 && n >= limit {
			return nil
		}
		e, err := decodeAudit(k, v)
		if err != nil {
			return err
		}
		n++
		if !fn(e) {
			return nil
		}
	}
	return nil
}

// AuditLast returns the newest audit entry, or nil, nil when the trail is
// empty.
func (r Reader) AuditLast() (*AuditEntry, error) { return lastAudit(r.tx.Bucket(bucketAudit)) }

// VerifyAudit walks the whole stored trail, from seq 1 or from the
// checkpoint retention kept as its anchor, and checks its chain as
// VerifyAuditChain does, that each entry is stored under its own seq, and
// the checkpoints' hashes, as VerifyAuditTrail does without checking
// their signatures. It returns the number of entries checked, and nil or
// an *AuditChainError naming the first bad seq.
func (r Reader) VerifyAudit() (count uint64, err error) {
	var w AuditWalk
	err = r.ContinueAuditWalk(&w, 0, nil)
	return w.Entries, err
}
