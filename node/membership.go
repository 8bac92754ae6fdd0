package node

// Membership: the cluster's configuration seen and changed from any
// member.
//
// Raft changes its configuration only on the leader, so a member that is
// not leading sends the change to the leader over the cluster port,
// protocol 'M' (mutual TLS: only cluster members reach it). One JSON frame
// each way:
//
//	request {"op", "id", "address"}
//	answer  {"info": {...}} | {} | {"code", "error"}
//
// Ops: "info" (any member: its own view, for `cluster status`),
// "add_nonvoter" (the leader: a node whose join token the log consumed),
// "promote" (the leader: a nonvoter asks for itself, proven by its
// certificate's name, once it has caught up), "remove", and "certify" (a
// CA holder: a member renews its certificate, certify.go).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/bulwark-auth/bulwark/fsm"
)

const protoMember byte = 'M'

const (
	opInfo        = "info"
	opAddNonvoter = "add_nonvoter"
	opPromote     = "promote"
	opRemove      = "remove"

	memberTimeout     = 10 * time.Second
	infoTimeout       = time.Second
	maxMemberFrame    = 16 << 10
	membershipRetryIn = 100 * time.Millisecond
)

type memberRequest struct {
	Op      string `json:"op"`
	ID      string `json:"id,omitempty"`
	Address string `json:"address,omitempty"`
	// certify (certify.go): the PKIX public key and extra hosts.
	Pub   []byte   `json:"pub,omitempty"`
	Hosts []string `json:"hosts,omitempty"`
	// CRL: certify, the CRL distribution point the certificate is to
	// name (pki.CRLURL, at one of its hosts); absent: none.
	CRL string `json:"crl,omitempty"`
	// Level: promote, the feature level of the asking node's binary
	// (fsm.MaxLevel); absent from a node of the first release.
	Level int `json:"level,omitempty"`
	// SPKI: add_nonvoter, the hex SHA-256 of the joining node's key,
	// which the leader records (fsm member.key) before adding it; absent
	// from an admitting node of an earlier release.
	SPKI string `json:"spki,omitempty"`
}

type memberAnswer struct {
	Info *memberInfo `json:"info,omitempty"`
	// Code: not_leader, no_leader (retry elsewhere or later), not_member,
	// refused.
	Code  string `json:"code,omitempty"`
	Error string `json:"error,omitempty"`
	// Cert is the DER certificate certify issued.
	Cert []byte `json:"cert,omitempty"`

	// sent and got are when this node sent the request and read the
	// answer, by its clock (memberCall): the window the answering
	// member's Clock was read in.
	sent, got time.Time
}

// memberInfo is one member's own view of itself.
type memberInfo struct {
	ID           string `json:"id"`
	State        string `json:"state"`
	LeaderID     string `json:"leader_id,omitempty"`
	AppliedIndex uint64 `json:"applied_index"`
	CommitIndex  uint64 `json:"commit_index"`
	LastIndex    uint64 `json:"last_index"`
	// LastContact is how long ago it heard from the leader, "" on the
	// leader, "never" when it has not.
	LastContact string `json:"last_contact,omitempty"`
	CA          bool   `json:"ca"` // holds the cluster CA key
	// CertNotAfter is when the certificate it presents expires.
	CertNotAfter time.Time `json:"cert_not_after,omitzero"`
	// Level is the highest feature level its binary applies
	// (fsm.MaxLevel); members of the first release report none.
	Level int `json:"level,omitempty"`
	// Clock is its clock when it answered; members of earlier releases
	// report none.
	Clock time.Time `json:"clock,omitzero"`
}

func (n *Node) localInfo() *memberInfo {
	s := n.Status()
	info := &memberInfo{ID: s.ID, State: s.State, LeaderID: s.LeaderID, AppliedIndex: s.AppliedIndex,
		CommitIndex: s.CommitIndex, LastIndex: s.LastIndex, CA: n.HoldsCA(), Level: int(n.level.Load()),
		Clock: n.cfg.Clock.Now().UTC()}
	if n.fwd.tls != nil {
		if leaf := n.fwd.tls.Certificate().Leaf; leaf != nil {
			info.CertNotAfter = leaf.NotAfter.UTC()
		}
	}
	if s.State != raft.Leader.String() {
		if t := n.raft.LastContact(); t.IsZero() {
			info.LastContact = "never"
		} else {
			info.LastContact = time.Since(t).Round(time.Millisecond).String()
		}
	}
	return info
}

