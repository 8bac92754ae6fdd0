//go:build !chaosbug_ackearly

package authcore

// chaosBugAckearly plants a bug when built with the chaosbug_ackearly tag (see
// chaosbug_ackearly_on.go); false in every real build, so the branch it
// guards compiles away.
const chaosBugAckearly = false
