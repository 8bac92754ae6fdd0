package authcore

import (
	"context"
	"fmt"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/auditsig"
)

// AuditEntry is one entry of the hash-chained audit trail, as the admin
// API and `bulwark audit` show it. It is fsm's type under authcore's name,
// so callers (api) need not import fsm.
type AuditEntry = fsm.AuditEntry

// AuditChainError names the first bad seq of a broken audit trail; it
// unwraps to fsm.ErrAuditChainBroken. VerifyAudit returns it.
type AuditChainError = fsm.AuditChainError

// Pages of the audit trail.
const (
	DefaultAuditLimit = 100  // entries per page when the caller names none
	MaxAuditLimit     = 1000 // the most entries one page may ask for
)

// Audit returns up to limit audit entries with a seq above after, oldest
// first: pass the last seq of one page as after to get the next. limit 0
// means DefaultAuditLimit; below 0 or above MaxAuditLimit is
// ErrInvalidInput. An empty page is an empty, non-nil slice. The entries
// are read from this node's state, which may trail the leader's.
func (s *Service) Audit(ctx context.Context, after uint64, limit int) ([]AuditEntry, error) {
	if limit == 0 {
		limit = DefaultAuditLimit
	}
	if limit < 1 || limit > MaxAuditLimit {
		return nil, fmt.Errorf("%w: limit must be 1 to %d", ErrInvalidInput, MaxAuditLimit)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := []AuditEntry{}
	err := s.store.View(func(r fsm.Reader) error {
		return r.AuditAfter(after, limit, func(e *fsm.AuditEntry) bool {
			out = append(out, *e)
			return true
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// VerifyAudit walks this node's whole audit trail, checking the hash chain
// and every signed checkpoint (fsm.Reader.VerifyAuditTrail), and returns
// how many entries it checked. A break is an *AuditChainError naming the
// first bad seq (count is then the number of good entries before it). A
// trail cut short at its end still verifies: compare the newest seq and
// hash with an export kept elsewhere.
func (s *Service) VerifyAudit(ctx context.Context) (count uint64, err error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	err = s.store.View(func(r fsm.Reader) error {
		rep, verr := r.VerifyAuditTrail(auditsig.Check)
		count = rep.Entries
		return verr
	})
	return count, err
}

// RequestInfoFrom returns the RequestInfo attached to ctx by
// WithRequestInfo, cleaned the way the audit trail records it (valid
// UTF-8, no control characters, bounded lengths); the zero RequestInfo
// when there is none. It lets a caller (or a test's fake Service) see what
// would be recorded.
func RequestInfoFrom(ctx context.Context) RequestInfo {
	return requestInfo(ctx)
}
