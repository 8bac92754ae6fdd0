package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/bulwark-auth/bulwark/api"
	"github.com/bulwark-auth/bulwark/authcore"
	"github.com/bulwark-auth/bulwark/node"
)

// cmdIncident runs `bulwark incident lockdown --reason TEXT | release | status`.
func cmdIncident(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usagef("incident: missing subcommand (lockdown, release, status)")
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("incident "+sub, flag.ContinueOnError)
	var af adminFlags
	af.register(fs)
	reason := fs.String("reason", "", "why (lockdown): goes to the audit trail and the webhooks")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("incident %s takes no arguments", sub)
	}
	if sub != "lockdown" && *reason != "" {
		return usagef("incident %s: --reason belongs to incident lockdown", sub)
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // the forensic backup
	defer cancel()
	var out struct {
		authcore.LockdownState
		Forensics string `json:"forensics"`
	}
	switch sub {
	case "lockdown":
		if *reason == "" {
			return usagef("incident lockdown: --reason TEXT is required")
		}
		if err := c.Do(ctx, http.MethodPost, "/admin/v1/incident/lockdown", map[string]string{"reason": *reason}, &out); err != nil {
			return err
		}
	case "release":
		if err := c.Do(ctx, http.MethodPost, "/admin/v1/incident/release", nil, &out); err != nil {
			return err
		}
	case "status":
		if err := c.Do(ctx, http.MethodGet, "/admin/v1/incident", nil, &out); err != nil {
			return err
		}
	default:
		return usagef("incident: unknown subcommand %q", sub)
	}
	if af.json {
		return writeJSON(stdout, out)
	}
	switch {
	case out.Active:
		fmt.Fprintf(stdout, "locked down since %s by %s: %s\n", out.Since.Format(time.RFC3339), out.Actor, out.Reason)
		if out.Forensics != "" {
			fmt.Fprintf(stdout, "forensic backup: %s\n", out.Forensics)
		}
	case out.ReleasedAt != nil:
		fmt.Fprintf(stdout, "not locked down (the last lockdown was released at %s by %s)\n", out.ReleasedAt.Format(time.RFC3339), out.ReleasedBy)
	default:
		fmt.Fprintln(stdout, "not locked down")
	}
	return nil
}

// forensicsOption writes, after a lockdown, a signed audit checkpoint and
// an online backup of the cluster's state into <data_dir>/forensics
// (0700), one file per lockdown (0600): the trail as it stood, for the
// investigation (`bulwark audit verify --backup`).
func forensicsOption(serveCtx context.Context, n *node.Node, core *authcore.Service, dataDir string) api.AdminOption {
	return api.AdminForensics(func(ctx context.Context) (string, error) {
		// A signed checkpoint of the trail as it stands (written by this
		// node, forwarded to the leader from a follower), so the evidence
		// is vouched for to its end.
		if _, err := core.CheckpointAudit(ctx); err != nil && !errors.Is(err, authcore.ErrAuditKeysNotRecorded) {
			return "", fmt.Errorf("audit checkpoint: %w", err)
		}
		// This node's state, once it holds the lockdown and the checkpoint
		// (on a follower too: the operator's node keeps the evidence).
		if err := core.ReadBarrier(ctx); err != nil {
			return "", err
		}
		dir := filepath.Join(dataDir, "forensics")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", err
		}
		path := filepath.Join(dir, "lockdown-"+time.Now().UTC().Format("20060102T150405Z")+".backup")
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return "", err
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(serveCtx, cancel)()
		if _, err := n.BackupHere(ctx, f, node.BackupVersion(buildVersion())); err != nil {
			f.Close()
			os.Remove(path)
			return "", err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return "", err
		}
		return path, f.Close()
	})
}
