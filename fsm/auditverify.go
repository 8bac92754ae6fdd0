package fsm

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// VerifyAuditFrom checks, as VerifyAudit does from seq 1, up to limit
// stored entries after seq after, the first chained to prevHash (the hash
// of entry after; AuditGenesisHash when after is 0). A caller that keeps
// the last seq and hash it checked verifies a growing trail a piece at a
// time (authcore's background check). It returns the last entry that
// checked out (nil if none did, or there were none), and nil or an
// *AuditChainError naming the first bad seq.
func (r Reader) VerifyAuditFrom(after uint64, prevHash string, limit int) (*AuditEntry, error) {
	chain := auditChain{prev: prevHash, nextSeq: after + 1}
	var last *AuditEntry
	c := r.tx.Bucket(bucketAudit).Cursor()
	for k, v := c.Seek(auditKey(after + 1)); k != nil && limit > 0; k, v = c.Next() {
		if len(k) != 8 {
			return last, &AuditChainError{Seq: chain.nextSeq, Reason: fmt.Sprintf("stray key %x", k)}
		}
		seq := binary.BigEndian.Uint64(k)
		if seq != chain.nextSeq {
			return last, &AuditChainError{Seq: chain.nextSeq, Reason: fmt.Sprintf("entry missing (next present is %d)", seq)}
		}
		e, err := decodeAudit(k, v)
		if err != nil {
			return last, &AuditChainError{Seq: seq, Reason: strings.TrimPrefix(err.Error(), "fsm: ")}
		}
		if e.Seq != seq {
			return last, &AuditChainError{Seq: seq, Reason: fmt.Sprintf("stored under seq %d but says %d", seq, e.Seq)}
		}
		if err := chain.check(e); err != nil {
			return last, err
		}
		last = e
		limit--
	}
	return last, nil
}
