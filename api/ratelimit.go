package api

import (
	"crypto/sha256"
	"math"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// RateLimitConfig configures a RateLimiter ([auth.rate_limit] in API.md,
// plus the proxies and the clock). Rates are requests per second; a rate
// that is zero (or negative) turns that limit off. A burst below 1 with a
// rate on is taken as 1.
type RateLimitConfig struct {
	PerIP            float64
	PerIPBurst       int
	PerUsername      float64
	PerUsernameBurst int
	// Exempt clients are never limited (monitoring, load tests). They are
	// matched against the client address clientIP finds.
	Exempt []netip.Prefix
	// TrustedProxies are the peers whose X-Forwarded-For is believed; the
	// same list Options.TrustedProxies holds.
	TrustedProxies []netip.Prefix
	// MaxKeys bounds the buckets each limit keeps in memory; zero means
	// 100 000.
	MaxKeys int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

const defaultMaxKeys = 100_000

// RateLimiter holds token buckets per client address and per username.
// It is safe for concurrent use.
//
// IPv4 clients are keyed by their address, IPv6 clients by their /64: one
// host is commonly handed a whole /64, so counting addresses would let it
// take a fresh bucket per request.
//
// Memory is bounded. A bucket that has been idle long enough to be full
// again is the same as no bucket, so it is dropped: every so often (after
// as many calls as there are buckets, and at least sweepEvery) and whenever
// a new key would pass MaxKeys. If dropping full buckets is not enough (a
// flood from many addresses), the least recently seen are dropped as well,
// down to seven eighths of MaxKeys, so the next sweep is that many new keys
// away and the cost per call stays constant on average.
type RateLimiter struct {
	ip      *buckets[netip.Prefix] // nil: per-IP limit off
	user    *buckets[[sha256.Size]byte]
	exempt  []netip.Prefix
	trusted []netip.Prefix
	now     func() time.Time
}

// NewRateLimiter returns a limiter for cfg.
func NewRateLimiter(cfg RateLimitConfig) *RateLimiter {
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	maxKeys := cfg.MaxKeys
	if maxKeys <= 0 {
		maxKeys = defaultMaxKeys
	}
	return &RateLimiter{
		ip:      newBuckets[netip.Prefix](cfg.PerIP, cfg.PerIPBurst, maxKeys),
		user:    newBuckets[[sha256.Size]byte](cfg.PerUsername, cfg.PerUsernameBurst, maxKeys),
		exempt:  cfg.Exempt,
		trusted: cfg.TrustedProxies,
		now:     now,
	}
}

// AllowIP takes one token from the bucket of the client that sent r (see
// clientIP for how X-Forwarded-For is believed). When it refuses,
// retryAfter is how long until a request would be served, rounded up to
// whole seconds and at least one. A peer without an IP address (a Unix
// socket) shares one bucket with every other such peer.
func (l *RateLimiter) AllowIP(r *http.Request) (ok bool, retryAfter time.Duration) {
	if l.ip == nil {
		return true, 0
	}
	a := clientIP(r, l.trusted)
	if a.IsValid() && isTrusted(a, l.exempt) {
		return true, 0
	}
	return l.ip.allow(ipKey(a), l.now())
}

// AllowUsername takes one token from the bucket of name, which the caller
// has normalised (the lockout's key). The bucket is keyed by the name's
// SHA-256, so the names tried do not sit in memory in the clear. The
// answer is as AllowIP's.
func (l *RateLimiter) AllowUsername(name string) (bool, time.Duration) {
	if l.user == nil {
		return true, 0
	}
	return l.user.allow(sha256.Sum256([]byte(name)), l.now())
}

// Middleware applies the per-IP limit to next, answering 429
// too_many_attempts with Retry-After when the client's bucket is empty.
func (l *RateLimiter) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ok, d := l.AllowIP(r); !ok {
			writeError(w, r, &Error{Status: http.StatusTooManyRequests, Code: CodeTooManyAttempts,
				Description: "too many requests; retry later", RetryAfter: d})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ipKey is the bucket of a client address: the address itself for IPv4,
// its /64 for IPv6, and the zero Prefix for a peer with no IP.
func ipKey(a netip.Addr) netip.Prefix {
	if !a.IsValid() {
		return netip.Prefix{}
	}
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits) // masked; cannot fail: bits fits the family
	return p
}

// sweepEvery is the fewest calls between two sweeps of full buckets.
const sweepEvery = 1024

// buckets is one limit's token buckets, one per key.
type buckets[K comparable] struct {
	limit   rate.Limit
	burst   int
	maxKeys int

	mu         sync.Mutex
	m          map[K]*bucket
	sinceSweep int
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time // last call for this key
}

// newBuckets returns nil when the limit is off.
func newBuckets[K comparable](perSecond float64, burst, maxKeys int) *buckets[K] {
	if !(perSecond > 0) { // zero, negative or NaN
		return nil
	}
	return &buckets[K]{limit: rate.Limit(perSecond), burst: max(burst, 1), maxKeys: maxKeys,
		m: make(map[K]*bucket)}
}

// allow takes a token for k at now, or says how long until one is there.
// The wait comes from a reservation that is cancelled at once, so a
// refused request costs the client nothing and does not push its wait
// further out.
func (b *buckets[K]) allow(k K, now time.Time) (bool, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sinceSweep++
	if b.sinceSweep >= max(sweepEvery, len(b.m)) {
		b.dropFull(now)
	}
	e := b.m[k]
	if e == nil {
		if len(b.m) >= b.maxKeys {
			b.dropFull(now)
			b.dropOldest(b.maxKeys - b.maxKeys/8 - 1)
		}
		e = &bucket{lim: rate.NewLimiter(b.limit, b.burst)}
		b.m[k] = e
	}
	if now.After(e.seen) {
		e.seen = now
	}
	res := e.lim.ReserveN(now, 1)
	if !res.OK() { // cannot happen: burst is at least 1
		return false, time.Second
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		d = roundUpSeconds(d)
		if e.lim.TokensAt(now.Add(d)) < 1 { // float rounding; the promise is "then you are served"
			d += time.Second
		}
		return false, d
	}
	return true, 0
}

// dropFull drops the buckets that have refilled: a new bucket starts full,
// so nobody gains from their going.
func (b *buckets[K]) dropFull(now time.Time) {
	b.sinceSweep = 0
	full := float64(b.burst)
	for k, e := range b.m {
		if e.lim.TokensAt(now) >= full {
			delete(b.m, k)
		}
	}
}

// dropOldest drops the least recently seen buckets until at most n are
// left.
func (b *buckets[K]) dropOldest(n int) {
	if len(b.m) <= n {
		return
	}
	type aged struct {
		k    K
		seen time.Time
	}
	all := make([]aged, 0, len(b.m))
	for k, e := range b.m {
		all = append(all, aged{k, e.seen})
	}
	slices.SortFunc(all, func(x, y aged) int { return x.seen.Compare(y.seen) })
	for _, a := range all[:len(all)-max(n, 0)] {
		delete(b.m, a.k)
	}
}

// roundUpSeconds rounds d up to whole seconds, at least one: what
// Retry-After can say, and never earlier than the bucket has a token.
func roundUpSeconds(d time.Duration) time.Duration {
	s := math.Ceil(d.Seconds())
	if s < 1 {
		s = 1
	}
	if s > float64(math.MaxInt64/int64(time.Second)) {
		return time.Duration(math.MaxInt64/int64(time.Second)) * time.Second
	}
	return time.Duration(s) * time.Second
}

// size reports how many buckets each limit holds (for tests).
func (l *RateLimiter) size() (ip, user int) {
	if l.ip != nil {
		ip = l.ip.len()
	}
	if l.user != nil {
		user = l.user.len()
	}
	return ip, user
}

func (b *buckets[K]) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m)
}