// serveMember answers one membership request from an authenticated member.
func (n *Node) serveMember(c net.Conn) {
	defer c.Close()
	caller := peerName(c)
	if caller == "" {
		return // route lets no such connection through; be safe
	}
	c.SetDeadline(time.Now().Add(memberTimeout + 5*time.Second))
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	b, err := readFrameMax(r, maxMemberFrame)
	if err != nil {
		return
	}
	var req memberRequest
	var ans memberAnswer
	if err := json.Unmarshal(b, &req); err != nil {
		ans = memberAnswer{Code: "refused", Error: "not a membership request"}
	} else {
		ans = n.memberLocal(req, caller)
	}
	if out, err := json.Marshal(ans); err == nil {
		writeFrame(w, out)
	}
}

// memberLocal carries out req on this node; changes need it to lead.
// caller is the member that asked (its certificate's name).
func (n *Node) memberLocal(req memberRequest, caller string) memberAnswer {
	switch req.Op {
	case opInfo:
		return memberAnswer{Info: n.localInfo()}
	case opCertify: // on a CA holder, leader or not
		return n.certifyLocal(context.Background(), req, caller)
	}
	if n.raft.State() != raft.Leader {
		return memberAnswer{Code: "not_leader", Error: fmt.Sprintf("%s is not the leader", n.cfg.ID)}
	}
	if caller != n.cfg.ID && !n.isMember(caller) {
		// A removed node keeps its certificate; it changes nothing.
		return memberAnswer{Code: "refused", Error: fmt.Sprintf("%s is not a member of the cluster", caller)}
	}
	servers := n.servers()
	var cur *raft.Server
	voters := 0
	for i := range servers {
		if string(servers[i].ID) == req.ID {
			cur = &servers[i]
		}
		if servers[i].Suffrage == raft.Voter {
			voters++
		}
	}
	var f raft.IndexFuture
	switch req.Op {
	case opAddNonvoter:
		if !n.consumedBy(req.ID) {
			return memberAnswer{Code: "refused", Error: fmt.Sprintf("no join token was used by %s", req.ID)}
		}
		if cur != nil {
			if string(cur.Address) == req.Address {
				return memberAnswer{} // already added
			}
			return memberAnswer{Code: "refused", Error: fmt.Sprintf("%s is already a member at %s", req.ID, cur.Address)}
		}
		if _, _, err := splitHostPort(req.Address); err != nil {
			return memberAnswer{Code: "refused", Error: fmt.Sprintf("address %q: %v", req.Address, err)}
		}
		// The members so far first settle the level the newcomer must
		// apply; while it catches up, it would hold the level back.
		n.raiseLevelNow()
		if ans, ok := n.runBeforeAdmit(req); !ok {
			return ans
		}
		if ans, ok := n.recordJoinerKey(req); !ok {
			return ans
		}
		f = n.raft.AddNonvoter(raft.ServerID(req.ID), raft.ServerAddress(req.Address), 0, memberTimeout)
	case opPromote:
		if caller != req.ID {
			return memberAnswer{Code: "refused", Error: fmt.Sprintf("%s may not promote %s: a node asks for itself", caller, req.ID)}
		}
		if cur == nil {
			return memberAnswer{Code: "not_member", Error: fmt.Sprintf("%s is not a member of the cluster", req.ID)}
		}
		if cur.Suffrage == raft.Voter {
			return memberAnswer{}
		}
		var level int
		n.View(func(r fsm.Reader) error { level = r.ClusterLevel(); return nil })
		if max(req.Level, 1) < level {
			return memberAnswer{Code: "refused", Error: fmt.Sprintf(
				"%s runs a bulwark of feature level %d, and the cluster is at level %d: it cannot apply the whole log; upgrade bulwark on %s",
				req.ID, max(req.Level, 1), level, req.ID)}
		}
		f = n.raft.AddVoter(cur.ID, cur.Address, 0, memberTimeout)
	case opRemove:
		if cur == nil {
			return memberAnswer{Code: "not_member", Error: fmt.Sprintf("%s is not a member of the cluster", req.ID)}
		}
		if cur.Suffrage == raft.Voter && voters == 1 {
			return memberAnswer{Code: "refused", Error: fmt.Sprintf("%s is the cluster's only voter; removing it would end the cluster", req.ID)}
		}
		f = n.raft.RemoveServer(cur.ID, 0, memberTimeout)
	default:
		return memberAnswer{Code: "refused", Error: fmt.Sprintf("unknown membership op %q", req.Op)}
	}
	if err := f.Error(); err != nil {
		switch err := n.raftErr(err); {
		case errors.Is(err, ErrNotLeader):
			return memberAnswer{Code: "not_leader", Error: err.Error()}
		case errors.Is(err, ErrNoLeader), errors.Is(err, ErrShutdown):
			return memberAnswer{Code: "no_leader", Error: err.Error()}
		default:
			return memberAnswer{Code: "refused", Error: err.Error()}
		}
	}
	n.log.Info("cluster membership changed", "op", req.Op, "id", req.ID, "by", caller, "index", f.Index())
	return memberAnswer{}
}

