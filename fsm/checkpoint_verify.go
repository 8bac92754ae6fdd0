package fsm

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

// SignatureCheck verifies sig, by key, over msg: nil when it holds. fsm
// imports no signature scheme beyond the standard library's, so the caller
// (node's offline verifier) supplies ES256 and ML-DSA-65.
type SignatureCheck func(key *AuditPublicKey, msg, sig []byte) error

// AuditTrailReport is what VerifyAuditTrail checked.
type AuditTrailReport struct {
	Entries  uint64 `json:"entries"`   // entries whose chain links verified
	FirstSeq uint64 `json:"first_seq"` // 0: the trail is empty
	LastSeq  uint64 `json:"last_seq"`
	LastHash string `json:"last_hash,omitempty"`
	// Checkpoints counts the checkpoints whose hash and both signatures
	// verified; LastCheckpoint is the newest one's seq (0: none), and
	// Unvouched the entries after it, which only the chain holds.
	Checkpoints    int    `json:"checkpoints"`
	LastCheckpoint uint64 `json:"last_checkpoint"`
	Unvouched      uint64 `json:"unvouched"`
}

// VerifyAuditTrail walks the whole stored trail and every checkpoint, in seq
// order, holding one entry and one checkpoint in memory at a time. It
// checks:
//
//   - the chain, as VerifyAudit: seqs consecutive, each entry's hash
//     recomputed, each prev_hash the previous entry's hash;
//   - each checkpoint: the entry at its seq has its hash ("checkpoint
//     hash differs": an entry after the previous good checkpoint, up to
//     this one, was altered and the chain recomputed over it), both
//     signatures over its Preimage by recorded audit keys of its node
//     ("checkpoint signature bad");
//   - that each checkpoint's trail entry names it, and each
//     "audit.checkpoint" entry names a stored checkpoint;
//   - that no checkpoint names a seq past the trail's end (a trail cut
//     short behind a checkpoint).
//
// A trail may start past seq 1 (retention pruned its head, retention.go):
// its first kept entry, the audit floor's or the oldest stored, must then
// continue from a checkpoint at the seq before it, whose signatures
// verify, and whose hash is that entry's prev_hash. Entries below the
// floor that a prune has yet to delete are not read.
//
// It returns the report and nil, or an *AuditChainError naming the first
// bad seq. A trail cut short after its newest checkpoint's entry still
// verifies, as does one whose newest checkpoints were deleted with the
// entries after them: compare the newest seq and checkpoint with a copy
// kept elsewhere (an export).
func (r Reader) VerifyAuditTrail(check SignatureCheck) (AuditTrailReport, error) {
	var w AuditWalk
	err := r.ContinueAuditWalk(&w, 0, check)
	return w.AuditTrailReport, err
}

// AuditWalk is a verification of the trail in progress, as
// ContinueAuditWalk left it: what it found so far, and where it goes on.
// The zero value starts at the oldest kept entry.
type AuditWalk struct {
	AuditTrailReport
	chain   auditChain
	pending map[uint64]uint64 // seq of a checkpoint's trail entry → the checkpoint's seq
	started bool
}

