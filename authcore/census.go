package authcore

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
)

// A login for a name that has no user is checked against a dummy hash, so
// that it costs what a wrong password for a real user costs. The cost of a
// real check is the cost its stored hash was made with, which is not
// always the configured one: users keep the parameters of their last
// password change until their next successful login rehashes it. Right
// after an operator raises argon2_memory_kib, every stored hash is cheaper
// than a dummy made with the new settings, and an unknown name would
// answer measurably later than a known one.
//
// So the dummy's parameters are drawn from the parameters the stored
// hashes actually use, in proportion: a census of them, taken from the
// local state and renewed in the background. Each name always draws the
// same parameters (a keyed hash of the name picks them), so asking again
// about one unknown name shows no more variance than asking about a real
// one.

// censusMaxAge is how long a census is used before a new one is taken.
const censusMaxAge = time.Minute

// hashCensus is how many stored hashes use each set of parameters.
type hashCensus struct {
	params []HashParams // distinct, in a fixed order
	cum    []uint64     // cum[i]: hashes using params[0..i]
	taken  time.Time
}

// census keeps the latest hashCensus and renews it.
type census struct {
	key     [32]byte // picks a name's parameters; never leaves the process
	cur     atomic.Pointer[hashCensus]
	running atomic.Bool
	once    sync.Once
}

// dummyParams returns the argon2id parameters to check a password for the
// unknown name against: the configured ones while no user exists, else
// those of the stored hashes, chosen by name in proportion to their use.
func (s *Service) dummyParams(name string) HashParams {
	s.census.once.Do(func() {
		rand.Read(s.census.key[:])
		s.takeCensus()
	})
	c := s.census.cur.Load()
	if c == nil || time.Since(c.taken) > censusMaxAge {
		if s.census.running.CompareAndSwap(false, true) {
			go func() {
				defer s.census.running.Store(false)
				s.takeCensus()
			}()
		}
	}
	if c == nil || len(c.params) == 0 {
		return s.cfg.Hash
	}
	m := hmac.New(sha256.New, s.census.key[:])
	m.Write([]byte(name))
	pick := binary.BigEndian.Uint64(m.Sum(nil)) % c.cum[len(c.cum)-1]
	i, _ := slices.BinarySearch(c.cum, pick+1) // the first cum[i] > pick
	return c.params[i]
}

// takeCensus counts the parameters of every stored password hash.
func (s *Service) takeCensus() {
	counts := map[HashParams]uint64{}
	err := s.store.View(func(r fsm.Reader) error {
		return r.Users(func(u *fsm.User) bool {
			if h, err := parsePHC(u.PasswordHash); err == nil {
				counts[h.params]++
			}
			return true
		})
	})
	if err != nil {
		s.log.Warn("could not count the stored password hashes' parameters", "error", err)
		return
	}
	c := &hashCensus{taken: time.Now()}
	for p := range counts {
		c.params = append(c.params, p)
	}
	slices.SortFunc(c.params, func(a, b HashParams) int {
		if a.MemoryKiB != b.MemoryKiB {
			return int(a.MemoryKiB) - int(b.MemoryKiB)
		}
		if a.Iterations != b.Iterations {
			return int(a.Iterations) - int(b.Iterations)
		}
		return int(a.Parallelism) - int(b.Parallelism)
	})
	var sum uint64
	for _, p := range c.params {
		sum += counts[p]
		c.cum = append(c.cum, sum)
	}
	s.census.cur.Store(c)
}
