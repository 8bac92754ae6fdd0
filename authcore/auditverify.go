package authcore

import (
	"context"
	"errors"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/auditsig"
	"github.com/bulwark-auth/bulwark/internal/clock"
)

// The background check of the audit trail (bulwark_audit_verified_seq):
// it walks this node's trail once from its oldest kept entry (seq 1, or
// the one after the checkpoint retention kept as its anchor), then only
// the entries added since its last round, each chained to the last one it
// checked, with every signed checkpoint on the way (fsm.AuditWalk, the
// walk `bulwark audit verify` makes). Should retention prune past where
// it stands, it starts over from the new anchor. The first round after a
// start so re-checks everything on disk; an entry altered afterwards under
// a running node (below the checked seq) is for VerifyAudit and `bulwark
// audit verify` to find.
const (
	auditVerifyPage  = 1000    // entries read per view
	auditVerifyRound = 100_000 // entries checked per round at most: about 0.2 s
)

// After a round that ends a walk of at least auditFreeAfter entries (the
// first pass after a start, over the whole trail: 1.1 million entries and
// 17-20 s of CPU at bench-scale's size), the check gives the memory it
// churned back to the system (freeMemory: a collection, then the free
// heap returned). The daemon runs with GOGC=400 under its memory limit,
// so the heap that pass grew stayed resident while the node idled: 44 MiB
// at size against 39 MiB two seconds after the start, before the pass.
var (
	auditFreeAfter uint64 = auditVerifyRound
	freeMemory            = debug.FreeOSMemory
)

// auditVerifier is the check's progress. Rounds run one at a time
// (round); the figures it publishes are read without waiting for one.
type auditVerifier struct {
	round sync.Mutex
	walk  fsm.AuditWalk // where the check stands; guarded by round

	// walked counts the entries checked since the check last caught up
	// (a walk); guarded by round.
	walked uint64

	verified atomic.Uint64 // every kept entry up to this seq verified
	last     atomic.Uint64 // the newest seq the last round saw
	brokenAt atomic.Uint64 // the first bad seq found; 0: none
}

// AuditVerification is the state of the background audit chain check.
type AuditVerification struct {
	// Verified: every entry from the oldest kept one up to this one was
	// checked and chains unaltered, with the checkpoints among them.
	Verified uint64
	// Last is the newest seq in this node's state when it last looked.
	Last uint64
	// BrokenAt is the first seq found bad (altered, missing, out of
	// order); 0 when none. The check stops there: Verified stays below.
	BrokenAt uint64
}

// AuditVerification reports how far the background check has come.
func (s *Service) AuditVerification() AuditVerification {
	a := &s.audits
	return AuditVerification{Verified: a.verified.Load(), Last: a.last.Load(), BrokenAt: a.brokenAt.Load()}
}

// CheckAuditChain runs one round of the background check: it goes on
// with the entries after the last verified one, up to auditVerifyRound of
// them. It returns the break it found (an *AuditChainError, also kept in
// AuditVerification.BrokenAt), or the error that kept it from reading.
func (s *Service) CheckAuditChain(ctx context.Context) error {
	a := &s.audits
	a.round.Lock()
	defer a.round.Unlock()
	for checked := 0; checked < auditVerifyRound; checked += auditVerifyPage {
		if err := ctx.Err(); err != nil {
			return err
		}
		var broken error
		from := a.walk.LastSeq
		err := s.store.View(func(r fsm.Reader) error {
			newest, err := r.AuditLast()
			if err != nil || newest == nil {
				return err
			}
			a.last.Store(newest.Seq)
			if a.brokenAt.Load() == 0 {
				broken = r.ContinueAuditWalk(&a.walk, auditVerifyPage, auditsig.Check)
			}
			return nil
		})
		if err != nil {
			// Unreadable (a closed store): Verified stops moving while
			// Last grows, which the stalled-verification alert sees.
			return err
		}
		a.verified.Store(a.walk.LastSeq)
		if a.walk.LastSeq > from {
			a.walked += a.walk.LastSeq - from
		}
		if broken != nil {
			var ce *fsm.AuditChainError
			if errors.As(broken, &ce) && a.brokenAt.CompareAndSwap(0, max(ce.Seq, 1)) {
				s.log.Error("AUDIT CHAIN BROKEN: an audit entry was altered, removed or inserted",
					"seq", ce.Seq, "reason", ce.Reason, "verified_through", a.verified.Load())
			}
			return broken
		}
		if a.walk.LastSeq == from || a.verified.Load() >= a.last.Load() {
			// Caught up: a walk ends here.
			if a.walked >= auditFreeAfter {
				freeMemory()
			}
			a.walked = 0
			return nil
		}
	}
	return nil
}

// RunAuditVerifier checks the audit chain now, then every interval (by
// the service's clock) until ctx ends.
func (s *Service) RunAuditVerifier(ctx context.Context, every time.Duration) {
	check := func() {
		if err := s.CheckAuditChain(ctx); err != nil && !errors.Is(err, fsm.ErrAuditChainBroken) && ctx.Err() == nil {
			s.log.Warn("audit chain check could not read the trail", "error", err)
		}
	}
	check()
	clock.Every(ctx, s.clock, every, check)
}
