package fsm

import (
	"fmt"
	"reflect"
)

// CommandSpec is one row of the command table: a (type, version) this
// binary applies, the feature level from which it may be proposed, its
// handler and the Go type of its Result.Value. Each file declares the rows
// of its commands beside their handlers; adding a version adds a row, and
// a row is never edited in place, so a log written by an old binary
// replays identically on a new one.
type CommandSpec struct {
	Type    Type
	Version uint16
	// Level is the cluster feature level (level.go) from which the
	// command may be proposed: 1 for the first release's commands.
	Level int
	// Apply applies the command inside Apply's transaction.
	Apply handler
	// Result is the dynamic type of every non-nil Result.Value, which a
	// forwarded result decodes into (results.go); nil for a command whose
	// value is always nil.
	Result reflect.Type
}

type handlerKey struct {
	t Type
	v uint16
}

type handler func(t txn, c Command) (any, error)

// commands is the command table: every (type, version) this binary applies.
var commands = table(userCommands, sessionCommands, keyCommands, auditCommands, escrowCommands, joinCommands,
	barrierCommands, caKeyCommands, levelCommands, memberKeyCommands, issuerCommands, lockoutV1Commands, lockoutCommands, sweepV1Commands, sweepCommands,
	mfaCommands, webhookCommands, incidentCommands, challengeCommands, forbiddenCommands, checkpointCommands, oidcCommands, blockCommands,
	retentionCommands, auditCapCommands, backupCommands, oidcGrantCommands, eraseCommands, crlCommands)

func table(parts ...[]CommandSpec) map[handlerKey]CommandSpec {
	out := map[handlerKey]CommandSpec{}
	for _, rows := range parts {
		for _, r := range rows {
			k := handlerKey{r.Type, r.Version}
			switch _, dup := out[k]; {
			case dup:
				panic(fmt.Sprintf("fsm: two rows for %s v%d", r.Type, r.Version))
			case r.Version == 0 || r.Apply == nil:
				panic(fmt.Sprintf("fsm: %s v%d has no version or no handler", r.Type, r.Version))
			case r.Level < 1 || r.Level > MaxLevel:
				panic(fmt.Sprintf("fsm: %s v%d at level %d, outside 1..%d", r.Type, r.Version, r.Level, MaxLevel))
			}
			out[k] = r
		}
	}
	return out
}

// lookup returns the row of (t, v).
func lookup(t Type, v uint16) (CommandSpec, bool) {
	r, ok := commands[handlerKey{t, v}]
	return r, ok
}

// Proposable reports whether a command of type t and version v may be
// proposed in a cluster at feature level: this binary applies it, and so
// does every member of a cluster at that level. Proposers choose the
// version they propose with it; node refuses what it reports false for
// (ErrAboveLevel).
func Proposable(t Type, v uint16, level int) bool {
	r, ok := lookup(t, v)
	return ok && r.Level <= level
}

// CommandLevel returns the feature level from which (t, v) may be
// proposed, and false for a command this binary does not know.
func CommandLevel(t Type, v uint16) (int, bool) {
	r, ok := lookup(t, v)
	return r.Level, ok
}
