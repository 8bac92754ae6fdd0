package node

// Offline verification of the audit trail (`bulwark audit verify
// --data-dir DIR | --backup FILE`): the whole chain and every signed
// checkpoint, read from a copy of a stopped node's state.db or from a
// backup's, with no daemon and no network. The public audit keys come from
// the same state (fsm audit.key); the signatures are checked here, where
// ML-DSA-65 may be imported, for fsm's VerifyAuditTrail.
//
// What is verified is the file as it is: no snapshot is restored over it
// and no log entry replayed onto it, so what an attacker wrote into
// state.db is what gets checked (ViewStopped, which the key recovery
// commands use, would repair a damaged file from the snapshot instead).

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/auditsig"
)

// AuditVerification is what an offline verification read and found.
type AuditVerification struct {
	fsm.AuditTrailReport
	// Source names what was read: the state.db path, or the backup's node
	// and creation time.
	Source string `json:"source"`
	// AppliedIndex is the last log entry the state holds.
	AppliedIndex uint64 `json:"applied_index"`
}

// VerifyAuditDataDir verifies the audit trail of the stopped node whose
// data directory is dataDir. It holds LockDataDir meanwhile (a running
// daemon is ErrRunning: ask it instead, or verify a backup), and reads a
// copy of state.db, so nothing in dataDir changes. A broken trail is an
// *fsm.AuditChainError naming the first bad seq, with the report of what
// verified before it.
func VerifyAuditDataDir(dataDir string) (AuditVerification, error) {
	v := AuditVerification{Source: filepath.Join(dataDir, "state.db")}
	unlock, err := LockDataDir(dataDir)
	if err != nil {
		return v, err
	}
	defer unlock()
	tmp, err := os.MkdirTemp("", "bulwark-audit-")
	if err != nil {
		return v, err
	}
	defer os.RemoveAll(tmp)
	copied, err := copyFile(v.Source, filepath.Join(tmp, "state.db"))
	if err != nil {
		return v, err
	}
	if !copied {
		return v, fmt.Errorf("%s does not exist: is %s a bulwark data directory?", v.Source, dataDir)
	}
	return verifyStateCopy(filepath.Join(tmp, "state.db"), v)
}

// VerifyAuditBackup verifies the audit trail held by the backup archive r,
// after checking the archive itself (ReadBackup: a damaged one is
// ErrBackupDamaged, and nothing of its trail is judged).
func VerifyAuditBackup(r io.Reader) (AuditVerification, error) {
	var v AuditVerification
	tmp, err := os.MkdirTemp("", "bulwark-audit-")
	if err != nil {
		return v, err
	}
	defer os.RemoveAll(tmp)
	path := filepath.Join(tmp, "state.db")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return v, err
	}
	info, err := ReadBackup(r, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return v, err
	}
	v.Source = fmt.Sprintf("backup of %s taken %s", info.Manifest.NodeID, info.Manifest.CreatedAt.Format("2006-01-02T15:04:05Z07:00"))
	return verifyStateCopy(path, v)
}

// verifyStateCopy opens path, a copy that is ours to change, and verifies
// its trail. fsm.Open checks the file's pages first (ErrCorrupt), and adds
// the buckets a state.db from an older binary lacks.
func verifyStateCopy(path string, v AuditVerification) (AuditVerification, error) {
	if err := os.WriteFile(path+".clean", nil, 0o600); err != nil {
		return v, err
	}
	store, err := fsm.Open(path)
	if err != nil {
		return v, err
	}
	defer store.Close()
	if v.AppliedIndex, _, err = store.Applied(); err != nil {
		return v, err
	}
	var verr error
	err = store.View(func(r fsm.Reader) error {
		v.AuditTrailReport, verr = r.VerifyAuditTrail(auditsig.Check)
		return nil
	})
	if err != nil {
		return v, err
	}
	return v, verr
}