// BeforeAdmit sets what the leader settles before it adds a joining node,
// once the feature level is raised (serve: the cluster's tokens.issuer, so
// that a joiner configured with another one finds the cluster's recorded
// instead of recording its own first). An error refuses the join.
func (n *Node) BeforeAdmit(fn func(context.Context) error) { n.beforeAdmit.Store(&fn) }

// runBeforeAdmit runs the BeforeAdmit hook, if any, for req.
func (n *Node) runBeforeAdmit(req memberRequest) (memberAnswer, bool) {
	fn := n.beforeAdmit.Load()
	if fn == nil {
		return memberAnswer{}, true
	}
	ctx, cancel := context.WithTimeout(context.Background(), memberTimeout)
	defer cancel()
	if err := (*fn)(ctx); err != nil {
		return memberAnswer{Code: "refused", Error: fmt.Sprintf("before admitting %s: %v", req.ID, err)}, false
	}
	return memberAnswer{}, true
}

// recordJoinerKey records, on the leader, the key of the node req adds,
// before it is a member: the state records a member's key only from the
// member itself (authority.go) or from the leader admitting it. Below
// level 2, or from an admitting node of an earlier release, there is no
// key to record; the node records its own once running.
func (n *Node) recordJoinerKey(req memberRequest) (memberAnswer, bool) {
	if req.SPKI == "" || !n.proposable(fsm.TypeMemberKey, 1) {
		return memberAnswer{}, true
	}
	ctx, cancel := context.WithTimeout(context.Background(), memberTimeout)
	defer cancel()
	cmd, err := fsm.NewCommand(fsm.TypeMemberKey, 1, n.cfg.Clock.Now().UnixNano(), fsm.MemberKey{Node: req.ID, SPKI: req.SPKI})
	if err == nil {
		err = n.applyHere(ctx, cmd)
	}
	switch {
	case err == nil:
		return memberAnswer{}, true
	case errors.Is(err, fsm.ErrInvalidCommand), errors.Is(err, fsm.ErrMalformedCommand):
		return memberAnswer{Code: "refused", Error: fmt.Sprintf("the key of %s: %v", req.ID, err)}, false
	default: // leadership moved: onLeader asks the next leader
		return memberAnswer{Code: "no_leader", Error: fmt.Sprintf("recording the key of %s: %v", req.ID, err)}, false
	}
}

func clusterLevelOf(n *Node) (level int) {
	n.View(func(r fsm.Reader) error { level = r.ClusterLevel(); return nil })
	return level
}

// consumedBy reports whether the log consumed a join token for node id.
func (n *Node) consumedBy(id string) bool {
	found := false
	n.View(func(r fsm.Reader) error {
		return r.JoinTokens(func(t *fsm.JoinToken) bool {
			found = !t.UsedAt.IsZero() && t.NodeID == id
			return !found
		})
	})
	return found
}

