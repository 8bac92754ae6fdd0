package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/bulwark-auth/bulwark/authcore"
)

// cmdKeys runs `bulwark keys list | rotate`, and the cluster data key's
// subcommands (escrow.go).
func cmdKeys(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usagef("keys: missing subcommand (list, rotate, escrow-keygen, escrow-key, recovery-shares, recover, datakey-fingerprint)")
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "escrow-keygen", "escrow-key", "recovery-shares", "recover", "datakey-fingerprint":
		return cmdKeysDataKey(sub, args, stdout)
	}
	fs := flag.NewFlagSet("keys "+sub, flag.ContinueOnError)
	var af adminFlags
	af.register(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("keys %s takes no arguments", sub)
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	switch sub {
	case "list":
		return printList(ctx, c, "/admin/v1/keys", "keys", af.json, stdout, "KID\tALG\tNODE\tPUBLISHED\tSTATE",
			func(k authcore.KeyInfo) string {
				state := "retired"
				switch {
				case k.Current:
					state = "current (this node)"
				case k.NotAfter.IsZero():
					state = "signing"
				case k.InJWKS:
					state = "published until " + k.Retire.Format(time.RFC3339)
				}
				return strings.Join([]string{k.Kid, k.Alg, k.Node, k.PublishedAt.Format(time.RFC3339), state}, "\t")
			})
	case "rotate":
		var rot authcore.KeyRotation
		if err := c.Do(ctx, http.MethodPost, "/admin/v1/keys/rotate", nil, &rot); err != nil {
			return err
		}
		if af.json {
			return writeJSON(stdout, rot)
		}
		fmt.Fprintf(stdout, "signing with %s; %s stays in the JWKS until %s\n", rot.NewKid, rot.OldKid, rot.Retire.Format(time.RFC3339))
		return nil
	}
	return usagef("keys: unknown subcommand %q", sub)
}
