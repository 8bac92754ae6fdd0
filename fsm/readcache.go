package fsm

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
)

// readCache remembers records decoded for Reader, keyed by bucket and key
// and checked against the stored bytes on every read: a record read again
// unchanged costs a map look-up and a comparison instead of a JSON decode
// (every Bearer request reads its session and its user, and on a busy node
// most of them are the same few thousand), while a changed record is
// decoded again. It cannot serve a stale record: what it returns is the
// decoding of the very bytes the caller's transaction holds. Readers get
// copies, so nothing they change reaches it. Apply never uses it, so
// Apply's results cannot depend on what a node happened to read. A record
// deleted from the state is dropped when next read, or at the next reset
// (maxReadCache); until then the cache holds what state.db held.
type readCache struct {
	mu      sync.Mutex
	entries map[readKey]readEntry
}

type readKey struct {
	bucket string // a bucket name, one of the package's constants
	key    string
}

type readEntry struct {
	raw []byte // a copy of the stored bytes val was decoded from
	val any    // *User or *Session, never handed out
}

// maxReadCache bounds the records held. Past it, the cache starts over:
// cheaper than keeping recency, and a node that reads more distinct
// records than this between two resets gains little from it anyway.
const maxReadCache = 16384

func newReadCache() *readCache { return &readCache{entries: map[readKey]readEntry{}} }

// lookup returns the value decoded from raw under (bucket, key), if any.
// An entry is never changed once stored, so it is compared unlocked.
func (c *readCache) lookup(bucket, key string, raw []byte) (any, bool) {
	c.mu.Lock()
	e, ok := c.entries[readKey{bucket, key}]
	c.mu.Unlock()
	if !ok || !bytes.Equal(e.raw, raw) {
		return nil, false
	}
	return e.val, true
}

// forget drops what is remembered under (bucket, key): the record is gone.
func (c *readCache) forget(bucket, key string) {
	c.mu.Lock()
	delete(c.entries, readKey{bucket, key})
	c.mu.Unlock()
}

// remember stores val as the decoding of raw under (bucket, key). raw may
// be bbolt's memory, valid only in the transaction: it is copied.
func (c *readCache) remember(bucket, key string, raw []byte, val any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= maxReadCache {
		clear(c.entries)
	}
	c.entries[readKey{bucket, key}] = readEntry{raw: bytes.Clone(raw), val: val}
}

// cachedRecord returns the record stored under key in bucket, decoded by
// decode (or missing if there is none), through r's cache when it has one
// (View's readers; Apply's have none). The caller gets its own copy.
func cachedRecord[T any](r Reader, bucket []byte, key string, decode func([]byte) (*T, error), clone func(*T) *T, missing error) (*T, error) {
	c := r.cache
	raw := r.tx.Bucket(bucket).Get([]byte(key))
	if raw == nil {
		if c != nil {
			c.forget(string(bucket), key)
		}
		return nil, missing
	}
	if c != nil {
		if v, ok := c.lookup(string(bucket), key, raw); ok {
			return clone(v.(*T)), nil
		}
	}
	v, err := decode(raw)
	if err != nil {
		return nil, fmt.Errorf("fsm: stored %s %q: %w", bucket, key, err)
	}
	if c == nil {
		return v, nil
	}
	c.remember(string(bucket), key, raw, v)
	return clone(v), nil
}

func cloneUser(u *User) *User {
	c := *u
	c.Roles = slices.Clone(u.Roles)
	return &c
}

func cloneSession(s *Session) *Session {
	c := *s
	c.AMR = slices.Clone(s.AMR)
	c.Scopes = slices.Clone(s.Scopes)
	return &c
}
