package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/bulwark-auth/bulwark/authcore"
	"github.com/bulwark-auth/bulwark/node"
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
	dataDir := fs.String("data-dir", "", "verify: the data directory of a stopped node, offline")
	backup := fs.String("backup", "", "verify: a backup file, offline")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("audit %s takes no arguments", sub)
	}
	switch {
	case *dataDir != "" && *backup != "":
		return usagef("audit verify: --data-dir or --backup, not both")
	case (*dataDir != "" || *backup != "") && sub != "verify":
		return usagef("audit %s: --data-dir and --backup are for verify", sub)
	case *dataDir != "" || *backup != "":
		return verifyOffline(*dataDir, *backup, af.json, stdout)
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	// Each page has its own deadline, so an export of any length streams
	// through, one page in memory at a time.
	fetch := func(after uint64, limit int) ([]auditEntry, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
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
		// recompute the chain (fsm/audit.go documents the encoding). Each
		// page is written out before the next is asked for.
		w := bufio.NewWriter(stdout)
		defer w.Flush()
		enc := json.NewEncoder(w)
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
			if err := w.Flush(); err != nil {
				return err
			}
			after = page[len(page)-1].Seq
		}
	case "verify":
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
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

// verifyOffline runs `audit verify --data-dir DIR | --backup FILE`: node
// reads the state (no daemon, no bbolt here); a broken trail prints the
// first bad entry and fails.
func verifyOffline(dataDir, backup string, asJSON bool, stdout io.Writer) error {
	var v node.AuditVerification
	var err error
	if dataDir != "" {
		v, err = node.VerifyAuditDataDir(dataDir)
	} else {
		f, oerr := os.Open(backup)
		if oerr != nil {
			return oerr
		}
		v, err = node.VerifyAuditBackup(bufio.NewReaderSize(f, 1<<20))
		f.Close()
	}
	var broken *authcore.AuditChainError
	if err != nil && !errors.As(err, &broken) {
		return fmt.Errorf("audit verify: %w", err)
	}
	if asJSON {
		out := struct {
			node.AuditVerification
			OK      bool                      `json:"ok"`
			Problem *authcore.AuditChainError `json:"problem,omitempty"`
		}{v, broken == nil, broken}
		if werr := writeJSON(stdout, out); werr != nil {
			return werr
		}
		return err
	}
	fmt.Fprintf(stdout, "source: %s (applied index %d)\n", v.Source, v.AppliedIndex)
	if broken != nil {
		fmt.Fprintf(stdout, "AUDIT TRAIL BROKEN at seq %d: %s\n", broken.Seq, broken.Reason)
		if broken.From != 0 && broken.From < broken.Seq {
			fmt.Fprintf(stdout, "  the altered entry is one of seq %d..%d\n", broken.From, broken.Seq)
		}
		fmt.Fprintf(stdout, "  %d entries and %d checkpoints verified before it\n", v.Entries, v.Checkpoints)
		return err
	}
	if v.Entries == 0 {
		fmt.Fprintln(stdout, "audit trail empty")
		return nil
	}
	fmt.Fprintf(stdout, "audit trail intact: %d entries (seq %d..%d), last hash %s\n", v.Entries, v.FirstSeq, v.LastSeq, v.LastHash)
	if v.Checkpoints == 0 {
		fmt.Fprintln(stdout, "  no signed checkpoint: the chain alone holds every entry")
		return nil
	}
	fmt.Fprintf(stdout, "  %d signed checkpoints verified (ES256 and ML-DSA-65), the newest at seq %d; %d entries after it held by the chain alone\n",
		v.Checkpoints, v.LastCheckpoint, v.Unvouched)
	return nil
}

func printAudit(w io.Writer, e auditEntry) {
	var details []string
	for k, v := range e.Details {
		details = append(details, k+"="+v)
	}
	fmt.Fprintf(w, "%6d %s %-8s %-18s actor=%s subject=%s ip=%s %s\n", e.Seq, e.Time.Format(time.RFC3339),
		e.Severity, e.Type, e.Actor, e.Subject, e.IP, strings.Join(slices.Sorted(slices.Values(details)), " "))
}
