package scorecard

import (
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

// hardened is a node that meets the checklist everywhere.
func hardened() Inputs {
	b := Baseline
	return Inputs{
		Node: "node1", Now: now,
		TLS:        TLSFacts{MinVersion: "1.3", CertNotAfter: now.Add(60 * 24 * time.Hour)},
		Seal:       SealFacts{Mode: "tpm", PCRs: []int{7}, Signing: "keystore"},
		SigningKey: SigningKeyFacts{Age: 3 * 24 * time.Hour, RotateEvery: b.RotateEvery},
		Recovery:   RecoveryFacts{Escrows: 1},
		Admins:     AdminFacts{RequireMFA: true, Admins: 2, WithFactor: 2},
		Lockout:    LockoutFacts{MaxFailedAttempts: b.MaxFailedAttempts, LockoutDuration: b.LockoutDuration},
		RateLimit:  RateLimitFacts{PerIP: b.PerIP, PerIPBurst: b.PerIPBurst, PerUsername: b.PerUsername, PerUsernameBurst: b.PerUsernameBurst},
		Incident: IncidentFacts{Window: b.IncidentWindow, BlockFor: b.BlockFor, BlockAfterFailures: b.BlockAfterFailures,
			BlockAfterNames: b.BlockAfterNames, ChallengeAfter: b.ChallengeAfter, RevokeAfterForbidden: b.RevokeAfterForbidden},
		Audit: AuditFacts{Head: 120, Verified: 120, CheckpointSeq: 118, UnvouchedSince: now.Add(-time.Minute),
			CheckpointInterval: b.CheckpointInterval},
		Quorum:  QuorumFacts{Leader: "node1", Voters: 3, Reachable: 3, LeaderChanges: 1, Window: time.Hour},
		Clock:   ClockFacts{Members: 3, MaxSkew: 20 * time.Millisecond, Worst: "node3"},
		Backup:  BackupFacts{Last: now.Add(-3 * time.Hour), Node: "node2"},
		DataDir: DataDirFacts{Path: "/var/lib/bulwark", Mode: 0o700 | 1<<31, OwnerUID: 990, DaemonUID: 990},
		Sandbox: SandboxFacts{UnderSystemd: true, NoNewPrivs: true, Seccomp: 2},
	}
}

// TestHardenedPasses: a node at the checklist's values passes every
// control and scores 100 everywhere.
func TestHardenedPasses(t *testing.T) {
	r := Evaluate(hardened())
	for _, c := range r.Controls {
		if c.Status != Pass {
			t.Errorf("%s: %s: %s", c.ID, c.Status, c.Evidence)
		}
	}
	if r.Failed || r.Overall.Score != 100 || len(r.Controls) != len(ControlIDs()) {
		t.Fatalf("report: failed %v, overall %+v, %d controls", r.Failed, r.Overall, len(r.Controls))
	}
	for _, cs := range r.Categories {
		if cs.Score != 100 || cs.Pass == 0 {
			t.Errorf("category %+v", cs)
		}
	}
}

// TestWeakened turns each control from pass to warn or fail by weakening
// the one fact it judges; every control has at least one case.
func TestWeakened(t *testing.T) {
	boom := errors.New("boom")
	cases := []struct {
		control string
		want    Status
		weaken  func(in *Inputs)
		// evidence must appear in the control's line
		evidence string
	}{
		{"tls.min_version", Fail, func(in *Inputs) { in.TLS.MinVersion = "1.2" }, "accepts TLS 1.2"},
		{"tls.certificate", Warn, func(in *Inputs) { in.TLS.CertNotAfter = now.Add(20 * 24 * time.Hour) }, "renewal is due"},
		{"tls.certificate", Fail, func(in *Inputs) { in.TLS.CertNotAfter = now.Add(2 * 24 * time.Hour) }, "(in 2d)"},
		{"tls.certificate", Fail, func(in *Inputs) { in.TLS.CertNotAfter = now.Add(-time.Hour) }, "expired"},
		{"tls.certificate", Fail, func(in *Inputs) { in.TLS.CertErr = boom }, "boom"},
		{"seal.mode", Fail, func(in *Inputs) { in.Seal = SealFacts{Mode: "software"} }, "software sealing"},
		{"seal.pcrs", Warn, func(in *Inputs) { in.Seal.PCRs = nil }, "bound to no PCR"},
		{"seal.pcrs", Fail, func(in *Inputs) { in.Seal = SealFacts{Mode: "software"} }, "no TPM"},
		{"keys.signing_key_age", Warn, func(in *Inputs) { in.SigningKey.Age = Baseline.RotateEvery + 2*time.Hour }, "overdue"},
		{"keys.signing_key_age", Fail, func(in *Inputs) { in.SigningKey.Age = 3 * Baseline.RotateEvery }, "overdue"},
		{"keys.signing_key_age", Warn, func(in *Inputs) { in.SigningKey.RotateEvery = 90 * 24 * time.Hour }, "longer than the checklist"},
		{"keys.signing_key_age", Fail, func(in *Inputs) { in.SigningKey.Err = boom }, "boom"},
		{"recovery.escrow", Fail, func(in *Inputs) { in.Recovery = RecoveryFacts{} }, "no escrow key"},
		{"admin.mfa_required", Fail, func(in *Inputs) { in.Admins.RequireMFA = false }, "require_mfa_for_admin = false"},
		{"admin.second_factors", Warn, func(in *Inputs) { in.Admins.WithFactor, in.Admins.Without = 1, []string{"bob"} }, "1 of 2 administrators have a second factor; without: bob"},
		{"admin.second_factors", Fail, func(in *Inputs) { in.Admins.WithFactor, in.Admins.RequireMFA = 1, false }, "a password alone"},
		{"admin.second_factors", Fail, func(in *Inputs) { in.Admins.Err = boom }, "boom"},
		{"auth.lockout", Warn, func(in *Inputs) { in.Lockout.MaxFailedAttempts = 8 }, "after 8 failed"},
		{"auth.lockout", Fail, func(in *Inputs) { in.Lockout.MaxFailedAttempts = 50 }, "after 50 failed"},
		{"auth.lockout", Fail, func(in *Inputs) { in.Lockout.LockoutDuration = time.Minute }, "for 1m0s"},
		{"auth.rate_limit", Warn, func(in *Inputs) { in.RateLimit.PerIP = 100 }, "looser than the checklist: per_ip"},
		{"auth.rate_limit", Fail, func(in *Inputs) { in.RateLimit.PerUsername = 0 }, "off: per_username"},
		{"incident.detection", Warn, func(in *Inputs) { in.Incident.BlockFor = time.Minute }, "weaker than the checklist: block_for"},
		{"incident.detection", Warn, func(in *Inputs) { in.Incident.BlockAfterFailures = 50 }, "block_after_failures"},
		{"incident.detection", Fail, func(in *Inputs) { in.Incident.BlockAfterNames = 0 }, "off: block_after_usernames"},
		{"audit.chain", Fail, func(in *Inputs) { in.Audit.BrokenAt, in.Audit.Verified = 57, 56 }, "BROKEN at seq 57"},
		{"audit.chain", Warn, func(in *Inputs) { in.Audit.Verified = 100 }, "verified to seq 100 of 120"},
		{"audit.chain", Fail, func(in *Inputs) { in.Audit.Err = boom }, "boom"},
		{"audit.checkpoint", Warn, func(in *Inputs) { in.Audit.UnvouchedSince = now.Add(-20 * time.Minute) }, "20m0s old"},
		{"audit.checkpoint", Fail, func(in *Inputs) { in.Audit.CheckpointSeq, in.Audit.UnvouchedSince = 0, now.Add(-3*time.Hour) }, "no signed checkpoint yet"},
		{"cluster.quorum", Warn, func(in *Inputs) { in.Quorum.Reachable, in.Quorum.Unreachable = 2, []string{"node3"} }, "unreachable: node3"},
		{"cluster.quorum", Fail, func(in *Inputs) { in.Quorum.Reachable, in.Quorum.Leader = 1, "" }, "no quorum"},
		{"cluster.quorum", Warn, func(in *Inputs) { in.Quorum.Voters, in.Quorum.Reachable = 1, 1 }, "no voter can be lost"},
		{"cluster.leader_stability", Warn, func(in *Inputs) { in.Quorum.LeaderChanges = 4 }, "4 leader change(s)"},
		{"cluster.leader_stability", Fail, func(in *Inputs) { in.Quorum.LeaderChanges = 9 }, "9 leader change(s)"},
		{"cluster.clock_skew", Warn, func(in *Inputs) { in.Clock.MaxSkew = 2 * time.Second }, "2s (node3)"},
		{"cluster.clock_skew", Fail, func(in *Inputs) { in.Clock.MaxSkew = time.Minute }, "1m0s (node3)"},
		{"cluster.clock_skew", Warn, func(in *Inputs) { in.Clock.Unreported = []string{"node2"} }, "no clock from: node2"},
		{"backup.age", Warn, func(in *Inputs) { in.Backup.Last = now.Add(-3 * 24 * time.Hour) }, "3d ago on node2"},
		{"backup.age", Fail, func(in *Inputs) { in.Backup.Last = now.Add(-30 * 24 * time.Hour) }, "30d ago"},
		{"backup.age", Fail, func(in *Inputs) { in.Backup = BackupFacts{} }, "no backup recorded"},
		{"host.data_dir", Fail, func(in *Inputs) { in.DataDir.Mode = 0o755 | 1<<31 }, "mode 0755"},
		{"host.data_dir", Fail, func(in *Inputs) { in.DataDir.OwnerUID = 0 }, "not the daemon's user"},
		{"host.data_dir", Warn, func(in *Inputs) { in.DataDir.Loose = []string{"state.db (0644)"} }, "state.db (0644)"},
		{"host.sandbox", Fail, func(in *Inputs) { in.Sandbox.Seccomp = 0 }, "no seccomp filter"},
		{"host.sandbox", Fail, func(in *Inputs) { in.Sandbox.CapEff = 1 << 21 }, "effective capabilities"},
		{"host.sandbox", Warn, func(in *Inputs) { in.Sandbox = SandboxFacts{CapBnd: 1<<41 - 1} }, "not under systemd"},
	}
	covered := map[string]bool{}
	for _, tc := range cases {
		t.Run(tc.control+"/"+string(tc.want), func(t *testing.T) {
			in := hardened()
			tc.weaken(&in)
			r := Evaluate(in)
			c, ok := r.Control(tc.control)
			if !ok {
				t.Fatalf("no control %s", tc.control)
			}
			if c.Status != tc.want || !strings.Contains(c.Evidence, tc.evidence) {
				t.Fatalf("%s = %s %q, want %s with %q", tc.control, c.Status, c.Evidence, tc.want, tc.evidence)
			}
			if c.Want == "" {
				t.Errorf("%s: no checklist value given with a %s", tc.control, c.Status)
			}
			// Only this control moved; the report fails exactly when it does.
			for _, o := range r.Controls {
				if o.ID != tc.control && o.Status != Pass && !sharesFacts(o.ID, tc.control) {
					t.Errorf("weakening %s moved %s to %s: %s", tc.control, o.ID, o.Status, o.Evidence)
				}
			}
			if r.Failed != (tc.want == Fail) && !sharesFacts("", tc.control) {
				t.Errorf("report failed = %v with %s at %s", r.Failed, tc.control, tc.want)
			}
			line := r.Text()
			if !strings.Contains(line, strings.ToUpper(string(tc.want))+"  "+tc.control) {
				t.Errorf("the text report does not name %s as %s:\n%s", tc.control, tc.want, line)
			}
			var cs CategoryScore
			for _, x := range r.Categories {
				if x.Name == c.Category {
					cs = x
				}
			}
			if cs.Score >= 100 || r.Overall.Score >= 100 {
				t.Errorf("scores did not fall: category %+v, overall %+v", cs, r.Overall)
			}
		})
		covered[tc.control] = true
	}
	for _, id := range ControlIDs() {
		if !covered[id] {
			t.Errorf("control %s has no weakening case", id)
		}
	}
}

// sharesFacts: controls that read the same facts move together (the seal
// mode decides both seal controls, admin MFA off fails the factor count
// too, an unreadable trail fails both audit controls). With a empty, it
// reports whether b moves another control at all.
func sharesFacts(a, b string) bool {
	groups := [][]string{{"seal.mode", "seal.pcrs"}, {"admin.mfa_required", "admin.second_factors"}, {"audit.chain", "audit.checkpoint"}}
	for _, g := range groups {
		if slices.Contains(g, b) && (a == "" || slices.Contains(g, a)) {
			return true
		}
	}
	return false
}

// Nothing known is no pass: an empty Inputs fails, without a panic. Only
// what is true of an empty cluster passes (no administrators, an empty
// trail).
func TestNothingKnownFails(t *testing.T) {
	r := Evaluate(Inputs{})
	if !r.Failed || r.Overall.Pass != 3 {
		t.Fatalf("an empty Inputs: %s", r.Text())
	}
	for _, id := range []string{"tls.min_version", "tls.certificate", "seal.mode", "admin.mfa_required", "auth.lockout",
		"auth.rate_limit", "incident.detection", "cluster.quorum", "backup.age", "recovery.escrow", "keys.signing_key_age",
		"cluster.leader_stability", "cluster.clock_skew", "host.data_dir", "seal.pcrs"} {
		if c, _ := r.Control(id); c.Status != Fail {
			t.Errorf("%s with nothing known: %s %s", id, c.Status, c.Evidence)
		}
	}
}

func TestReportJSON(t *testing.T) {
	in := hardened()
	in.Seal.Mode = "software"
	b, err := json.Marshal(Evaluate(in))
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	c, _ := back.Control("seal.mode")
	if !back.Failed || c.Status != Fail || c.Want == "" {
		t.Fatalf("round trip: %s", b)
	}
}

func TestReadStatus(t *testing.T) {
	const status = "Name:\tbulwark\nCapEff:\t0000000000000400\nCapBnd:\t0000000000000400\nNoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t3\n"
	var sb SandboxFacts
	if err := readStatus(strings.NewReader(status), &sb); err != nil {
		t.Fatal(err)
	}
	if !sb.NoNewPrivs || sb.Seccomp != 2 || sb.CapEff != capNetBindService || sb.CapBnd != capNetBindService {
		t.Fatalf("%+v", sb)
	}
	if err := readStatus(strings.NewReader("Name:\tx\n"), &sb); err == nil {
		t.Fatal("a status without the fields read")
	}
}

func TestReadDataDir(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Chmod(dir, 0o700))
	must(os.WriteFile(dir+"/ca.pem", nil, 0o644))
	must(os.WriteFile(dir+"/state.db", nil, 0o600))
	must(os.Chmod(dir+"/ca.pem", 0o644))
	uid := os.Geteuid()
	d := readDataDir(dir, uid)
	if d.Err != nil || d.Mode.Perm() != 0o700 || d.OwnerUID != uid || len(d.Loose) != 0 {
		t.Fatalf("%+v", d)
	}
	in := hardened()
	in.DataDir = d
	if c, _ := Evaluate(in).Control("host.data_dir"); c.Status != Pass {
		t.Fatalf("%+v", c)
	}
	must(os.Chmod(dir+"/state.db", 0o640))
	must(os.Chmod(dir, 0o750))
	in.DataDir = readDataDir(dir, uid)
	if c, _ := Evaluate(in).Control("host.data_dir"); c.Status != Fail || !strings.Contains(c.Evidence, "mode 0750") {
		t.Fatalf("%+v", c)
	}
	if got := in.DataDir.Loose; len(got) != 1 || got[0] != "state.db (0640)" {
		t.Fatalf("loose %v", got)
	}
}

// ReadHost reads this very process: its status parses, and systemd is
// seen exactly when INVOCATION_ID says so.
func TestReadHostSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc/self/status here")
	}
	t.Setenv("INVOCATION_ID", "")
	dir := t.TempDir()
	d, sb := ReadHost(dir)
	if sb.Err != nil || sb.UnderSystemd || d.Err != nil || d.Path != dir {
		t.Fatalf("host %+v, sandbox %+v", d, sb)
	}
	t.Setenv("INVOCATION_ID", "0123456789abcdef")
	if _, sb := ReadHost(dir); !sb.UnderSystemd {
		t.Fatal("INVOCATION_ID set, and not under systemd")
	}
}
