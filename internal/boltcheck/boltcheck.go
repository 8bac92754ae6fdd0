// Package boltcheck runs bbolt's consistency check on a stopped node's
// file, for tests that crash, fill or cut a node's disk.
package boltcheck

import (
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Check opens path read-only and returns every inconsistency bbolt's
// check finds in it, joined; nil when there is none.
func Check(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		var errs []error
		for e := range tx.Check() {
			errs = append(errs, e)
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return fmt.Errorf("%s fails bbolt's consistency check: %w", path, err)
	}
	return nil
}
