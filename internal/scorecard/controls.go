package scorecard

import (
	"fmt"
	"strings"
	"time"
)

// The judges: each reads its facts in Inputs and returns the verdict, the
// evidence and the checklist's value.

func judgeTLSVersion(in *Inputs) (Status, string, string) {
	want := "TLS " + Baseline.TLSMinVersion + " minimum"
	switch in.TLS.MinVersion {
	case Baseline.TLSMinVersion:
		return Pass, "the API accepts TLS " + in.TLS.MinVersion + " and later only", want
	case "":
		return Fail, "api.tls_min_version is unknown", want
	}
	return Fail, "api.tls_min_version = \"" + in.TLS.MinVersion + "\": the API accepts TLS " + in.TLS.MinVersion, want
}

func judgeCertificate(in *Inputs) (Status, string, string) {
	want := "more than " + days(Baseline.CertWarn) + " of validity left"
	if in.TLS.CertErr != nil {
		return Fail, "cannot read the API certificate: " + in.TLS.CertErr.Error(), want
	}
	if in.TLS.CertNotAfter.IsZero() {
		return Fail, "the API certificate's expiry is unknown", want
	}
	left := in.TLS.CertNotAfter.Sub(in.Now)
	ev := fmt.Sprintf("the API certificate expires %s (in %s)", in.TLS.CertNotAfter.UTC().Format(time.RFC3339), days(left))
	switch {
	case left <= 0:
		return Fail, fmt.Sprintf("the API certificate expired %s", in.TLS.CertNotAfter.UTC().Format(time.RFC3339)), want
	case left < Baseline.CertFail:
		return Fail, ev, want
	case left < Baseline.CertWarn:
		return Warn, ev + "; renewal is due and has not happened", want
	}
	return Pass, ev, want
}

func judgeSealMode(in *Inputs) (Status, string, string) {
	want := "seal.mode = \"tpm\""
	switch in.Seal.Mode {
	case "tpm":
		ev := "keys are sealed by the TPM"
		if in.Seal.Signing == "tpm-resident" {
			ev += "; signing keys never leave it (tpm-resident)"
		}
		return Pass, ev, want
	case "software":
		return Fail, "software sealing: the key-encryption key is a file in the data directory", want
	}
	return Fail, fmt.Sprintf("seal mode %q is unknown", in.Seal.Mode), want
}

func judgePCRs(in *Inputs) (Status, string, string) {
	want := "the TPM key bound to PCRs (e.g. [7], Secure Boot)"
	switch {
	case in.Seal.Mode != "tpm":
		return Fail, "no TPM, so no PCR binding", want
	case len(in.Seal.PCRs) == 0:
		return Warn, "sealed to the TPM but bound to no PCR: the disk and this TPM unseal whatever boots", want
	}
	return Pass, fmt.Sprintf("bound to PCRs %v", in.Seal.PCRs), want
}

func judgeKeyAge(in *Inputs) (Status, string, string) {
	k := in.SigningKey
	want := "rotated every " + days(Baseline.RotateEvery) + " or sooner"
	if k.Err != nil {
		return Fail, "no current signing key: " + k.Err.Error(), want
	}
	ev := fmt.Sprintf("current signing key %s old, tokens.rotate_every = %s", days(k.Age), days(k.RotateEvery))
	switch {
	case k.RotateEvery <= 0:
		return Fail, "tokens.rotate_every is not set: keys are never rotated", want
	case k.Age > 2*k.RotateEvery:
		return Fail, ev + ": rotation is overdue", want
	case k.Age > k.RotateEvery+time.Hour:
		return Warn, ev + ": rotation is overdue", want
	case k.RotateEvery > Baseline.RotateEvery:
		return Warn, ev + ": the period is longer than the checklist's", want
	}
	return Pass, ev, want
}

func judgeRecovery(in *Inputs) (Status, string, string) {
	r := in.Recovery
	want := "an escrow key or recovery shares (bulwark keys escrow-key | recovery-shares)"
	if r.Err != nil {
		return Fail, "cannot read the data key's records: " + r.Err.Error(), want
	}
	var have []string
	if r.Escrows > 0 {
		have = append(have, fmt.Sprintf("%d escrow key(s)", r.Escrows))
	}
	if r.Shares > 0 {
		have = append(have, fmt.Sprintf("%d-of-%d recovery shares", r.Threshold, r.Shares))
	}
	if len(have) == 0 {
		return Fail, "no escrow key and no recovery shares: losing every node's TPM loses the data key", want
	}
	return Pass, "the data key can be recovered: " + strings.Join(have, " and "), want
}

