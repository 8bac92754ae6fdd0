// Package altcha is proof of work in ALTCHA's challenge format
// (https://altcha.org, the classic "SHA-256" challenge): what bulwark asks
// of a client after repeated failures instead of a cloud CAPTCHA. The
// server makes a challenge: a salt (random, carrying its expiry as
// "?expires=UNIX"), a secret number up to maxnumber, the hex SHA-256 of
// salt+number, and an HMAC-SHA256 signature of that hash under a key
// every cluster member holds. The client finds the number (about
// maxnumber/2 hashes on average) and sends back
// base64(JSON{algorithm, challenge, number, salt, signature}); any member
// verifies it with the key alone. A solution is good once: the caller
// remembers the challenges it has accepted until they expire (bulwark
// does so through its replicated log).
//
// Solve is the client's side, for API clients written in Go.
package altcha

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Algorithm is the one hash this package speaks.
const Algorithm = "SHA-256"

// MaxNumberLimit bounds the work a challenge may ask for.
const MaxNumberLimit = 10_000_000

// Challenge is what the server sends (API.md: the 428 challenge_required
// answer's "challenge", and GET /v1/auth/challenge).
type Challenge struct {
	Algorithm string `json:"algorithm"`
	Challenge string `json:"challenge"`
	MaxNumber int64  `json:"maxnumber"`
	Salt      string `json:"salt"`
	Signature string `json:"signature"`
}

// Payload is a solution, as the client sends it (base64 of its JSON).
type Payload struct {
	Algorithm string `json:"algorithm"`
	Challenge string `json:"challenge"`
	Number    int64  `json:"number"`
	Salt      string `json:"salt"`
	Signature string `json:"signature"`
}

// Errors of Verify.
var (
	ErrMalformed = errors.New("altcha: malformed solution")
	ErrForged    = errors.New("altcha: the solution does not match its challenge or signature")
	ErrExpired   = errors.New("altcha: the challenge has expired")
)

func hashOf(salt string, number int64) string {
	h := sha256.Sum256([]byte(salt + strconv.FormatInt(number, 10)))
	return hex.EncodeToString(h[:])
}

func sign(key []byte, challenge string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(challenge))
	return hex.EncodeToString(m.Sum(nil))
}

// New makes a challenge under key whose number is at most maxNumber and
// which expires at expires.
func New(key []byte, maxNumber int64, expires time.Time) (Challenge, error) {
	if maxNumber < 1 || maxNumber > MaxNumberLimit {
		return Challenge{}, fmt.Errorf("altcha: maxnumber %d out of 1..%d", maxNumber, MaxNumberLimit)
	}
	var r [12]byte
	if _, err := rand.Read(r[:]); err != nil {
		return Challenge{}, err
	}
	n, err := rand.Int(rand.Reader, big.NewInt(maxNumber+1))
	if err != nil {
		return Challenge{}, err
	}
	salt := hex.EncodeToString(r[:]) + "?expires=" + strconv.FormatInt(expires.Unix(), 10)
	ch := hashOf(salt, n.Int64())
	return Challenge{Algorithm: Algorithm, Challenge: ch, MaxNumber: maxNumber, Salt: salt, Signature: sign(key, ch)}, nil
}

// Verify checks a base64 solution under key at now and returns it
// decoded, with when its challenge expires.
func Verify(key []byte, encoded string, now time.Time) (Payload, time.Time, error) {
	var p Payload
	if len(encoded) == 0 || len(encoded) > 1024 {
		return p, time.Time{}, ErrMalformed
	}
	raw, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		if raw, err = base64.RawURLEncoding.DecodeString(encoded); err != nil {
			return p, time.Time{}, ErrMalformed
		}
	}
	if err := json.Unmarshal(raw, &p); err != nil || p.Algorithm != Algorithm || p.Number < 0 || p.Number > MaxNumberLimit ||
		len(p.Challenge) != 64 || len(p.Signature) != 64 || len(p.Salt) > 256 {
		return p, time.Time{}, ErrMalformed
	}
	exp, ok := expiry(p.Salt)
	if !ok {
		return p, time.Time{}, ErrMalformed
	}
	if !hmac.Equal([]byte(sign(key, p.Challenge)), []byte(p.Signature)) || hashOf(p.Salt, p.Number) != p.Challenge {
		return p, time.Time{}, ErrForged
	}
	if !now.Before(exp) {
		return p, exp, ErrExpired
	}
	return p, exp, nil
}

// expiry reads "?expires=UNIX" from a salt.
func expiry(salt string) (time.Time, bool) {
	_, query, ok := strings.Cut(salt, "?")
	if !ok {
		return time.Time{}, false
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return time.Time{}, false
	}
	sec, err := strconv.ParseInt(q.Get("expires"), 10, 64)
	if err != nil || sec <= 0 {
		return time.Time{}, false
	}
	return time.Unix(sec, 0), true
}

// Solve finds ch's number and returns the solution to send, base64 of
// its JSON. It gives up when ctx ends.
func Solve(ctx context.Context, ch Challenge) (string, error) {
	if ch.Algorithm != Algorithm || ch.MaxNumber < 0 || ch.MaxNumber > MaxNumberLimit {
		return "", fmt.Errorf("altcha: cannot solve a %q challenge of maxnumber %d", ch.Algorithm, ch.MaxNumber)
	}
	target, err := hex.DecodeString(ch.Challenge)
	if err != nil || len(target) != sha256.Size {
		return "", fmt.Errorf("altcha: the challenge is not a hex SHA-256")
	}
	buf := []byte(ch.Salt)
	for n := int64(0); n <= ch.MaxNumber; n++ {
		if n%4096 == 0 && ctx.Err() != nil {
			return "", ctx.Err()
		}
		if sum := sha256.Sum256(strconv.AppendInt(buf[:len(ch.Salt)], n, 10)); hmac.Equal(sum[:], target) {
			b, err := json.Marshal(Payload{Algorithm: ch.Algorithm, Challenge: ch.Challenge, Number: n, Salt: ch.Salt, Signature: ch.Signature})
			if err != nil {
				return "", err
			}
			return base64.StdEncoding.EncodeToString(b), nil
		}
	}
	return "", errors.New("altcha: no number up to maxnumber solves the challenge")
}
