//go:build chaosbug_lockout

package authcore

// A planted bug for make chaos-selftest (cmd/bulwark/chaos_test.go): the
// chaos checker must report it. Never built without the tag.
const chaosBugLockout = true
