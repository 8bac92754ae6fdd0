package api

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/bulwark-auth/bulwark/authcore"
)

// fakeStats are the auth service's figures for the metrics tests.
type fakeStats struct {
	sessions   int
	keyAge     time.Duration
	keyErr     error
	audit      authcore.AuditVerification
	blocked    int
	blockReads atomic.Int64
}

func (f *fakeStats) PasswordChecks() int64                         { return 7 }
func (f *fakeStats) HashStats() authcore.HashStats                 { return authcore.HashStats{Slots: 2} }
func (f *fakeStats) SessionCount() (int, error)                    { return f.sessions, nil }
func (f *fakeStats) SigningKeyAge() (time.Duration, error)         { return f.keyAge, f.keyErr }
func (f *fakeStats) AuditVerification() authcore.AuditVerification { return f.audit }
func (f *fakeStats) BlockedAddresses() (int, error) {
	f.blockReads.Add(1)
	return f.blocked, nil
}

func testSources(f *fakeStats) MetricSources {
	return MetricSources{
		SealMode: "software",
		Raft: func() RaftStats {
			return RaftStats{Leader: true, Ready: true, Applied: 9, Commit: 9, Last: 9, LeaderChanges: 2}
		},
		Auth:        f,
		Blocks:      f,
		CertExpiry:  func() time.Time { return time.Unix(2e9, 0) },
		RotateEvery: 720 * time.Hour,
		Conns:       func() ConnStats { return ConnStats{Open: 5, Idle: 2, RefusedPerClient: 3} },
	}
}

