package scorecard

import (
	"io/fs"
	"time"
)

// Baseline holds the values the controls judge by: for settings, the
// defaults bulwark ships (packaging/bulwark.toml, API.md), which are the
// hardening checklist's; for states the config does not set (certificate,
// backup and checkpoint ages, clock skew, leader changes), limits chosen
// from what the daemon itself does (certificate renewal 30 days ahead, a
// checkpoint every 5 minutes), documented in docs/operations.md. A setting
// weaker than its value warns; one that turns a protection off, or a state
// far from it, fails.
var Baseline = struct {
	TLSMinVersion                        string
	CertWarn, CertFail                   time.Duration // remaining validity
	MaxFailedAttempts                    int
	LockoutDuration                      time.Duration
	PerIP, PerIPBurst                    int
	PerUsername, PerUsernameBurst        int
	IncidentWindow, BlockFor             time.Duration
	BlockAfterFailures, BlockAfterNames  int
	ChallengeAfter, RevokeAfterForbidden int
	RotateEvery                          time.Duration
	CheckpointInterval                   time.Duration // audit.checkpoint_interval
	LeaderWindow                         time.Duration
	LeaderChangesWarn, LeaderChangesFail int // more than this many in LeaderWindow
	ClockSkewWarn, ClockSkewFail         time.Duration
	BackupWarn, BackupFail               time.Duration
}{
	TLSMinVersion: "1.3",
	// The node certificate renews 30 days before it expires
	// (pki.RenewBefore): still unrenewed past that is a renewal failing.
	CertWarn: 30 * 24 * time.Hour, CertFail: 7 * 24 * time.Hour,
	MaxFailedAttempts: 5, LockoutDuration: 15 * time.Minute,
	PerIP: 10, PerIPBurst: 30, PerUsername: 5, PerUsernameBurst: 10,
	IncidentWindow: time.Minute, BlockFor: time.Hour,
	BlockAfterFailures: 10, BlockAfterNames: 5, ChallengeAfter: 3, RevokeAfterForbidden: 5,
	RotateEvery: 720 * time.Hour,
	// The leader checkpoints every 1000 entries or 5 minutes by default.
	CheckpointInterval: 5 * time.Minute,
	LeaderWindow:       time.Hour, LeaderChangesWarn: 2, LeaderChangesFail: 5,
	ClockSkewWarn: time.Second, ClockSkewFail: 5 * time.Second,
	BackupWarn: 24 * time.Hour, BackupFail: 7 * 24 * time.Hour,
}

// An audit entry not yet in a signed checkpoint warns once it is older than
// UnvouchedWarnFactor checkpoint intervals, and fails past
// UnvouchedFailFactor (10 minutes and an hour at the default interval).
const (
	UnvouchedWarnFactor = 2
	UnvouchedFailFactor = 12
)

// Inputs is every fact the controls judge. Gather fills it from a running
// node; tests fill it by hand. A group whose Err is set could not be read,
// and its controls fail (or warn, where the fact is advisory), naming the
// error.
type Inputs struct {
	Node string
	Now  time.Time

	TLS        TLSFacts
	Seal       SealFacts
	SigningKey SigningKeyFacts
	Recovery   RecoveryFacts
	Admins     AdminFacts
	Lockout    LockoutFacts
	RateLimit  RateLimitFacts
	Incident   IncidentFacts
	Audit      AuditFacts
	Quorum     QuorumFacts
	Clock      ClockFacts
	Backup     BackupFacts
	DataDir    DataDirFacts
	Sandbox    SandboxFacts
}

// TLSFacts: api.tls_min_version and the certificate the API presents.
type TLSFacts struct {
	MinVersion   string // "1.2" or "1.3"
	CertNotAfter time.Time
	CertErr      error
}

// SealFacts: how the key-encryption key is sealed.
type SealFacts struct {
	Mode    string // "tpm" or "software"
	PCRs    []int
	Signing string // "keystore" or "tpm-resident"
}

// SigningKeyFacts: this node's current signing key.
type SigningKeyFacts struct {
	Age         time.Duration // since it was published
	RotateEvery time.Duration // tokens.rotate_every
	Err         error
}

// RecoveryFacts: how the cluster data key can be recovered when every TPM
// is lost.
type RecoveryFacts struct {
	Escrows           int // escrow public keys the key is wrapped to
	Shares, Threshold int // recovery shares issued (0: none)
	Err               error
}

// AdminFacts: administrators and their second factors.
type AdminFacts struct {
	RequireMFA bool // auth.security.require_mfa_for_admin
	Admins     int  // enabled accounts with the admin role
	WithFactor int  // of them, those with a confirmed second factor
	// Without names (some of) those without one.
	Without []string
	Err     error
}

// LockoutFacts: [auth.security]'s lockout.
type LockoutFacts struct {
	MaxFailedAttempts int
	LockoutDuration   time.Duration
}

// RateLimitFacts: [auth.rate_limit]; 0 turns a limit off.
type RateLimitFacts struct {
	PerIP, PerIPBurst             int
	PerUsername, PerUsernameBurst int
}

// IncidentFacts: [incident]'s detection rules; 0 turns a rule off.
type IncidentFacts struct {
	Window, BlockFor                     time.Duration
	BlockAfterFailures, BlockAfterNames  int
	ChallengeAfter, RevokeAfterForbidden int
}

// AuditFacts: the audit trail on this node.
type AuditFacts struct {
	Head     uint64 // the newest entry's seq; 0: empty
	Verified uint64 // every entry up to it chains from seq 1
	BrokenAt uint64 // the first bad seq; 0: none found
	// CheckpointSeq is the seq the last signed checkpoint vouches for (0:
	// none); UnvouchedSince is the time of the oldest entry after it
	// (zero when the checkpoint vouches for the head).
	CheckpointSeq  uint64
	UnvouchedSince time.Time
	// CheckpointInterval is audit.checkpoint_interval (Settings).
	CheckpointInterval time.Duration
	Err                error
}

// QuorumFacts: the Raft configuration and leadership.
type QuorumFacts struct {
	Leader      string   // "" when none is known
	Voters      int      // in the configuration
	Reachable   int      // voters that answered (this node included)
	Unreachable []string // voters that did not
	// LeaderChanges is how many leaders this node saw take over in the
	// last Window (the first one it learned of after starting included).
	LeaderChanges int
	Window        time.Duration
	Err           error
}

// ClockFacts: the members' clocks, as this node measured them.
type ClockFacts struct {
	Members int           // that reported their clock, this node included
	MaxSkew time.Duration // the largest offset from this node's clock, less the round trip's uncertainty
	Worst   string        // the member with that offset
	// Unreported names members that did not answer or report a clock.
	Unreported []string
	Err        error
}

// BackupFacts: the last backup the cluster recorded.
type BackupFacts struct {
	Last time.Time // zero: none recorded
	Node string    // the node that took it
	Err  error
}

// DataDirFacts: the data directory's ownership and modes.
type DataDirFacts struct {
	Path      string
	Mode      fs.FileMode
	OwnerUID  int
	DaemonUID int
	// Loose names files inside that group or others may
	// read or write (ca.pem, which is public, excepted); at most a few.
	Loose []string
	Err   error
}

// SandboxFacts: what the kernel says of this process (/proc/self/status)
// and whether systemd started it (INVOCATION_ID).
type SandboxFacts struct {
	UnderSystemd bool
	NoNewPrivs   bool
	Seccomp      int    // 0 none, 1 strict, 2 filter
	CapEff       uint64 // effective capabilities
	CapBnd       uint64 // bounding set
	Err          error
}
