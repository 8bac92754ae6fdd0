package main

import (
	"time"

	"github.com/bulwark-auth/bulwark/api"
	"github.com/bulwark-auth/bulwark/authcore"
	"github.com/bulwark-auth/bulwark/node"
)

// auditCheckEvery is how often the background audit chain check looks
// for new entries (bulwark_audit_verified_seq).
const auditCheckEvery = 10 * time.Second

// metricsSources wires what /metrics reads at scrape time: the node's
// Raft state, the auth service's figures, the seal mode, the cluster
// certificate's expiry and the rotation period.
func metricsSources(n *node.Node, core *authcore.Service, sealMode string, cluster *node.ClusterTLS, rotateEvery time.Duration, apiLn *api.ConnLimiter) api.MetricSources {
	return api.MetricSources{
		SealMode: sealMode,
		Raft: func() api.RaftStats {
			s := n.Status()
			ready, _ := n.Ready()
			return api.RaftStats{Leader: s.State == "Leader", Ready: ready, Applied: s.AppliedIndex,
				Commit: s.CommitIndex, Last: s.LastIndex, LeaderChanges: n.LeaderChanges()}
		},
		Auth:        core,
		Blocks:      core,
		CertExpiry:  func() time.Time { return cluster.Certificate().Leaf.NotAfter },
		RotateEvery: rotateEvery,
		Conns:       apiLn.Stats,
	}
}
