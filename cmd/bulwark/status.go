package main

import "github.com/bulwark-auth/bulwark/node"

// adminStatus is the admin socket's status: the node's Raft state and
// indexes, and how far its files are compacted after erasures.
type adminStatus struct {
	node.Status
	Erasure *node.ErasureStatus `json:"erasure,omitempty"`
}

func nodeStatus(n *node.Node) adminStatus {
	st := adminStatus{Status: n.Status()}
	if es, err := n.ErasureStatus(); err == nil {
		st.Erasure = &es
	}
	return st
}
