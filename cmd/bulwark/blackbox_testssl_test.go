package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/node/pki"
)

// testsslFinding is one entry of testssl.sh's flat JSON output
// (--jsonfile).
type testsslFinding struct {
	ID       string `json:"id"`
	Severity string `json:"severity"`
	Finding  string `json:"finding"`
}

// testsslFailing are the severities that fail the scan: MEDIUM and above,
// and testssl.sh's own WARN and FATAL (a scan that could not run some
// check must not pass for a clean one).
var testsslFailing = []string{"MEDIUM", "HIGH", "CRITICAL", "WARN", "FATAL"}

// testsslBinary is Debian's testssl.sh (installed as "testssl"), or the
// upstream script's name.
func testsslBinary() string {
	for _, name := range []string{"testssl", "testssl.sh"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// TestTestsslScan runs testssl.sh (`make tlsscan`, which installs it when
// missing) against a node's API port, with the cluster CA added, once with
// the defaults (TLS 1.3 only) and once with api.tls_min_version = "1.2",
// and fails on any finding of MEDIUM or above: none is waived. The scan stays on loopback: no DNS lookups (--nodns none), no CRL
// or OCSP fetches (no --phone-out). It takes minutes, so it runs only when
// BULWARK_TLSSCAN=1.
func TestTestsslScan(t *testing.T) {
	if os.Getenv("BULWARK_TLSSCAN") == "" {
		t.Skip("testssl.sh scan: run with BULWARK_TLSSCAN=1 (make tlsscan)")
	}
	bin := testsslBinary()
	if bin == "" {
		t.Fatal("testssl.sh is not installed (make tlsscan installs Debian's testssl.sh)")
	}
	for _, tc := range []struct {
		name, extra string
		checks      []string // testssl.sh's sections; none: all of them
		offered     []string // protocol ids testssl.sh must find offered
		absent      []string // and not offered
	}{
		{"default", "", nil, []string{"TLS1_3"}, []string{"SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2"}},
		// Every section but the client simulations (-c): testssl.sh
		// 3.0.8's simulated TLS 1.2 clients take minutes each against
		// Go's TLS 1.2 (IE 11 on Windows 7 did not finish in 10), while
		// openssl s_client -tls1_2 completes in milliseconds; the
		// default scan simulates every client against TLS 1.3.
		{"tls_min_version 1.2", `api.tls_min_version = "1.2"`, []string{"-p", "-s", "-f", "-P", "-S", "-h", "-U", "-E"},
			[]string{"TLS1_2", "TLS1_3"}, []string{"SSLv2", "SSLv3", "TLS1", "TLS1_1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := newTestNode(t, tc.extra)
			n.start()
			findings := runTestssl(t, bin, n, tc.checks...)
			for _, problem := range judgeTestssl(findings, tc.offered, tc.absent, t.Logf) {
				t.Error(problem)
			}
		})
	}
}

// judgeTestssl returns what fails a scan: a finding of MEDIUM or above
// (or a scan problem), a certificate without the cluster CA's CRL
// distribution point, or a scan that did not check what it should have
// (it reached no node, or found the wrong protocols). LOW findings go to
// logf.
func judgeTestssl(findings []testsslFinding, offered, absent []string, logf func(string, ...any)) []string {
	var problems []string
	byID := map[string]testsslFinding{}
	for _, f := range findings {
		byID[f.ID] = f
	}
	if f := byID["cert_chain_of_trust"]; f.Severity != "OK" {
		problems = append(problems, fmt.Sprintf("certificate chain of trust: %+v; want OK with the cluster CA added", f))
	}
	// The certificate names where the cluster CA's CRL is (testssl.sh
	// rates one without a CRL or OCSP URI HIGH; it fetches nothing
	// without --phone-out, so the CRL itself is checked by
	// TestBlackBoxCRLSingleNode).
	if f := byID["cert_crlDistributionPoints"]; !strings.HasPrefix(f.Finding, "https://") || !strings.HasSuffix(f.Finding, pki.CRLPath) {
		problems = append(problems, fmt.Sprintf("CRL distribution point: %+v; want the node's %s", f, pki.CRLPath))
	}
	for _, id := range offered {
		if f := byID[id]; !strings.HasPrefix(f.Finding, "offered") {
			problems = append(problems, fmt.Sprintf("%s: %+v; want offered", id, f))
		}
	}
	for _, id := range absent {
		if f := byID[id]; f.Finding != "not offered" {
			problems = append(problems, fmt.Sprintf("%s: %+v; want not offered", id, f))
		}
	}
	counts := map[string]int{}
	for _, f := range findings {
		counts[f.Severity]++
		switch {
		case !slices.Contains(testsslFailing, f.Severity):
			if f.Severity == "LOW" {
				logf("LOW %s: %s", f.ID, f.Finding)
			}
		default:
			problems = append(problems, fmt.Sprintf("testssl.sh finding %s %s: %s", f.Severity, f.ID, f.Finding))
		}
	}
	logf("testssl.sh findings by severity: %v (scan time %s s)", counts, byID["scanTime"].Finding)
	return problems
}

// TestJudgeTestssl checks judgeTestssl on a real scan of a default node
// (testdata/testssl-default.json, testssl.sh 3.0.8, certificate
// fingerprints left out): it passes as recorded, and fails when a
// finding of MEDIUM or above is added (the HIGH finding of a certificate
// without a CRL or OCSP URI, waived before the cluster CA published a
// CRL, among them), when the certificate names no CRL distribution point,
// when the scan was cut short, and when it found TLS 1.2 offered.
func TestJudgeTestssl(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "testssl-default.json"))
	if err != nil {
		t.Fatal(err)
	}
	var recorded []testsslFinding
	if err := json.Unmarshal(b, &recorded); err != nil {
		t.Fatal(err)
	}
	offered, absent := []string{"TLS1_3"}, []string{"SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2"}
	if problems := judgeTestssl(recorded, offered, absent, t.Logf); len(problems) > 0 {
		t.Fatalf("the recorded scan fails: %v", problems)
	}
	edit := func(fn func(*testsslFinding)) []testsslFinding {
		out := slices.Clone(recorded)
		for i := range out {
			fn(&out[i])
		}
		return out
	}
	for name, findings := range map[string][]testsslFinding{
		"a MEDIUM finding":   append(slices.Clone(recorded), testsslFinding{ID: "BREACH", Severity: "MEDIUM", Finding: "potentially VULNERABLE"}),
		"a CRITICAL finding": append(slices.Clone(recorded), testsslFinding{ID: "heartbleed", Severity: "CRITICAL", Finding: "VULNERABLE"}),
		"no CRL or OCSP URI": append(edit(func(f *testsslFinding) {
			if f.ID == "cert_crlDistributionPoints" {
				f.Finding = "--"
			}
		}), testsslFinding{ID: "cert_revocation", Severity: "HIGH", Finding: "Neither CRL nor OCSP URI provided"}),
		"the HIGH revocation finding alone": append(slices.Clone(recorded),
			testsslFinding{ID: "cert_revocation", Severity: "HIGH", Finding: "Neither CRL nor OCSP URI provided"}),
		"no CRL distribution point": edit(func(f *testsslFinding) {
			if f.ID == "cert_crlDistributionPoints" {
				f.Finding = "--"
			}
		}),
		"a scan cut short": append(slices.Clone(recorded), testsslFinding{ID: "scanTime", Severity: "WARN", Finding: "Scan interrupted"}),
		"TLS 1.2 offered": edit(func(f *testsslFinding) {
			if f.ID == "TLS1_2" {
				f.Finding, f.Severity = "offered", "OK"
			}
		}),
		"no chain of trust": edit(func(f *testsslFinding) {
			if f.ID == "cert_chain_of_trust" {
				f.Severity, f.Finding = "CRITICAL", "failed (chain incomplete)."
			}
		}),
		"nothing scanned": nil,
	} {
		if problems := judgeTestssl(findings, offered, absent, func(string, ...any) {}); len(problems) == 0 {
			t.Errorf("%s: the scan passes", name)
		}
	}
}

