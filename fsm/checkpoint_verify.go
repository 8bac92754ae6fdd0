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
// A trail may start past seq 1 (retention pruned its head): its first
// entry must then continue from a checkpoint at the seq before it, whose
// signatures verify, and whose hash is that entry's prev_hash.
//
// It returns the report and nil, or an *AuditChainError naming the first
// bad seq. A trail cut short after its newest checkpoint's entry still
// verifies, as does one whose newest checkpoints were deleted with the
// entries after them: compare the newest seq and checkpoint with a copy
// kept elsewhere (an export).
func (r Reader) VerifyAuditTrail(check SignatureCheck) (AuditTrailReport, error) {
	var rep AuditTrailReport
	cps := r.tx.Bucket(bucketCheckpoints).Cursor()
	ck, cv := cps.First()
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
		return rep, err
	}
	// pending maps the seq of a checkpoint's trail entry to its seq.
	pending := map[uint64]uint64{}
	var chain auditChain
	c := r.tx.Bucket(bucketAudit).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(k) != 8 {
			return rep, &AuditChainError{Seq: chain.nextSeq, Reason: fmt.Sprintf("stray key %x", k)}
		}
		seq := binary.BigEndian.Uint64(k)
		if rep.Entries == 0 {
			// The first entry: seq 1, or the one after a checkpoint.
			rep.FirstSeq = seq
			chain = auditChain{prev: AuditGenesisHash, nextSeq: 1}
			if seq != 1 {
				anchor, err := r.anchor(seq, check)
				if err != nil {
					return rep, err
				}
				chain = auditChain{prev: anchor.Hash, nextSeq: seq}
				rep.LastCheckpoint = anchor.Seq
				if anchor.EntrySeq >= seq {
					pending[anchor.EntrySeq] = anchor.Seq
				}
			}
			// Checkpoints of pruned entries cannot be held to them.
			for cp != nil && cp.Seq < seq {
				if cp, err = nextCheckpoint(); err != nil {
					return rep, err
				}
			}
		}
		if seq != chain.nextSeq {
			return rep, &AuditChainError{Seq: chain.nextSeq, Reason: fmt.Sprintf("entry missing (next present is %d)", seq)}
		}
		e, err := decodeAudit(k, v)
		if err != nil {
			return rep, &AuditChainError{Seq: seq, Reason: strings.TrimPrefix(err.Error(), "fsm: ")}
		}
		if e.Seq != seq {
			return rep, &AuditChainError{Seq: seq, Reason: fmt.Sprintf("stored under seq %d but says %d", seq, e.Seq)}
		}
		if err := chain.check(e); err != nil {
			return rep, err
		}
		if want, ok := pending[seq]; ok {
			if e.Type != string(TypeAuditCheckpoint) || e.Details["seq"] != strconv.FormatUint(want, 10) {
				return rep, &AuditChainError{Seq: seq, Reason: fmt.Sprintf("checkpoint %d says this entry records it, but it does not", want)}
			}
			delete(pending, seq)
		} else if e.Type == string(TypeAuditCheckpoint) {
			return rep, &AuditChainError{Seq: seq, Reason: fmt.Sprintf("the entry records checkpoint %s, which is not stored", e.Details["seq"])}
		}
		if cp != nil && cp.Seq == seq {
			if cp.Hash != e.Hash {
				return rep, &AuditChainError{Seq: seq, From: rep.LastCheckpoint + 1, Reason: fmt.Sprintf(
					"checkpoint hash differs: checkpoint %d signed by %s says %s, the entry's hash is %s; "+
						"an entry from seq %d to %d was altered and the chain recomputed after it",
					cp.Seq, cp.Node, cp.Hash, e.Hash, rep.LastCheckpoint+1, seq)}
			}
			if err := r.checkSignatures(cp, check); err != nil {
				return rep, err
			}
			if cp.EntrySeq <= seq {
				return rep, &AuditChainError{Seq: seq, Reason: fmt.Sprintf("checkpoint %d names entry %d, not a later one, as its record", cp.Seq, cp.EntrySeq)}
			}
			pending[cp.EntrySeq] = cp.Seq
			rep.Checkpoints++
			rep.LastCheckpoint = seq
			if cp, err = nextCheckpoint(); err != nil {
				return rep, err
			}
		}
		rep.Entries++
		rep.LastSeq, rep.LastHash = seq, e.Hash
	}
	if err := chain.finish(); err != nil {
		return rep, err
	}
	if cp != nil {
		return rep, &AuditChainError{Seq: cp.Seq, Reason: fmt.Sprintf(
			"checkpoint %d (signed by %s) names an entry the trail does not hold: it ends at seq %d", cp.Seq, cp.Node, rep.LastSeq)}
	}
	for entry, seq := range pending {
		return rep, &AuditChainError{Seq: entry, Reason: fmt.Sprintf(
			"the entry recording checkpoint %d is missing: the trail ends at seq %d", seq, rep.LastSeq)}
	}
	if rep.LastCheckpoint != 0 {
		rep.Unvouched = rep.LastSeq - rep.LastCheckpoint
	} else {
		rep.Unvouched = rep.Entries
	}
	return rep, nil
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
		if err := check(k, msg, s.sig); err != nil {
			return &AuditChainError{Seq: cp.Seq, Reason: fmt.Sprintf(
				"checkpoint signature bad: the %s signature of checkpoint %d by %s (key %s) does not verify: %v",
				s.alg, cp.Seq, cp.Node, s.kid, err)}
		}
	}
	return nil
}
