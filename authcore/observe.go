package authcore

import (
	"context"
	"errors"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
)

// SecurityEvent is a security event as an observer (the metrics) sees it:
// an audit entry this node proposed and the cluster committed, or a
// refusal the trail does not record (EventLoginLocked). Each event is
// reported once, by the node that proposed it, so the sum over a
// cluster's nodes counts each once.
type SecurityEvent struct {
	// Type is the audit entry's type: "login.success", "login.failure",
	// "lockout", "refresh.reuse", "unlock", "user.create", … (fsm.AuditAppend.Type).
	Type     string
	Severity string // fsm.AuditInfo, AuditWarning or AuditCritical
	// Details are the entry's details ("reason" of a login.failure), to
	// read only: the map is the audit entry's own.
	Details map[string]string
}

// EventLoginLocked is reported, not audited, for every password check
// refused at once because its name (or its address) is locked: the
// answer is 429, and the lockout itself is in the trail once.
const EventLoginLocked = "login.locked"

// EventChallengeRequired is reported, not audited, for every login
// refused for want of a solved proof-of-work challenge (428).
const EventChallengeRequired = "login.challenge_required"

// WithSecurityObserver has fn called with every security event this
// service proposes, once committed (an entry that failed to commit is
// logged as an error and not reported), on the goroutine that proposed
// it: fn must be quick and must not block.
func WithSecurityObserver(fn func(SecurityEvent)) Option {
	return func(s *Service) { s.observe = fn }
}

// report hands committed audit entries to the observer.
func (s *Service) report(entries []fsm.AuditAppend) {
	if s.observe == nil {
		return
	}
	for _, e := range entries {
		s.observe(SecurityEvent{Type: e.Type, Severity: e.Severity, Details: e.Details})
	}
}

// reportChallenge reports a login refused for want of a solved challenge.
func (s *Service) reportChallenge() {
	if s.observe != nil {
		s.observe(SecurityEvent{Type: EventChallengeRequired, Severity: fsm.AuditWarning})
	}
}

// reportLocked reports a password check refused as locked.
func (s *Service) reportLocked() {
	if s.observe != nil {
		s.observe(SecurityEvent{Type: EventLoginLocked, Severity: fsm.AuditWarning})
	}
}

// SessionCount is the number of sessions in the replicated state, the
// cluster's and not only this node's: every session not yet revoked,
// evicted or swept (one ended by its idle timeout counts until its
// absolute lifetime ends and the sweep removes it). It reads page
// headers, not records: a few milliseconds at a million sessions.
func (s *Service) SessionCount() (int, error) {
	n := 0
	err := s.store.View(func(r fsm.Reader) error { n = r.SessionCount(); return nil })
	return n, err
}

// BlockedAddresses is the number of live address blocks in the
// replicated state (blocks.go).
func (s *Service) BlockedAddresses() (int, error) {
	// The live ones: a block past its end blocks nothing, though the
	// sweep may not have deleted it yet (blocks.go).
	bs, err := s.Blocks(context.Background())
	return len(bs), err
}

// errKeyNotPublished: this node has no signing key in the replicated
// state yet.
var errKeyNotPublished = errors.New("authcore: the current signing key is not published yet")

// SigningKeyAge is how long ago this node's current signing key was
// published (by the service's clock); an error while it has none, or its
// key is not yet in the replicated state.
func (s *Service) SigningKeyAge() (time.Duration, error) {
	sig := s.currentSigner()
	if sig == nil {
		return 0, errKeyNotPublished
	}
	var published time.Time
	err := s.store.View(func(r fsm.Reader) error {
		k, err := r.PublicKey(sig.Kid())
		if err == nil {
			published = k.PublishedAt
		}
		return err
	})
	if err != nil {
		return 0, errors.Join(errKeyNotPublished, err)
	}
	return s.now().Sub(published), nil
}