func judgeMFARequired(in *Inputs) (Status, string, string) {
	want := "require_mfa_for_admin = true"
	if in.Admins.RequireMFA {
		return Pass, "the admin role counts only in sessions with a second factor", want
	}
	return Fail, "auth.security.require_mfa_for_admin = false: a password alone makes an administrator", want
}

func judgeAdminFactors(in *Inputs) (Status, string, string) {
	a := in.Admins
	want := "every administrator has a second factor"
	if a.Err != nil {
		return Fail, "cannot read the administrators: " + a.Err.Error(), want
	}
	ev := fmt.Sprintf("%d of %d administrators have a second factor", a.WithFactor, a.Admins)
	switch {
	case a.Admins == 0:
		return Pass, "no administrator accounts (administration over the admin socket only)", want
	case a.WithFactor >= a.Admins:
		return Pass, ev, want
	}
	if len(a.Without) > 0 {
		ev += "; without: " + strings.Join(a.Without, ", ")
	}
	if a.RequireMFA {
		return Warn, ev + " (they cannot act as administrators until they enrol one)", want
	}
	return Fail, ev + ", and a password alone makes them administrators", want
}

func judgeLockout(in *Inputs) (Status, string, string) {
	l := in.Lockout
	want := fmt.Sprintf("at most %d failures, locked %s", Baseline.MaxFailedAttempts, Baseline.LockoutDuration)
	ev := fmt.Sprintf("locked after %d failed logins for %s", l.MaxFailedAttempts, l.LockoutDuration)
	switch {
	case l.MaxFailedAttempts <= 0 || l.LockoutDuration <= 0:
		return Fail, "no lockout: " + ev, want
	case l.MaxFailedAttempts <= Baseline.MaxFailedAttempts && l.LockoutDuration >= Baseline.LockoutDuration:
		return Pass, ev, want
	case l.MaxFailedAttempts <= 2*Baseline.MaxFailedAttempts && l.LockoutDuration >= Baseline.LockoutDuration/3:
		return Warn, ev, want
	}
	return Fail, ev, want
}

func judgeRateLimit(in *Inputs) (Status, string, string) {
	r := in.RateLimit
	b := Baseline
	want := fmt.Sprintf("per_ip %d (burst %d), per_username %d (burst %d)", b.PerIP, b.PerIPBurst, b.PerUsername, b.PerUsernameBurst)
	ev := fmt.Sprintf("per_ip %d/s (burst %d), per_username %d/s (burst %d)", r.PerIP, r.PerIPBurst, r.PerUsername, r.PerUsernameBurst)
	var off, looser []string
	for _, s := range []struct {
		name      string
		got, want int
	}{{"per_ip", r.PerIP, b.PerIP}, {"per_ip_burst", r.PerIPBurst, b.PerIPBurst},
		{"per_username", r.PerUsername, b.PerUsername}, {"per_username_burst", r.PerUsernameBurst, b.PerUsernameBurst}} {
		switch {
		case s.got <= 0:
			off = append(off, s.name)
		case s.got > s.want:
			looser = append(looser, s.name)
		}
	}
	switch {
	case len(off) > 0:
		return Fail, ev + "; off: " + strings.Join(off, ", "), want
	case len(looser) > 0:
		return Warn, ev + "; looser than the checklist: " + strings.Join(looser, ", "), want
	}
	return Pass, ev, want
}

func judgeIncident(in *Inputs) (Status, string, string) {
	i, b := in.Incident, Baseline
	want := fmt.Sprintf("block after %d failures or %d names a %s for %s, challenge after %d, revoke after %d refusals",
		b.BlockAfterFailures, b.BlockAfterNames, b.IncidentWindow, b.BlockFor, b.ChallengeAfter, b.RevokeAfterForbidden)
	ev := fmt.Sprintf("block after %d failures or %d names a %s for %s, challenge after %d, revoke after %d refusals",
		i.BlockAfterFailures, i.BlockAfterNames, i.Window, i.BlockFor, i.ChallengeAfter, i.RevokeAfterForbidden)
	var off, looser []string
	for _, r := range []struct {
		name      string
		got, want int
	}{{"block_after_failures", i.BlockAfterFailures, b.BlockAfterFailures}, {"block_after_usernames", i.BlockAfterNames, b.BlockAfterNames},
		{"challenge_after_failures", i.ChallengeAfter, b.ChallengeAfter}, {"revoke_after_forbidden", i.RevokeAfterForbidden, b.RevokeAfterForbidden}} {
		switch {
		case r.got <= 0:
			off = append(off, r.name)
		case r.got > r.want:
			looser = append(looser, r.name)
		}
	}
	if i.Window < b.IncidentWindow {
		looser = append(looser, "window")
	}
	if i.BlockFor < b.BlockFor {
		looser = append(looser, "block_for")
	}
	switch {
	case len(off) > 0:
		return Fail, ev + "; off: " + strings.Join(off, ", "), want
	case len(looser) > 0:
		return Warn, ev + "; weaker than the checklist: " + strings.Join(looser, ", "), want
	}
	return Pass, ev, want
}

