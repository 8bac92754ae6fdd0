package main

// Graceful stop of the leader: with the cluster formed and its users
// created, the leader gets SIGTERM while each survivor writes in a loop
// through its own API, one request at a time: refreshes (a cheap write:
// one Raft entry, no password hash) in some trials, logins (an argon2id
// hash and two entries) in the others. A survivor's stall is the longest
// time between two consecutive successful answers from the SIGTERM on
// (the interval that spans the SIGTERM included), wherever in the stop it
// happens; 503 no_leader answers are part of it. Any other failure is
// counted and reported: a refresh refused after a 503 means the 503'd
// write took effect after all. The stopped node is started again and the
// cluster waits until it has caught up before the next trial.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	targetStopStallMs = 50                      // issue 18: writes resume ≤ 50 ms after a graceful leader stop
	stopWarmup        = time.Second             // writes before the SIGTERM
	stopAfter         = 1500 * time.Millisecond // writes after the stopped node exited
	stopRetryPause    = 2 * time.Millisecond    // after a refused write, before the next
)

// stopReport is the graceful-stop trials of the three-node run.
type stopReport struct {
	Trials []stopTrial `json:"trials"`
	// Median of the trials' worst survivor stall, per kind of write.
	MedianRefreshMs float64 `json:"median_refresh_stall_ms"`
	MedianLoginMs   float64 `json:"median_login_stall_ms"`
	Error           string  `json:"error,omitempty"`
}

type stopTrial struct {
	Write     string         `json:"write"` // phaseRefresh or phaseLogin
	Stopped   string         `json:"stopped"`
	ExitMs    float64        `json:"exit_ms"` // SIGTERM to the process's exit
	WorstMs   float64        `json:"worst_stall_ms"`
	Survivors []stopSurvivor `json:"survivors"`
}

type stopSurvivor struct {
	Node string `json:"node"`
	// StallMs is the longest time between two successful writes from the
	// SIGTERM on; BaselineMs the median between two before it (what one
	// write takes when nothing stalls).
	StallMs    float64 `json:"stall_ms"`
	BaselineMs float64 `json:"baseline_ms"`
	// StallFromMs, StallToMs: where the stall lay, relative to the SIGTERM.
	StallFromMs float64 `json:"stall_from_ms"`
	StallToMs   float64 `json:"stall_to_ms"`
	// Resumed: a write sent after the SIGTERM succeeded.
	Resumed   bool   `json:"resumed"`
	OK        int    `json:"ok"`
	NoLeader  int    `json:"no_leader"` // 503 no_leader answers
	Failures  int    `json:"failures"`  // any other failure
	FirstFail string `json:"first_failure,omitempty"`
}

// stopSample is one write on a survivor.
type stopSample struct {
	sent, answered time.Time
	err            error
}

// noLeader reports whether err is the 503 no_leader answer, the stall
// being measured rather than a wrong answer.
func noLeader(err error) bool {
	return err != nil && strings.Contains(err.Error(), "503") && strings.HasSuffix(err.Error(), " no_leader")
}

// writeLoop repeats one kind of write as u through a until stop closes,
// one at a time, and returns every attempt. A refresh refused with 503
// is sent again with the same token; after any other failure the worker
// logs in afresh.
func writeLoop(ctx context.Context, a *apiClient, kind string, u benchUser, stop <-chan struct{}) ([]stopSample, error) {
	t, err := a.login(ctx, u)
	// The cluster may be between leaders (a busy machine): try again a
	// while before giving up.
	for deadline := time.Now().Add(leaderTimeout); noLeader(err) && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		t, err = a.login(ctx, u)
	}
	if err != nil {
		return nil, err
	}
	var out []stopSample
	for {
		select {
		case <-stop:
			return out, nil
		default:
		}
		s := stopSample{sent: time.Now()}
		switch kind {
		case phaseLogin:
			_, s.err = a.login(ctx, u)
		default:
			var next tokens
			s.err = a.do(ctx, http.MethodPost, "/v1/auth/refresh", "", map[string]string{"refresh_token": t.RefreshToken}, &next)
			if s.err == nil && next.RefreshToken == "" {
				s.err = errors.New("/v1/auth/refresh: answer without refresh_token")
			}
			if s.err == nil {
				t = next
			}
		}
		s.answered = time.Now()
		out = append(out, s)
		if s.err != nil {
			time.Sleep(stopRetryPause)
			if kind != phaseLogin && !noLeader(s.err) {
				if fresh, err := a.login(ctx, u); err == nil {
					t = fresh
				}
			}
		}
	}
}

