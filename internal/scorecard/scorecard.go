// Package scorecard is bulwark's hardening scorecard: `bulwark doctor` and
// GET /v1/admin/scorecard. It judges a node and its cluster, one control
// at a time, against the hardening checklist's values (Baseline), and says
// pass, warn or fail with the evidence it judged by, then scores each
// category.
//
// The judging (Evaluate) is pure: it reads an Inputs value and nothing
// else, so a test fills Inputs by hand and turns every control from pass
// to fail. Gather fills Inputs from the running daemon through Sources,
// small functions the daemon's wiring (cmd/bulwark) makes from the node,
// the auth service and the config; the host facts (the data directory's
// modes, the process's sandbox) are read here (host.go). The CLI and the
// API both print the Report Gather and Evaluate make, so they never
// disagree.
//
// A leaf: the standard library only. Any layer may import it.
package scorecard

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Status is a control's verdict.
type Status string

// The verdicts, best first.
const (
	Pass Status = "pass"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Control is one line of the report.
type Control struct {
	// ID names the control in scripts and alerts ("tls.min_version").
	ID       string `json:"id"`
	Category string `json:"category"`
	Status   Status `json:"status"`
	// Evidence is what was found, in a sentence.
	Evidence string `json:"evidence"`
	// Want is the checklist's value, when the evidence fell short of it.
	Want string `json:"want,omitempty"`
}

// CategoryScore is one category of the scorecard: pass counts 1, warn
// one half, fail nothing, out of the controls in it.
type CategoryScore struct {
	Name  string `json:"name"`
	Score int    `json:"score"` // percent, rounded down
	Pass  int    `json:"pass"`
	Warn  int    `json:"warn"`
	Fail  int    `json:"fail"`
}

// Report is the scorecard of one node and its cluster.
type Report struct {
	Node        string          `json:"node"`
	GeneratedAt time.Time       `json:"generated_at"`
	Controls    []Control       `json:"controls"`
	Categories  []CategoryScore `json:"categories"`
	// Overall scores every control as a category does.
	Overall CategoryScore `json:"overall"`
	// Failed: at least one control failed (`bulwark doctor` exits 1).
	Failed bool `json:"failed"`
}

// The categories of the scorecard, in the order it prints them.
const (
	CatTransport    = "Transport security"
	CatKeys         = "Keys and sealing"
	CatAuth         = "Authentication"
	CatDetection    = "Monitoring and incident response"
	CatAvailability = "Availability and recovery"
	CatPlatform     = "Platform"
)

var categoryOrder = []string{CatTransport, CatKeys, CatAuth, CatDetection, CatAvailability, CatPlatform}

// control is one row of the table Evaluate runs.
type control struct {
	id, category string
	judge        func(in *Inputs) (Status, string, string) // status, evidence, want
}

// controls is every control, in the order the report lists them.
var controls = []control{
	{"tls.min_version", CatTransport, judgeTLSVersion},
	{"tls.certificate", CatTransport, judgeCertificate},
	{"seal.mode", CatKeys, judgeSealMode},
	{"seal.pcrs", CatKeys, judgePCRs},
	{"keys.signing_key_age", CatKeys, judgeKeyAge},
	{"recovery.escrow", CatKeys, judgeRecovery},
	{"admin.mfa_required", CatAuth, judgeMFARequired},
	{"admin.second_factors", CatAuth, judgeAdminFactors},
	{"auth.lockout", CatAuth, judgeLockout},
	{"auth.rate_limit", CatAuth, judgeRateLimit},
	{"incident.detection", CatDetection, judgeIncident},
	{"audit.chain", CatDetection, judgeAuditChain},
	{"audit.checkpoint", CatDetection, judgeCheckpoint},
	{"cluster.quorum", CatAvailability, judgeQuorum},
	{"cluster.leader_stability", CatAvailability, judgeLeaderStability},
	{"cluster.clock_skew", CatAvailability, judgeClockSkew},
	{"backup.age", CatAvailability, judgeBackup},
	{"host.data_dir", CatPlatform, judgeDataDir},
	{"host.sandbox", CatPlatform, judgeSandbox},
}

// ControlIDs lists every control's id, in report order.
func ControlIDs() []string {
	out := make([]string, len(controls))
	for i, c := range controls {
		out[i] = c.id
	}
	return out
}

// Evaluate judges in and scores the result.
func Evaluate(in Inputs) Report {
	r := Report{Node: in.Node, GeneratedAt: in.Now.UTC(), Controls: make([]Control, 0, len(controls))}
	byCat := map[string]*CategoryScore{}
	for _, name := range categoryOrder {
		byCat[name] = &CategoryScore{Name: name}
	}
	for _, c := range controls {
		st, ev, want := c.judge(&in)
		if st == Pass {
			want = ""
		}
		r.Controls = append(r.Controls, Control{ID: c.id, Category: c.category, Status: st, Evidence: ev, Want: want})
		byCat[c.category].count(st)
		r.Overall.count(st)
		r.Failed = r.Failed || st == Fail
	}
	for _, name := range categoryOrder {
		cs := byCat[name]
		cs.score()
		r.Categories = append(r.Categories, *cs)
	}
	r.Overall.Name = "Overall"
	r.Overall.score()
	return r
}

func (c *CategoryScore) count(s Status) {
	switch s {
	case Pass:
		c.Pass++
	case Warn:
		c.Warn++
	default:
		c.Fail++
	}
}

func (c *CategoryScore) score() {
	if n := c.Pass + c.Warn + c.Fail; n > 0 {
		c.Score = (200*c.Pass + 100*c.Warn) / (2 * n)
	}
}

// Control returns the control named id, and false if the report has none.
func (r Report) Control(id string) (Control, bool) {
	i := slices.IndexFunc(r.Controls, func(c Control) bool { return c.ID == id })
	if i < 0 {
		return Control{}, false
	}
	return r.Controls[i], true
}

// Text writes the report for a person: one line per control, then the
// category scores.
func (r Report) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "bulwark doctor: node %s, %s\n\n", r.Node, r.GeneratedAt.Format(time.RFC3339))
	width := 0
	for _, c := range r.Controls {
		width = max(width, len(c.ID))
	}
	for _, c := range r.Controls {
		fmt.Fprintf(&b, "%-4s  %-*s  %s", strings.ToUpper(string(c.Status)), width, c.ID, c.Evidence)
		if c.Want != "" {
			fmt.Fprintf(&b, " (checklist: %s)", c.Want)
		}
		b.WriteByte('\n')
	}
	b.WriteString("\nscorecard\n")
	for _, cs := range append(slices.Clone(r.Categories), r.Overall) {
		fmt.Fprintf(&b, "  %-34s %3d%%  %d pass, %d warn, %d fail\n", cs.Name, cs.Score, cs.Pass, cs.Warn, cs.Fail)
	}
	if r.Failed {
		var failed []string
		for _, c := range r.Controls {
			if c.Status == Fail {
				failed = append(failed, c.ID)
			}
		}
		fmt.Fprintf(&b, "\nfailed: %s\n", strings.Join(failed, ", "))
	}
	return b.String()
}
