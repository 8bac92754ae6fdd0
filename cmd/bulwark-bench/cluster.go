package main

// The three-node run: after the single-node phases, three bulwark
// processes on this machine form a cluster the operator's way (node1
// `serve`, `cluster join-token` on node1, node2 and node3 `serve --join`),
// all with the same [tokens] issuer, and logins and refreshes are measured
// once through the leader's API and once through a follower's, whose
// writes the follower forwards to the leader over the cluster port.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// Concurrencies of the three-node phases; one user per worker of the
// largest. Refreshes on three processes sharing two cores are bound by
// the round trips between them more than by CPU (at c=64 the machine is
// about 15% idle), so throughput keeps rising with concurrency: c=256
// shows where it levels off.
var (
	clusterLoginConcs   = []int{16}
	clusterRefreshConcs = []int{16, 64, 256}
)

const (
	clusterSize = 3
	// clusterIssuer is every node's tokens.issuer, so that a token from
	// any node verifies on every other.
	clusterIssuer      = "https://bulwark-bench.test"
	clusterFormTimeout = 30 * time.Second // until 3 voters and a leader
	catchUpTimeout     = 20 * time.Second // until every node applied the users
	leaderTimeout      = 15 * time.Second // until a leader is known again
)

// cluster is the three node processes, node1 first (it bootstrapped the
// cluster and holds the CA key, so it makes the join tokens).
type cluster struct{ nodes []*node }

// clusterStatus is what `bulwark cluster status --json` prints (the
// fields the benchmark reads).
type clusterStatus struct {
	Leader string `json:"leader"` // node_name, "" when none is known
	Nodes  []struct {
		ID           string `json:"id"`
		Suffrage     string `json:"suffrage"`
		Leader       bool   `json:"leader"`
		Reachable    bool   `json:"reachable"`
		AppliedIndex uint64 `json:"applied_index"`
		Lag          uint64 `json:"lag"`
		Error        string `json:"error"`
	} `json:"nodes"`
}

// formed reports whether all clusterSize members are reachable voters and
// one of them leads.
func (st clusterStatus) formed() bool {
	voters, leaders := 0, 0
	for _, m := range st.Nodes {
		if m.Suffrage == "voter" && m.Reachable {
			voters++
		}
		if m.Leader {
			leaders++
		}
	}
	return len(st.Nodes) == clusterSize && voters == clusterSize && leaders == 1 && st.Leader != ""
}

// caughtUp reports whether every member is reachable and has applied all
// the leader's entries.
func (st clusterStatus) caughtUp() bool {
	if len(st.Nodes) != clusterSize {
		return false
	}
	for _, m := range st.Nodes {
		if !m.Reachable || m.Lag != 0 {
			return false
		}
	}
	return true
}

// startCluster starts node1, then joins node2 and node3 with a token each
// from node1; each node takes its ports just before it starts. On error
// every node started is stopped and its directory removed.
func startCluster(ctx context.Context, bin string, hp hashParams) (c *cluster, err error) {
	c = &cluster{}
	defer func() {
		if err != nil {
			c.stop()
			c = nil
		}
	}()
	for i := 1; i <= clusterSize; i++ {
		name := fmt.Sprintf("node%d", i)
		progress("starting "+name, 0)
		var extra []string
		if i > 1 {
			out, err := c.nodes[0].cliOutput(ctx, "", "cluster", "join-token")
			if err != nil {
				return c, err
			}
			tok := strings.TrimSpace(out)
			if !strings.HasPrefix(tok, "bwj1.") || strings.ContainsAny(tok, " \n") {
				return c, fmt.Errorf("cluster join-token printed %q, not a join token", out)
			}
			extra = []string{"--join", tok}
		}
		n, err := prepareNode(bin, name, clusterIssuer, hp)
		if err != nil {
			return c, err
		}
		c.nodes = append(c.nodes, n)
		if err := n.launch(ctx, extra...); err != nil {
			return c, fmt.Errorf("%s: %w", name, err)
		}
	}
	return c, nil
}