// ContinueAuditWalk goes on with w, checking what VerifyAuditTrail checks,
// for up to limit more entries (limit <= 0: to the end). A caller that
// keeps w between views verifies a growing trail a piece at a time
// (authcore's background check), each piece chained to the last. Should
// retention have pruned the trail past where w stands, w starts over at
// the new oldest kept entry, from its anchoring checkpoint. A nil check
// verifies no signature (the chain and the checkpoints' hashes still are).
//
// On reaching the trail's end it also checks that no checkpoint names an
// entry past it and that every checkpoint's record is there, and sets
// Unvouched. It returns nil or an *AuditChainError naming the first bad
// seq; w's report then says what verified before it.
func (r Reader) ContinueAuditWalk(w *AuditWalk, limit int, check SignatureCheck) error {
	start, err := r.auditStart()
	if err != nil {
		return err
	}
	if !w.started || (start != 0 && w.chain.nextSeq < start) {
		*w = AuditWalk{started: true, pending: map[uint64]uint64{}}
		if start != 0 {
			if err := r.beginWalk(w, start, check); err != nil {
				return err
			}
		}
	}
	if err := w.lateCheckpoints(r, check); err != nil {
		return err
	}
	cps := r.tx.Bucket(bucketCheckpoints).Cursor()
	ck, cv := cps.Seek(auditKey(max(w.chain.nextSeq, 1)))
	nextCheckpoint := func() (*AuditCheckpointRecord, error) {
		if ck == nil {
			return nil, nil
		}
		cp, err := decodeCheckpoint(ck, cv)
		if err != nil {
			seq := uint64(0)
			if len(ck) == 8 {
				seq = binary.BigEndian.Uint64(ck)
			}
			return nil, &AuditChainError{Seq: seq, Reason: strings.TrimPrefix(err.Error(), "fsm: ")}
		}
		ck, cv = cps.Next()
		return cp, nil
	}
	cp, err := nextCheckpoint()
	if err != nil {
		return err
	}
	w.chain.start = 0 // this view's first entry (erase.go)
	c := r.tx.Bucket(bucketAudit).Cursor()
	n := 0
	defer func() {
		// A long walk (a node's first pass over the trail, an offline
		// verification) leaves no mapped pages behind.
		if n >= releaseAfterValues {
			r.releaseMapped()
		}
	}()
	for k, v := c.Seek(auditKey(max(w.chain.nextSeq, 1))); k != nil; k, v = c.Next() {
		if limit > 0 && n >= limit {
			return nil
		}
		e, err := w.entry(k, v)
		if err != nil {
			return err
		}
		if cp != nil && cp.Seq == e.Seq {
			if err := w.checkpoint(r, cp, e, check); err != nil {
				return err
			}
			if cp, err = nextCheckpoint(); err != nil {
				return err
			}
		}
		w.Entries++
		w.LastSeq, w.LastHash = e.Seq, e.Hash
		n++
	}
	if err := w.chain.finish(); err != nil {
		return err
	}
	if cp != nil {
		return &AuditChainError{Seq: cp.Seq, Reason: fmt.Sprintf(
			"checkpoint %d (signed by %s) names an entry the trail does not hold: it ends at seq %d", cp.Seq, cp.Node, w.LastSeq)}
	}
	for entry, seq := range w.pending {
		return &AuditChainError{Seq: entry, Reason: fmt.Sprintf(
			"the entry recording checkpoint %d is missing: the trail ends at seq %d", seq, w.LastSeq)}
	}
	if w.LastCheckpoint != 0 {
		w.Unvouched = w.LastSeq - w.LastCheckpoint
	} else {
		w.Unvouched = w.Entries
	}
	return nil
}

// beginWalk starts w at start, the oldest kept entry: seq 1, or the one
// after a checkpoint, which anchors the chain.
func (r Reader) beginWalk(w *AuditWalk, start uint64, check SignatureCheck) error {
	w.FirstSeq = start
	w.chain = auditChain{prev: AuditGenesisHash, nextSeq: 1}
	if start == 1 {
		return nil
	}
	anchor, err := r.anchor(start, check)
	if err != nil {
		return err
	}
	w.chain = auditChain{prev: anchor.Hash, nextSeq: start}
	w.LastCheckpoint = anchor.Seq
	// Checkpoints of pruned entries cannot be held to them, but their
	// records may be kept entries.
	return r.AuditCheckpoints(0, func(cp *AuditCheckpointRecord) bool {
		if cp.Seq >= start {
			return false
		}
		if cp.EntrySeq >= start {
			w.pending[cp.EntrySeq] = cp.Seq
		}
		return true
	})
}

// entry checks the stored entry k, v as the next of w's chain.
func (w *AuditWalk) entry(k, v []byte) (*AuditEntry, error) {
	if len(k) != 8 {
		return nil, &AuditChainError{Seq: w.chain.nextSeq, Reason: fmt.Sprintf("stray key %x", k)}
	}
	seq := binary.BigEndian.Uint64(k)
	if seq != w.chain.nextSeq {
		return nil, &AuditChainError{Seq: w.chain.nextSeq, Reason: fmt.Sprintf("entry missing (next present is %d)", seq)}
	}
	e, err := decodeAudit(k, v)
	if err != nil {
		return nil, &AuditChainError{Seq: seq, Reason: strings.TrimPrefix(err.Error(), "fsm: ")}
	}
	if e.Seq != seq {
		return nil, &AuditChainError{Seq: seq, Reason: fmt.Sprintf("stored under seq %d but says %d", seq, e.Seq)}
	}
	if err := w.chain.check(e); err != nil {
		return nil, err
	}
	if want, ok := w.pending[seq]; ok {
		if e.Type != string(TypeAuditCheckpoint) || e.Details["seq"] != strconv.FormatUint(want, 10) {
			return nil, &AuditChainError{Seq: seq, Reason: fmt.Sprintf("checkpoint %d says this entry records it, but it does not", want)}
		}
		delete(w.pending, seq)
	} else if e.Type == string(TypeAuditCheckpoint) {
		return nil, &AuditChainError{Seq: seq, Reason: fmt.Sprintf("the entry records checkpoint %s, which is not stored", e.Details["seq"])}
	}
	return e, nil
}

