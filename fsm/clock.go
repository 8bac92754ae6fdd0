package fsm

import (
	"encoding/binary"
	"time"
)

// Time that never runs backwards (level 3).
//
// A command's time is its proposer's clock. The leader stamps the commands
// followers forward with its own (node/forward.go), so within one leader's
// term the cluster runs on one clock; but the next leader's clock may be
// behind. From level 3 on, Apply keeps the latest time it has applied
// (meta "time", written in the transaction that applies the command, so a
// snapshot carries it) and applies a command stamped earlier at that time
// instead. Every handler, result (a login slot, a session's CreatedAt) and
// audit entry sees that effective time, so lockout windows, expiries and
// the trail never move backwards, whatever clock proposed. Below level 3
// a node of an earlier release may be applying the same log, so Apply
// leaves the time as stamped.
const levelMonotonicTime = 3

var keyTime = []byte("time") // Unix nanoseconds, big endian

// advanceTime sets c.Time to the latest time applied if c is stamped
// earlier, and records c.Time as the latest otherwise.
func (t txn) advanceTime(c *Command) error {
	meta := t.tx.Bucket(bucketMeta)
	latest := timeOf(meta.Get(keyTime))
	if c.Time <= latest {
		c.Time = latest
		return nil
	}
	return meta.Put(keyTime, binary.BigEndian.AppendUint64(nil, uint64(c.Time)))
}

func timeOf(v []byte) int64 {
	if len(v) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v))
}

// AppliedTime is the latest command time applied, the zero time before the
// cluster reached level 3.
func (r Reader) AppliedTime() time.Time {
	ns := timeOf(r.tx.Bucket(bucketMeta).Get(keyTime))
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}
