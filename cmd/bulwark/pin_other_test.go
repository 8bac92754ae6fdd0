//go:build !linux

package main

// canPinThreads: hash threads are pinned on Linux only.
func canPinThreads() bool { return false }