// scrapeFamilies reads /metrics from h with Prometheus' text parser.
func scrapeFamilies(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics: %d", rec.Code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

// value is the value of the series of family name with exactly labels
// (name=value pairs); ok false when there is none.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel())*2 != len(labels) {
			continue
		}
		for i, l := range m.GetLabel() {
			if l.GetName() != labels[2*i] || l.GetValue() != labels[2*i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func wantValue(t *testing.T, fams map[string]*dto.MetricFamily, want float64, name string, labels ...string) {
	t.Helper()
	got, ok := value(fams, name, labels...)
	if !ok {
		t.Errorf("no series %s%v", name, labels)
	} else if got != want {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

// TestRequestMetrics: every answer is counted under the pattern its
// route was registered with, never the path asked for; paths that match
// no route share one series.
func TestRequestMetrics(t *testing.T) {
	m := NewMetrics()
	h := NewHandler(Options{Metrics: m}, fakeReady{ok: true}, newFakeUsers(), newFakeAuth())
	do(t, h, "GET", "/healthz", "", "")
	do(t, h, "GET", "/healthz", "", "")
	do(t, h, "GET", "/v1/admin/users/alice", "", "")   // no token: 401
	do(t, h, "GET", "/v1/admin/users/mallory", "", "") // the same route
	do(t, h, "GET", "/no/such/path/1", "", "")
	do(t, h, "GET", "/no/such/path/2", "", "")
	do(t, h, "PUT", "/healthz", "", "") // 405

	fams := scrapeFamilies(t, m.Handler(testSources(&fakeStats{}), false))
	wantValue(t, fams, 2, "bulwark_http_requests_total", "code", "200", "route", "GET /healthz")
	wantValue(t, fams, 2, "bulwark_http_requests_total", "code", "401", "route", "GET /v1/admin/users/{user}")
	wantValue(t, fams, 2, "bulwark_http_requests_total", "code", "404", "route", "other")
	wantValue(t, fams, 1, "bulwark_http_requests_total", "code", "405", "route", "other")
	wantValue(t, fams, 2, "bulwark_http_request_duration_seconds", "route", "GET /healthz")
	wantValue(t, fams, 3, "bulwark_http_request_duration_seconds", "route", "other")
	for _, s := range fams["bulwark_http_requests_total"].GetMetric() {
		for _, l := range s.GetLabel() {
			if strings.Contains(l.GetValue(), "alice") || strings.Contains(l.GetValue(), "/no/such") {
				t.Errorf("a label holds the path asked for: %v", s.GetLabel())
			}
		}
	}
}

// TestSecurityEventMetrics: events move their counters; label values
// stay in their fixed sets; every labelled series exists from the start.
func TestSecurityEventMetrics(t *testing.T) {
	m := NewMetrics()
	h := m.Handler(testSources(&fakeStats{}), false)
	fams := scrapeFamilies(t, h)
	for _, r := range failureReasons {
		wantValue(t, fams, 0, "bulwark_failed_auth_attempts_total", "reason", r)
	}
	wantValue(t, fams, 0, "bulwark_suspicious_activity_total", "kind", "refresh_reuse")
	wantValue(t, fams, 0, "bulwark_logins_total", "result", "locked")
	wantValue(t, fams, 0, "bulwark_lockouts_total")
	wantValue(t, fams, 0, "bulwark_ip_blocks_total")

	failure := func(reason string) authcore.SecurityEvent {
		return authcore.SecurityEvent{Type: "login.failure", Details: map[string]string{"reason": reason}}
	}
	for _, ev := range []authcore.SecurityEvent{
		{Type: "login.success"}, {Type: "login.success"},
		failure("wrong_password"), failure("wrong_password"), failure("unknown_user"),
		failure("<script>"), failure(""), // outside the set: "other"
		{Type: "lockout"}, {Type: authcore.EventLoginLocked},
		{Type: "refresh.reuse"}, {Type: "address.block"}, {Type: "mfa.failure"},
		{Type: "user.create"}, {Type: "no.such.type"}, // counted nowhere
	} {
		m.SecurityEvent(ev)
	}
	fams = scrapeFamilies(t, h)
	wantValue(t, fams, 2, "bulwark_logins_total", "result", "success")
	wantValue(t, fams, 5, "bulwark_logins_total", "result", "failure")
	wantValue(t, fams, 1, "bulwark_logins_total", "result", "locked")
	wantValue(t, fams, 2, "bulwark_failed_auth_attempts_total", "reason", "wrong_password")
	wantValue(t, fams, 1, "bulwark_failed_auth_attempts_total", "reason", "unknown_user")
	wantValue(t, fams, 2, "bulwark_failed_auth_attempts_total", "reason", "other")
	wantValue(t, fams, 1, "bulwark_failed_auth_attempts_total", "reason", "mfa")
	wantValue(t, fams, 1, "bulwark_lockouts_total")
	wantValue(t, fams, 1, "bulwark_suspicious_activity_total", "kind", "refresh_reuse")
	wantValue(t, fams, 1, "bulwark_ip_blocks_total")
	if n := len(fams["bulwark_failed_auth_attempts_total"].GetMetric()); n != len(failureReasons) {
		t.Errorf("%d reason series, want %d", n, len(failureReasons))
	}
}

// TestGaugeMetrics: the gauges read their sources at scrape time; the
// count of blocked addresses is read at most once per BlocksCacheFor; a
// key without an age is left out.
func TestGaugeMetrics(t *testing.T) {
	f := &fakeStats{sessions: 1_000_000, keyAge: 90 * time.Minute, blocked: 3,
		audit: authcore.AuditVerification{Verified: 40, Last: 42}}
	src := testSources(f)
	src.BlocksCacheFor = time.Hour
	h := NewMetrics().Handler(src, false)
	fams := scrapeFamilies(t, h)
	wantValue(t, fams, 1_000_000, "bulwark_active_sessions")
	wantValue(t, fams, 3, "bulwark_blocked_addresses")
	wantValue(t, fams, 5400, "bulwark_signing_key_age_seconds")
	wantValue(t, fams, 720*3600, "bulwark_signing_key_rotation_period_seconds")
	wantValue(t, fams, 40, "bulwark_audit_verified_seq")
	wantValue(t, fams, 42, "bulwark_audit_last_seq")
	wantValue(t, fams, 0, "bulwark_audit_chain_broken")
	wantValue(t, fams, 1, "bulwark_raft_leader")
	wantValue(t, fams, 2, "bulwark_leader_changes_total")
	wantValue(t, fams, 1, "bulwark_seal_info", "mode", "software")
	wantValue(t, fams, 7, "bulwark_password_checks_total")
	wantValue(t, fams, 5, "bulwark_connections_open")
	wantValue(t, fams, 2, "bulwark_connections_idle")
	wantValue(t, fams, 3, "bulwark_connections_refused_total", "reason", "per_client")
	wantValue(t, fams, 0, "bulwark_connections_refused_total", "reason", "max_connections")
	wantValue(t, fams, 0, "bulwark_connections_idle_closed_total")
	if fams["go_goroutines"] == nil || fams["process_cpu_seconds_total"] == nil {
		t.Error("no Go or process collector")
	}

	f.sessions, f.blocked, f.keyErr = 5, 4, errors.New("not published")
	f.audit.BrokenAt = 41
	fams = scrapeFamilies(t, h)
	wantValue(t, fams, 5, "bulwark_active_sessions")
	wantValue(t, fams, 3, "bulwark_blocked_addresses") // cached
	wantValue(t, fams, 1, "bulwark_audit_chain_broken")
	if _, ok := value(fams, "bulwark_signing_key_age_seconds"); ok {
		t.Error("a key age served while the key has none")
	}
	if n := f.blockReads.Load(); n != 1 {
		t.Errorf("blocked addresses read %d times in two scrapes an hour apart at most, want 1", n)
	}

	// The cache runs out.
	c := &cachedCount{read: f.BlockedAddresses, ttl: 5 * time.Second}
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	c.get()
	now = now.Add(4 * time.Second)
	c.get()
	now = now.Add(time.Second)
	if n, _ := c.get(); n != 4 || c.reads != 2 {
		t.Errorf("after 0, 4 and 5 s: %d, %d reads; want 4, 2", n, c.reads)
	}
}

// TestMetricsProfiling: /debug/pprof/ only with profiling on.
func TestMetricsProfiling(t *testing.T) {
	src := testSources(&fakeStats{})
	if rec := do(t, NewMetrics().Handler(src, false), "GET", "/debug/pprof/", "", ""); rec.Code != 404 {
		t.Errorf("pprof without profiling: %d", rec.Code)
	}
	if rec := do(t, NewMetrics().Handler(src, true), "GET", "/debug/pprof/", "", ""); rec.Code != 200 {
		t.Errorf("pprof with profiling: %d", rec.Code)
	}
}
