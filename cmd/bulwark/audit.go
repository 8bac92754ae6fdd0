package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/bulwark-auth/bulwark/authcore"
)

// auditEntry is one entry of the trail as the admin socket sends it.
type auditEntry = authcore.AuditEntry

func cmdAudit(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usagef("audit: missing subcommand (tail, verify, export)")
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("audit "+sub, flag.ContinueOnError)
	var af adminFlags
	af.register(fs)
	n := fs.Int("n", 20, "entries to show (tail)")
	since := fs.Uint64("since", 0, "export entries after this sequence number")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("audit %s takes no arguments", sub)
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	fetch := func(after uint64, limit int) ([]auditEntry, error) {
		var out struct {
			Entries []auditEntry `json:"entries"`
		}
		err := c.Do(ctx, http.MethodGet, fmt.Sprintf("/admin/v1/audit?after=%d&limit=%d", after, limit), nil, &out)
		return out.Entries, err
	}
	switch sub {
	case "tail":
		if *n < 1 || *n > 1000 {
			return usagef("audit tail: -n must be 1 to 1000")
		}
		// Walk to the end, keeping the last n.
		var last []auditEntry
		for after := uint64(0); ; {
			page, err := fetch(after, 1000)
			if err != nil {
				return err
			}
			if len(page) == 0 {
				break
			}
			last = append(last, page...)
			if len(last) > *n {
				last = last[len(last)-*n:]
			}
			after = page[len(page)-1].Seq
		}
		if af.json {
			return writeJSON(stdout, last)
		}
		for _, e := range last {
			printAudit(stdout, e)
		}
		return nil
	case "export":
		// JSON lines, one entry each, with hashes: an external verifier can
		// recompute the chain.
		enc := json.NewEncoder(stdout)
		for after := *since; ; {
			page, err := fetch(after, 1000)
			if err != nil {
				return err
			}
			if len(page) == 0 {
				return nil
			}
			for _, e := range page {
				if err := enc.Encode(e); err != nil {
					return err
				}
			}
			after = page[len(page)-1].Seq
		}
	case "verify":
		var out struct {
			Entries uint64 `json:"entries"`
			OK      bool   `json:"ok"`
		}
		if err := c.Do(ctx, http.MethodGet, "/admin/v1/audit/verify", nil, &out); err != nil {
			return err
		}
		if af.json {
			return writeJSON(stdout, out)
		}
		fmt.Fprintf(stdout, "audit chain intact: %d entries verified\n", out.Entries)
		return nil
	}
	return usagef("audit: unknown subcommand %q", sub)
}

func printAudit(w io.Writer, e auditEntry) {
	var details []string
	for k, v := range e.Details {
		details = append(details, k+"="+v)
	}
	fmt.Fprintf(w, "%6d %s %-8s %-18s actor=%s subject=%s ip=%s %s\n", e.Seq, e.Time.Format(time.RFC3339),
		e.Severity, e.Type, e.Actor, e.Subject, e.IP, strings.Join(slices.Sorted(slices.Values(details)), " "))
}