// memberCall sends req to the member id at addr over protocol 'M'.
func (n *Node) memberCall(ctx context.Context, id, addr string, req memberRequest, timeout time.Duration) (memberAnswer, error) {
	if n.fwd.tls == nil {
		return memberAnswer{}, errors.New("no cluster transport")
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c, err := dialCluster(n.fwd.tls, addr, protoMember, time.Until(deadline), n.serverIs(id))
	if err != nil {
		return memberAnswer{}, err
	}
	defer c.Close()
	c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	b, err := json.Marshal(req)
	if err != nil {
		return memberAnswer{}, err
	}
	sent := n.cfg.Clock.Now()
	if err := writeFrame(bufio.NewWriter(c), b); err != nil {
		return memberAnswer{}, err
	}
	b, err = readFrameMax(bufio.NewReader(c), maxMemberFrame)
	if err != nil {
		return memberAnswer{}, err
	}
	got := n.cfg.Clock.Now()
	var ans memberAnswer
	if err := json.Unmarshal(b, &ans); err != nil {
		return memberAnswer{}, fmt.Errorf("membership answer: %w", err)
	}
	ans.sent, ans.got = sent, got
	return ans, nil
}

// onLeader carries out a membership change on the leader, wherever it is,
// retrying while leadership moves, until ctx ends.
func (n *Node) onLeader(ctx context.Context, req memberRequest) error {
	var last error
	for {
		var ans memberAnswer
		var err error
		if n.raft.State() == raft.Leader {
			ans = n.memberLocal(req, n.cfg.ID)
		} else if addr, id := n.leader(); id == "" {
			err = fmt.Errorf("%w: no leader known", ErrNoLeader)
		} else {
			ans, err = n.memberCall(ctx, string(id), string(addr), req, memberTimeout)
			if err != nil {
				err = fmt.Errorf("%w: the leader %s at %s: %v", ErrNoLeader, id, addr, err)
			}
		}
		switch {
		case err != nil:
			last = err
		case ans.Code == "":
			return nil
		case ans.Code == "not_leader" || ans.Code == "no_leader":
			last = fmt.Errorf("%w: %s", ErrNoLeader, ans.Error)
		case ans.Code == "not_member":
			return &JoinError{Err: ErrNotMember, Msg: ans.Error}
		default:
			return &JoinError{Err: ErrMembership, Msg: ans.Error}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (%v)", last, ctx.Err())
		case <-time.After(membershipRetryIn):
		}
	}
}

// EnsureVoter makes this node a voter of its cluster and returns once it
// is one, or ctx ends. A joined node starts as a nonvoter; once it has
// received the log (its configuration names it and it is caught up), it
// asks the leader to promote it. A node that is a voter already returns at
// once; a node that is not in the configuration waits to be added. Run it
// after every Open: a node that stopped before its promotion finishes it
// on the next start.
func (n *Node) EnsureVoter(ctx context.Context) error {
	warned := time.Now()
	for {
		var self *raft.Server
		for _, s := range n.servers() {
			if string(s.ID) == n.cfg.ID {
				self = &s
			}
		}
		switch {
		case self != nil && self.Suffrage == raft.Voter:
			return nil
		case self != nil:
			if ok, _ := n.Ready(); ok {
				pctx, cancel := context.WithTimeout(ctx, 2*memberTimeout)
				err := n.onLeader(pctx, memberRequest{Op: opPromote, ID: n.cfg.ID, Level: int(n.level.Load())})
				cancel()
				if err == nil {
					n.log.Info("promoted to voter", "id", n.cfg.ID)
					continue
				}
				n.log.Warn("promotion to voter failed; retrying", "error", err)
			}
		case time.Since(warned) > 30*time.Second:
			warned = time.Now()
			n.log.Warn("this node is not in the cluster's configuration: not added yet (is cluster.advertise reachable from the leader?) or removed",
				"id", n.cfg.ID, "advertise", n.cfg.Advertise)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(membershipRetryIn):
		}
	}
}

// RemoveMember removes the member id from the cluster (on the leader,
// wherever it is) and records it in the audit trail as actor's doing. An
// unknown id is an error wrapping ErrNotMember.
func (n *Node) RemoveMember(ctx context.Context, id, actor string) error {
	if err := n.onLeader(ctx, memberRequest{Op: opRemove, ID: id}); err != nil {
		return err
	}
	if actor == "" {
		actor = "system"
	}
	// Its certificates are revoked with the audit entry (crl.go).
	err := n.revokeCerts(ctx, id, fsm.AuditAppend{
		Type: "cluster.remove", Severity: fsm.AuditWarning, Actor: actor, Subject: id,
		Details: map[string]string{"via": n.cfg.ID}})
	if err != nil {
		n.log.Warn("node removed, but its certificates were not revoked nor its audit entry written", "id", id, "error", err)
	}
	return nil
}

// MemberStatus is one member as `cluster status` shows it.
type MemberStatus struct {
	ID       string
	Address  string
	Suffrage string // "voter" or "nonvoter"
	Leader   bool
	Self     bool // the node that answered
	// Reachable: the member answered (always true for Self). The fields
	// below are its own report, zero when it did not answer.
	Reachable    bool
	State        string
	AppliedIndex uint64
	// Lag is how many entries it has applied fewer than the leader.
	Lag         uint64
	LastContact string
	CA          bool
	// CertNotAfter: when the certificate it presents expires.
	CertNotAfter time.Time
	// ClockOffset is its clock less this node's, measured when it
	// answered, give or take ClockUncertainty (half the round trip);
	// ClockKnown is false when it reported no clock. Zero for Self.
	ClockOffset      time.Duration
	ClockUncertainty time.Duration
	ClockKnown       bool
	Error            string // why it did not answer
}

// ClusterStatus is the configuration and each member's view of itself.
type ClusterStatus struct {
	LeaderID   string
	LeaderAddr string
	Nodes      []MemberStatus
}

type memberResult struct {
	id, address string
	info        *memberInfo
	err         error
	// offset, uncertainty: the member's clock against this node's.
	offset, uncertainty time.Duration
}

// memberInfos asks every server for its own view (this node answers for
// itself), concurrently, each within infoTimeout.
func (n *Node) memberInfos(ctx context.Context, servers []raft.Server) []memberResult {
	out := make([]memberResult, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		out[i] = memberResult{id: string(s.ID), address: string(s.Address)}
		if string(s.ID) == n.cfg.ID {
			out[i].info = n.localInfo()
			continue
		}
		wg.Go(func() {
			ans, err := n.memberCall(ctx, string(s.ID), string(s.Address), memberRequest{Op: opInfo}, infoTimeout)
			switch {
			case err != nil:
				out[i].err = err
			case ans.Info == nil:
				out[i].err = fmt.Errorf("no info: %s", ans.Error)
			default:
				out[i].info = ans.Info
				if !ans.Info.Clock.IsZero() {
					half := ans.got.Sub(ans.sent) / 2
					out[i].offset, out[i].uncertainty = ans.Info.Clock.Sub(ans.sent.Add(half)), half
				}
			}
		})
	}
	wg.Wait()
	return out
}

// ClusterStatus reports the cluster's configuration as this node knows it,
// and what each member says of itself.
func (n *Node) ClusterStatus(ctx context.Context) (ClusterStatus, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return ClusterStatus{}, n.raftErr(err)
	}
	servers := f.Configuration().Servers
	addr, id := n.leader()
	st := ClusterStatus{LeaderID: string(id), LeaderAddr: string(addr)}
	results := n.memberInfos(ctx, servers)
	var base uint64
	for _, r := range results {
		if r.info != nil && r.id == st.LeaderID {
			base = r.info.AppliedIndex
		}
	}
	if base == 0 {
		for _, r := range results {
			if r.info != nil {
				base = max(base, r.info.AppliedIndex)
			}
		}
	}
	for i, s := range servers {
		m := MemberStatus{ID: string(s.ID), Address: string(s.Address), Suffrage: "nonvoter",
			Leader: string(s.ID) == st.LeaderID, Self: string(s.ID) == n.cfg.ID}
		if s.Suffrage == raft.Voter {
			m.Suffrage = "voter"
		}
		if r := results[i]; r.info != nil {
			m.Reachable, m.State, m.AppliedIndex = true, r.info.State, r.info.AppliedIndex
			m.LastContact, m.CA, m.CertNotAfter = r.info.LastContact, r.info.CA, r.info.CertNotAfter
			m.ClockKnown = !r.info.Clock.IsZero()
			m.ClockOffset, m.ClockUncertainty = r.offset, r.uncertainty
			if base > m.AppliedIndex {
				m.Lag = base - m.AppliedIndex
			}
		} else if r.err != nil {
			m.Error = strings.TrimSpace(r.err.Error())
		}
		st.Nodes = append(st.Nodes, m)
	}
	return st, nil
}