// lateCheckpoints checks the checkpoints signed, since w's last piece, of
// entries w has already walked: the checkpoint schedule signs the newest
// entry, which a walk in pieces (the node's background check) has often
// passed. Each is held to its entry, read again (its own hash recomputed,
// as the walk did, unless an erasure rewrote it), as the walk would have;
// its trail entry then comes after w's position, where the walk expects it.
func (w *AuditWalk) lateCheckpoints(r Reader, check SignatureCheck) error {
	if w.chain.nextSeq <= 1 {
		return nil
	}
	audit := r.tx.Bucket(bucketAudit)
	c := r.tx.Bucket(bucketCheckpoints).Cursor()
	for k, v := c.Seek(auditKey(max(w.LastCheckpoint+1, w.FirstSeq))); k != nil; k, v = c.Next() {
		cp, err := decodeCheckpoint(k, v)
		if err != nil {
			return &AuditChainError{Seq: binary.BigEndian.Uint64(k), Reason: strings.TrimPrefix(err.Error(), "fsm: ")}
		}
		if cp.Seq >= w.chain.nextSeq {
			return nil
		}
		ek := auditKey(cp.Seq)
		e, err := decodeAudit(ek, audit.Get(ek))
		switch {
		case err != nil:
			return &AuditChainError{Seq: cp.Seq, Reason: fmt.Sprintf("checkpoint %d: its entry: %s", cp.Seq, strings.TrimPrefix(err.Error(), "fsm: "))}
		case e.Seq != cp.Seq:
			return &AuditChainError{Seq: cp.Seq, Reason: fmt.Sprintf("stored under seq %d but says %d", cp.Seq, e.Seq)}
		case len(e.Erased) == 0 && e.ComputeHash() != e.Hash:
			return &AuditChainError{Seq: cp.Seq, Reason: "hash does not match the entry's contents"}
		}
		if err := w.checkpoint(r, cp, e, check); err != nil {
			return err
		}
	}
	return nil
}

// checkpoint checks cp, the checkpoint at entry e's seq.
func (w *AuditWalk) checkpoint(r Reader, cp *AuditCheckpointRecord, e *AuditEntry, check SignatureCheck) error {
	if cp.Hash != e.Hash {
		return &AuditChainError{Seq: e.Seq, From: w.LastCheckpoint + 1, Reason: fmt.Sprintf(
			"checkpoint hash differs: checkpoint %d signed by %s says %s, the entry's hash is %s; "+
				"an entry from seq %d to %d was altered and the chain recomputed after it",
			cp.Seq, cp.Node, cp.Hash, e.Hash, w.LastCheckpoint+1, e.Seq)}
	}
	if err := r.checkSignatures(cp, check); err != nil {
		return err
	}
	if cp.EntrySeq <= e.Seq {
		return &AuditChainError{Seq: e.Seq, Reason: fmt.Sprintf("checkpoint %d names entry %d, not a later one, as its record", cp.Seq, cp.EntrySeq)}
	}
	w.pending[cp.EntrySeq] = cp.Seq
	w.Checkpoints++
	w.LastCheckpoint = e.Seq
	return nil
}

// anchor returns the checkpoint a trail starting at first continues from,
// its signatures verified.
func (r Reader) anchor(first uint64, check SignatureCheck) (*AuditCheckpointRecord, error) {
	v := r.tx.Bucket(bucketCheckpoints).Get(auditKey(first - 1))
	if v == nil {
		return nil, &AuditChainError{Seq: first - 1, Reason: fmt.Sprintf(
			"the trail starts at seq %d, and no checkpoint at seq %d vouches for what came before", first, first-1)}
	}
	cp, err := decodeCheckpoint(auditKey(first-1), v)
	if err != nil {
		return nil, &AuditChainError{Seq: first - 1, Reason: strings.TrimPrefix(err.Error(), "fsm: ")}
	}
	if err := r.checkSignatures(cp, check); err != nil {
		return nil, err
	}
	return cp, nil
}

// checkSignatures verifies both signatures of cp against its node's
// recorded audit keys.
func (r Reader) checkSignatures(cp *AuditCheckpointRecord, check SignatureCheck) error {
	msg := cp.Preimage()
	for _, s := range []struct {
		kid, alg string
		sig      []byte
	}{{cp.ES256Kid, AuditAlgES256, cp.ES256Sig}, {cp.MLDSA65Kid, AuditAlgMLDSA65, cp.MLDSA65Sig}} {
		k, err := r.AuditKey(s.kid)
		if err != nil || k.Node != cp.Node || k.Alg != s.alg {
			return &AuditChainError{Seq: cp.Seq, Reason: fmt.Sprintf(
				"checkpoint %d names %s key %s, which is not a recorded audit key of %s", cp.Seq, s.alg, s.kid, cp.Node)}
		}
		if check == nil {
			continue
		}
		if err := check(k, msg, s.sig); err != nil {
			return &AuditChainError{Seq: cp.Seq, Reason: fmt.Sprintf(
				"checkpoint signature bad: the %s signature of checkpoint %d by %s (key %s) does not verify: %v",
				s.alg, cp.Seq, cp.Node, s.kid, err)}
		}
	}
	return nil
}
