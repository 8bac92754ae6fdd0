package authcore

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/bulwark-auth/bulwark/authcore/altcha"
	"github.com/bulwark-auth/bulwark/fsm"
)

// Proof of work instead of a cloud CAPTCHA (API.md, "Threat response"):
// once a name or an address has ChallengeAfter failures in the lockout
// window, a login needs a solved ALTCHA challenge (authcore/altcha), whose
// size grows with the suspicion. The gate is in the log (login.attempt v3,
// fsm/challenge.go), so it holds on every node and a solution is good
// once cluster-wide.

// Challenge sizes: the first challenge asks for about challengeBase/2
// hashes, each further failure doubles it, up to challengeMax.
const (
	challengeBase = 20_000
	challengeMax  = 2_000_000
	challengeTTL  = 10 * time.Minute
)

// ChallengeError says a login needs a solved challenge: Challenge is the
// one to solve (API.md: 428 challenge_required).
type ChallengeError struct {
	Challenge altcha.Challenge
	Reason    string
}

func (e *ChallengeError) Error() string { return e.Reason }

// Unwrap makes errors.Is(err, ErrChallengeRequired) true.
func (e *ChallengeError) Unwrap() error { return ErrChallengeRequired }

// powSolution is a verified solution, for login.attempt v3.
type powSolution struct {
	hash    string
	expires time.Time
}

// NewChallenge makes a challenge of the base size (GET
// /v1/auth/challenge, for the login page's widget).
func (s *Service) NewChallenge() (altcha.Challenge, error) { return s.challengeFor(0) }

func (s *Service) challengeFor(extra int) (altcha.Challenge, error) {
	if s.box == nil {
		return altcha.Challenge{}, ErrMFAUnavailable
	}
	size := int64(challengeBase)
	for range min(max(extra, 0), 10) {
		size *= 2
	}
	return altcha.New(s.box.keys[purposePoW], min(size, challengeMax), s.now().Add(challengeTTL))
}

// checkSolution verifies a client's solution: its form, signature and
// expiry. A forged one is bad input; an expired one gets a new challenge.
func (s *Service) checkSolution(encoded string) (*powSolution, error) {
	if encoded == "" {
		return nil, nil
	}
	if s.box == nil {
		return nil, ErrMFAUnavailable
	}
	p, exp, err := altcha.Verify(s.box.keys[purposePoW], encoded, s.now())
	switch {
	case errors.Is(err, altcha.ErrExpired):
		return nil, s.challengeError(0, "the challenge has expired; solve this one")
	case err != nil:
		return nil, fmt.Errorf("%w: altcha: %v", ErrInvalidInput, err)
	}
	h := sha256.Sum256([]byte("altcha " + p.Challenge))
	return &powSolution{hash: hex.EncodeToString(h[:]), expires: exp}, nil
}

func (s *Service) challengeError(extra int, reason string) error {
	ch, err := s.challengeFor(extra)
	if err != nil {
		return err
	}
	return &ChallengeError{Challenge: ch, Reason: reason}
}

// challengeGate is what login.attempt v3 carries: the threshold (0 for
// an exempt client, or with the gate off) and the solution if any.
func (s *Service) challengeGate(ri RequestInfo, sol *powSolution) fsm.LoginAttemptV3 {
	var v3 fsm.LoginAttemptV3
	if s.cfg.ChallengeAfter > 0 && !s.exempt(ri) {
		v3.ChallengeAfter = s.cfg.ChallengeAfter
	}
	if sol != nil {
		v3.Solution, v3.SolutionExpires = sol.hash, sol.expires.UnixNano()
	}
	return v3
}
