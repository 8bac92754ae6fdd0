package fsm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

// Data-subject requests (level 5): what the state holds about a user
// (SubjectRecords, for the export) and user.erase, which deletes the user
// and everything keyed by them and pseudonymises the audit entries that
// name them. See DESIGN.md, "Erasure".

// TypeUserErase deletes a user with everything keyed by them and
// pseudonymises their audit entries. Version 1 carries a UserErase; its
// result is an EraseResult.
const TypeUserErase Type = "user.erase"

// ErasedPrefix begins the pseudonym that replaces an erased user's name
// and email in the audit trail: "erased:<user id>".
const ErasedPrefix = "erased:"

// TypeUserEraseEvent is the audit entry user.erase appends. Its details
// fix which entries the erase rewrote (see auditChain.check):
//
//	entries         how many entries it pseudonymised
//	first           the lowest seq among them (absent when none)
//	seqs_sha256     hex SHA-256 of their seqs, ascending, each u64 big endian
//	content_sha256  hex SHA-256 of, for each of them ascending, its seq
//	                (u64 big endian) and the hash of its rewritten
//	                contents (ComputeHash, 64 hex characters)
//
// So a verifier holds the rewritten entries to the erase's own entry,
// which the chain and the next signed checkpoint hold: which entries were
// rewritten, and (for those no later erase rewrote again) into what.
const TypeUserEraseEvent = "user.erase"

// UserErase is the payload of user.erase v1. Actor, IP and UserAgent are
// the requester's, for the erase's own audit entry; the user is named by
// id only, so the log entry holds no name.
type UserErase struct {
	ID        string `json:"id"`
	Actor     string `json:"actor,omitempty"`
	IP        string `json:"ip,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`
}

// EraseResult answers user.erase.
type EraseResult struct {
	Pseudonym string `json:"pseudonym"`
	// Seq is the seq of the erase's own audit entry.
	Seq uint64 `json:"seq"`
	// Sessions, Records and AuditEntries count what went: sessions (with
	// their refresh tokens), other records, and audit entries rewritten.
	Sessions     int `json:"sessions"`
	Records      int `json:"records"`
	AuditEntries int `json:"audit_entries"`
}

var eraseCommands = []CommandSpec{
	{Type: TypeUserErase, Version: 1, Level: 5, Apply: applyUserErase, Result: reflect.TypeFor[EraseResult]()},
}

// keyErasures counts the erases applied (meta, 8 bytes big endian), so a
// node can tell, from its state alone, that it has files to compact
// (Reader.Erasures).
var keyErasures = []byte("erasures")

