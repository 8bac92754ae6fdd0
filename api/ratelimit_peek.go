package api

import (
	"crypto/sha256"
	"time"
)

// UsernameLimited reports, without taking a token, whether name's bucket
// is empty, and if so how long until it holds one (rounded up to whole
// seconds, at least one). A name with no bucket has a full one and is not
// limited; asking about it stores nothing, so names an attacker only
// peeks at cost no memory.
//
// The login handler uses it with AllowUsername to charge the per-name
// limit for failed logins only: it refuses up front when the bucket is
// already empty, and takes a token after a login fails. A peek and the
// charge that follows are not atomic, so concurrent failures of one name
// may overdraw the bucket by the number in flight; the cluster-wide
// lockout still bounds the passwords checked per name.
func (l *RateLimiter) UsernameLimited(name string) (bool, time.Duration) {
	if l.user == nil {
		return false, 0
	}
	return l.user.empty(sha256.Sum256([]byte(name)), l.now())
}

// empty reports whether k's bucket has no whole token at now, and the wait
// until it has.
func (b *buckets[K]) empty(k K, now time.Time) (bool, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.m[k]
	if e == nil {
		return false, 0
	}
	tokens := e.lim.TokensAt(now)
	if tokens >= 1 {
		return false, 0
	}
	d := roundUpSeconds(time.Duration((1 - tokens) / float64(b.limit) * float64(time.Second)))
	if e.lim.TokensAt(now.Add(d)) < 1 { // float rounding, as in allow
		d += time.Second
	}
	return true, d
}
