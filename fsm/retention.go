package fsm

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"strconv"
	"time"
)

// Retention of the audit trail (feature level 5, issue 19; DESIGN.md,
// "Retention"). The leader's sweep proposes audit.prune with the oldest
// seq to keep, which must be the one after a stored checkpoint: the kept
// chain then starts from that checkpoint (its anchor), so every verifier
// checks it from there on. Apply records that seq as the audit floor (meta
// audit_floor) and deletes the entries below it, at most Limit per
// command, oldest first; the proposer repeats while More says some remain.
// A floor is never lowered, and until its range is gone the entries below
// it are no longer part of the trail: the verifiers start at the floor.
// Checkpoint records are never pruned (small, and the anchors), nor the
// audit keys they name.

// TypeAuditPrune deletes audit entries older than the retention, up to a
// checkpoint. Version 1 carries an AuditPrune; its result is an
// AuditPruneResult. Level 5.
const TypeAuditPrune Type = "audit.prune"

// MinAuditRetention is the shortest retention audit.prune accepts: Apply
// refuses to prune an entry younger than this, whatever the proposer's
// configuration says.
const MinAuditRetention = 24 * time.Hour

// maxAuditRetention bounds KeepFor (a hundred years).
const maxAuditRetention = int64(100 * 366 * 24 * time.Hour)

// AuditPrune is the payload of audit.prune v1.
type AuditPrune struct {
	// BeforeSeq is the oldest seq to keep: a checkpoint must be stored at
	// BeforeSeq-1, and the entry at BeforeSeq must continue from its
	// hash. Entries below it are deleted. A BeforeSeq at or below the
	// floor already recorded only goes on deleting below that floor.
	BeforeSeq uint64 `json:"before_seq"`
	// KeepFor is the retention, in nanoseconds (retention.audit): the
	// entry at BeforeSeq-1 must be at least this old at the command's
	// time, and at least MinAuditRetention.
	KeepFor int64 `json:"keep_for"`
	// Limit is the most entries this command deletes.
	Limit int `json:"limit"`
}

// AuditPruneResult is what audit.prune did.
type AuditPruneResult struct {
	Floor   uint64 `json:"floor"`   // the oldest seq kept (0: never pruned)
	Deleted int    `json:"deleted"` // entries deleted by this command
	More    bool   `json:"more"`    // entries below Floor remain: prune again
}

var retentionCommands = []CommandSpec{
	{Type: TypeAuditPrune, Version: 1, Level: 5, Apply: applyAuditPrune, Result: reflect.TypeFor[AuditPruneResult]()},
	{Type: TypeSessionPrune, Version: 1, Level: 5, Apply: applySessionPrune, Result: reflect.TypeFor[SessionPruneResult]()},
}

var keyAuditFloor = []byte("audit_floor")

func applyAuditPrune(t txn, c Command) (any, error) {
	var p AuditPrune
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: audit.prune: "+format, append([]any{ErrInvalidCommand}, args...)...)
	}
	switch {
	case p.Limit < 1 || p.Limit > maxSweepLimit:
		return nil, bad("limit must be 1 to %d", maxSweepLimit)
	case p.KeepFor < int64(MinAuditRetention) || p.KeepFor > maxAuditRetention:
		return nil, bad("keep_for must be at least %s", MinAuditRetention)
	}
	floor := auditFloor(t.tx.Bucket(bucketMeta).Get(keyAuditFloor))
	var ev *AuditAppend
	if p.BeforeSeq > floor {
		cp, err := t.pruneAnchor(p.BeforeSeq, c.Time-p.KeepFor)
		if err != nil {
			return nil, err
		}
		e := AuditAppend{Type: string(TypeAuditPrune), Severity: AuditInfo, Actor: "system",
			Details: map[string]string{"before_seq": strconv.FormatUint(p.BeforeSeq, 10), "checkpoint_node": cp.Node,
				"keep_for": time.Duration(p.KeepFor).String()}}
		if err := e.Validate(); err != nil {
			return nil, err
		}
		ev, floor = &e, p.BeforeSeq
		if err := t.tx.Bucket(bucketMeta).Put(keyAuditFloor, auditKey(floor)); err != nil {
			return nil, err
		}
	}
	// The keys first: a bbolt cursor does not survive deletes.
	var doomed [][]byte
	cur := t.tx.Bucket(bucketAudit).Cursor()
	k, _ := cur.First()
	for ; k != nil && len(doomed) < p.Limit && len(k) == 8 && binary.BigEndian.Uint64(k) < floor; k, _ = cur.Next() {
		doomed = append(doomed, auditKey(binary.BigEndian.Uint64(k)))
	}
	more := k != nil && len(k) == 8 && binary.BigEndian.Uint64(k) < floor
	b := t.tx.Bucket(bucketAudit)
	for _, k := range doomed {
		if err := b.Delete(k); err != nil {
			return nil, err
		}
	}
	if ev != nil {
		if _, err := appendAudit(t, c.Time, *ev); err != nil {
			return nil, err
		}
	}
	return AuditPruneResult{Floor: floor, Deleted: len(doomed), More: more}, nil
}

