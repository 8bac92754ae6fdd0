package fsm

import "syscall"

// releaseMapped drops the pages of the read-only shared file mapping at
// addr (size bytes, within the mapping) from this process's memory:
// madvise(MADV_DONTNEED) on a shared file mapping only unmaps them, the
// file's pages stay in the page cache and the next read maps them again.
// Errors are ignored: the release only saves memory.
func releaseMapped(addr uintptr, size int64) {
	if size > 0 {
		syscall.Syscall(syscall.SYS_MADVISE, addr, uintptr(size), syscall.MADV_DONTNEED)
	}
}
