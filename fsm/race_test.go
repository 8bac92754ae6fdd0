//go:build race

package fsm

// raceBuild: the race detector slows every test several times over.
const raceBuild = true
