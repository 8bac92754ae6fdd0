package main

// The cluster data key's commands: the admin socket's escrow and
// recovery-share routes over node's data-key service (node.DataKeys), and
// the offline commands that make escrow keys, read the key's fingerprint
// and recover it onto new hardware (node/escrow). docs/recovery.md is the
// operator's guide.

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bulwark-auth/bulwark/api"
	"github.com/bulwark-auth/bulwark/authcore"
	"github.com/bulwark-auth/bulwark/cmd/bulwark/config"
	"github.com/bulwark-auth/bulwark/node"
	"github.com/bulwark-auth/bulwark/node/escrow"
	"github.com/bulwark-auth/bulwark/tpm"
	"github.com/bulwark-auth/bulwark/tpm/atomicfile"
)

// dataKeyAdmin serves the escrow and recovery-share routes of the admin
// socket (api.DataKeyAdmin) with node's data-key service: it names the
// actor and turns a refusal into its HTTP answer.
type dataKeyAdmin struct{ keys *node.DataKeys }

func (a dataKeyAdmin) EscrowDataKey(ctx context.Context, publicKeyPEM string) (api.DataKeyEscrowed, error) {
	e, err := a.keys.Escrow(ctx, publicKeyPEM, actorOf(ctx))
	if err != nil {
		return api.DataKeyEscrowed{}, dataKeyRefusal(err, "public_key: ")
	}
	return api.DataKeyEscrowed{DataKeyFingerprint: e.DataKey, EscrowKeyFingerprint: e.KeyFingerprint,
		KEM: e.KEM, CreatedAt: e.CreatedAt}, nil
}

func (a dataKeyAdmin) IssueRecoveryShares(ctx context.Context, threshold, shares int) (api.RecoveryShares, error) {
	set, err := a.keys.IssueShares(ctx, threshold, shares, actorOf(ctx))
	if err != nil {
		return api.RecoveryShares{}, dataKeyRefusal(err, "")
	}
	return api.RecoveryShares{DataKeyFingerprint: set.DataKey, Threshold: set.Threshold, Total: set.Shares,
		Shares: set.Texts, IssuedAt: set.IssuedAt}, nil
}

// dataKeyRefusal answers a bad request 400 (its description prefixed with
// the field it is about) and a refusal by the state 409.
func dataKeyRefusal(err error, field string) error {
	var r *node.DataKeyError
	switch {
	case !errors.As(err, &r):
		return err
	case r.Invalid:
		return &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidRequest, Description: field + r.Msg}
	}
	return &api.Error{Status: http.StatusConflict, Code: api.CodeConflict, Description: r.Msg}
}

func actorOf(ctx context.Context) string {
	if a := authcore.RequestInfoFrom(ctx).Actor; a != "" {
		return a
	}
	return api.ActorLocalAdmin
}

// offlineNode is a stopped node's configuration, data directory lock and
// sealer, for the offline key commands.
type offlineNode struct {
	cfg    config.Config
	unlock func()
	locked bool // false when a running daemon holds the directory
}

func openOffline(configFile, dataDir string, requireStopped bool) (*offlineNode, error) {
	cfg, err := loadConfig(configFile, true)
	if err != nil {
		return nil, err
	}
	if dataDir != "" {
		cfg.DataDir = dataDir
	}
	if err := cfg.Resolve(); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	o := &offlineNode{cfg: cfg, unlock: func() {}}
	unlock, err := node.LockDataDir(cfg.DataDir)
	switch {
	case err == nil:
		o.unlock, o.locked = unlock, true
	case errors.Is(err, node.ErrRunning) && !requireStopped:
	default:
		return nil, err
	}
	return o, nil
}

// keystore opens the node's keystore with the sealer serve would build.
// With create false, a missing keystore is an error rather than made.
func (o *offlineNode) keystore(create bool) (*tpm.Keystore, tpm.Sealer, error) {
	if !create {
		if _, err := os.Stat(filepath.Join(o.cfg.DataDir, tpm.KeystoreFile)); err != nil {
			return nil, nil, fmt.Errorf("no keystore in %s (%v): start bulwark once, or run `bulwark keys recover`", o.cfg.DataDir, err)
		}
	}
	sealer, err := newSealer(o.cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, nil, err
	}
	ks, err := tpm.OpenKeystore(o.cfg.DataDir, sealer)
	if err != nil {
		sealer.Close()
		return nil, nil, err
	}
	return ks, sealer, nil
}

