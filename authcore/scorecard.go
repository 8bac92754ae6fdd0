package authcore

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
)

// The auth service's facts for the hardening scorecard (bulwark doctor):
// its administrators' second factors and the state of the audit trail.

// maxNamed bounds the administrators AdminFactors names.
const maxNamed = 10

// AdminFactors is how many enabled administrators there are and how many
// of them have a confirmed second factor.
type AdminFactors struct {
	Admins, WithFactor int
	// Without names the first administrators (by name) without one.
	Without []string
}

// AdminFactors counts the enabled accounts with the admin role and those
// of them with a confirmed second factor (TOTP or a passkey; recovery
// codes alone are none).
func (s *Service) AdminFactors(ctx context.Context) (AdminFactors, error) {
	var a AdminFactors
	err := s.store.View(func(r fsm.Reader) error {
		var ferr error
		err := r.Users(func(u *fsm.User) bool {
			if u.Disabled || !slices.Contains(u.Roles, RoleAdmin) {
				return true
			}
			a.Admins++
			m, err := r.MFA(u.ID)
			if err != nil {
				ferr = err
				return false
			}
			if m.Enabled() {
				a.WithFactor++
			} else if len(a.Without) < maxNamed {
				a.Without = append(a.Without, u.Username)
			}
			return true
		})
		if err != nil {
			return err
		}
		return ferr
	})
	return a, err
}

// AuditStatus is the audit trail's state on this node.
type AuditStatus struct {
	Head     uint64 // the newest entry's seq; 0: empty
	Verified uint64 // every entry up to it chains from seq 1
	BrokenAt uint64 // the first bad seq found; 0: none
	// CheckpointSeq is the entry the last signed checkpoint vouches for;
	// UnvouchedSince the time of the oldest entry after it, zero when the
	// checkpoint (or its own record) is the head.
	CheckpointSeq  uint64
	UnvouchedSince time.Time
}

// AuditStatus brings the background chain check up to the head (one round
// of CheckAuditChain, bounded) and reports it with the last checkpoint.
func (s *Service) AuditStatus(ctx context.Context) (AuditStatus, error) {
	if err := s.CheckAuditChain(ctx); err != nil && !errors.Is(err, fsm.ErrAuditChainBroken) {
		return AuditStatus{}, err
	}
	v := s.AuditVerification()
	st := AuditStatus{Verified: v.Verified, BrokenAt: v.BrokenAt}
	err := s.store.View(func(r fsm.Reader) error {
		last, err := r.AuditLast()
		if err != nil || last == nil {
			return err
		}
		st.Head = last.Seq
		cp, err := r.LastAuditCheckpoint()
		if err != nil {
			return err
		}
		var after, record uint64
		if cp != nil {
			st.CheckpointSeq, after, record = cp.Seq, cp.Seq, cp.EntrySeq
			if last.Seq <= cp.EntrySeq {
				return nil // nothing but the checkpoint's own record since
			}
		}
		// The oldest entry after it, but for its own record.
		return r.AuditAfter(after, 2, func(e *fsm.AuditEntry) bool {
			if e.Seq == record {
				return true
			}
			st.UnvouchedSince = e.Time
			return false
		})
	})
	return st, err
}