func judgeAuditChain(in *Inputs) (Status, string, string) {
	a := in.Audit
	want := "the whole trail verified to its head"
	switch {
	case a.BrokenAt > 0:
		return Fail, fmt.Sprintf("the audit chain is BROKEN at seq %d (verified to %d of %d)", a.BrokenAt, a.Verified, a.Head), want
	case a.Err != nil:
		return Fail, "cannot verify the audit trail: " + a.Err.Error(), want
	case a.Head == 0:
		return Pass, "the audit trail is empty", want
	case a.Verified >= a.Head:
		return Pass, fmt.Sprintf("every entry from seq 1 to the head, %d, chains unaltered", a.Head), want
	}
	return Warn, fmt.Sprintf("verified to seq %d of %d so far", a.Verified, a.Head), want
}

func judgeCheckpoint(in *Inputs) (Status, string, string) {
	a := in.Audit
	want := fmt.Sprintf("a checkpoint every %s or sooner (audit.checkpoint_interval), entries signed within twice that",
		Baseline.CheckpointInterval)
	if a.Err != nil {
		return Fail, "cannot read the audit checkpoints: " + a.Err.Error(), want
	}
	interval := a.CheckpointInterval
	if interval <= 0 {
		interval = Baseline.CheckpointInterval
	}
	cp := "no signed checkpoint yet"
	if a.CheckpointSeq > 0 {
		cp = fmt.Sprintf("the last signed checkpoint vouches for seq %d", a.CheckpointSeq)
	}
	var ev string
	var age time.Duration
	switch {
	case a.Head == 0:
		ev = "the audit trail is empty"
	case a.UnvouchedSince.IsZero():
		ev = cp + ", the head"
	default:
		age = in.Now.Sub(a.UnvouchedSince)
		ev = fmt.Sprintf("%s; the oldest entry not in one (of %d) is %s old", cp, a.Head, age.Round(time.Second))
	}
	ev += fmt.Sprintf("; a checkpoint every %s", interval)
	switch {
	case age > UnvouchedFailFactor*interval:
		return Fail, ev, want
	case age > UnvouchedWarnFactor*interval:
		return Warn, ev, want
	case interval > Baseline.CheckpointInterval:
		return Warn, ev + ": longer than the checklist's", want
	}
	return Pass, ev, want
}

func judgeQuorum(in *Inputs) (Status, string, string) {
	q := in.Quorum
	want := "a leader, every voter reachable, at least 3 voters"
	if q.Err != nil {
		return Fail, "cannot read the cluster's configuration: " + q.Err.Error(), want
	}
	ev := fmt.Sprintf("leader %s, %d of %d voters reachable", orNone(q.Leader), q.Reachable, q.Voters)
	if len(q.Unreachable) > 0 {
		ev += "; unreachable: " + strings.Join(q.Unreachable, ", ")
	}
	switch {
	case q.Leader == "" || q.Voters == 0 || q.Reachable < q.Voters/2+1:
		return Fail, ev + ": no quorum", want
	case q.Reachable < q.Voters:
		return Warn, ev + fmt.Sprintf(": %d more lost and the cluster stops", q.Reachable-(q.Voters/2+1)+1), want
	case q.Voters < 3:
		return Warn, ev + ": no voter can be lost without losing the quorum", want
	}
	return Pass, ev, want
}

func judgeLeaderStability(in *Inputs) (Status, string, string) {
	q := in.Quorum
	want := fmt.Sprintf("at most %d leader changes an hour", Baseline.LeaderChangesWarn)
	if q.Err != nil {
		return Fail, "cannot read the leadership: " + q.Err.Error(), want
	}
	if q.Window <= 0 {
		return Fail, "the leader changes were not counted", want
	}
	ev := fmt.Sprintf("%d leader change(s) seen in the last %s", q.LeaderChanges, q.Window)
	switch {
	case q.LeaderChanges > Baseline.LeaderChangesFail:
		return Fail, ev, want
	case q.LeaderChanges > Baseline.LeaderChangesWarn:
		return Warn, ev, want
	}
	return Pass, ev, want
}

