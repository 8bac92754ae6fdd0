package fsm

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"reflect"
	"time"
)

// The expiry index (bucketExpiry) lists, in time order, when each indexed
// record next needs the sweep: key = instant (8 bytes, big endian, Unix
// nanoseconds) ‖ kind (1 byte) ‖ the record's key, value empty. A write
// that moves a record's instant adds an entry and leaves the old one
// dangling; the sweep, reaching an entry, reads the record and acts on its
// real instant, so a dangling entry costs one read, once. See DESIGN.md,
// "The sweep".
const (
	expiryAddress   byte = 'a' // bucketAddresses
	expiryLockout   byte = 'l' // bucketLockout
	expirySession   byte = 's' // bucketSessions, at ExpiresAt
	expiryTicket    byte = 't' // bucketMFAUsed, at the ticket's expiry (level 4)
	expiryForbidden byte = 'f' // bucketForbidden, at the end of its window (level 4)
	expiryBlock     byte = 'b' // bucketBlocks, at Until (level 4)
	expiryDetect    byte = 'd' // bucketDetect, at its window's end (level 4)
)

func expiryKey(at int64, kind byte, id string) []byte {
	k := make([]byte, 9+len(id))
	binary.BigEndian.PutUint64(k, uint64(max(at, 0)))
	k[8] = kind
	copy(k[9:], id)
	return k
}

func (t txn) index(at int64, kind byte, id string) error {
	return t.tx.Bucket(bucketExpiry).Put(expiryKey(at, kind, id), nil)
}

// indexSession enters a session in the expiry index at its absolute
// expiry, which never changes; sweep v2 deletes it then (an idle-dead
// session is refused by Alive until then). Session-creating handlers call
// it from level 3; deleteSession removes the entry.
func (t txn) indexSession(s *Session) error {
	return t.index(s.ExpiresAt.UnixNano(), expirySession, s.ID)
}

// indexSessionFrom indexes s when the state is at level or above: for
// session.create v1, which is applied below level 3 too.
func (t txn) indexSessionFrom(level int, s *Session) error {
	if t.level() < level {
		return nil
	}
	return t.indexSession(s)
}

func (t txn) level() int { return levelOf(t.tx.Bucket(bucketMeta).Get(keyLevel)) }

// SweepV2 is the payload of state.sweep v2: act on what the expiry index
// says is due, within a budget of Limit (an entry of a lockout counter or
// an address costs 1, a session's sessionSweepCost: deleting one writes
// that many more pages), and index at most Migrate records written before
// level 3.
type SweepV2 struct {
	Limit   int `json:"limit"`
	Migrate int `json:"migrate"`
}

// sessionSweepCost is what a session's index entry costs of a sweep's
// Limit: a session deleted dirties its record's page, its user's index,
// its refresh token and that token's index besides the expiry index.
const sessionSweepCost = 4

var sweepCommands = []CommandSpec{
	{Type: TypeSweep, Version: 2, Level: 3, Apply: applySweepV2, Result: reflect.TypeFor[SweepResult]()},
}

// maxSweepLimit bounds both budgets of one sweep.
const maxSweepLimit = 100000

// keyMigration is sweep v2's place in indexing the records written
// before level 3: a phase byte ('l' lockout, 's' sessions, 'd' done) and
// the last key it handled.
var keyMigration = []byte("expiry_migration")

func applySweepV2(t txn, c Command) (any, error) {
	var p SweepV2
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if p.Limit < 1 || p.Limit > maxSweepLimit || p.Migrate < 0 || p.Migrate > maxSweepLimit {
		return nil, fmt.Errorf("%w: state.sweep v2 needs 1 <= limit <= %d and 0 <= migrate <= %d", ErrInvalidCommand, maxSweepLimit, maxSweepLimit)
	}
	now := c.Time
	var res SweepResult
	// The due entries, read before any is acted on (a bbolt cursor does
	// not survive writes to its bucket).
	var due [][]byte
	cur := t.tx.Bucket(bucketExpiry).Cursor()
	budget := p.Limit
	for k, _ := cur.First(); k != nil && budget > 0 && int64(binary.BigEndian.Uint64(k)) <= now; k, _ = cur.Next() {
		due = append(due, bytes.Clone(k))
		if budget--; k[8] == expirySession {
			budget -= sessionSweepCost - 1
		}
	}
	// The address records the settled names count against are written
	// once, after every entry.
	as := newAddressSet()
	for _, k := range due {
		if err := t.sweepEntry(k, now, as, &res); err != nil {
			return nil, err
		}
	}
	n, err := as.write(t, now)
	if err != nil {
		return nil, err
	}
	res.Addresses += n
	if k, _ := t.tx.Bucket(bucketExpiry).Cursor().First(); k != nil && int64(binary.BigEndian.Uint64(k)) <= now {
		res.More = true
	}
	// Records written before level 3 are not indexed; walk them, a few at
	// a time, once the cluster is there (below it, a v1 command could
	// still write one behind the walk).
	if t.level() >= 3 && p.Migrate > 0 {
		more, err := t.migrate(p.Migrate, &res)
		if err != nil {
			return nil, err
		}
		res.More = res.More || more
	}
	return res, nil
}

