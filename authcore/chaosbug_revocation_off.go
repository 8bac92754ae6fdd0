//go:build !chaosbug_revocation

package authcore

// chaosBugRevocation plants a bug when built with the chaosbug_revocation tag (see
// chaosbug_revocation_on.go); false in every real build, so the branch it
// guards compiles away.
const chaosBugRevocation = false
