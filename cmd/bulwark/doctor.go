package main

// `bulwark doctor`: the hardening scorecard. The daemon gathers and judges
// it (internal/scorecard) and serves it on the admin socket and at GET
// /v1/admin/scorecard; this file wires its sources and prints it.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/bulwark-auth/bulwark/api"
	"github.com/bulwark-auth/bulwark/authcore"
	"github.com/bulwark-auth/bulwark/cmd/bulwark/config"
	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/clock"
	"github.com/bulwark-auth/bulwark/internal/scorecard"
	"github.com/bulwark-auth/bulwark/node"
)

// cmdDoctor runs `bulwark doctor [--json]`: the report on stdout, and exit
// 1 naming the failed controls when any failed.
func cmdDoctor(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	var af adminFlags
	af.register(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("doctor takes no arguments")
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rep scorecard.Report
	if err := c.Do(ctx, http.MethodGet, "/admin/v1/scorecard", nil, &rep); err != nil {
		return err
	}
	if af.json {
		err = writeJSON(stdout, rep)
	} else {
		_, err = io.WriteString(stdout, rep.Text())
	}
	if err != nil || !rep.Failed {
		return err
	}
	var failed []string
	for _, c := range rep.Controls {
		if c.Status == scorecard.Fail {
			failed = append(failed, c.ID)
		}
	}
	return fmt.Errorf("%d control(s) failed: %s", len(failed), strings.Join(failed, ", "))
}

// scorecardSources wires what the scorecard reads: the running config, the
// certificate the API presents, the auth service and the node.
func scorecardSources(cfg config.Config, sealMode string, clk clock.Clock, certs *certReloader, n *node.Node, core *authcore.Service) scorecard.Sources {
	sec, rl, inc := cfg.Auth.Security, cfg.Auth.RateLimit, cfg.Incident
	return scorecard.Sources{
		Node: cfg.NodeName,
		Now:  clk.Now,
		Settings: scorecard.Settings{
			TLSMinVersion: cfg.API.TLSMinVersion,
			Seal:          scorecard.SealFacts{Mode: sealMode, PCRs: cfg.Seal.PCRs, Signing: cfg.Seal.Signing},
			RequireMFA:    sec.RequireMFAForAdmin,
			Lockout:       scorecard.LockoutFacts{MaxFailedAttempts: sec.MaxFailedAttempts, LockoutDuration: sec.LockoutDuration.Duration},
			RateLimit: scorecard.RateLimitFacts{PerIP: rl.PerIP, PerIPBurst: rl.PerIPBurst,
				PerUsername: rl.PerUsername, PerUsernameBurst: rl.PerUsernameBurst},
			Incident: scorecard.IncidentFacts{Window: inc.Window.Duration, BlockFor: inc.BlockFor.Duration,
				BlockAfterFailures: inc.BlockAfterFailures, BlockAfterNames: inc.BlockAfterUsernames,
				ChallengeAfter: inc.ChallengeAfterFailures, RevokeAfterForbidden: inc.RevokeAfterForbidden},
			RotateEvery:        cfg.Tokens.RotateEvery.Duration,
			CheckpointInterval: cfg.Audit.CheckpointInterval.Duration,
			DataDir:            cfg.DataDir,
		},
		CertNotAfter: func() (time.Time, error) {
			c, _ := certs.GetCertificate(nil)
			return certNotAfter(c)
		},
		SigningKeyAge: core.SigningKeyAge,
		Admins: func(ctx context.Context) scorecard.AdminFacts {
			a, err := core.AdminFactors(ctx)
			return scorecard.AdminFacts{Admins: a.Admins, WithFactor: a.WithFactor, Without: a.Without, Err: err}
		},
		Audit: func(ctx context.Context) scorecard.AuditFacts {
			a, err := core.AuditStatus(ctx)
			return scorecard.AuditFacts{Head: a.Head, Verified: a.Verified, BrokenAt: a.BrokenAt,
				CheckpointSeq: a.CheckpointSeq, UnvouchedSince: a.UnvouchedSince, Err: err}
		},
		Cluster: func(ctx context.Context) (scorecard.QuorumFacts, scorecard.ClockFacts) {
			st, err := n.ClusterStatus(ctx)
			if err != nil {
				return scorecard.QuorumFacts{Err: err}, scorecard.ClockFacts{Err: err}
			}
			return clusterFacts(st, n.LeaderChangesWithin(scorecard.Baseline.LeaderWindow))
		},
		Backup: func() scorecard.BackupFacts {
			var b scorecard.BackupFacts
			b.Err = n.View(func(r fsm.Reader) error {
				if rec, ok := r.LastBackup(); ok {
					b.Last, b.Node = rec.At, rec.Node
				}
				return nil
			})
			return b
		},
		Recovery: func() scorecard.RecoveryFacts {
			var rf scorecard.RecoveryFacts
			rf.Err = n.View(func(r fsm.Reader) error {
				st, err := r.DataKey()
				if err != nil || st == nil {
					return err
				}
				rf.Escrows = len(st.Escrows)
				if st.Shares != nil {
					rf.Shares, rf.Threshold = st.Shares.Shares, st.Shares.Threshold
				}
				return nil
			})
			return rf
		},
	}
}

// certNotAfter is the expiry of the leaf of c.
func certNotAfter(c *tls.Certificate) (time.Time, error) {
	switch {
	case c == nil || len(c.Certificate) == 0:
		return time.Time{}, errors.New("no certificate")
	case c.Leaf != nil:
		return c.Leaf.NotAfter, nil
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return time.Time{}, err
	}
	return leaf.NotAfter, nil
}

// clusterFacts reads the quorum and the members' clocks from a cluster
// status: a member's offset counts less the round trip's uncertainty.
func clusterFacts(st node.ClusterStatus, leaderChanges int) (scorecard.QuorumFacts, scorecard.ClockFacts) {
	q := scorecard.QuorumFacts{Leader: st.LeaderID, LeaderChanges: leaderChanges, Window: scorecard.Baseline.LeaderWindow}
	var c scorecard.ClockFacts
	for _, m := range st.Nodes {
		if m.Suffrage == "voter" {
			q.Voters++
			if m.Reachable {
				q.Reachable++
			} else {
				q.Unreachable = append(q.Unreachable, m.ID)
			}
		}
		if !m.Reachable || !m.ClockKnown {
			c.Unreported = append(c.Unreported, m.ID)
			continue
		}
		c.Members++
		if skew := max(m.ClockOffset.Abs()-m.ClockUncertainty, 0); skew > c.MaxSkew {
			c.MaxSkew, c.Worst = skew, m.ID
		}
	}
	return q, c
}

// scorecardFunc gathers and judges the scorecard for each request.
func scorecardFunc(src scorecard.Sources) api.ScorecardFunc {
	return func(ctx context.Context) (scorecard.Report, error) {
		return scorecard.Evaluate(scorecard.Gather(ctx, src)), nil
	}
}