// stall measures one survivor's samples around a SIGTERM at sigterm; the
// loop ended at end. A survivor whose writes had not resumed by then
// stalled from its last success to end (Resumed false).
func stall(node string, samples []stopSample, sigterm, end time.Time) stopSurvivor {
	r := stopSurvivor{Node: node}
	var last time.Time
	var steps []time.Duration
	for _, s := range samples {
		switch {
		case s.err == nil:
			r.OK++
		case noLeader(s.err):
			r.NoLeader++
			continue
		default:
			r.Failures++
			if r.FirstFail == "" {
				r.FirstFail = fmt.Sprintf("%+.0f ms: %v", ms(s.answered.Sub(sigterm)), s.err)
			}
			continue
		}
		if !last.IsZero() {
			d := s.answered.Sub(last)
			if s.answered.Before(sigterm) {
				steps = append(steps, d)
			} else if ms(d) > r.StallMs {
				r.StallMs, r.StallFromMs, r.StallToMs = ms(d), ms(last.Sub(sigterm)), ms(s.answered.Sub(sigterm))
			}
		}
		last = s.answered
		r.Resumed = r.Resumed || !s.sent.Before(sigterm)
	}
	if !r.Resumed && !last.IsZero() {
		r.StallMs, r.StallFromMs, r.StallToMs = ms(end.Sub(last)), ms(last.Sub(sigterm)), ms(end.Sub(sigterm))
	}
	if len(steps) > 0 {
		slices.Sort(steps)
		r.BaselineMs = ms(steps[len(steps)/2])
	}
	return r
}

