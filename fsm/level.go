package fsm

import (
	"encoding/binary"
	"fmt"
	"reflect"
)

// Feature levels. A command type or version added after the first
// release belongs to a level, and is proposed only once the cluster has
// reached it: the leader raises the level (cluster.level) when every
// member reports a binary that applies it. A cluster in a rolling upgrade
// thus never logs a command some of its members would refuse, which would
// leave their states apart. Each command's level is in its row of the
// command table (CommandSpec.Level); proposers ask Proposable which
// version to propose, and node refuses one above the cluster's level.
//
//	1: the first release
//	2: a refresh token reused revokes its session (session.refresh v2),
//	   read barriers, the shared CA key, member keys, and cluster.level
//	   itself (judged on the members' reports, node/level.go)
//	3: the password generation re-checked in Apply, issuers in the log,
//	   fail-closed lockout slots and names per address, the sweep by the
//	   expiry index; and Apply changes: a command's time never runs
//	   backwards (clock.go), member.key refuses a key recorded for
//	   another node, and v1 lockout writes and session.create v1 index
//	   what they write too
//	4: multi-factor authentication (factors, second-factor sessions),
//	   threat response and audit checkpoints; each command's row names it
//	   (audit.key and audit.checkpoint: the signed checkpoints of the
//	   audit trail, checkpoint.go); the OpenID Connect provider's clients, requests
//	   and codes (oidc.go)
//	   (blocks: block.add, block.remove, and login.failure v3, which
//	   counts failures per address and blocks it at a threshold)
//	5: data-subject requests, retention and the scorecard's records
//	   (each command's row names it; audit.prune, retention.go;
//	   login.failure v4, the unknown-name audit cap, auditcap.go;
//	   backup.record, the last backup, backup.go); login.attempt v4
//	   (unsolved challenges count toward blocks) and user.unflag;
//	   OpenID Connect clients' ID-token algorithm and consent, users'
//	   consent grants (oidc_grants.go); user.erase deletes a user
//	   and pseudonymises their audit entries (erase.go); user.delete v2
//	   also deletes the user's consent grants and refusal count;
//	   the cluster CA's revocation list: cert.record, cert.revoke and
//	   crl.publish (crl.go); session.create v4 (a refused login spends
//	   no ticket or factor, mfa.go); refresh tokens that name their
//	   session and generation under a MAC, with no record per token:
//	   session.refresh v3, user.set_password v3, oidc.code_redeem v2,
//	   and session.create v4's refresh_mac (sessions.go)
//
// A change of Apply is a level like a new command: it takes effect from
// the entry after the one that raised the level, on every node at once.
const (
	// MaxLevel is the highest level this binary applies.
	MaxLevel = 5
	// LevelIssuers is the level of key.publish v2 and tokens.issuer v1:
	// the issuers every member accepts are recorded in the log.
	LevelIssuers = 3
)

// TypeClusterLevel raises the cluster's feature level; a level at or below
// the current one changes nothing. Its result is the level afterwards.
const TypeClusterLevel Type = "cluster.level"

// ClusterLevel is the payload of cluster.level v1.
type ClusterLevel struct {
	Level int `json:"level"`
}

var keyLevel = []byte("level")

var levelCommands = []CommandSpec{
	{Type: TypeClusterLevel, Version: 1, Level: 2, Apply: applyClusterLevel, Result: reflect.TypeFor[int]()},
}

func applyClusterLevel(t txn, c Command) (any, error) {
	var p ClusterLevel
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if p.Level < 1 || p.Level > 1<<20 {
		return nil, fmt.Errorf("%w: cluster.level %d", ErrInvalidCommand, p.Level)
	}
	cur := levelOf(t.tx.Bucket(bucketMeta).Get(keyLevel))
	if p.Level <= cur {
		return cur, nil
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(p.Level))
	return p.Level, t.tx.Bucket(bucketMeta).Put(keyLevel, b[:])
}

func levelOf(v []byte) int {
	if len(v) != 8 {
		return 1 // never raised: the first release's level
	}
	return int(binary.BigEndian.Uint64(v))
}

// ClusterLevel is the cluster's feature level: 1 until raised.
func (r Reader) ClusterLevel() int { return levelOf(r.tx.Bucket(bucketMeta).Get(keyLevel)) }
