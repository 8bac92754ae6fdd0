package scorecard

import (
	"context"
	"time"
)

// Settings are the facts the daemon's configuration holds; the wiring
// copies them from the config it runs with.
type Settings struct {
	TLSMinVersion string
	Seal          SealFacts
	RequireMFA    bool
	Lockout       LockoutFacts
	RateLimit     RateLimitFacts
	Incident      IncidentFacts
	RotateEvery   time.Duration
	// CheckpointInterval is audit.checkpoint_interval.
	CheckpointInterval time.Duration
	DataDir            string
}

// Sources is where Gather reads a running node's facts: the settings, and
// a function for each fact the node, the auth service or the cluster
// holds. The daemon's wiring makes them (cmd/bulwark); none may be nil.
type Sources struct {
	Node     string
	Now      func() time.Time
	Settings Settings
	// CertNotAfter: when the certificate the API presents expires.
	CertNotAfter func() (time.Time, error)
	// SigningKeyAge: how long ago this node's current signing key was
	// published.
	SigningKeyAge func() (time.Duration, error)
	// Admins counts the administrators and their second factors
	// (RequireMFA is filled from Settings).
	Admins func(ctx context.Context) AdminFacts
	// Audit verifies the trail up to its head and reads the checkpoints.
	Audit func(ctx context.Context) AuditFacts
	// Cluster asks every member for its view and its clock.
	Cluster func(ctx context.Context) (QuorumFacts, ClockFacts)
	// Backup reads the cluster's record of its last backup.
	Backup func() BackupFacts
	// Recovery reads the data key's escrows and recovery shares.
	Recovery func() RecoveryFacts
	// Host reads the data directory and the process's sandbox; nil:
	// ReadHost (tests replace it).
	Host func(dataDir string) (DataDirFacts, SandboxFacts)
}

// Gather reads every fact from src.
func Gather(ctx context.Context, src Sources) Inputs {
	s := src.Settings
	in := Inputs{Node: src.Node, Now: src.Now(),
		TLS:       TLSFacts{MinVersion: s.TLSMinVersion},
		Seal:      s.Seal,
		Lockout:   s.Lockout,
		RateLimit: s.RateLimit,
		Incident:  s.Incident,
	}
	in.TLS.CertNotAfter, in.TLS.CertErr = src.CertNotAfter()
	in.SigningKey.Age, in.SigningKey.Err = src.SigningKeyAge()
	in.SigningKey.RotateEvery = s.RotateEvery
	in.Admins = src.Admins(ctx)
	in.Admins.RequireMFA = s.RequireMFA
	in.Audit = src.Audit(ctx)
	in.Audit.CheckpointInterval = s.CheckpointInterval
	in.Quorum, in.Clock = src.Cluster(ctx)
	in.Backup = src.Backup()
	in.Recovery = src.Recovery()
	host := src.Host
	if host == nil {
		host = ReadHost
	}
	in.DataDir, in.Sandbox = host(s.DataDir)
	return in
}
