package authcore

import (
	"context"
	"fmt"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
)

// Retention ([retention], issue 19). Two things bound what the replicated
// state keeps:
//
//   - The audit trail is pruned from its head: the leader's sweep proposes
//     audit.prune (fsm/retention.go) keeping from the entry after the
//     newest signed checkpoint older than Audit, so the kept chain stays
//     verifiable from that checkpoint. Feature level 5.
//   - Failed logins for names no user has are capped per client address
//     and window (login.failure v4, fsm/auditcap.go): the first
//     UnknownNameEntries get an entry each, the rest one summary entry per
//     window. The metrics still count every failure: this node reports
//     each one it proposed, whatever the trail keeps.
//
//   - Dead sessions: the sweep deletes a session at its absolute expiry
//     (fsm/expiry.go), but one that died of idleness stayed until then,
//     refresh_token_expiry after its start. The leader walks the sessions
//     once every sessionPruneEvery (session.prune, a thousand per
//     proposal) and deletes those dead for longer than ExpiredSessions.
//
// Expired blocks need nothing more: the sweep deletes a block at its end;
// the blocklist's history (address.block, address.unblock) is the audit
// trail's, and is kept and pruned with it.

// RetentionConfig is [retention].
type RetentionConfig struct {
	// Audit is how long audit entries are kept; 0 keeps them for ever.
	// At least fsm.MinAuditRetention otherwise.
	Audit time.Duration
	// UnknownNameEntries failed logins for unknown names per client
	// address (IPv6: its /64) and UnknownNameWindow get an audit entry
	// each; the rest are counted into one summary entry per window. 0
	// means the default, 10; below 0 turns the cap off. Level 5.
	UnknownNameEntries int
	// UnknownNameWindow is that window; 0 means the default, an hour.
	UnknownNameWindow time.Duration
	// ExpiredSessions is how long a dead session's record is kept (one
	// dead of idleness; one past its lifetime goes at once); 0 leaves
	// idle-dead sessions to their absolute expiry. Level 5.
	ExpiredSessions time.Duration
}

// Defaults of [retention]'s cap on unknown-name failures.
const (
	DefaultUnknownNameEntries = 10
	DefaultUnknownNameWindow  = time.Hour
)

func (c *RetentionConfig) setDefaults() {
	if c.UnknownNameEntries == 0 {
		c.UnknownNameEntries = DefaultUnknownNameEntries
	}
	if c.UnknownNameWindow <= 0 {
		c.UnknownNameWindow = DefaultUnknownNameWindow
	}
}

func (c *RetentionConfig) validate() error {
	switch {
	case c.Audit < 0 || c.Audit > 0 && c.Audit < fsm.MinAuditRetention:
		return fmt.Errorf("%w: retention.audit must be 0 (keep for ever) or at least %s", ErrInvalidInput, fsm.MinAuditRetention)
	case c.UnknownNameEntries > fsm.MaxAuditCapEntries:
		return fmt.Errorf("%w: retention.unknown_name_entries above %d", ErrInvalidInput, fsm.MaxAuditCapEntries)
	case c.ExpiredSessions < 0 || c.ExpiredSessions > 366*24*time.Hour:
		return fmt.Errorf("%w: retention.expired_sessions must be 0 to 366 days", ErrInvalidInput)
	case c.UnknownNameWindow > 366*24*time.Hour:
		return fmt.Errorf("%w: retention.unknown_name_window above 366 days", ErrInvalidInput)
	}
	return nil
}

// unknownNameCap is the cap a failed login for a name no user has
// carries (login.failure v4); zero when the cap is off.
func (s *Service) unknownNameCap() fsm.AuditCap {
	r := s.cfg.Retention
	if r.UnknownNameEntries <= 0 {
		return fsm.AuditCap{}
	}
	return fsm.AuditCap{Entries: r.UnknownNameEntries, Window: int64(r.UnknownNameWindow)}
}

// Prune budget: entries deleted per audit.prune, and proposals per call
// (while the result says More, sweepPause apart), pruneRounds at most.
const (
	pruneLimit  = 1000
	pruneRounds = 1000
)

// PruneAudit deletes the audit entries older than the retention, up to the
// newest checkpoint that old, in proposals of pruneLimit entries, and
// returns how many it deleted. Nothing when retention.audit is 0, below
// feature level 5, or on a node that does not lead (the sweep's
// schedule runs everywhere; the leader's proposal suffices).
func (s *Service) PruneAudit(ctx context.Context) (int, error) {
	keep := s.cfg.Retention.Audit
	if keep <= 0 || !s.leads() || !s.proposable(fsm.TypeAuditPrune, 1) {
		return 0, nil
	}
	deleted := 0
	for range pruneRounds {
		if err := ctx.Err(); err != nil {
			return deleted, err
		}
		now := s.now()
		var before uint64
		if err := s.store.View(func(r fsm.Reader) (err error) {
			before, err = r.PruneCandidate(now.Add(-keep).UnixNano())
			return err
		}); err != nil || before == 0 {
			return deleted, err
		}
		cmd, err := fsm.NewCommand(fsm.TypeAuditPrune, 1, now.UnixNano(),
			fsm.AuditPrune{BeforeSeq: before, KeepFor: int64(keep), Limit: pruneLimit})
		if err != nil {
			return deleted, err
		}
		res, err := proposeAs[fsm.AuditPruneResult](ctx, s, cmd)
		if err != nil {
			return deleted, err
		}
		deleted += res.Deleted
		if !res.More {
			return deleted, nil
		}
		select { // other writes go between
		case <-ctx.Done():
			return deleted, ctx.Err()
		case <-time.After(sweepPause):
		}
	}
	return deleted, nil
}

// Session pruning: a pass over every session at most this often, in
// proposals reading sessionPruneLimit sessions each, sweepPause apart.
const (
	sessionPruneEvery = time.Hour
	sessionPruneLimit = 1000
	sessionPruneMax   = 100_000 // proposals in one pass: 10^8 sessions
)

// PruneSessions makes one pass over the sessions, when one is due,
// deleting those dead for longer than retention.expired_sessions, and
// returns how many it deleted. Nothing when that is 0, below feature
// level 5, or on a node that does not lead.
func (s *Service) PruneSessions(ctx context.Context) (int, error) {
	keep := s.cfg.Retention.ExpiredSessions
	if keep <= 0 || !s.leads() || !s.proposable(fsm.TypeSessionPrune, 1) {
		return 0, nil
	}
	if last := s.sessionPruned.Load(); last != 0 && s.now().Sub(time.Unix(0, last)) < sessionPruneEvery {
		return 0, nil
	}
	deleted := 0
	for range sessionPruneMax {
		cmd, err := fsm.NewCommand(fsm.TypeSessionPrune, 1, s.now().UnixNano(), fsm.SessionPrune{KeepFor: int64(keep), Limit: sessionPruneLimit})
		if err != nil {
			return deleted, err
		}
		res, err := proposeAs[fsm.SessionPruneResult](ctx, s, cmd)
		if err != nil {
			return deleted, err
		}
		deleted += res.Deleted
		if res.Done {
			break
		}
		select {
		case <-ctx.Done():
			return deleted, ctx.Err()
		case <-time.After(sweepPause):
		}
	}
	s.sessionPruned.Store(s.now().UnixNano())
	return deleted, nil
}
