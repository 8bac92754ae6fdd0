// Package boltpages drops the pages of a bbolt file from the process's
// resident memory. bbolt reads its file through a shared read-only
// mapping, so every page a transaction walks (a consistency check, a
// range delete) stays counted in the process's RSS until the kernel needs
// the memory back. Dropping them unmaps them only: the file's pages stay
// in the page cache, and the next read maps them again.
package boltpages

import bolt "go.etcd.io/bbolt"

// DropDB drops every page of db's mapping, inside a read transaction so
// that db cannot remap (grow) its file meanwhile. Errors are ignored: the
// drop only saves memory.
func DropDB(db *bolt.DB) {
	if db == nil {
		return
	}
	db.View(func(tx *bolt.Tx) error {
		Drop(db.Info().Data, tx.Size())
		return nil
	})
}
