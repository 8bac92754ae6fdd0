package fsm

import (
	"encoding/json"
	"fmt"
	"reflect"
	"time"
)

// Proof of work before a password check (level 4): login.attempt v3 is v2
// plus a gate. Once the name, or the client's address, has ChallengeAfter
// failures in the current window, an attempt needs a solved challenge
// (authcore/altcha): without one it is refused with ChallengeRequired and
// the suspicion (the larger of the two counts), from which the proposer
// sizes the next challenge; with one, its hash is remembered until the
// challenge expires (bucketMFAUsed, swept like a second factor's ticket),
// so a solution is good once on every node. The proposer has checked the
// solution's signature and expiry; Apply only refuses its reuse, which is
// the one thing a proposer cannot see alone.
type LoginAttemptV3 struct {
	LoginAttemptV2
	// ChallengeAfter: failures after which a challenge is required; 0
	// turns the gate off (an exempt client).
	ChallengeAfter int `json:"challenge_after,omitempty"`
	// Solution is the hex SHA-256 of the solved challenge, if one came
	// with the attempt; SolutionExpires (Unix ns) is its expiry.
	Solution        string `json:"solution,omitempty"`
	SolutionExpires int64  `json:"solution_expires,omitempty"`
	// Device, if set, is the hex SHA-256 of a device token (OWASP's
	// device cookie, authcore/device.go) whose budget this attempt draws
	// on: refused as locked once the token has been spent (ticket.spend).
	Device string `json:"device,omitempty"`
}

// TypeTicketSpend spends a one-time value (a device token whose budget
// ran out) until it expires: it is refused from then on, on every node.
const TypeTicketSpend Type = "ticket.spend"

// TicketSpend is ticket.spend v1.
type TicketSpend struct {
	Ticket  string `json:"ticket"`
	Expires int64  `json:"expires"` // Unix ns
}

// LoginAttemptV4 is the payload of login.attempt v4 (level 5): v3's, with
// the detection rules (blocks.go). An attempt refused for want of a
// solution (or with a spent one) counts against its address's detection
// record as a failed login would, so a client that never solves its
// challenge is blocked like one that guesses: without it, unsolved
// attempts cost it nothing and each still costs the cluster an entry.
type LoginAttemptV4 struct {
	LoginAttemptV3
	Detect DetectLimits `json:"detect"`
}

var challengeCommands = []CommandSpec{
	{Type: TypeLoginAttempt, Version: 3, Level: 4, Apply: applyLoginAttemptV3, Result: reflect.TypeFor[AttemptResult]()},
	{Type: TypeLoginAttempt, Version: 4, Level: 5, Apply: applyLoginAttemptV4, Result: reflect.TypeFor[AttemptResult]()},
	{Type: TypeTicketSpend, Version: 1, Level: 4, Apply: applyTicketSpend, Result: nil},
}

func applyTicketSpend(t txn, c Command) (any, error) {
	var p TicketSpend
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if !validHexHash(p.Ticket) || p.Expires <= 0 {
		return nil, fmt.Errorf("%w: ticket.spend needs a hash and an expiry", ErrInvalidCommand)
	}
	if p.Expires <= c.Time {
		return nil, nil // expired already: refused by its own expiry
	}
	if err := t.tx.Bucket(bucketMFAUsed).Put([]byte(p.Ticket), nil); err != nil {
		return nil, err
	}
	return nil, t.index(p.Expires, expiryTicket, p.Ticket)
}

func applyLoginAttemptV3(t txn, c Command) (any, error) {
	var p LoginAttemptV3
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	return loginAttemptV3(t, c, p)
}

func applyLoginAttemptV4(t txn, c Command) (any, error) {
	var p LoginAttemptV4
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if !p.Detect.valid() || !validLockoutName(p.Username) || !validIP(p.IP) {
		return nil, fmt.Errorf("%w: login.attempt v4 needs a username, an address and detection limits in range (or none)", ErrInvalidCommand)
	}
	res, err := loginAttemptV3(t, c, p.LoginAttemptV3)
	if r, ok := res.(AttemptResult); err != nil || !ok || !r.ChallengeRequired {
		return res, err
	}
	op := newLockoutOp(t, c.Time)
	blocked, err := op.detect(p.IP, p.Username, p.Detect)
	if err != nil {
		return nil, err
	}
	r := res.(AttemptResult)
	r.Blocked = blocked
	return r, op.commit()
}

func loginAttemptV3(t txn, c Command, p LoginAttemptV3) (any, error) {
	if p.ChallengeAfter < 0 || p.ChallengeAfter > 1000 || (p.Solution != "" && (!validHexHash(p.Solution) || p.SolutionExpires <= c.Time)) ||
		(p.Device != "" && !validHexHash(p.Device)) {
		return nil, fmt.Errorf("%w: login.attempt v3 challenge_after, solution or device", ErrInvalidCommand)
	}
	if p.Device != "" && t.tx.Bucket(bucketMFAUsed).Get([]byte(p.Device)) != nil {
		return AttemptResult{Locked: true, RetryAfter: time.Duration(p.Window)}, nil // a spent device token
	}
	if p.ChallengeAfter > 0 {
		suspicion := max(t.nameFailures(p.Username, c.Time), t.addressFailures(p.IP, c.Time))
		if suspicion >= p.ChallengeAfter {
			used := t.tx.Bucket(bucketMFAUsed)
			if p.Solution == "" || used.Get([]byte(p.Solution)) != nil {
				return AttemptResult{ChallengeRequired: true, Suspicion: suspicion, Replayed: p.Solution != ""}, nil
			}
			if err := used.Put([]byte(p.Solution), nil); err != nil {
				return nil, err
			}
			if err := t.index(p.SolutionExpires, expiryTicket, p.Solution); err != nil {
				return nil, err
			}
		}
	}
	return loginAttemptV2(t, c, p.LoginAttemptV2)
}

// nameFailures is how many failures name has in its current window.
func (t txn) nameFailures(name string, now int64) int {
	v := t.tx.Bucket(bucketLockout).Get([]byte(name))
	if v == nil {
		return 0
	}
	var l Lockout
	if json.Unmarshal(v, &l) != nil || l.Limits == nil {
		return 0
	}
	if (l.LockedUntil != 0 && l.LockedUntil <= now) || now-l.WindowStart >= l.Limits.Window {
		return 0
	}
	return l.Failures
}

// addressFailures is how many names failed from ip's address in its
// current window.
func (t txn) addressFailures(ip string, now int64) int {
	addr := addressKey(ip)
	if addr == "" {
		return 0
	}
	v := t.tx.Bucket(bucketAddresses).Get([]byte(addr))
	if v == nil {
		return 0
	}
	var a addressRecord
	if json.Unmarshal(v, &a) != nil || now-a.WindowStart >= a.Window {
		return 0
	}
	return a.Failed
}