// sweepEntry acts on one due index entry: the record it names is deleted
// if it no longer matters at now, or else settled and indexed at its next
// instant; the entry goes either way.
func (t txn) sweepEntry(k []byte, now int64, as *addressSet, res *SweepResult) error {
	idx := t.tx.Bucket(bucketExpiry)
	if idx.Get(k) == nil {
		return nil // removed by an earlier entry of this sweep
	}
	if err := idx.Delete(k); err != nil {
		return err
	}
	id := string(k[9:])
	switch k[8] {
	case expirySession:
		s, err := getSession(t.tx, id)
		if err != nil {
			return nil // deleted already
		}
		if !s.ExpiresAt.After(time.Unix(0, now)) {
			res.Sessions++
			return t.deleteSession(s)
		}
		return t.indexSession(s)
	case expiryLockout:
		v := t.tx.Bucket(bucketLockout).Get([]byte(id))
		if v == nil {
			return nil
		}
		var l Lockout
		if err := json.Unmarshal(v, &l); err != nil {
			return err
		}
		if l.Limits == nil { // written before level 3, indexed since
			if l.legacyExpiry() <= now {
				res.Lockouts++
				return t.tx.Bucket(bucketLockout).Delete([]byte(id))
			}
			return t.index(l.legacyExpiry(), expiryLockout, id)
		}
		op := &lockoutOp{t: t, now: now, name: id, current: &l, addressSet: as, shared: true}
		if err := op.settle(id, &l); err != nil {
			return err
		}
		if l.next() <= now {
			res.Lockouts++
			op.changed = true // commit deletes it
		}
		if !op.changed { // a dangling entry: the record moved on
			return t.index(l.next(), expiryLockout, id)
		}
		return op.commit()
	case expiryTicket: // a used ticket, kept until it could no longer be presented
		return t.tx.Bucket(bucketMFAUsed).Delete([]byte(id))
	case expiryForbidden: // a count of admin-route 403s, deleted once its window is over
		v := t.tx.Bucket(bucketForbidden).Get([]byte(id))
		var r forbiddenRecord
		if v == nil || json.Unmarshal(v, &r) != nil {
			return nil
		}
		if end := r.WindowStart + r.Window; end > now {
			return t.index(end, expiryForbidden, id) // a later window began: its own end
		}
		return t.tx.Bucket(bucketForbidden).Delete([]byte(id))
	case expiryAuthRequest, expiryCode, expiryRevokedJTI: // oidc.go (level 4)
		return t.sweepOIDC(k[8], id)
	case expiryAddress:
		a, found, err := as.load(t, id, now)
		if err != nil || !found {
			return err
		}
		if a.expiry() <= now {
			as.dirty[id] = true // written: deleted
			return nil
		}
		return t.index(a.expiry(), expiryAddress, id)
	case expiryBlock:
		b, found, err := t.block(id)
		if err != nil || !found {
			return err
		}
		if !b.Live(now) {
			res.Blocks++
			return t.tx.Bucket(bucketBlocks).Delete([]byte(id))
		}
		return t.index(b.Until, expiryBlock, id)
	case expiryAuditCap: // an address's window of capped audit entries (level 5, auditcap.go)
		return t.sweepAuditCap(id, now)
	case expiryDetect:
		v := t.tx.Bucket(bucketDetect).Get([]byte(id))
		if v == nil {
			return nil
		}
		var r detectRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		if r.WindowStart+r.Window <= now {
			return t.tx.Bucket(bucketDetect).Delete([]byte(id))
		}
		return t.index(r.WindowStart+r.Window, expiryDetect, id)
	}
	return nil // an entry of a kind this version does not write
}

// migrate indexes up to n records written before level 3, lockout
// counters first, then sessions, resuming where the last sweep stopped,
// and reports whether any remain. It deletes nothing: a record already
// over is indexed at an instant already past, and the index walk of the
// sweeps that follow deletes it, within their Limit.
func (t txn) migrate(n int, res *SweepResult) (bool, error) {
	meta := t.tx.Bucket(bucketMeta)
	state := meta.Get(keyMigration)
	phase, after := byte('l'), []byte(nil)
	if len(state) > 0 {
		phase, after = state[0], bytes.Clone(state[1:])
	}
	for n > 0 && phase != 'd' {
		bucket := bucketLockout
		if phase == 's' {
			bucket = bucketSessions
		}
		type kv struct{ k, v []byte }
		var batch []kv
		cur := t.tx.Bucket(bucket).Cursor()
		k, v := cur.First()
		if after != nil {
			if k, v = cur.Seek(after); k != nil && bytes.Equal(k, after) {
				k, v = cur.Next()
			}
		}
		for ; k != nil && len(batch) < n; k, v = cur.Next() {
			batch = append(batch, kv{bytes.Clone(k), bytes.Clone(v)})
		}
		ended := k == nil
		for _, e := range batch {
			var err error
			if phase == 'l' {
				err = t.migrateLockout(e.k, e.v)
			} else {
				err = t.migrateSession(e.v)
			}
			if err != nil {
				return false, err
			}
			res.Migrated++
		}
		n -= len(batch)
		if len(batch) > 0 {
			after = batch[len(batch)-1].k
		}
		if ended {
			phase, after = map[byte]byte{'l': 's', 's': 'd'}[phase], nil
		}
	}
	if err := meta.Put(keyMigration, append([]byte{phase}, after...)); err != nil {
		return false, err
	}
	return phase != 'd', nil
}

func (t txn) migrateLockout(k, v []byte) error {
	var l Lockout
	if err := json.Unmarshal(v, &l); err != nil {
		return err
	}
	if l.Limits != nil {
		return nil // written at level 3: indexed then
	}
	return t.index(l.legacyExpiry(), expiryLockout, string(k))
}

func (t txn) migrateSession(v []byte) error {
	s, err := decodeSession(v)
	if err != nil {
		return err
	}
	if t.tx.Bucket(bucketExpiry).Get(expiryKey(s.ExpiresAt.UnixNano(), expirySession, s.ID)) != nil {
		return nil
	}
	return t.indexSession(s)
}