// cmdKeysDataKey runs the data key subcommands of `bulwark keys`.
func cmdKeysDataKey(sub string, args []string, stdout io.Writer) error {
	switch sub {
	case "escrow-keygen":
		return keysEscrowKeygen(args, stdout)
	case "escrow-key":
		return keysEscrowKey(args, stdout)
	case "recovery-shares":
		return keysRecoveryShares(args, stdout)
	case "recover":
		return keysRecover(args, stdout)
	case "datakey-fingerprint":
		return keysDataKeyFingerprint(args, stdout)
	}
	return usagef("keys: unknown subcommand %q", sub)
}

// keysEscrowKeygen: `bulwark keys escrow-keygen PRIVATE_OUT PUBLIC_OUT`.
func keysEscrowKeygen(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("keys escrow-keygen", flag.ContinueOnError)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("keys escrow-keygen takes PRIVATE_OUT PUBLIC_OUT")
	}
	pubPEM, privPEM, err := tpm.GenerateEscrowKey()
	if err != nil {
		return err
	}
	defer clear(privPEM)
	if err := writeNewFile(pos[0], privPEM, 0o600); err != nil {
		return err
	}
	if err := writeNewFile(pos[1], pubPEM, 0o644); err != nil {
		os.Remove(pos[0])
		return err
	}
	pub, err := tpm.ParseEscrowPublicKey(pubPEM)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, `escrow key pair (%s) written
  private key: %s (mode 0600: keep it offline; it opens every escrow made to this key)
  public key:  %s
  fingerprint: %s
install the public key with: bulwark keys escrow-key %s
`, tpm.EscrowKEM, pos[0], pos[1], tpm.EscrowKeyFingerprint(pub), pos[1])
	return nil
}

// writeNewFile writes a file that must not exist yet, crash-safe.
func writeNewFile(path string, data []byte, perm os.FileMode) error {
	err := atomicfile.CreateExclusive(path, data, perm)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists; refusing to overwrite it", path)
	}
	return err
}

// keysEscrowKey: `bulwark keys escrow-key FILE`.
func keysEscrowKey(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("keys escrow-key", flag.ContinueOnError)
	var af adminFlags
	af.register(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("keys escrow-key takes one FILE: the escrow public key")
	}
	b, err := os.ReadFile(pos[0])
	if err != nil {
		return err
	}
	if _, err := tpm.ParseEscrowPublicKey(b); err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out api.DataKeyEscrowed
	if err := c.Do(ctx, http.MethodPost, "/admin/v1/datakey/escrow", map[string]string{"public_key": string(b)}, &out); err != nil {
		return err
	}
	if af.json {
		return writeJSON(stdout, out)
	}
	fmt.Fprintf(stdout, "escrowed the cluster data key %s to escrow key %s (%s)\n"+
		"recover it with: bulwark keys recover --escrow-private-key PRIVATE_KEY_FILE\n",
		out.DataKeyFingerprint, out.EscrowKeyFingerprint, out.KEM)
	return nil
}

