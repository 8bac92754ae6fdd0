package fsm

import (
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
)

// Counts of records, for the metrics, kept so that reading one costs
// nothing at a million records. The Store holds the number of sessions
// in memory: counted when state.db is opened or restored (by the
// consistency check, which reads every key anyway), then moved by each
// committed batch by what its handlers added and deleted (putSession,
// deleteSession). It is derived from the state, never written to it, so
// Apply's writes are what they were: no feature level.

// batchCounts is what one batch's handlers changed of the counted
// records; ApplyBatch adds it to the Store's counts once committed.
type batchCounts struct {
	sessions int64
}

// countSessions notes sessions added (delta > 0) or deleted.
func (t txn) countSessions(delta int64) {
	if t.counts != nil {
		t.counts.sessions += delta
	}
}

// storeCounts are the Store's counts.
type storeCounts struct {
	sessions atomic.Int64
}

// SessionCount is the number of sessions stored: every session not yet
// revoked, evicted or swept. A session past its absolute lifetime is
// swept within a sweep interval of it; one ended by its idle timeout
// stays (and is refused by Alive) until its absolute lifetime runs out.
// From a Store's View it is the Store's count, read without touching a
// page; elsewhere it walks the keys.
func (r Reader) SessionCount() int {
	if r.counts != nil {
		return int(r.counts.sessions.Load())
	}
	return bucketLen(r.tx.Bucket(bucketSessions))
}

// BlockCount is the number of records in the address blocklist bucket
// (reserved until the blocklist's commands fill it: 0 until then). It
// walks the keys.
func (r Reader) BlockCount() int {
	return bucketLen(r.tx.Bucket(bucketBlocks))
}

func bucketLen(b *bolt.Bucket) int {
	n := 0
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	return n
}
