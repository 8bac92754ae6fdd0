package boltpages

import "syscall"

// Drop drops the pages of the read-only shared file mapping at addr
// (size bytes, within the mapping) with madvise(MADV_DONTNEED). The caller
// holds the mapping in place (a bbolt read transaction).
func Drop(addr uintptr, size int64) {
	if size > 0 {
		syscall.Syscall(syscall.SYS_MADVISE, addr, uintptr(size), syscall.MADV_DONTNEED)
	}
}
