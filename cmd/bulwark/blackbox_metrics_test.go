package main

import (
	"fmt"
	"net/http"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// apiMetrics are the names API.md ("Metrics") promises, which alert
// rules and dashboards rely on, with their labels.
var apiMetrics = map[string][]string{
	"bulwark_failed_auth_attempts_total":    {"reason"},
	"bulwark_suspicious_activity_total":     {"kind"},
	"bulwark_active_sessions":               nil,
	"bulwark_logins_total":                  {"result"},
	"bulwark_lockouts_total":                nil,
	"bulwark_blocked_addresses":             nil,
	"bulwark_ip_blocks_total":               nil,
	"bulwark_http_requests_total":           {"route", "code"},
	"bulwark_http_request_duration_seconds": {"route"},
	"bulwark_raft_leader":                   nil,
	"bulwark_leader_changes_total":          nil,
	"bulwark_signing_key_age_seconds":       nil,
	"bulwark_audit_verified_seq":            nil,
	"bulwark_seal_info":                     {"mode"},
	// the Go and process collectors
	"go_goroutines":             nil,
	"process_cpu_seconds_total": nil,
}

// metricFamilies scrapes the node's /metrics and parses it with
// Prometheus' text parser.
func (n *testNode) metricFamilies() map[string]*dto.MetricFamily {
	n.t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", n.metrics))
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		n.t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

// sample sums the values of family name's series whose labels include
// labels (name, value pairs): 0 when there is none.
func sample(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	sum := 0.0
	for _, m := range fams[name].GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for i := 0; i < len(labels); i += 2 {
			match = match && have[labels[i]] == labels[i+1]
		}
		switch {
		case !match:
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// TestBlackBoxMetrics: a real node's /metrics parses, holds every name
// API.md lists with its labels, and its security counters move with a
// failed login, a lockout, a refused locked name and a success.
func TestBlackBoxMetrics(t *testing.T) {
	n := newTestNode(t, "[auth.rate_limit]\nexempt = [\"127.0.0.0/8\"]\n")
	n.start()
	n.addUser("victim", "correct horse battery staple", false)
	n.addUser("alice", "correct horse battery staple", false)

	before := n.metricFamilies()
	for name, labels := range apiMetrics {
		f := before[name]
		if f == nil || len(f.GetMetric()) == 0 {
			t.Errorf("/metrics has no %s", name)
			continue
		}
		for _, m := range f.GetMetric() {
			have := map[string]bool{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = true
			}
			for _, l := range labels {
				if !have[l] {
					t.Errorf("%s has a series without the label %s: %v", name, l, m.GetLabel())
				}
			}
		}
	}
	if v := sample(before, "bulwark_raft_leader"); v != 1 {
		t.Errorf("bulwark_raft_leader = %v on a one-node cluster", v)
	}

	if code, _ := n.login("victim", "wrong password 0"); code != 401 {
		t.Fatalf("wrong password: %d", code)
	}
	one := n.metricFamilies()
	moved := func(fams map[string]*dto.MetricFamily, want float64, name string, labels ...string) {
		t.Helper()
		if d := sample(fams, name, labels...) - sample(before, name, labels...); d != want {
			t.Errorf("%s%v moved by %v, want %v", name, labels, d, want)
		}
	}
	moved(one, 1, "bulwark_failed_auth_attempts_total", "reason", "wrong_password")
	moved(one, 1, "bulwark_logins_total", "result", "failure")
	moved(one, 0, "bulwark_lockouts_total")

	// Four more lock the name (max_failed_attempts = 5); the next is
	// refused at once.
	for i := 1; i < 5; i++ {
		n.login("victim", fmt.Sprintf("wrong password %d", i))
	}
	if code, _ := n.login("victim", "wrong password 5"); code != 429 {
		t.Fatalf("locked name: %d", code)
	}
	if code, _ := n.login("alice", "correct horse battery staple"); code != 200 {
		t.Fatalf("alice: %d", code)
	}
	after := n.metricFamilies()
	moved(after, 5, "bulwark_failed_auth_attempts_total", "reason", "wrong_password")
	moved(after, 1, "bulwark_lockouts_total")
	moved(after, 1, "bulwark_logins_total", "result", "locked")
	moved(after, 1, "bulwark_logins_total", "result", "success")
	moved(after, 1, "bulwark_active_sessions")
	moved(after, 7, "bulwark_http_requests_total", "route", "POST /v1/auth/login")
	moved(after, 1, "bulwark_http_requests_total", "route", "POST /v1/auth/login", "code", "429")
	if v := sample(after, "bulwark_audit_chain_broken"); v != 0 {
		t.Errorf("bulwark_audit_chain_broken = %v", v)
	}
	if v, last := sample(after, "bulwark_audit_verified_seq"), sample(after, "bulwark_audit_last_seq"); v > last {
		t.Errorf("audit verified through %v, past the newest seq %v", v, last)
	}
}