// pruneAnchor checks that the trail may start at first: a checkpoint is
// stored at first-1, the entry at first continues from its hash, and the
// entry at first-1 is no newer than cutoff. It returns the checkpoint.
func (t txn) pruneAnchor(first uint64, cutoff int64) (*AuditCheckpointRecord, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: audit.prune: "+format, append([]any{ErrInvalidCommand}, args...)...)
	}
	if first < 2 {
		return nil, bad("before_seq must be 2 or more")
	}
	v := t.tx.Bucket(bucketCheckpoints).Get(auditKey(first - 1))
	if v == nil {
		return nil, bad("no checkpoint at seq %d to anchor the trail", first-1)
	}
	cp, err := decodeCheckpoint(auditKey(first-1), v)
	if err != nil {
		return nil, err
	}
	audit := t.tx.Bucket(bucketAudit)
	kv := audit.Get(auditKey(first))
	if kv == nil {
		return nil, bad("no entry %d to keep after checkpoint %d", first, first-1)
	}
	kept, err := decodeAudit(auditKey(first), kv)
	if err != nil {
		return nil, err
	}
	if kept.PrevHash != cp.Hash {
		return nil, bad("entry %d does not continue from checkpoint %d", first, first-1)
	}
	lv := audit.Get(auditKey(first - 1))
	if lv == nil {
		return nil, bad("entry %d is missing", first-1)
	}
	last, err := decodeAudit(auditKey(first-1), lv)
	if err != nil {
		return nil, err
	}
	if last.Time.UnixNano() > cutoff {
		return nil, bad("entry %d is younger than the retention", first-1)
	}
	return cp, nil
}