// stop sends SIGTERM to every node at once, waits for each (killing one
// after 15 s) and removes their directories.
func (c *cluster) stop() error {
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, n := range c.nodes {
		wg.Go(func() {
			if err := stopNode(n); err != nil {
				errs[i] = fmt.Errorf("%s: %w", n.name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (c *cluster) names() []string {
	var s []string
	for _, n := range c.nodes {
		s = append(s, n.name)
	}
	return s
}

func (c *cluster) pids() []int {
	var s []int
	for _, n := range c.nodes {
		s = append(s, n.cmd.Process.Pid)
	}
	return s
}

func (c *cluster) byName(name string) *node {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// status asks the nodes in turn for `cluster status --json` and returns
// the first answer.
func (c *cluster) status(ctx context.Context) (clusterStatus, error) {
	var errs []error
	for _, n := range c.nodes {
		out, err := n.cliOutput(ctx, "", "cluster", "status", "--json")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var st clusterStatus
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			errs = append(errs, fmt.Errorf("cluster status --json on %s: %w", n.name, err))
			continue
		}
		return st, nil
	}
	return clusterStatus{}, errors.Join(errs...)
}

// waitStatus polls the cluster status until ok accepts it, at most
// timeout.
func (c *cluster) waitStatus(ctx context.Context, timeout time.Duration, what string, ok func(clusterStatus) bool) (clusterStatus, error) {
	deadline := time.Now().Add(timeout)
	for {
		st, err := c.status(ctx)
		if err == nil && ok(st) {
			return st, nil
		}
		if ctx.Err() != nil {
			return st, ctx.Err()
		}
		if time.Now().After(deadline) {
			b, _ := json.Marshal(st)
			return st, fmt.Errorf("%s not within %v (last status %s, error %v)", what, timeout, b, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// leader returns the node that leads now, waiting for one if none is
// known.
func (c *cluster) leader(ctx context.Context) (*node, error) {
	st, err := c.waitStatus(ctx, leaderTimeout, "a known leader", func(st clusterStatus) bool { return c.byName(st.Leader) != nil })
	if err != nil {
		return nil, err
	}
	return c.byName(st.Leader), nil
}

// clusterReport describes the three-node run in the report.
type clusterReport struct {
	Nodes         []clusterNode `json:"nodes"`
	Issuer        string        `json:"tokens_issuer"`
	FormSeconds   float64       `json:"form_seconds"` // first start to 3 voters and a leader
	LeaderAtStart string        `json:"leader_at_start"`
	LeaderAtEnd   string        `json:"leader_at_end"`
	LeaderChanges int           `json:"leader_changes"` // phases after which another node led
	// PeakRSSMiB is the largest peak resident memory of any of the three
	// nodes over their measured phases.
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	// Stops are the graceful leader stops after the phases (stop.go).
	Stops *stopReport `json:"graceful_stops,omitempty"`
	Error string      `json:"error,omitempty"`
}

type clusterNode struct {
	Name string `json:"name"`
	API  string `json:"api"`
}

// clusterPhase is one kind of measured phase of the three-node run.
type clusterPhase struct {
	name   string
	concs  []int
	worker func(*apiClient) newWorker
}

var clusterPhases = []clusterPhase{
	{phaseLogin, clusterLoginConcs, (*apiClient).loginWorker},
	{phaseRefresh, clusterRefreshConcs, (*apiClient).refreshWorker},
}

// measureCluster forms the cluster, creates the users on the leader, and
// runs the phases through the leader and then through a follower. It
// returns 1 if the cluster could not be formed or stopped cleanly, else 0.
func measureCluster(ctx context.Context, o options, rep *report) (code int) {
	cr := rep.Cluster
	cr.Issuer = clusterIssuer
	fail := func(err error) int {
		cr.Error = err.Error()
		fmt.Fprintln(os.Stderr, "bulwark-bench: three-node cluster:", err)
		return 1
	}
	start := time.Now()
	c, err := startCluster(ctx, o.bin, o.hash)
	if err != nil {
		return fail(err)
	}
	defer func() {
		progress("stopping the three nodes", 0)
		if err := c.stop(); err != nil {
			rep.Notes = append(rep.Notes, "stopping the cluster: "+err.Error())
			code = 1
		}
	}()
	for _, n := range c.nodes {
		cr.Nodes = append(cr.Nodes, clusterNode{Name: n.name, API: n.apiAddr})
	}
	st, err := c.waitStatus(ctx, clusterFormTimeout, "3 voters and a leader", clusterStatus.formed)
	if err != nil {
		return fail(err)
	}
	cr.FormSeconds = time.Since(start).Seconds()
	cr.LeaderAtStart, cr.LeaderAtEnd = st.Leader, st.Leader

	maxConc := max(slices.Max(clusterLoginConcs), slices.Max(clusterRefreshConcs))
	if len(o.clusterPhases) == 0 {
		maxConc = 8 // the graceful stops alone: two writers a trial, users taken in turn
	}
	progress(fmt.Sprintf("creating %d users on the leader, %s", maxConc, st.Leader), 0)
	users, err := c.byName(st.Leader).addUsers(ctx, maxConc)
	if err != nil {
		return fail(fmt.Errorf("creating users: %w", err))
	}
	if _, err := c.waitStatus(ctx, catchUpTimeout, "every node caught up", clusterStatus.caughtUp); err != nil {
		return fail(err)
	}

	clients := map[*node]*http.Client{}
	defer func() {
		for _, hc := range clients {
			hc.CloseIdleConnections()
		}
	}()
	api := func(n *node) (*apiClient, error) {
		if clients[n] == nil {
			hc, err := n.client(clientHTTP1, maxConc, requestTimeout)
			if err != nil {
				return nil, err
			}
			clients[n] = hc
		}
		return &apiClient{http: clients[n], base: n.url(""), users: users}, nil
	}
	lim := phaseLimits{duration: o.duration, maxOps: o.maxOps, cpu: cpuSampler(c.pids()...), nodes: c.names(), rss: newRSSWatch(c.pids()...)}
	defer func() { cr.PeakRSSMiB = lim.rss.overallMiB() }()
	var follower *node // the follower the follower phases go through, kept while it follows
	for _, setup := range []string{setupLeader, setupFollower} {
		for _, ph := range clusterPhases {
			if !o.clusterPhases[ph.name] {
				continue
			}
			for _, conc := range ph.concs {
				if ctx.Err() != nil {
					return 0
				}
				leader, err := c.leader(ctx)
				if err != nil {
					return fail(err)
				}
				target := leader
				if setup == setupFollower {
					if follower == nil || follower == leader {
						follower = nil
						for _, n := range c.nodes {
							if n != leader {
								follower = n
								break
							}
						}
					}
					target = follower
				}
				a, err := api(target)
				if err != nil {
					return fail(err)
				}
				via := target.name + ", the leader"
				if target != leader {
					via = target.name + ", a follower of " + leader.name
				}
				progress(fmt.Sprintf("three nodes: %s via %s", ph.name, via), conc)
				r := runPhase(ctx, ph.name, conc, lim, ph.worker(a))
				r.Setup, r.Via, r.Client = setup, target.name, clientHTTP1
				for i := range r.PerNode {
					r.PerNode[i].Role = "follower"
					if r.PerNode[i].Node == leader.name {
						r.PerNode[i].Role = "leader"
					}
				}
				if ctx.Err() == nil {
					if after, err := c.status(ctx); err == nil && after.Leader != leader.name {
						r.LeaderChanged = true
						cr.LeaderChanges++
						rep.Notes = append(rep.Notes, fmt.Sprintf("three nodes: the leader changed from %s to %q during %s c=%d via %s",
							leader.name, after.Leader, ph.name, conc, target.name))
					}
				}
				rep.add(r)
			}
		}
	}
	if o.stopTrials > 0 && ctx.Err() == nil {
		cr.Stops = &stopReport{}
		if err := measureStops(ctx, c, users, o.stopTrials, cr.Stops); err != nil {
			cr.Stops.Error = err.Error()
			fmt.Fprintln(os.Stderr, "bulwark-bench: graceful stops:", err)
			code = 1
		}
	}
	if st, err := c.status(ctx); err == nil {
		cr.LeaderAtEnd = st.Leader
	}
	return code
}
