// Package alerttest checks packaging/alerts.yml with Prometheus' own rule
// parser and PromQL engine: the file is what a stock Prometheus accepts,
// and every alert fires on the series it is meant to catch and stays
// quiet on one it is not. It is a module of its own so that bulwark's
// go.mod does not take github.com/prometheus/prometheus and its
// dependencies; `make test` runs it (alerts-check).
package alerttest

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/rules"
)

const rulesFile = "../alerts.yml"

// evalEvery is the rule evaluation interval of the tests (Prometheus'
// default evaluation_interval is 1m); the series are sampled as often.
const evalEvery = time.Minute

// promQL parses as a stock Prometheus does: no experimental functions.
var promQL = parser.NewParser(parser.Options{})

// loadRules parses the alert rules as Prometheus does when it loads them
// (unknown fields refused, templates checked) and returns them by name.
func loadRules(t *testing.T) map[string]rulefmt.Rule {
	t.Helper()
	groups, errs := rulefmt.ParseFile(rulesFile, false, model.UTF8Validation, promQL, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Error(err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	out := map[string]rulefmt.Rule{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if _, dup := out[r.Alert]; dup {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("alert %s: severity %q, want warning or critical", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s: a summary and a description are expected", r.Alert)
			}
			out[r.Alert] = r
		}
	}
	return out
}

// alertCase loads series (promqltest's load syntax, one sample a minute
// from time 0), evaluates alert every minute up to at, and expects it
// firing there or not; firing alerts must carry labels.
type alertCase struct {
	alert  string
	name   string
	series string
	at     time.Duration
	fire   bool
	labels map[string]string
}

const (
	job = `job="bulwark"`
	a   = `job="bulwark",instance="a:9464"`
	b   = `job="bulwark",instance="b:9464"`
)

var cases = []alertCase{
	{alert: "BulwarkDown", name: "a node unscraped for 3 minutes", fire: true, at: 6 * time.Minute,
		series: `up{` + a + `} 1 1 1 0x3`, labels: map[string]string{"instance": "a:9464"}},
	{alert: "BulwarkDown", name: "scraped", at: 6 * time.Minute, series: `up{` + a + `} 1x6`},

	{alert: "BulwarkNotReady", name: "not ready for 10 minutes", fire: true, at: 10 * time.Minute,
		series: `bulwark_ready{` + a + `} 0x10`},
	{alert: "BulwarkNotReady", name: "not ready for 3 minutes", at: 10 * time.Minute,
		series: `bulwark_ready{` + a + `} 1x7 0x3`},

	{alert: "BulwarkNoLeader", name: "no node leads", fire: true, at: 5 * time.Minute,
		series: "bulwark_raft_leader{" + a + "} 0x5\nbulwark_raft_leader{" + b + "} 0x5", labels: map[string]string{"job": "bulwark"}},
	{alert: "BulwarkNoLeader", name: "one node leads", at: 5 * time.Minute,
		series: "bulwark_raft_leader{" + a + "} 1x5\nbulwark_raft_leader{" + b + "} 0x5"},

	{alert: "BulwarkLeaderMetricsAbsent", name: "no node reports", fire: true, at: 10 * time.Minute,
		series: `up{` + a + `} 0x10`},
	{alert: "BulwarkLeaderMetricsAbsent", name: "a node reports", at: 10 * time.Minute,
		series: `bulwark_raft_leader{` + a + `} 0x10`},

	{alert: "BulwarkSeveralLeaders", name: "two leaders for 5 minutes", fire: true, at: 5 * time.Minute,
		series: "bulwark_raft_leader{" + a + "} 1x5\nbulwark_raft_leader{" + b + "} 1x5"},
	{alert: "BulwarkSeveralLeaders", name: "one leader", at: 5 * time.Minute,
		series: "bulwark_raft_leader{" + a + "} 1x5\nbulwark_raft_leader{" + b + "} 0x5"},

	{alert: "BulwarkSoftwareSealing", name: "software", fire: true, at: 5 * time.Minute,
		series: `bulwark_seal_info{` + a + `,mode="software"} 1x5`},
	{alert: "BulwarkSoftwareSealing", name: "tpm", at: 5 * time.Minute,
		series: `bulwark_seal_info{` + a + `,mode="tpm"} 1x5`},

	// One check a second for 70 minutes, then twenty.
	{alert: "BulwarkPasswordCheckSurge", name: "twenty times the usual rate", fire: true, at: 90 * time.Minute,
		series: `bulwark_password_checks_total{` + a + `} 0+60x70 5400+1200x20`},
	{alert: "BulwarkPasswordCheckSurge", name: "the usual rate", at: 90 * time.Minute,
		series: `bulwark_password_checks_total{` + a + `} 0+60x90`},
	{alert: "BulwarkPasswordCheckSurge", name: "a quiet site tripling", at: 90 * time.Minute,
		series: `bulwark_password_checks_total{` + a + `} 0+6x70 438+18x20`},

	{alert: "BulwarkPasswordHashingSaturated", name: "logins refused as busy", fire: true, at: 20 * time.Minute,
		series: "bulwark_password_hash_refused_total{" + a + "} 0+10x20\nbulwark_password_hash_abandoned_total{" + a + "} 0x20"},
	{alert: "BulwarkPasswordHashingSaturated", name: "none refused", at: 20 * time.Minute,
		series: "bulwark_password_hash_refused_total{" + a + "} 3x20\nbulwark_password_hash_abandoned_total{" + a + "} 1x20"},

	{alert: "BulwarkNodeCertificateExpiring", name: "a day left", fire: true, at: 90 * time.Minute,
		series: `bulwark_node_cert_expiry_timestamp_seconds{` + a + `} 86400x90`},
	{alert: "BulwarkNodeCertificateExpiring", name: "sixty days left", at: 90 * time.Minute,
		series: `bulwark_node_cert_expiry_timestamp_seconds{` + a + `} 5184000x90`},

	{alert: "BulwarkRestarting", name: "three restarts", fire: true, at: 10 * time.Minute,
		series: "process_start_time_seconds{" + a + "} 0 60 120 180x7\nbulwark_seal_info{" + a + ",mode=\"tpm\"} 1x10"},
	{alert: "BulwarkRestarting", name: "three restarts of another program", at: 10 * time.Minute,
		series: `process_start_time_seconds{` + a + `} 0 60 120 180x7`},
	{alert: "BulwarkRestarting", name: "running", at: 10 * time.Minute,
		series: "process_start_time_seconds{" + a + "} 0x10\nbulwark_seal_info{" + a + ",mode=\"tpm\"} 1x10"},

	// One address refused a connection a second for 20 minutes.
	{alert: "BulwarkConnectionsRefused", name: "one a second per client", fire: true, at: 20 * time.Minute,
		series: `bulwark_connections_refused_total{` + a + `,reason="per_client"} 0+60x20`,
		labels: map[string]string{"instance": "a:9464", "reason": "per_client"}},
	{alert: "BulwarkConnectionsRefused", name: "waiting at max_connections", fire: true, at: 20 * time.Minute,
		series: "bulwark_connections_refused_total{" + a + ",reason=\"max_connections\"} 0+30x20\n" +
			"bulwark_connections_refused_total{" + a + ",reason=\"per_client\"} 0x20",
		labels: map[string]string{"reason": "max_connections"}},
	{alert: "BulwarkConnectionsRefused", name: "a burst of a hundred", at: 20 * time.Minute,
		series: `bulwark_connections_refused_total{` + a + `,reason="per_client"} 0x5 100x15`},
	{alert: "BulwarkConnectionsRefused", name: "one a minute", at: 20 * time.Minute,
		series: `bulwark_connections_refused_total{` + a + `,reason="per_client"} 0+1x20`},

	// 1.2 failures a second over two nodes, 0.6 each.
	{alert: "BulwarkBruteForce", name: "spread over two nodes", fire: true, at: 15 * time.Minute,
		series: "bulwark_failed_auth_attempts_total{" + a + ",reason=\"wrong_password\"} 0+36x15\n" +
			"bulwark_failed_auth_attempts_total{" + b + ",reason=\"unknown_user\"} 0+36x15",
		labels: map[string]string{"job": "bulwark"}},
	{alert: "BulwarkBruteForce", name: "one node's share", at: 15 * time.Minute,
		series: `bulwark_failed_auth_attempts_total{` + a + `,reason="wrong_password"} 0+36x15`},

	{alert: "BulwarkLockoutSurge", name: "a lockout a minute", fire: true, at: 20 * time.Minute,
		series: `bulwark_lockouts_total{` + a + `} 0+1x20`},
	{alert: "BulwarkLockoutSurge", name: "one every two minutes", at: 20 * time.Minute,
		series: `bulwark_lockouts_total{` + a + `} 0+0.5x20`},

	{alert: "BulwarkSuspiciousActivity", name: "a refresh token reused", fire: true, at: 12 * time.Minute,
		series: `bulwark_suspicious_activity_total{` + a + `,kind="refresh_reuse"} 0x10 1x2`,
		labels: map[string]string{"kind": "refresh_reuse", "severity": "critical"}},
	{alert: "BulwarkSuspiciousActivity", name: "one long ago", at: 30 * time.Minute,
		series: `bulwark_suspicious_activity_total{` + a + `,kind="refresh_reuse"} 0x10 1x20`},

	// 401s at 0.1/s for 70 minutes, then 10/s.
	{alert: "BulwarkUnauthorizedSpike", name: "401s a hundred times the usual", fire: true, at: 90 * time.Minute,
		series: `bulwark_http_requests_total{` + a + `,route="GET /v1/me",code="401"} 0+6x70 1020+600x20`,
		labels: map[string]string{"code": "401"}},
	// The first 403s the node ever answered: no baseline series.
	{alert: "BulwarkUnauthorizedSpike", name: "the first 403s", fire: true, at: 80 * time.Minute,
		series: "bulwark_http_requests_total{" + a + ",route=\"GET /v1/me\",code=\"200\"} 0+60x80\n" +
			"bulwark_http_requests_total{" + a + ",route=\"GET /v1/admin/users\",code=\"403\"} _x69 0+600x11",
		labels: map[string]string{"code": "403"}},
	{alert: "BulwarkUnauthorizedSpike", name: "a steady two 401s a second", at: 90 * time.Minute,
		series: `bulwark_http_requests_total{` + a + `,route="GET /v1/me",code="401"} 0+120x90`},
	{alert: "BulwarkUnauthorizedSpike", name: "a few 403s", at: 80 * time.Minute,
		series: `bulwark_http_requests_total{` + a + `,route="GET /v1/admin/users",code="403"} _x69 0+30x11`},

	{alert: "BulwarkLeaderFlapping", name: "a new leader a minute", fire: true, at: 20 * time.Minute,
		series: "bulwark_leader_changes_total{" + a + "} 1+1x20\nbulwark_leader_changes_total{" + b + "} 1+1x20"},
	{alert: "BulwarkLeaderFlapping", name: "one change", at: 20 * time.Minute,
		series: "bulwark_leader_changes_total{" + a + "} 1x10 2x10\nbulwark_leader_changes_total{" + b + "} 1x10 2x10"},

	// rotate_every 30 days; the key 31 days old and ageing.
	{alert: "BulwarkSigningKeyNotRotated", name: "a day overdue", fire: true, at: 90 * time.Minute,
		series: "bulwark_signing_key_age_seconds{" + a + "} 2678400+60x90\nbulwark_signing_key_rotation_period_seconds{" + a + "} 2592000x90"},
	{alert: "BulwarkSigningKeyNotRotated", name: "not yet due", at: 90 * time.Minute,
		series: "bulwark_signing_key_age_seconds{" + a + "} 2500000+60x90\nbulwark_signing_key_rotation_period_seconds{" + a + "} 2592000x90"},
	{alert: "BulwarkSigningKeyNotRotated", name: "rotation off", at: 90 * time.Minute,
		series: "bulwark_signing_key_age_seconds{" + a + "} 9000000+60x90\nbulwark_signing_key_rotation_period_seconds{" + a + "} 0x90"},

	{alert: "BulwarkAuditChainBroken", name: "a break found", fire: true, at: 10 * time.Minute,
		series: `bulwark_audit_chain_broken{` + a + `} 0x5 1x5`},
	{alert: "BulwarkAuditChainBroken", name: "intact", at: 10 * time.Minute,
		series: `bulwark_audit_chain_broken{` + a + `} 0x10`},

	{alert: "BulwarkAuditVerificationStalled", name: "entries grow, the check does not move", fire: true, at: 40 * time.Minute,
		series: "bulwark_audit_last_seq{" + a + "} 100+10x40\nbulwark_audit_verified_seq{" + a + "} 100x40"},
	{alert: "BulwarkAuditVerificationStalled", name: "the check follows a few entries behind", at: 40 * time.Minute,
		series: "bulwark_audit_last_seq{" + a + "} 100+10x40\nbulwark_audit_verified_seq{" + a + "} 95+10x40"},
	{alert: "BulwarkAuditVerificationStalled", name: "no new entries", at: 40 * time.Minute,
		series: "bulwark_audit_last_seq{" + a + "} 100x40\nbulwark_audit_verified_seq{" + a + "} 100x40"},
}

// TestAlertsFire runs every case, and checks that every alert of the file
// has a case that fires it and one that does not.
func TestAlertsFire(t *testing.T) {
	defs := loadRules(t)
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, c := range cases {
		def, ok := defs[c.alert]
		if !ok {
			t.Errorf("case %q: no alert %s in %s", c.name, c.alert, rulesFile)
			continue
		}
		t.Run(c.alert+"/"+c.name, func(t *testing.T) {
			firing := evaluate(t, def, c)
			switch {
			case c.fire && len(firing) == 0:
				t.Fatalf("%s did not fire at %v", c.alert, c.at)
			case !c.fire && len(firing) > 0:
				t.Fatalf("%s fired at %v: %v", c.alert, c.at, firing)
			}
			for _, l := range firing {
				for k, v := range c.labels {
					if got := l.Get(k); got != v {
						t.Errorf("firing alert %v: %s=%q, want %q", l, k, got, v)
					}
				}
			}
		})
		if c.fire {
			fires[c.alert] = true
		} else {
			quiet[c.alert] = true
		}
	}
	for _, name := range slices.Sorted(maps.Keys(defs)) {
		if !fires[name] {
			t.Errorf("no case fires %s", name)
		}
		if !quiet[name] {
			t.Errorf("no case keeps %s quiet", name)
		}
	}
}

// evaluate evaluates def every evalEvery from time 0 through c.at over
// c.series, as a rule group would, and returns the labels of the alerts
// firing at the end.
func evaluate(t *testing.T, def rulefmt.Rule, c alertCase) []labels.Labels {
	t.Helper()
	expr, err := promQL.ParseExpr(def.Expr)
	if err != nil {
		t.Fatal(err)
	}
	storage := promqltest.LoadedStorage(t, "load 1m\n  "+indent(c.series))
	t.Cleanup(func() { storage.Close() })
	engine := promqltest.NewTestEngine(t, false, 0, 1_000_000)
	rule := rules.NewAlertingRule(def.Alert, expr, time.Duration(def.For), time.Duration(def.KeepFiringFor),
		labels.FromMap(def.Labels), labels.FromMap(def.Annotations), labels.EmptyLabels(), "", true,
		slog.New(slog.DiscardHandler))
	query := rules.EngineQueryFunc(engine, storage)
	for at := time.Duration(0); at <= c.at; at += evalEvery {
		if _, err := rule.Eval(context.Background(), 0, time.Unix(0, 0).UTC().Add(at), query, nil, 0); err != nil {
			t.Fatalf("evaluating %s at %v: %v", def.Alert, at, err)
		}
	}
	var firing []labels.Labels
	for _, al := range rule.ActiveAlerts() {
		if al.State == rules.StateFiring {
			firing = append(firing, al.Labels)
		}
	}
	return firing
}

func indent(series string) string {
	out := []byte{}
	for i := 0; i < len(series); i++ {
		out = append(out, series[i])
		if series[i] == '\n' {
			out = append(out, ' ', ' ')
		}
	}
	return string(out)
}
