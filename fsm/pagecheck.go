package fsm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/bulwark-auth/bulwark/internal/boltpages"
	bolt "go.etcd.io/bbolt"
)

// CheckPages reads every key and value of the open state.db, as Open's walk
// of a file without a session count does (checkDB), so that a page the disk
// damaged since it was written is found: bbolt's panics on it are turned
// into ErrCorrupt. The node runs it in the background after start-up, in
// place of a walk before serving, whose time grew with the state (a minute
// at a million sessions).
//
// It reads a piece of walkRelease values per read transaction, so that no
// transaction stays open long (a long one keeps bbolt from reusing the
// pages commits free meanwhile, and the file grows), drops the pages it
// read from the process's map after each piece (boltpages.Drop), and rests
// as long as each piece took, so that it takes at most half of a core from
// the requests served meanwhile.
//
// On ErrCorrupt the store remembers the damage: Close then marks the file
// damaged rather than clean, and the next Open yields ErrCorrupt (the node
// moves the file aside and rebuilds it from snapshot and log). It returns
// ctx's error if ctx ends first, ErrClosed if the store is closed.
func (s *Store) CheckPages(ctx context.Context) error {
	var at pagePosition
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		start := time.Now()
		done, err := s.checkPiece(&at)
		if errors.Is(err, ErrClosed) {
			return err
		}
		if err != nil {
			why := fmt.Sprintf("page check: bucket %q: %v", at.bucket, err)
			s.damaged.Store(&why)
			return fmt.Errorf("%w: %s: %s", ErrCorrupt, s.path, why)
		}
		if done {
			return nil
		}
		t := time.NewTimer(time.Since(start))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Damaged says what CheckPages found damaged, or "" if nothing.
func (s *Store) Damaged() string {
	if why := s.damaged.Load(); why != nil {
		return *why
	}
	return ""
}

// pagePosition is where CheckPages goes on: the bucket, and its first key
// not read yet (nil: the bucket's first key; a nil bucket: the first
// bucket).
type pagePosition struct {
	bucket, key []byte
	values      int64 // read so far
}

// checkPiece reads up to walkRelease values from at onward in one read
// transaction, moves at past them, and reports whether the walk is done.
func (s *Store) checkPiece(at *pagePosition) (done bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	err = s.view(func(tx *bolt.Tx) error {
		// The map does not move while a read transaction is open.
		defer boltpages.Drop(s.db.Info().Data, tx.Size())
		n := 0
		var sum byte
		buckets := tx.Cursor()
		name, _ := buckets.First()
		if at.bucket != nil {
			name, _ = buckets.Seek(at.bucket)
		}
		for ; name != nil; name, _ = buckets.Next() {
			b := tx.Bucket(name)
			if b == nil {
				continue
			}
			c := b.Cursor()
			k, v := c.First()
			if at.key != nil && bytes.Equal(name, at.bucket) {
				k, v = c.Seek(at.key)
			}
			for ; k != nil; k, v = c.Next() {
				if n >= walkRelease {
					at.bucket, at.key = bytes.Clone(name), bytes.Clone(k)
					return nil
				}
				if v == nil {
					if nb := b.Bucket(k); nb != nil {
						if _, err := walkBucket(nb, func() {}); err != nil {
							return err
						}
					}
				}
				for _, x := range v { // touch overflow pages too
					sum ^= x
				}
				n++
				at.values++
			}
			at.bucket, at.key = bytes.Clone(name), nil
		}
		_ = sum
		done = true
		return nil
	})
	return done, err
}

// releaseAfterValues: a reader that has read this many values in one view
// releases the file's mapped pages at its end (Reader.releaseMapped).
const releaseAfterValues = 1000

// releaseMapped drops the pages of state.db this process has mapped in
// (they stay in the page cache): for readers that walk far more of the
// file than requests touch, whose pages would otherwise count in the
// node's resident memory until the kernel reclaims them. The view's open
// transaction keeps the map where it is meanwhile.
func (r Reader) releaseMapped() {
	boltpages.Drop(r.tx.DB().Info().Data, r.tx.Size())
}

// compactCopy reads every key and value of the bbolt file at src on this
// goroutine (bbolt's panics on a damaged page become ErrCorrupt, as in
// checkDB) and writes them into a new file at dst, synced, and returns the
// number of sessions. It is Restore's check of a file from elsewhere, and
// leaves out the snapshot's free pages: bbolt writes its whole freelist at
// every commit, so a restored file that kept them paid for each on every
// write (a seeded state at 200,000 sessions had 21,143 free pages, and a
// commit took 3.7 ms of CPU against 20 µs after compaction).
func compactCopy(src, dst string) (sessions int64, err error) {
	if err := checkHighWater(src); err != nil {
		return 0, fmt.Errorf("%w: %s: %v", ErrCorrupt, src, err)
	}
	in, err := openBolt(src)
	if err != nil {
		return 0, fmt.Errorf("%w: open %s: %v", ErrCorrupt, src, err)
	}
	defer in.Close()
	if err := os.Remove(dst); err != nil && !os.IsNotExist(err) {
		return 0, err
	}
	out, err := bolt.Open(dst, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return 0, err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	err = noPanic(func() error {
		return in.View(func(tx *bolt.Tx) error {
			defer boltpages.Drop(in.Info().Data, tx.Size())
			return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
				n, err := copyBucket(out, name, b)
				if bytes.Equal(name, bucketSessions) {
					sessions = n
				}
				return err
			})
		})
	})
	var damaged *damagedPage
	if errors.As(err, &damaged) {
		return 0, fmt.Errorf("%w: %s: %v", ErrCorrupt, src, err)
	}
	if err != nil {
		return 0, err
	}
	return sessions, out.Sync()
}

// compactTxBytes bounds the bytes compactCopy writes per transaction.
const compactTxBytes = 16 << 20

// copyBucket copies the top-level bucket b into a bucket of the same name
// in out, in transactions of about compactTxBytes, and returns how many
// values it holds. A nested bucket (none in use) is refused.
func copyBucket(out *bolt.DB, name []byte, b *bolt.Bucket) (int64, error) {
	var n int64
	c := b.Cursor()
	k, v := c.First()
	for first := true; first || k != nil; first = false {
		err := out.Update(func(tx *bolt.Tx) error {
			ob, err := tx.CreateBucketIfNotExists(name)
			if err != nil {
				return err
			}
			fillAppended(tx) // the copy's pages as ApplyBatch fills them
			if seq := b.Sequence(); seq != 0 {
				if err := ob.SetSequence(seq); err != nil {
					return err
				}
			}
			size := 0
			for ; k != nil && size < compactTxBytes; k, v = c.Next() {
				if v == nil {
					return fmt.Errorf("fsm: bucket %q holds a nested bucket %q", name, k)
				}
				if err := ob.Put(k, v); err != nil {
					return err
				}
				n++
				if size += len(k) + len(v); n%walkRelease == 0 {
					// the values read so far stay in the page cache only
					boltpages.Drop(b.Tx().DB().Info().Data, b.Tx().Size())
				}
			}
			return nil
		})
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
