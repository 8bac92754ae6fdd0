package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/bulwark-auth/bulwark/authcore"
	"github.com/bulwark-auth/bulwark/cmd/bulwark/config"
)

// cmdBlocklist runs `bulwark blocklist list | add IP/CIDR [--for 1h]
// [--reason TEXT] | remove IP/CIDR` over the admin socket. Blocks are
// replicated: every node refuses a blocked address.
func cmdBlocklist(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usagef("blocklist: missing subcommand (list, add, remove)")
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("blocklist "+sub, flag.ContinueOnError)
	var af adminFlags
	af.register(fs)
	forFlag := fs.String("for", "", "how long the block lasts (default: [incident] block_for)")
	reason := fs.String("reason", "", "why, for the audit trail and the list")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	switch sub {
	case "list":
		if len(pos) != 0 {
			return usagef("blocklist list takes no arguments")
		}
	case "add", "remove":
		if len(pos) != 1 {
			return usagef("blocklist %s takes one IP/CIDR", sub)
		}
	default:
		return usagef("blocklist: unknown subcommand %q", sub)
	}
	if sub != "add" && (*forFlag != "" || *reason != "") {
		return usagef("blocklist %s: --for and --reason belong to blocklist add", sub)
	}
	var d time.Duration
	if *forFlag != "" {
		if d, err = config.ParseDuration(*forFlag); err != nil || d <= 0 {
			return usagef("blocklist add: --for %q is not a positive duration such as 1h, 30m or 7d", *forFlag)
		}
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch sub {
	case "list":
		return printList(ctx, c, "/admin/v1/blocklist", "blocks", af.json, stdout, "CIDR\tUNTIL\tBY\tREASON",
			func(b authcore.Block) string {
				by := b.Actor
				if b.Auto {
					by = "detection"
				}
				return strings.Join([]string{b.CIDR, b.Until.Format(time.RFC3339), by, b.Reason}, "\t")
			})
	case "add":
		in := map[string]string{"cidr": pos[0], "reason": *reason}
		if d > 0 {
			in["for"] = d.String()
		}
		var b authcore.Block
		if err := c.Do(ctx, http.MethodPost, "/admin/v1/blocklist", in, &b); err != nil {
			return err
		}
		if af.json {
			return writeJSON(stdout, b)
		}
		fmt.Fprintf(stdout, "blocked %s until %s\n", b.CIDR, b.Until.Format(time.RFC3339))
		return nil
	default: // remove
		if err := c.Do(ctx, http.MethodDelete, "/admin/v1/blocklist/"+url.PathEscape(pos[0]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "unblocked %s\n", pos[0])
		return nil
	}
}