// measureStops runs trials graceful stops of the leader, alternating
// refresh and login trials, and fills rep.
func measureStops(ctx context.Context, c *cluster, users []benchUser, trials int, rep *stopReport) error {
	for i := range trials {
		kind := phaseRefresh
		if i%2 == 1 {
			kind = phaseLogin
		}
		tr, err := stopTrialRun(ctx, c, users, kind, i)
		if err != nil {
			return err
		}
		rep.Trials = append(rep.Trials, tr)
	}
	median := func(kind string) float64 {
		var v []float64
		for _, t := range rep.Trials {
			if t.Write == kind {
				v = append(v, t.WorstMs)
			}
		}
		if len(v) == 0 {
			return 0
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	rep.MedianRefreshMs, rep.MedianLoginMs = median(phaseRefresh), median(phaseLogin)
	return nil
}

// stopTrialRun stops the leader once with SIGTERM while both survivors
// write, starts it again and waits until the cluster has caught up.
func stopTrialRun(ctx context.Context, c *cluster, users []benchUser, kind string, trial int) (stopTrial, error) {
	tr := stopTrial{Write: kind}
	leader, err := c.leader(ctx)
	if err != nil {
		return tr, err
	}
	tr.Stopped = leader.name
	progress(fmt.Sprintf("graceful stop %d: SIGTERM to the leader %s while the survivors write (%s)", trial+1, leader.name, kind), 0)
	var survivors []*node
	for _, n := range c.nodes {
		if n != leader {
			survivors = append(survivors, n)
		}
	}
	stop := make(chan struct{})
	samples := make([][]stopSample, len(survivors))
	errs := make([]error, len(survivors))
	var wg sync.WaitGroup
	for i, n := range survivors {
		hc, err := n.client(clientHTTP1, 2, 10*time.Second)
		if err != nil {
			return tr, err
		}
		defer hc.CloseIdleConnections()
		a := &apiClient{http: hc, base: n.url("")}
		u := users[(trial*len(survivors)+i)%len(users)]
		wg.Go(func() { samples[i], errs[i] = writeLoop(ctx, a, kind, u, stop) })
	}
	stopLoops := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoops()
	time.Sleep(stopWarmup)
	sigterm := time.Now()
	if err := leader.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return tr, err
	}
	select {
	case err := <-leader.exited:
		leader.exited <- err // for stopNode, should the trial end before the restart
		if err != nil {
			return tr, fmt.Errorf("%s exited with %v after SIGTERM", leader.name, err)
		}
	case <-time.After(stopTimeout):
		return tr, fmt.Errorf("%s did not exit within %v of SIGTERM", leader.name, stopTimeout)
	}
	tr.ExitMs = ms(time.Since(sigterm))
	time.Sleep(stopAfter)
	end := time.Now()
	stopLoops()
	if err := errors.Join(errs...); err != nil {
		return tr, err
	}
	for i, n := range survivors {
		s := stall(n.name, samples[i], sigterm, end)
		if s.OK == 0 {
			return tr, fmt.Errorf("no successful %s on %s", kind, n.name)
		}
		tr.Survivors = append(tr.Survivors, s)
		tr.WorstMs = max(tr.WorstMs, s.StallMs)
	}
	progress(fmt.Sprintf("graceful stop %d: worst survivor stalled %.1f ms; starting %s again", trial+1, tr.WorstMs, leader.name), 0)
	if err := leader.launch(ctx); err != nil {
		return tr, fmt.Errorf("restarting %s: %w", leader.name, err)
	}
	if _, err := c.waitStatus(ctx, catchUpTimeout, "every node caught up", clusterStatus.caughtUp); err != nil {
		return tr, err
	}
	return tr, nil
}

// stopTarget judges the median refresh stall against the goal.
func (r *report) stopTarget() target {
	t := target{Name: "graceful leader stop: writes resume (refresh, median)", Goal: targetStopStallMs, Unit: " ms", AtMost: true}
	s := r.Cluster.Stops
	if s == nil || !slices.ContainsFunc(s.Trials, func(t stopTrial) bool { return t.Write == phaseRefresh }) {
		return t
	}
	t.Value, t.Measured = s.MedianRefreshMs, true
	var worst []string
	for _, tr := range s.Trials {
		worst = append(worst, fmt.Sprintf("%.0f", tr.WorstMs))
	}
	t.Detail = fmt.Sprintf("worst survivor per trial (refresh, login alternating) %s ms; logins median %.0f ms", strings.Join(worst, ", "), s.MedianLoginMs)
	return t
}

// printStops writes the graceful-stop trials.
func (s *stopReport) print(w io.Writer) {
	fmt.Fprintf(w, "\ngraceful stop of the leader (SIGTERM), each survivor writing one request at a time:\n")
	for i, t := range s.Trials {
		fmt.Fprintf(w, "  %d. %-7s stopped %s (exit after %.0f ms): worst %.1f ms", i+1, t.Write, t.Stopped, t.ExitMs, t.WorstMs)
		for _, v := range t.Survivors {
			resumed := ""
			if !v.Resumed {
				resumed = ", NOT RESUMED"
			}
			fmt.Fprintf(w, "; %s %.1f ms [%+.0f..%+.0f] (one write %.1f ms, %d ok, %d no_leader, %d failed%s)",
				v.Node, v.StallMs, v.StallFromMs, v.StallToMs, v.BaselineMs, v.OK, v.NoLeader, v.Failures, resumed)
		}
		fmt.Fprintln(w)
		for _, v := range t.Survivors {
			if v.FirstFail != "" {
				fmt.Fprintf(w, "     %s first failure: %s\n", v.Node, v.FirstFail)
			}
		}
	}
	fmt.Fprintf(w, "  median worst stall: refresh %.1f ms, login %.1f ms (stall: longest time between two successful writes from the SIGTERM on)\n",
		s.MedianRefreshMs, s.MedianLoginMs)
}
