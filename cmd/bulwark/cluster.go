package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/bulwark-auth/bulwark/api"
)

// cmdCluster runs `bulwark cluster status | join-token [--ttl 1h] | remove
// NODE | renew-cert` against the local daemon.
func cmdCluster(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usagef("cluster: missing subcommand (status, join-token, remove, renew-cert)")
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("cluster "+sub, flag.ContinueOnError)
	var af adminFlags
	af.register(fs)
	ttl := fs.String("ttl", "", "join-token: how long the token is valid (default 1h, at most 7d)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	want := 0
	switch sub {
	case "status", "join-token", "renew-cert":
	case "remove":
		want = 1
	default:
		return usagef("cluster: unknown subcommand %q", sub)
	}
	if len(pos) != want {
		if want == 0 {
			return usagef("cluster %s takes no arguments", sub)
		}
		return usagef("cluster %s takes one NODE", sub)
	}
	if *ttl != "" && sub != "join-token" {
		return usagef("cluster %s: --ttl belongs to cluster join-token", sub)
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	switch sub {
	case "status":
		var st api.ClusterStatus
		if err := c.Do(ctx, http.MethodGet, "/admin/v1/cluster", nil, &st); err != nil {
			return err
		}
		if af.json {
			return writeJSON(stdout, st)
		}
		return printClusterStatus(stdout, st)
	case "join-token":
		var tok api.JoinToken
		if err := c.Do(ctx, http.MethodPost, "/admin/v1/cluster/join-token", map[string]string{"ttl": *ttl}, &tok); err != nil {
			return err
		}
		if af.json {
			return writeJSON(stdout, tok)
		}
		// The token alone, so that scripts can take it as it is.
		_, err := fmt.Fprintln(stdout, tok.Token)
		return err
	case "remove":
		if err := c.Do(ctx, http.MethodPost, "/admin/v1/cluster/remove/"+url.PathEscape(pos[0]), nil, nil); err != nil {
			return err
		}
		if af.json {
			return writeJSON(stdout, map[string]string{"removed": pos[0]})
		}
		fmt.Fprintf(stdout, "removed %s from the cluster\n", pos[0])
		return nil
	case "renew-cert":
		var cr api.CertRenewal
		if err := c.Do(ctx, http.MethodPost, "/admin/v1/cluster/renew-cert", nil, &cr); err != nil {
			return err
		}
		if af.json {
			return writeJSON(stdout, cr)
		}
		fmt.Fprintf(stdout, "node certificate renewed: serial %s, valid until %s\n", cr.Serial, cr.NotAfter.Format(time.RFC3339))
		return nil
	}
	return nil
}

func printClusterStatus(w io.Writer, st api.ClusterStatus) error {
	leader := st.Leader
	if leader == "" {
		leader = "(none known)"
	}
	fmt.Fprintf(w, "leader: %s\n", leader)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tADDRESS\tSUFFRAGE\tSTATE\tAPPLIED\tLAG\tLAST CONTACT\tCERT EXPIRES\tCA")
	for _, m := range st.Nodes {
		name := m.ID
		if m.Self {
			name += " (this node)"
		}
		state, applied, lag, contact, expires, ca := "unreachable", "-", "-", "-", "-", ""
		if m.Reachable {
			state = m.State
			applied, lag = strconv.FormatUint(m.AppliedIndex, 10), strconv.FormatUint(m.Lag, 10)
			if m.LastContact != "" {
				contact = m.LastContact
			}
			if m.CertNotAfter != nil {
				expires = m.CertNotAfter.UTC().Format(time.DateOnly)
			}
		}
		if m.CAHolder {
			ca = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, m.Address, m.Suffrage, state, applied, lag, contact, expires, ca)
	}
	return tw.Flush()
}
