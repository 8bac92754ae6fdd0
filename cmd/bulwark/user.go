package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bulwark-auth/bulwark/api"
	"github.com/bulwark-auth/bulwark/authcore"
)

// adminFlags are the flags every admin command takes.
type adminFlags struct {
	socket, config string
	json           bool
}

func (a *adminFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.socket, "socket", "", "admin socket path")
	fs.StringVar(&a.config, "config", "", "configuration file naming the admin socket")
	fs.BoolVar(&a.json, "json", false, "print JSON")
}

// client finds the admin socket: --socket, else the one --config names,
// else the default configuration file's, else the built-in default.
func (a *adminFlags) client() (*api.AdminClient, error) {
	path := a.socket
	if path == "" {
		cfg, err := loadConfig(a.config, true)
		if err != nil {
			return nil, err
		}
		if err := cfg.Resolve(); err != nil {
			return nil, err
		}
		path = cfg.AdminSocketPath()
	}
	return api.NewAdminClient(path), nil
}

func cmdUser(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		return usagef("user: missing subcommand (add, list, show, disable, enable, unflag, delete, unlock, revoke-sessions, reset-mfa, export, erase)")
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("user "+sub, flag.ContinueOnError)
	var af adminFlags
	af.register(fs)
	admin := fs.Bool("admin", false, "give the user the admin role")
	email := fs.String("email", "", "email address")
	pwStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	wantArgs := 1
	if sub == "list" {
		wantArgs = 0
	}
	if len(pos) != wantArgs {
		if wantArgs == 0 {
			return usagef("user %s takes no arguments", sub)
		}
		return usagef("user %s takes one NAME", sub)
	}
	if sub != "add" && (*admin || *email != "" || *pwStdin) {
		return usagef("user %s: --admin, --email and --password-stdin belong to user add", sub)
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var u authcore.User
	switch sub {
	case "add":
		if !*pwStdin {
			return usagef("user add: --password-stdin is required (passwords never go on the command line)")
		}
		pw, err := readPasswordLine(stdin)
		if err != nil {
			return err
		}
		req := map[string]any{"username": pos[0], "password": pw, "email": *email}
		if *admin {
			req["roles"] = []string{authcore.RoleAdmin}
		}
		if err := c.Do(ctx, http.MethodPost, "/admin/v1/users", req, &u); err != nil {
			return err
		}
		return printUser(stdout, u, af.json, "created")
	case "list":
		return printList(ctx, c, "/admin/v1/users", "users", af.json, stdout, "USERNAME\tID\tROLES\tSTATE\tEMAIL",
			func(u authcore.User) string {
				return strings.Join([]string{u.Username, u.ID, strings.Join(u.Roles, ","), state(u), u.Email}, "\t")
			})
	case "show":
		if err := c.Do(ctx, http.MethodGet, userPath(pos[0]), nil, &u); err != nil {
			return err
		}
		return printUser(stdout, u, af.json, "")
	case "disable", "enable", "unflag":
		if err := c.Do(ctx, http.MethodPost, userPath(pos[0])+"/"+sub, nil, &u); err != nil {
			return err
		}
		return printUser(stdout, u, af.json, map[string]string{"disable": "disabled", "enable": "enabled", "unflag": "unflagged"}[sub])
	case "delete":
		if err := c.Do(ctx, http.MethodDelete, userPath(pos[0]), nil, nil); err != nil {
			return err
		}
		if !af.json {
			fmt.Fprintf(stdout, "deleted user %s\n", pos[0])
		}
		return nil
	case "unlock":
		if err := c.Do(ctx, http.MethodPost, userPath(pos[0])+"/unlock", nil, nil); err != nil {
			return err
		}
		if !af.json {
			fmt.Fprintf(stdout, "unlocked %s\n", pos[0])
		}
		return nil
	case "revoke-sessions":
		var out struct {
			Revoked int `json:"revoked"`
		}
		if err := c.Do(ctx, http.MethodPost, userPath(pos[0])+"/revoke-sessions", nil, &out); err != nil {
			return err
		}
		if af.json {
			return writeJSON(stdout, out)
		}
		fmt.Fprintf(stdout, "revoked %d sessions of %s\n", out.Revoked, pos[0])
		return nil
	case "reset-mfa":
		var out struct {
			SessionsRevoked int `json:"sessions_revoked"`
		}
		if err := c.Do(ctx, http.MethodPost, userPath(pos[0])+"/reset-mfa", nil, &out); err != nil {
			return err
		}
		if af.json {
			return writeJSON(stdout, out)
		}
		fmt.Fprintf(stdout, "removed every second factor of %s and revoked %d sessions\n", pos[0], out.SessionsRevoked)
		return nil
	case "export":
		var out json.RawMessage
		if err := c.Do(ctx, http.MethodGet, userPath(pos[0])+"/export", nil, &out); err != nil {
			return err
		}
		return writeJSON(stdout, out)
	case "erase":
		var out authcore.Erasure
		if err := c.Do(ctx, http.MethodPost, userPath(pos[0])+"/erase", nil, &out); err != nil {
			return err
		}
		if af.json {
			return writeJSON(stdout, out)
		}
		fmt.Fprintf(stdout, "erased user %s: %d sessions and %d other records deleted, %d audit entries now name %s (audit seq %d)\n"+
			"every node rewrites state.db, its Raft log and snapshots now, and raft.db at its next start:\n"+
			"restart each node in turn to finish; backups taken before the erase still hold the user\n",
			pos[0], out.Sessions, out.Records, out.AuditEntries, out.Pseudonym, out.AuditSeq)
		return nil
	}
	return usagef("user: unknown subcommand %q", sub)
}

func userPath(name string) string { return "/admin/v1/users/" + url.PathEscape(name) }

func state(u authcore.User) string {
	st := "active"
	if u.Disabled {
		st = "disabled"
	}
	if u.Flagged { // by repeated admin-route refusals: `user unflag` once looked at
		st += ", flagged"
	}
	return st
}

func printUser(w io.Writer, u authcore.User, asJSON bool, verb string) error {
	if asJSON {
		return writeJSON(w, u)
	}
	if verb != "" {
		fmt.Fprintf(w, "%s user %s (id %s)\n", verb, u.Username, u.ID)
		return nil
	}
	fmt.Fprintf(w, "username:  %s\nid:        %s\nemail:     %s\nroles:     %s\nstate:     %s\ncreated:   %s\nupdated:   %s\n",
		u.Username, u.ID, u.Email, strings.Join(u.Roles, ","), state(u),
		u.CreatedAt.Format(time.RFC3339), u.UpdatedAt.Format(time.RFC3339))
	return nil
}

// printList GETs path, a list of T under key, and prints the answer as it
// came with --json, else as a table: header, then one row per item (its
// cells tab-separated).
func printList[T any](ctx context.Context, c *api.AdminClient, path, key string, asJSON bool, w io.Writer, header string, row func(T) string) error {
	var raw map[string]json.RawMessage
	if err := c.Do(ctx, http.MethodGet, path, nil, &raw); err != nil {
		return err
	}
	if asJSON {
		return writeJSON(w, raw)
	}
	var items []T
	if err := json.Unmarshal(raw[key], &items); err != nil {
		return fmt.Errorf("%s: the answer's %q: %w", path, key, err)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, it := range items {
		fmt.Fprintln(tw, row(it))
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