// Erasures is how many user.erase commands this state has applied. It is
// state, so a snapshot carries it: a node that learns of an erase by
// installing a snapshot sees the count move as well as one that applied it.
func (r Reader) Erasures() uint64 {
	v := r.tx.Bucket(bucketMeta).Get(keyErasures)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func applyUserErase(t txn, c Command) (any, error) {
	var p UserErase
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if !validID(p.ID) || !validIP(p.IP) {
		return nil, fmt.Errorf("%w: user.erase needs an id", ErrInvalidCommand)
	}
	u, err := getUser(t.tx, p.ID)
	if err != nil {
		return nil, err
	}
	res := EraseResult{Pseudonym: ErasedPrefix + u.ID}
	m := newSubjectMatcher(u, false)

	// Which audit entries name them, decided before the first write.
	var seqs []uint64
	var rewritten []*AuditEntry
	var content []byte
	ac := t.tx.Bucket(bucketAudit).Cursor()
	for k, v := ac.First(); k != nil; k, v = ac.Next() {
		if !m.mayName(v) {
			continue // most entries: a scan of the bytes, no decoding
		}
		e, err := decodeAudit(k, v)
		if err != nil {
			return nil, err
		}
		if e.Type == TypeUserEraseEvent || !m.pseudonymise(e, res.Pseudonym) {
			continue
		}
		seqs = append(seqs, e.Seq)
		rewritten = append(rewritten, e)
		content = appendContent(content, e)
	}
	ev := AuditAppend{Type: TypeUserEraseEvent, Severity: AuditWarning,
		Actor: CleanAuditText(p.Actor, MaxAuditActor), Subject: res.Pseudonym,
		IP: asciiIP(p.IP), UserAgent: CleanAuditText(p.UserAgent, MaxAuditUserAgent),
		Details: erasedDetails(seqs, content)}
	if err := ev.Validate(); err != nil {
		return nil, err
	}

	// The user and everything keyed by them.
	if res.Sessions, err = t.revokeUserSessions(u.ID, ""); err != nil {
		return nil, err
	}
	if err := deleteMFA(t.tx, u.ID); err != nil {
		return nil, err
	}
	del := func(bucket []byte, key string) error {
		b := t.tx.Bucket(bucket)
		if b.Get([]byte(key)) == nil {
			return nil
		}
		res.Records++
		return b.Delete([]byte(key))
	}
	for _, d := range []struct {
		bucket []byte
		key    string
	}{
		{bucketUsernames, u.Username},
		{bucketLockout, u.Username},    // failed logins by name, before and after the account
		{bucketLockout, "mfa " + u.ID}, // failed second factors (authcore's mfaLockName)
		{bucketForbidden, u.ID},        // admin-route refusals
		{bucketUsers, u.ID},
	} {
		if err := del(d.bucket, d.key); err != nil {
			return nil, err
		}
	}
	// Index entries that carry the name or the id in their key: the
	// lockout and refusal records' in the expiry index and held slots' in
	// the address records. A held slot dropped here is one the erased
	// name held.
	lockNames := map[string]bool{u.Username: true, "mfa " + u.ID: true}
	if err := t.deleteKeysWhere(bucketExpiry, func(k []byte) bool {
		return len(k) > 9 && (k[8] == expiryLockout && lockNames[string(k[9:])] || k[8] == expiryForbidden && string(k[9:]) == u.ID)
	}); err != nil {
		return nil, err
	}
	if err := t.deleteKeysWhere(bucketAddresses, func(k []byte) bool {
		i := bytes.IndexByte(k, 0)
		return i >= 0 && len(k) > i+2+8 && k[i+1] == 'h' && lockNames[string(k[i+2+8:])]
	}); err != nil {
		return nil, err
	}
	// OpenID Connect requests they signed in to, and those requests' codes.
	requests := map[string]bool{}
	if err := forEachJSON(t, bucketAuthRequests, func(k []byte, r *OIDCAuthRequest) {
		if r.UserID == u.ID {
			requests[string(k)] = true
		}
	}); err != nil {
		return nil, err
	}
	var codes []string
	if err := forEachJSON(t, bucketCodes, func(k []byte, c *OIDCCode) {
		if requests[c.RequestID] {
			codes = append(codes, string(k))
		}
	}); err != nil {
		return nil, err
	}
	for _, k := range codes {
		if err := del(bucketCodes, k); err != nil {
			return nil, err
		}
	}
	for _, k := range slices.Sorted(maps.Keys(requests)) { // one order on every node
		if err := del(bucketAuthRequests, k); err != nil {
			return nil, err
		}
	}
	// Their consent grants (oidc_grants.go), keyed by their id.
	grantPrefix := append([]byte(u.ID), 0)
	if err := t.deleteKeysWhere(bucketGrants, func(k []byte) bool {
		if !bytes.HasPrefix(k, grantPrefix) {
			return false
		}
		res.Records++
		return true
	}); err != nil {
		return nil, err
	}

	// The trail: the erase's own entry, then the entries it rewrote, each
	// naming it and keeping its original hash.
	self, err := appendAudit(t, c.Time, ev)
	if err != nil {
		return nil, err
	}
	res.Seq = self.Seq
	for _, e := range rewritten {
		e.Erased = append(e.Erased, self.Seq)
		v, err := json.Marshal(e)
		if err != nil {
			return nil, err
		}
		if err := t.tx.Bucket(bucketAudit).Put(auditKey(e.Seq), v); err != nil {
			return nil, err
		}
	}
	res.AuditEntries = len(rewritten)
	n := Reader{tx: t.tx}.Erasures() + 1
	if err := t.tx.Bucket(bucketMeta).Put(keyErasures, binary.BigEndian.AppendUint64(nil, n)); err != nil {
		return nil, err
	}
	return res, nil
}

// erasedDetails are the details of a user.erase entry for seqs (ascending).
func erasedDetails(seqs []uint64, content []byte) map[string]string {
	d := map[string]string{"entries": strconv.Itoa(len(seqs))}
	if len(seqs) > 0 {
		d["first"] = strconv.FormatUint(seqs[0], 10)
		d["seqs_sha256"] = erasedDigest(seqs)
		sum := sha256.Sum256(content)
		d["content_sha256"] = hex.EncodeToString(sum[:])
	}
	return d
}

// appendContent adds e's seq and the hash of its present contents to a
// content_sha256 preimage.
func appendContent(b []byte, e *AuditEntry) []byte {
	return append(binary.BigEndian.AppendUint64(b, e.Seq), e.ComputeHash()...)
}

func erasedDigest(seqs []uint64) string {
	h := sha256.New()
	var b [8]byte
	for _, s := range seqs {
		binary.BigEndian.PutUint64(b[:], s)
		h.Write(b[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// deleteKeysWhere deletes the keys of bucket that match.
func (t txn) deleteKeysWhere(bucket []byte, match func(k []byte) bool) error {
	b := t.tx.Bucket(bucket)
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if match(k) {
			keys = append(keys, bytes.Clone(k))
		}
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// forEachJSON decodes every value of bucket as T; a record that does not
// decode is skipped (it cannot name anyone the decoder could see).
func forEachJSON[T any](tx txn, bucket []byte, fn func(k []byte, v *T)) error {
	c := tx.tx.Bucket(bucket).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		var rec T
		if v == nil || json.Unmarshal(v, &rec) != nil {
			continue
		}
		fn(k, &rec)
	}
	return nil
}

// subjectMatcher finds a user's personal identifiers in audit text: the
// name and the email, each as a whole token (not inside a longer word or
// id: "alice" is not found in "malice"), ASCII letters compared without
// case. With byID it also matches the user id (for the export; erase
// keeps the id, the pseudonym's core).
type subjectMatcher struct {
	needles []string
	// encoded are the needles as a stored entry's JSON holds them.
	encoded []string
	id      string
}

func newSubjectMatcher(u *User, byID bool) subjectMatcher {
	m := subjectMatcher{}
	for _, s := range []string{u.Username, u.Email} {
		if s != "" {
			m.needles = append(m.needles, s)
			b, _ := json.Marshal(s) // a string always encodes
			m.encoded = append(m.encoded, string(b[1:len(b)-1]))
		}
	}
	if byID {
		m.id = u.ID
		m.needles = append(m.needles, u.ID) // "admin:<id>", a detail naming them
	}
	return m
}

// mayName reports whether a stored entry's JSON may name the user: it
// holds a needle as encoded (JSON escapes each character on its own, so a
// value holding a needle holds its encoding), ASCII letters compared
// without case. False means the entry cannot name them.
func (m subjectMatcher) mayName(raw []byte) bool {
	for _, n := range m.encoded {
		if indexFoldASCII(raw, n) >= 0 {
			return true
		}
	}
	return false
}

// about reports whether e names the user in its actor, subject or a
// detail value.
func (m subjectMatcher) about(e *AuditEntry) bool {
	if m.id != "" && (e.Actor == m.id || e.Subject == m.id || e.Subject == ErasedPrefix+m.id) {
		return true
	}
	texts := []string{e.Actor, e.Subject}
	for _, k := range auditSortedKeys(e.Details) {
		texts = append(texts, e.Details[k])
	}
	for _, s := range texts {
		for _, n := range m.needles {
			if tokenIndex(s, n) >= 0 {
				return true
			}
		}
	}
	return false
}

// pseudonymise replaces the name and email in e's actor, subject and
// detail values with pseudonym, and reports whether it changed anything.
// The IP address and User-Agent stay: connection metadata kept for
// security, not identifiers the erase knows (DESIGN.md, "Erasure").
func (m subjectMatcher) pseudonymise(e *AuditEntry, pseudonym string) bool {
	changed := false
	replace := func(s string) string {
		for _, n := range m.needles {
			for {
				i := tokenIndex(s, n)
				if i < 0 {
					break
				}
				s = s[:i] + pseudonym + s[i+len(n):]
				changed = true
			}
		}
		return s
	}
	e.Actor = replace(e.Actor)
	e.Subject = replace(e.Subject)
	for _, k := range auditSortedKeys(e.Details) {
		e.Details[k] = replace(e.Details[k])
	}
	return changed
}

// tokenIndex returns the index of the first occurrence of needle in s
// that is a whole token (no letter or digit just before or after it),
// ASCII letters compared without case, or -1.
func tokenIndex(s, needle string) int {
	if needle == "" {
		return -1
	}
	for from := 0; from+len(needle) <= len(s); {
		i := indexFoldASCII(s[from:], needle)
		if i < 0 {
			return -1
		}
		i += from
		before, _ := utf8.DecodeLastRuneInString(s[:i])
		after, _ := utf8.DecodeRuneInString(s[i+len(needle):])
		if !wordRune(before, i > 0) && !wordRune(after, i+len(needle) < len(s)) {
			return i
		}
		from = i + 1
	}
	return -1
}

func wordRune(r rune, present bool) bool {
	return present && (unicode.IsLetter(r) || unicode.IsDigit(r))
}

// indexFoldASCII is strings.Index with ASCII letters compared without
// case; other bytes compare exactly (a deterministic rule, the same on
// every node).
func indexFoldASCII[T string | []byte](s T, needle string) int {
	for i := 0; i+len(needle) <= len(s); i++ {
		ok := true
		for j := 0; j < len(needle); j++ {
			if lowerASCII(s[i+j]) != lowerASCII(needle[j]) {
				ok = false
				break
			}
		}
		if ok {
			return i
		}
	}
	return -1
}

func lowerASCII(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}

// SubjectRecords is every record the state holds about one user, as
// stored (secrets included: the export drops them, authcore).
type SubjectRecords struct {
	User     *User
	Sessions []*Session
	// Refresh lists the refresh tokens of their sessions, live or used,
	// without the token's hash.
	Refresh []RefreshMeta
	MFA     *MFA
	// Lockouts are the failed-attempt records under their name and their
	// second factor's.
	Lockouts  []NamedLockout
	Forbidden *ForbiddenCount
	Requests  []*OIDCAuthRequest
	Codes     []OIDCCodeMeta
	// Grants are their consents to OpenID Connect clients.
	Grants []*OIDCGrant
	// Audit lists the entries naming them by id, name or email.
	Audit []*AuditEntry
}

// RefreshMeta is a refresh token's record without its hash.
type RefreshMeta struct {
	SessionID string `json:"session_id"`
	Live      bool   `json:"live"` // the session's current token
	Used      bool   `json:"used,omitempty"`
	// Generation is a live token's generation, when it names its
	// session (level 5): how many times the session has rotated it.
	Generation uint64 `json:"generation,omitempty"`
}

// NamedLockout is a lockout record and the name it counts.
type NamedLockout struct {
	Name    string  `json:"name"`
	Lockout Lockout `json:"lockout"`
}

// ForbiddenCount is the account's count of refused admin routes.
type ForbiddenCount struct {
	Count       int       `json:"count"`
	WindowStart time.Time `json:"window_start"`
	Window      int64     `json:"window"`
}

// OIDCCodeMeta is an authorization code's record without the code's hash.
type OIDCCodeMeta struct {
	OIDCCode
}

// SubjectRecords gathers every record about the user with id. It walks the
// audit trail and the OpenID Connect buckets whole: an export is rare, and
// the trail is the only index of who an entry names.
func (r Reader) SubjectRecords(id string) (*SubjectRecords, error) {
	u, err := getUser(r.tx, id)
	if err != nil {
		return nil, err
	}
	out := &SubjectRecords{User: u}
	if out.Sessions, err = listUserSessions(r.tx, id); err != nil {
		return nil, err
	}
	for _, s := range out.Sessions {
		prefix := append([]byte(s.ID), 0)
		c := r.tx.Bucket(bucketSessionRefresh).Cursor()
		live := false
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			hash := string(k[len(prefix):])
			meta := RefreshMeta{SessionID: s.ID, Live: hash == s.RefreshHash}
			var rec refreshRecord
			if v := r.tx.Bucket(bucketRefresh).Get([]byte(hash)); v != nil && json.Unmarshal(v, &rec) == nil {
				meta.Used = rec.Used
			}
			live = live || meta.Live
			out.Refresh = append(out.Refresh, meta)
		}
		if !live {
			// A token that names its session (level 5) has no record:
			// the session's hash and generation are all that is held.
			out.Refresh = append(out.Refresh, RefreshMeta{SessionID: s.ID, Live: true, Generation: s.RefreshGen})
		}
	}
	if out.MFA, err = r.MFA(id); err != nil {
		return nil, err
	}
	for _, name := range []string{u.Username, "mfa " + id} {
		if v := r.tx.Bucket(bucketLockout).Get([]byte(name)); v != nil {
			var l Lockout
			if err := json.Unmarshal(v, &l); err != nil {
				return nil, err
			}
			out.Lockouts = append(out.Lockouts, NamedLockout{Name: name, Lockout: l})
		}
	}
	if v := r.tx.Bucket(bucketForbidden).Get([]byte(id)); v != nil {
		var f forbiddenRecord
		if err := json.Unmarshal(v, &f); err != nil {
			return nil, err
		}
		out.Forbidden = &ForbiddenCount{Count: f.Count, WindowStart: time.Unix(0, f.WindowStart).UTC(), Window: f.Window}
	}
	t := txn{tx: r.tx}
	requests := map[string]bool{}
	_ = forEachJSON(t, bucketAuthRequests, func(_ []byte, a *OIDCAuthRequest) {
		if a.UserID == id {
			requests[a.ID] = true
			out.Requests = append(out.Requests, a)
		}
	})
	_ = forEachJSON(t, bucketCodes, func(_ []byte, c *OIDCCode) {
		if requests[c.RequestID] {
			out.Codes = append(out.Codes, OIDCCodeMeta{*c})
		}
	})
	if err := r.OIDCGrants(id, func(g *OIDCGrant) { out.Grants = append(out.Grants, g) }); err != nil {
		return nil, err
	}
	m := newSubjectMatcher(u, true)
	err = r.AuditAfter(0, 0, func(e *AuditEntry) bool {
		if m.about(e) {
			out.Audit = append(out.Audit, e)
		}
		return true
	})
	return out, err
}

// erasedSeqsValid is the rule an erased entry's Erased list must follow:
// ascending seqs, each after the entry's own.
func erasedSeqsValid(e *AuditEntry) bool {
	prev := e.Seq
	for _, s := range e.Erased {
		if s <= prev {
			return false
		}
		prev = s
	}
	return true
}

// erasureCheck gathers, while a verifier walks the trail, the seqs of the
// entries that name one user.erase entry.
type erasureCheck struct {
	seqs []uint64
	// content is the content_sha256 preimage of the entries this erase
	// was the last to rewrite; partial, that a later erase rewrote one
	// again, so its contents are no longer this erase's to vouch for.
	content []byte
	partial bool
}

// checkErasure is called on a user.erase entry: the entries that named it
// must be exactly those its details fix, unless the walk began after the
// first of them (a pruned trail, or a verifier resuming mid-trail), when
// they cannot all be seen.
func (c *auditChain) checkErasure(e *AuditEntry) error {
	got := c.erased[e.Seq]
	delete(c.erased, e.Seq)
	bad := func(why string) error {
		return &AuditChainError{Seq: e.Seq, Reason: "erasure does not match the entries it rewrote: " + why}
	}
	n, err := strconv.Atoi(e.Details["entries"])
	if err != nil || n < 0 {
		return bad("no entry count")
	}
	if n == 0 {
		if got != nil {
			return bad(fmt.Sprintf("it rewrote none, yet entry %d names it", got.seqs[0]))
		}
		return nil
	}
	first, err := strconv.ParseUint(e.Details["first"], 10, 64)
	if err != nil || first >= e.Seq {
		return bad("no first seq before it")
	}
	if first < c.start {
		// Some of them were pruned, or are behind where this view's walk
		// began: a walk resumed from an earlier view saw them, perhaps
		// before this erase rewrote them.
		return nil
	}
	var seqs []uint64
	if got != nil {
		seqs = got.seqs
	}
	if len(seqs) != n || seqs[0] != first || erasedDigest(seqs) != e.Details["seqs_sha256"] {
		return bad(fmt.Sprintf("it says %d entries from seq %d, %d name it", n, first, len(seqs)))
	}
	if !got.partial {
		if sum := sha256.Sum256(got.content); hex.EncodeToString(sum[:]) != e.Details["content_sha256"] {
			return bad("an entry it rewrote was altered since")
		}
	}
	return nil
}

// noteErased records an erased entry's seq under each erase naming it.
func (c *auditChain) noteErased(e *AuditEntry) {
	if c.erased == nil {
		c.erased = map[uint64]*erasureCheck{}
	}
	last := e.Erased[len(e.Erased)-1]
	for _, s := range e.Erased {
		ec := c.erased[s]
		if ec == nil {
			ec = &erasureCheck{}
			c.erased[s] = ec
		}
		ec.seqs = append(ec.seqs, e.Seq)
		if s == last {
			ec.content = appendContent(ec.content, e)
		} else {
			ec.partial = true
		}
	}
}

// finish reports an erased entry naming an erase the walk never reached:
// the trail ends before it.
func (c *auditChain) finish() error {
	var worst uint64
	for s := range c.erased {
		if worst == 0 || s < worst {
			worst = s
		}
	}
	if worst != 0 {
		return &AuditChainError{Seq: c.erased[worst].seqs[0], Reason: fmt.Sprintf(
			"the entry says erasure %d rewrote it, and the trail ends before that entry", worst)}
	}
	return nil
}

// ErasedGeneration changes after a batch that applied a user.erase, and
// after a restore (which may bring one): node then compares
// Reader.Erasures with what it has compacted its files for.
func (s *Store) ErasedGeneration() uint64 { return s.erasedGen.Load() }

// Compact rewrites state.db into a fresh file that holds only the live
// records, and swaps it in, the way Restore does. bbolt reuses freed pages
// without zeroing them, so after an erase the old records' bytes are still
// in the file (and in a snapshot streamed from it, which copies every
// page): the copy leaves them behind. Applies and reads wait meanwhile.
// The old file's blocks return to the filesystem unzeroed (DESIGN.md,
// "Erasure").
func (s *Store) Compact() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return ErrClosed
	}
	tmp := s.path + ".compact"
	if err := os.Remove(tmp); err != nil && !os.IsNotExist(err) {
		return err
	}
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return fmt.Errorf("fsm: compact: %w", err)
	}
	err = bolt.Compact(dst, s.db, 16<<20)
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("fsm: compact: %w", err)
	}
	return s.swapIn(tmp, s.counts.sessions.Load()) // nothing applies meanwhile
}

// ForEachRaw calls fn with every key and value of every bucket, as stored,
// bucket by bucket in name order. It is for checks that must see what the
// file holds rather than what the typed readers show: the export test's
// comparison with a raw scan, and verification tools. fn must not keep
// the slices.
func (r Reader) ForEachRaw(fn func(bucket string, key, value []byte) error) error {
	return r.tx.ForEach(func(name []byte, b *bolt.Bucket) error {
		return b.ForEach(func(k, v []byte) error { return fn(string(name), k, v) })
	})
}