// keysRecoveryShares: `bulwark keys recovery-shares --threshold K --shares N`.
func keysRecoveryShares(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("keys recovery-shares", flag.ContinueOnError)
	var af adminFlags
	af.register(fs)
	k := fs.Int("threshold", 0, "shares needed to recover (K)")
	n := fs.Int("shares", 0, "shares to issue (N)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("keys recovery-shares takes no arguments")
	}
	if *k == 0 || *n == 0 {
		return usagef("keys recovery-shares needs --threshold K and --shares N")
	}
	if err := escrow.CheckShareCounts(*k, *n); err != nil {
		return usagef("keys recovery-shares: %v", err)
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out api.RecoveryShares
	if err := c.Do(ctx, http.MethodPost, "/admin/v1/datakey/recovery-shares", map[string]int{"threshold": *k, "shares": *n}, &out); err != nil {
		return err
	}
	if af.json {
		return writeJSON(stdout, out)
	}
	fmt.Fprintf(stdout, `Recovery shares of the cluster data key %s, issued %s.
Any %d of these %d shares, with a backup of the cluster's state, recover the key
(bulwark keys recover --share S ...). They are shown this once and stored nowhere:
give each to a different holder now.

`, out.DataKeyFingerprint, out.IssuedAt.Format(time.RFC3339), out.Threshold, out.Total)
	for i, s := range out.Shares {
		fmt.Fprintf(stdout, "share %d of %d: %s\n", i+1, out.Total, s)
	}
	return nil
}

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

// keysRecover: `bulwark keys recover [--config F] [--data-dir D]
// (--escrow-private-key FILE | --share S ...)`, with the daemon stopped.
func keysRecover(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("keys recover", flag.ContinueOnError)
	configFile := fs.String("config", "", "configuration file")
	dataDir := fs.String("data-dir", "", "data directory (overrides data_dir)")
	privFile := fs.String("escrow-private-key", "", "escrow private key file")
	var shares stringList
	fs.Var(&shares, "share", "a recovery share (repeat for each)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("keys recover takes no arguments")
	}
	if (*privFile == "") == (len(shares) == 0) {
		return usagef("keys recover needs either --escrow-private-key FILE or --share S (repeated), not both")
	}
	var privPEM []byte
	if *privFile != "" {
		if privPEM, err = os.ReadFile(*privFile); err != nil {
			return err
		}
		defer clear(privPEM)
	}
	o, err := openOffline(*configFile, *dataDir, true)
	if err != nil {
		return err
	}
	defer o.unlock()
	st, err := node.ReadDataKeyState(o.cfg.DataDir)
	if err != nil {
		return err
	}
	var key []byte
	var how string
	if privPEM != nil {
		key, how, err = escrow.FromEscrow(st, privPEM)
	} else {
		key, how, err = escrow.FromShares(st, shares)
	}
	if err != nil {
		return err
	}
	defer clear(key)
	ks, sealer, err := o.keystore(true)
	if err != nil {
		return err
	}
	defer sealer.Close()
	old, had := ks.Secret(tpm.DataKeyName)
	defer clear(old)
	switch {
	case had && bytes.Equal(old, key):
		fmt.Fprintf(stdout, "the keystore in %s already holds the cluster data key %s; nothing to do\n", o.cfg.DataDir, st.Fingerprint)
		return nil
	case had:
		fmt.Fprintf(stdout, "replacing the keystore's data key %s, which is not the cluster's\n", tpm.DataKeyFingerprint(old))
	}
	if err := ks.PutSecret(tpm.DataKeyName, key); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "recovered the cluster data key %s from %s\n"+
		"written to %s, sealed by this node's %s sealer; start bulwark now\n",
		st.Fingerprint, how, filepath.Join(o.cfg.DataDir, tpm.KeystoreFile), sealer.Mode())
	return nil
}

// keysDataKeyFingerprint: `bulwark keys datakey-fingerprint [--config F]
// [--data-dir D] [--json]` prints the fingerprint of the data key in this
// node's keystore and, with the daemon stopped, the one the state expects.
func keysDataKeyFingerprint(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("keys datakey-fingerprint", flag.ContinueOnError)
	configFile := fs.String("config", "", "configuration file")
	dataDir := fs.String("data-dir", "", "data directory (overrides data_dir)")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("keys datakey-fingerprint takes no arguments")
	}
	o, err := openOffline(*configFile, *dataDir, false)
	if err != nil {
		return err
	}
	defer o.unlock()
	ks, sealer, err := o.keystore(false)
	if err != nil {
		return err
	}
	sealer.Close()
	key, ok := ks.Secret(tpm.DataKeyName)
	if !ok {
		return fmt.Errorf("the keystore in %s holds no cluster data key: start bulwark once, or run `bulwark keys recover`", o.cfg.DataDir)
	}
	out := struct {
		Keystore string `json:"keystore"`
		Cluster  string `json:"cluster,omitempty"`
		Match    *bool  `json:"match,omitempty"`
	}{Keystore: tpm.DataKeyFingerprint(key)}
	clear(key)
	cluster := "not read: bulwark is running (stop it to compare with the state)"
	if o.locked {
		st, err := node.ReadDataKeyState(o.cfg.DataDir)
		if err != nil {
			return err
		}
		match := st.Fingerprint == out.Keystore
		out.Cluster, out.Match = st.Fingerprint, &match
		cluster = st.Fingerprint + " (matches)"
		if !match {
			cluster = st.Fingerprint + " (DOES NOT MATCH)"
		}
	}
	if *asJSON {
		if err := writeJSON(stdout, out); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "keystore: %s\ncluster:  %s\n", out.Keystore, cluster)
	}
	if out.Match != nil && !*out.Match {
		return fmt.Errorf("%w: run `bulwark keys recover` with the daemon stopped", node.ErrDataKeyMismatch)
	}
	return nil
}