func auditFloor(v []byte) uint64 {
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// AuditFloor is the oldest seq retention keeps: entries below it are
// pruned or about to be; 0 when the trail was never pruned.
func (r Reader) AuditFloor() uint64 { return auditFloor(r.tx.Bucket(bucketMeta).Get(keyAuditFloor)) }

// auditStart is the seq of the oldest entry of the trail: the audit
// floor, or the oldest stored entry if that is later; 0 when the trail is
// empty.
func (r Reader) auditStart() (uint64, error) {
	k, _ := r.tx.Bucket(bucketAudit).Cursor().Seek(auditKey(max(r.AuditFloor(), 1)))
	if k == nil {
		return 0, nil
	}
	if len(k) != 8 {
		return 0, &AuditChainError{Seq: r.AuditFloor(), Reason: fmt.Sprintf("stray key %x", k)}
	}
	return binary.BigEndian.Uint64(k), nil
}

// PruneCandidate returns the seq audit.prune may keep from for an audit
// retention cutoff (Unix nanoseconds): the one after the newest checkpoint
// whose entry is no newer than cutoff, when it is stored. 0: none
// (nothing old enough, or no checkpoint yet). A floor recorded already
// whose range is not yet deleted is returned as it is. It reads the
// checkpoints old enough and one more.
func (r Reader) PruneCandidate(cutoff int64) (uint64, error) {
	floor := r.AuditFloor()
	first, _ := r.tx.Bucket(bucketAudit).Cursor().First()
	if first != nil && len(first) == 8 && binary.BigEndian.Uint64(first) < floor {
		return floor, nil
	}
	start, err := r.auditStart()
	if err != nil || start == 0 {
		return 0, err
	}
	var best uint64
	err = r.AuditCheckpoints(start-1, func(cp *AuditCheckpointRecord) bool {
		v := r.tx.Bucket(bucketAudit).Get(auditKey(cp.Seq))
		if v == nil {
			return false
		}
		e, derr := decodeAudit(auditKey(cp.Seq), v)
		if derr != nil || e.Time.UnixNano() > cutoff {
			return false
		}
		if r.tx.Bucket(bucketAudit).Get(auditKey(cp.Seq+1)) != nil {
			best = cp.Seq + 1
		}
		return true
	})
	if best <= floor {
		return 0, err
	}
	return best, err
}

// Retention of dead sessions (level 5). The sweep deletes a session at
// its absolute expiry; one that died of idleness stays until then, which
// may be refresh_token_expiry later. session.prune walks the sessions,
// Limit at a time from a cursor kept in meta, and deletes each that has
// been dead (idle or past its lifetime) for KeepFor at the command's
// time; the proposer makes a pass of the whole bucket now and then.

// TypeSessionPrune deletes sessions dead for longer than the retention.
// Version 1 carries a SessionPrune; its result is a SessionPruneResult.
const TypeSessionPrune Type = "session.prune"

// SessionPrune is the payload of session.prune v1.
type SessionPrune struct {
	// KeepFor, nanoseconds (retention.expired_sessions): how long a dead
	// session's record is kept.
	KeepFor int64 `json:"keep_for"`
	// Limit is the most sessions this command reads.
	Limit int `json:"limit"`
}

// SessionPruneResult is what session.prune did.
type SessionPruneResult struct {
	Deleted int  `json:"deleted"`
	Done    bool `json:"done"` // the walk reached the last session and starts over next time
}

var keySessionPruneCursor = []byte("session_prune_cursor")

func applySessionPrune(t txn, c Command) (any, error) {
	var p SessionPrune
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if p.Limit < 1 || p.Limit > maxSweepLimit || p.KeepFor < 0 || p.KeepFor > maxAuditRetention {
		return nil, fmt.Errorf("%w: session.prune needs 1 <= limit <= %d and keep_for >= 0", ErrInvalidCommand, maxSweepLimit)
	}
	meta := t.tx.Bucket(bucketMeta)
	after := meta.Get(keySessionPruneCursor)
	cur := t.tx.Bucket(bucketSessions).Cursor()
	k, v := cur.First()
	if len(after) > 0 {
		if k, v = cur.Seek(after); k != nil && string(k) == string(after) {
			k, v = cur.Next()
		}
	}
	var doomed []*Session
	var last []byte
	n := 0
	// The walk reads every session in the course of a pass: it leaves none
	// of the file's pages mapped behind it (releaseMapped), or a pass over
	// a million sessions left 800 MiB of state.db counted in the node's
	// resident memory.
	defer func() {
		if n >= releaseAfterValues {
			Reader{tx: t.tx}.releaseMapped()
		}
	}()
	for ; k != nil && n < p.Limit; k, v = cur.Next() {
		n++
		last = append(last[:0], k...)
		s, err := decodeSession(v)
		if err != nil {
			return nil, err
		}
		if deadSince(s)+p.KeepFor <= c.Time {
			doomed = append(doomed, s)
		}
	}
	done := k == nil
	for _, s := range doomed {
		if err := t.deleteSession(s); err != nil {
			return nil, err
		}
	}
	if done {
		last = []byte{}
	}
	if err := meta.Put(keySessionPruneCursor, last); err != nil {
		return nil, err
	}
	return SessionPruneResult{Deleted: len(doomed), Done: done}, nil
}

// deadSince is the instant s stops being Alive (Unix nanoseconds): its
// absolute expiry, or its idle deadline if that comes first.
func deadSince(s *Session) int64 {
	end := s.ExpiresAt.UnixNano()
	if s.IdleTimeout > 0 {
		end = min(end, s.LastSeenAt.UnixNano()+s.IdleTimeout)
	}
	return end
}