// runTestssl scans n's API port and returns testssl.sh's findings.
func runTestssl(t *testing.T, bin string, n *testNode, checks ...string) []testsslFinding {
	t.Helper()
	out := filepath.Join(t.TempDir(), "testssl.json")
	ctx, cancel := context.WithTimeout(context.Background(), 35*time.Minute)
	defer cancel()
	args := append([]string{"--quiet", "--color", "0", "--warnings", "off",
		"--nodns", "none", "--ip", "127.0.0.1",
		"--add-ca", filepath.Join(n.dataDir(), "ca.pem"),
		"--jsonfile", out}, checks...)
	cmd := exec.CommandContext(ctx, bin, append(args, fmt.Sprintf("127.0.0.1:%d", n.apiPort))...)
	text, err := cmd.CombinedOutput()
	if err != nil {
		// testssl.sh exits non-zero for some findings too; the JSON is
		// what is judged, so only a scan without one fails here.
		t.Logf("testssl.sh: %v", err)
	}
	b, rerr := os.ReadFile(out)
	var findings []testsslFinding
	if rerr == nil {
		rerr = json.Unmarshal(b, &findings)
	}
	if rerr != nil || len(findings) == 0 {
		t.Fatalf("testssl.sh left no findings (%v, %v):\n%s", rerr, err, text)
	}
	t.Logf("testssl.sh output:\n%s", text)
	return findings
}
