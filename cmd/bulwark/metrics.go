package main

import (
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/bulwark-auth/bulwark/authcore"
	"github.com/bulwark-auth/bulwark/node"
)

// metricsHandler serves /metrics from a registry of this node's own: Go
// runtime and process metrics, the seal mode, and Raft's state and indexes
// read at scrape time; with profiling (metrics.pprof), /debug/pprof/ too.
func metricsHandler(n *node.Node, core *authcore.Service, sealMode string, cluster *node.ClusterTLS, profiling bool) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	seal := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bulwark_seal_info",
		Help: "How this node's keys are sealed: 1 for the mode in use (tpm or software).",
	}, []string{"mode"})
	seal.WithLabelValues(sealMode).Set(1)
	checks := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "bulwark_password_checks_total",
		Help: "Password hashes verified by this node (logins and password changes).",
	}, func() float64 { return float64(core.PasswordChecks()) })
	hashes := hashCollector{core}
	certExpiry := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "bulwark_node_cert_expiry_timestamp_seconds",
		Help: "When the node certificate the cluster port presents expires (Unix time); renewed 30 days ahead.",
	}, func() float64 { return float64(cluster.Certificate().Leaf.NotAfter.Unix()) })
	reg.MustRegister(seal, checks, hashes, certExpiry, nodeCollector{n})
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	if profiling {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

var (
	descLeader  = prometheus.NewDesc("bulwark_raft_leader", "1 if this node is the Raft leader.", nil, nil)
	descReady   = prometheus.NewDesc("bulwark_ready", "1 if this node is ready to serve.", nil, nil)
	descApplied = prometheus.NewDesc("bulwark_raft_applied_index", "Last log index applied to state.db.", nil, nil)
	descCommit  = prometheus.NewDesc("bulwark_raft_commit_index", "Last log index known committed.", nil, nil)
	descLast    = prometheus.NewDesc("bulwark_raft_last_index", "Last log index stored.", nil, nil)
)

type nodeCollector struct{ n *node.Node }

func (c nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLeader, descReady, descApplied, descCommit, descLast} {
		ch <- d
	}
}

func (c nodeCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.n.Status()
	ready, _ := c.n.Ready()
	ch <- prometheus.MustNewConstMetric(descLeader, prometheus.GaugeValue, b2f(s.State == "Leader"))
	ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, b2f(ready))
	ch <- prometheus.MustNewConstMetric(descApplied, prometheus.CounterValue, float64(s.AppliedIndex))
	ch <- prometheus.MustNewConstMetric(descCommit, prometheus.CounterValue, float64(s.CommitIndex))
	ch <- prometheus.MustNewConstMetric(descLast, prometheus.CounterValue, float64(s.LastIndex))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

var (
	descHashSlots = prometheus.NewDesc("bulwark_password_hash_slots",
		"Password hashes this node runs at once: its core count.", nil, nil)
	descHashInFlight = prometheus.NewDesc("bulwark_password_hash_in_flight", "Password hashes running now.", nil, nil)
	descHashWaiting  = prometheus.NewDesc("bulwark_password_hash_waiting", "Requests waiting for a password hash slot now.", nil, nil)
	descHashRequests = prometheus.NewDesc("bulwark_password_hash_requests_total",
		"Requests that asked for a hash slot (logins, password changes, user creation), whatever came of it.", nil, nil)
	descHashBusy = prometheus.NewDesc("bulwark_password_hash_busy_seconds_total",
		"Time the hash slots were held; its rate over bulwark_password_hash_slots is the share of hashing capacity in use.", nil, nil)
	descHashWait = prometheus.NewDesc("bulwark_password_hash_wait_seconds_total",
		"Time requests waited for a hash slot; its rate over that of bulwark_password_hash_requests_total is the mean wait.", nil, nil)
	descHashRefused = prometheus.NewDesc("bulwark_password_hash_refused_total",
		"Requests refused as busy (503) after waiting 5 s for a hash slot.", nil, nil)
	descHashAbandoned = prometheus.NewDesc("bulwark_password_hash_abandoned_total",
		"Requests that ended (client gone, timeout) while waiting for a hash slot.", nil, nil)
	descHashPinned = prometheus.NewDesc("bulwark_password_hash_threads_pinned",
		"Password hash threads pinned to a CPU of their own (auth.password.pin_hash_threads); below bulwark_password_hash_slots, the log says why.", nil, nil)
)

// hashCollector reads the password hash slots' state at scrape time.
type hashCollector struct{ core *authcore.Service }

func (c hashCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHashSlots, descHashInFlight, descHashWaiting, descHashRequests,
		descHashBusy, descHashWait, descHashRefused, descHashAbandoned, descHashPinned} {
		ch <- d
	}
}

func (c hashCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.core.HashStats()
	ch <- prometheus.MustNewConstMetric(descHashSlots, prometheus.GaugeValue, float64(st.Slots))
	ch <- prometheus.MustNewConstMetric(descHashInFlight, prometheus.GaugeValue, float64(st.InFlight))
	ch <- prometheus.MustNewConstMetric(descHashWaiting, prometheus.GaugeValue, float64(st.Waiting))
	ch <- prometheus.MustNewConstMetric(descHashRequests, prometheus.CounterValue, float64(st.Requests))
	ch <- prometheus.MustNewConstMetric(descHashBusy, prometheus.CounterValue, st.Busy.Seconds())
	ch <- prometheus.MustNewConstMetric(descHashWait, prometheus.CounterValue, st.Waited.Seconds())
	ch <- prometheus.MustNewConstMetric(descHashRefused, prometheus.CounterValue, float64(st.Refused))
	ch <- prometheus.MustNewConstMetric(descHashAbandoned, prometheus.CounterValue, float64(st.Abandoned))
	ch <- prometheus.MustNewConstMetric(descHashPinned, prometheus.GaugeValue, float64(st.PinnedThreads))
}
