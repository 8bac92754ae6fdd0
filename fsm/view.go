package fsm

import (
	"encoding/json"

	bolt "go.etcd.io/bbolt"
)

// Reader is a consistent, read-only view of the state, valid only inside the
// function passed to View. Callers outside fsm never see bbolt.
type Reader struct {
	tx      *bolt.Tx
	cache   *readCache   // nil: every record is decoded
	keysGen uint64       // Store.keysGen when the view began
	counts  *storeCounts // nil: counted from the pages (counts.go)
	// blocksGen is Store.blocksGen when the view began.
	blocksGen uint64
	// rb, if rbSet, is Store.revokedBefore read once the view's
	// transaction began (it may be newer than the transaction, never
	// older than what was acknowledged); else it is read from tx (Apply).
	rb    int64
	rbSet bool
}

// View runs fn against a consistent read-only view of the local state.
func (s *Store) View(fn func(r Reader) error) error {
	gen := s.keysGen.Load() // before the transaction: never newer than what it shows
	blocks := s.blocksGen.Load()
	return s.view(func(tx *bolt.Tx) error {
		return fn(Reader{tx: tx, cache: s.reads, keysGen: gen, counts: &s.counts, blocksGen: blocks,
			rb: s.revokedBefore.Load(), rbSet: true})
	})
}

// UserByID returns the user with id, or ErrUserNotFound.
func (r Reader) UserByID(id string) (*User, error) {
	return cachedRecord(r, bucketUsers, id, decodeUser, cloneUser, ErrUserNotFound)
}

// UserByName returns the user with the normalised name, or ErrUserNotFound.
func (r Reader) UserByName(name string) (*User, error) {
	id := r.tx.Bucket(bucketUsernames).Get([]byte(name))
	if id == nil {
		return nil, ErrUserNotFound
	}
	return r.UserByID(string(id))
}

// Users calls fn for every user in name order until fn returns false.
func (r Reader) Users(fn func(*User) bool) error {
	users := r.tx.Bucket(bucketUsers)
	c := r.tx.Bucket(bucketUsernames).Cursor()
	for k, id := c.First(); k != nil; k, id = c.Next() {
		var u User
		if err := json.Unmarshal(users.Get(id), &u); err != nil {
			return err
		}
		if !fn(&u) {
			return nil
		}
	}
	return nil
}

// AppliedIndex is the index of the last entry applied to this view.
func (r Reader) AppliedIndex() uint64 {
	i, _ := readApplied(r.tx)
	return i
}
