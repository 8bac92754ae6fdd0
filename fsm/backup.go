package fsm

import (
	"encoding/json"
	"fmt"
	"reflect"
	"time"
)

// The last backup (level 5, the scorecard's record): a node that has
// written a backup archive records it, so `bulwark doctor` on any member
// can judge the cluster's backup age. Nothing else records backups: the
// archive goes to the operator's file, which the daemon never sees again.
// It is replicated rather than kept in a node-local file because a backup
// of any member is a backup of the cluster, and the doctor of every
// member must see it, a member that joins later included. One record in
// meta/"backup": the newest by the command's time.
const TypeBackupRecord Type = "backup.record"

// BackupRecord is the payload of backup.record v1.
type BackupRecord struct {
	Node         string `json:"node"`          // the node that wrote it
	AppliedIndex uint64 `json:"applied_index"` // the state it holds
	Bytes        int64  `json:"bytes"`         // the archive's size
	StateSHA256  string `json:"state_sha256"`  // 64 lowercase hex digits
}

// LastBackup is the recorded backup: the payload and when (the command's
// time).
type LastBackup struct {
	BackupRecord
	At time.Time `json:"at"`
}

var keyBackup = []byte("backup")

var backupCommands = []CommandSpec{
	{Type: TypeBackupRecord, Version: 1, Level: 5, Apply: applyBackupRecord, Result: reflect.TypeFor[LastBackup]()},
}

func applyBackupRecord(t txn, c Command) (any, error) {
	var p BackupRecord
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if p.Node == "" || len(p.Node) > 64 || CleanAuditText(p.Node, 64) != p.Node || p.Bytes <= 0 ||
		!isHex(p.StateSHA256, 64) {
		return nil, fmt.Errorf("%w: backup.record needs a node name, a size and the state's SHA-256", ErrInvalidCommand)
	}
	rec := LastBackup{BackupRecord: p, At: time.Unix(0, c.Time).UTC()}
	if old, ok := (Reader{tx: t.tx}).LastBackup(); ok && old.At.After(rec.At) {
		return old, nil // an older backup recorded late changes nothing
	}
	return rec, t.putJSONMeta(keyBackup, rec)
}

// LastBackup returns the newest recorded backup, false if none.
func (r Reader) LastBackup() (LastBackup, bool) {
	var rec LastBackup
	v := r.tx.Bucket(bucketMeta).Get(keyBackup)
	if v == nil {
		return rec, false
	}
	return rec, json.Unmarshal(v, &rec) == nil // written by applyBackupRecord: it decodes
}
