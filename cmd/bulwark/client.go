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
)

// clientAnswer is the admin socket's view of a client; the secret is in
// the answer to add only.
type clientAnswer struct {
	ClientID     string    `json:"client_id"`
	ClientSecret string    `json:"client_secret,omitempty"`
	Public       bool      `json:"public"`
	RedirectURIs []string  `json:"redirect_uris"`
	CreatedAt    time.Time `json:"created_at"`
	IDTokenAlg   string    `json:"id_token_alg,omitempty"`
	Consent      bool      `json:"consent_required"`
}

func cmdClient(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usagef("client: missing subcommand (add, list, remove)")
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("client "+sub, flag.ContinueOnError)
	var af adminFlags
	af.register(fs)
	var uris stringList
	fs.Var(&uris, "redirect-uri", "a redirect URI (repeat for more)")
	public := fs.Bool("public", false, "a public client (no secret; PKCE required)")
	alg := fs.String("id-token-alg", "", "the ID tokens' signing algorithm: ES256 (the default), EdDSA or RS256")
	consent := fs.Bool("consent", false, "ask each user's consent once per scopes (a third-party application)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	switch {
	case sub == "list" && len(pos) != 0:
		return usagef("client list takes no arguments")
	case sub != "list" && len(pos) != 1:
		return usagef("client %s takes one NAME", sub)
	case sub != "add" && (len(uris) > 0 || *public || *alg != "" || *consent):
		return usagef("client %s: --redirect-uri, --public, --id-token-alg and --consent belong to client add", sub)
	case sub == "add" && len(uris) == 0:
		return usagef("client add: at least one --redirect-uri is required")
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch sub {
	case "add":
		var out clientAnswer
		req := map[string]any{"name": pos[0], "redirect_uris": []string(uris), "public": *public,
			"id_token_alg": *alg, "consent_required": *consent}
		if err := c.Do(ctx, http.MethodPost, "/admin/v1/clients", req, &out); err != nil {
			return err
		}
		if af.json {
			return writeJSON(stdout, out)
		}
		fmt.Fprintf(stdout, "client_id:     %s\n", out.ClientID)
		if out.ClientSecret != "" {
			fmt.Fprintf(stdout, "client_secret: %s\n(shown this once: only a MAC of it is stored)\n", out.ClientSecret)
		} else {
			fmt.Fprintln(stdout, "public client: no secret; it must use PKCE (S256)")
		}
		return nil
	case "list":
		return printList(ctx, c, "/admin/v1/clients", "clients", af.json, stdout, "CLIENT_ID\tTYPE\tID_TOKEN_ALG\tCONSENT\tREDIRECT_URIS\tCREATED",
			func(cl clientAnswer) string {
				kind := "confidential"
				if cl.Public {
					kind = "public"
				}
				consent := "no"
				if cl.Consent {
					consent = "required"
				}
				return strings.Join([]string{cl.ClientID, kind, cl.IDTokenAlg, consent,
					strings.Join(cl.RedirectURIs, " "), cl.CreatedAt.Format(time.RFC3339)}, "\t")
			})
	case "remove":
		if err := c.Do(ctx, http.MethodDelete, "/admin/v1/clients/"+url.PathEscape(pos[0]), nil, nil); err != nil {
			return err
		}
		if !af.json {
			fmt.Fprintf(stdout, "removed client %s\n", pos[0])
		}
		return nil
	}
	return usagef("client: unknown subcommand %q", sub)
}
