package main

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// canPinThreads reports whether this process may pin a thread to a CPU
// (no seccomp filter refusing sched_setaffinity): if it may not, neither
// may a node it starts.
func canPinThreads() bool {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var set unix.CPUSet
	if unix.SchedGetaffinity(0, &set) != nil {
		return false
	}
	return unix.SchedSetaffinity(0, &set) == nil
}
