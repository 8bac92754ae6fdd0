//go:build !linux

package fsm

// releaseMapped does nothing here: the walked pages stay mapped.
func releaseMapped(addr uintptr, size int64) {}
