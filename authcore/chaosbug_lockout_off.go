//go:build !chaosbug_lockout

package authcore

// chaosBugLockout plants a bug when built with the chaosbug_lockout tag (see
// chaosbug_lockout_on.go); false in every real build, so the branch it
// guards compiles away.
const chaosBugLockout = false