func judgeClockSkew(in *Inputs) (Status, string, string) {
	c := in.Clock
	want := "members' clocks within " + Baseline.ClockSkewWarn.String()
	if c.Err != nil {
		return Fail, "cannot read the members' clocks: " + c.Err.Error(), want
	}
	if c.Members == 0 {
		return Fail, "no member reported its clock", want
	}
	ev := fmt.Sprintf("largest offset from this node's clock %s", c.MaxSkew.Round(time.Millisecond))
	if c.Worst != "" && c.MaxSkew > 0 {
		ev += " (" + c.Worst + ")"
	}
	ev += fmt.Sprintf(", over %d member(s)", c.Members)
	switch {
	case c.MaxSkew > Baseline.ClockSkewFail:
		return Fail, ev, want
	case c.MaxSkew > Baseline.ClockSkewWarn:
		return Warn, ev, want
	case len(c.Unreported) > 0:
		return Warn, ev + "; no clock from: " + strings.Join(c.Unreported, ", "), want
	}
	return Pass, ev, want
}

func judgeBackup(in *Inputs) (Status, string, string) {
	b := in.Backup
	want := "a backup within " + days(Baseline.BackupWarn)
	if b.Err != nil {
		return Fail, "cannot read the backup record: " + b.Err.Error(), want
	}
	if b.Last.IsZero() {
		return Fail, "no backup recorded (bulwark backup create FILE)", want
	}
	age := in.Now.Sub(b.Last)
	ev := fmt.Sprintf("the last backup was taken %s ago on %s (%s)", days(age), b.Node, b.Last.UTC().Format(time.RFC3339))
	switch {
	case age > Baseline.BackupFail:
		return Fail, ev, want
	case age > Baseline.BackupWarn:
		return Warn, ev, want
	}
	return Pass, ev, want
}

func judgeDataDir(in *Inputs) (Status, string, string) {
	d := in.DataDir
	want := "mode 0700, owned by the daemon's user, nothing inside readable by others"
	if d.Err != nil {
		return Fail, "cannot inspect the data directory: " + d.Err.Error(), want
	}
	if d.Path == "" {
		return Fail, "the data directory is unknown", want
	}
	ev := fmt.Sprintf("%s: mode %04o, owner uid %d", d.Path, d.Mode.Perm(), d.OwnerUID)
	switch {
	case d.Mode.Perm()&0o077 != 0:
		return Fail, ev + ": group or others may enter it", want
	case d.OwnerUID != d.DaemonUID:
		return Fail, ev + fmt.Sprintf(": not the daemon's user (uid %d)", d.DaemonUID), want
	case len(d.Loose) > 0:
		return Warn, ev + "; readable or writable by group or others inside: " + strings.Join(d.Loose, ", "), want
	}
	return Pass, ev, want
}

// capNetBindService is the one capability the packaged unit's low-port
// drop-in gives back.
const capNetBindService = 1 << 10

func judgeSandbox(in *Inputs) (Status, string, string) {
	s := in.Sandbox
	want := "the packaged unit's sandbox: NoNewPrivileges, a system call filter, no capabilities"
	if s.Err != nil {
		return Warn, "cannot read this process's status: " + s.Err.Error(), want
	}
	var missing []string
	if !s.NoNewPrivs {
		missing = append(missing, "NoNewPrivs is off")
	}
	if s.Seccomp != 2 {
		missing = append(missing, "no seccomp filter")
	}
	if s.CapEff&^capNetBindService != 0 {
		missing = append(missing, fmt.Sprintf("effective capabilities %#x", s.CapEff))
	}
	if s.CapBnd&^capNetBindService != 0 {
		missing = append(missing, "a full capability bounding set")
	}
	where := "not under systemd"
	if s.UnderSystemd {
		where = "under systemd"
	}
	switch {
	case len(missing) == 0:
		return Pass, where + ": NoNewPrivs, a seccomp filter, no capabilities", want
	case s.UnderSystemd:
		return Fail, where + ", but the unit's sandbox is weakened: " + strings.Join(missing, "; "), want
	}
	return Warn, where + ": " + strings.Join(missing, "; "), want
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// days writes d in days and hours when it is that long, else as Go does.
func days(d time.Duration) string {
	if d < 0 {
		return "-" + days(-(d + 1)) // -(d+1): even the most negative has an opposite
	}
	if d < 48*time.Hour {
		return d.Round(time.Second).String()
	}
	dd, h := d/(24*time.Hour), (d%(24*time.Hour))/time.Hour
	if h == 0 {
		return fmt.Sprintf("%dd", dd)
	}
	return fmt.Sprintf("%dd%dh", dd, h)
}
