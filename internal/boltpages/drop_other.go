//go:build !linux

package boltpages

// Drop does nothing here: the pages stay mapped.
func Drop(addr uintptr, size int64) {}
