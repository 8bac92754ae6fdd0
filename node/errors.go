package node

import (
	"errors"
	"fmt"
	"syscall"
)

// Sentinel errors, matched with errors.Is; grouped by the file whose code
// returns them.
var (
	// Errors returned by Node (node.go).

	// ErrNotLeader: this node cannot commit writes; the error is a
	// *NotLeaderError naming the leader when one is known. Forwarding to
	// the leader (a later step) happens inside node, never in handlers.
	ErrNotLeader = errors.New("node: not the leader")
	// ErrNoLeader: no leader is known, so no write can commit now.
	ErrNoLeader = errors.New("node: no leader")
	// ErrDiskFull: the data directory's disk is (nearly) full, so writes
	// are refused until space returns (diskspace.go); reads go on. It
	// matches syscall.ENOSPC too, which is how api recognises it.
	ErrDiskFull = fmt.Errorf("node: disk full: %w", syscall.ENOSPC)
	// ErrShutdown: the node is shutting down.
	ErrShutdown = errors.New("node: shutting down")
	// ErrRefused: the leader refused a forwarded write because this node
	// may not have it written: it is not a member under its recorded key,
	// or the command speaks for another node (authority.go).
	ErrRefused = errors.New("node: the leader refused the write")

	// Joining. A refusal by the cluster
	// also matches fsm.ErrJoinTokenUnknown, fsm.ErrJoinTokenUsed or
	// fsm.ErrJoinTokenExpired when that is the reason (join.go).

	// ErrJoinTokenMalformed: the text is not a join token.
	ErrJoinTokenMalformed = errors.New("node: malformed join token")
	// ErrJoinPin: the node dialled did not present the pinned CA.
	ErrJoinPin = errors.New("node: cluster CA does not match the join token's pin")
	// ErrJoinUnreachable: no address of the token answered.
	ErrJoinUnreachable = errors.New("node: no node of the join token answered")
	// ErrJoinRefused: the cluster refused the join.
	ErrJoinRefused = errors.New("node: join refused")
	// ErrNotCAHolder: this node does not hold the cluster CA key.
	ErrNotCAHolder = errors.New("node: this node does not hold the cluster CA key")

	// Membership (membership.go).

	// ErrNotMember: no member of the cluster has that id.
	ErrNotMember = errors.New("node: no such cluster member")
	// ErrMembership: the leader refused the change (the message says why).
	ErrMembership = errors.New("node: membership change refused")

	// Certificates (certify.go).

	// ErrNoCAHolder: no reachable member holds the cluster CA key, so no
	// certificate can be issued now.
	ErrNoCAHolder = errors.New("node: no reachable member holds the cluster CA key")
	// ErrNoCRL: the cluster has published no CRL yet (crl.go).
	ErrNoCRL = errors.New("node: the cluster has published no CRL yet")

	// Reading and restoring backups (backup.go).

	// ErrNotBackup: the input does not start with the backup magic.
	ErrNotBackup = errors.New("not a bulwark backup")
	// ErrBackupDamaged: the archive is truncated, badly framed, or a
	// checksum does not match.
	ErrBackupDamaged = errors.New("backup is damaged")
	// ErrDataDirNotEmpty: restore refuses a data directory with anything
	// in it.
	ErrDataDirNotEmpty = errors.New("data directory is not empty")

	// The data key (datakey.go).

	// ErrDataKeyMismatch: this node's data key is not the one the cluster
	// registered (a restored node started before `bulwark keys recover`).
	ErrDataKeyMismatch = errors.New("this node's cluster data key is not the cluster's")
	// ErrNoLocalDataKey: this node's keystore holds no data key.
	ErrNoLocalDataKey = errors.New("this node's keystore holds no cluster data key")

	// Reading a stopped node (offline.go).

	// ErrRunning: a daemon holds the data directory.
	ErrRunning = errors.New("bulwark is running on this data directory")
)
