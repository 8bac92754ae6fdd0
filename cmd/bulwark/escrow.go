package main

// The cluster data key: its creation at first start, its registration in
// the replicated state, its escrow and recovery shares (daemon side,
// behind the admin socket), and the offline commands that make escrow
// keys, read the key's fingerprint and recover it onto new hardware.
// docs/recovery.md is the operator's guide.

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
	"strconv"
	"strings"
	"time"

	"github.com/bulwark-auth/bulwark/api"
	"github.com/bulwark-auth/bulwark/authcore"
	"github.com/bulwark-auth/bulwark/cmd/bulwark/config"
	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/node"
	"github.com/bulwark-auth/bulwark/node/escrow"
	"github.com/bulwark-auth/bulwark/tpm"
	"github.com/bulwark-auth/bulwark/tpm/atomicfile"
)

// ensureDataKey creates the cluster data key in the keystore on the first
// start; later starts check the stored one.
func ensureDataKey(ks *tpm.Keystore) error {
	if key, ok := ks.Secret(tpm.DataKeyName); ok {
		defer clear(key)
		if len(key) != tpm.DataKeySize {
			return fmt.Errorf("keystore entry %s is %d bytes, want %d", tpm.DataKeyName, len(key), tpm.DataKeySize)
		}
		return nil
	}
	key := tpm.NewDataKey()
	defer clear(key)
	return ks.PutSecret(tpm.DataKeyName, key)
}

// dataKeyVault is where this node keeps the data key (the keystore).
type dataKeyVault interface {
	Secret(name string) ([]byte, bool)
}

// dataKeyStore is the replicated state (the node).
type dataKeyStore interface {
	Apply(ctx context.Context, cmd fsm.Command) (any, error)
	View(fn func(fsm.Reader) error) error
}

// errDataKeyMismatch: this node's data key is not the one the cluster
// registered.
var errDataKeyMismatch = errors.New("this node's cluster data key is not the cluster's")

// dataKeyService registers the data key's fingerprint and serves the
// escrow and recovery-share routes of the admin socket (api.DataKeyAdmin).
type dataKeyService struct {
	vault dataKeyVault
	store dataKeyStore
	log   *slog.Logger
	now   func() time.Time
	retry time.Duration
}

// startDataKeyAdmin returns the service and starts registering this node's
// data key fingerprint, retrying until a leader takes it or ctx ends.
func startDataKeyAdmin(ctx context.Context, vault dataKeyVault, store dataKeyStore, logger *slog.Logger) *dataKeyService {
	s := &dataKeyService{vault: vault, store: store, log: logger.With("component", "datakey"),
		now: time.Now, retry: 250 * time.Millisecond}
	go s.registerLoop(ctx)
	return s
}

func (s *dataKeyService) registerLoop(ctx context.Context) {
	for {
		st, err := s.register(ctx)
		switch {
		case err == nil:
			s.log.Info("cluster data key registered", "fingerprint", st.Fingerprint, "escrows", len(st.Escrows),
				"recovery_shares", st.Shares != nil)
			return
		case errors.Is(err, errDataKeyMismatch):
			s.log.Error("cluster data key mismatch: if this node was restored from a backup, stop it and run `bulwark keys recover`",
				"error", err)
			return
		case errors.As(err, new(*api.Error)): // no data key in the keystore
			s.log.Error("cluster data key not registered", "error", err)
			return
		case ctx.Err() != nil:
			return
		}
		s.log.Debug("cluster data key not registered yet; retrying", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.retry):
		}
	}
}

// register makes sure the state holds this node's data key fingerprint and
// returns the state's record.
func (s *dataKeyService) register(ctx context.Context) (*fsm.DataKeyState, error) {
	key, ok := s.vault.Secret(tpm.DataKeyName)
	if !ok {
		return nil, &api.Error{Status: http.StatusConflict, Code: api.CodeConflict,
			Description: "this node's keystore holds no cluster data key"}
	}
	fp := tpm.DataKeyFingerprint(key)
	clear(key)
	st, err := s.state()
	switch {
	case err == nil:
		return st, checkRegistered(st, fp)
	case !errors.Is(err, fsm.ErrNoDataKey):
		return nil, err
	}
	cmd, err := fsm.NewCommand(fsm.TypeDataKeyRegister, 1, s.now().UnixNano(), fsm.DataKeyRegister{Fingerprint: fp})
	if err != nil {
		return nil, err
	}
	cmd = cmd.WithAudit(fsm.AuditAppend{Type: "datakey.register", Severity: fsm.AuditInfo, Actor: "system", Subject: fp})
	v, err := s.store.Apply(ctx, cmd)
	if errors.Is(err, fsm.ErrInvalidCommand) { // another fingerprint won
		if st, serr := s.state(); serr == nil {
			return st, checkRegistered(st, fp)
		}
		return nil, fmt.Errorf("%w: %v", errDataKeyMismatch, err)
	}
	if err != nil {
		return nil, err
	}
	st, ok = v.(*fsm.DataKeyState)
	if !ok {
		return nil, fmt.Errorf("datakey.register answered %T", v)
	}
	return st, nil
}

func checkRegistered(st *fsm.DataKeyState, fp string) error {
	if st.Fingerprint == fp {
		return nil
	}
	return fmt.Errorf("%w: this node holds %s, the cluster registered %s at %s", errDataKeyMismatch,
		fp, st.Fingerprint, st.RegisteredAt.Format(time.RFC3339))
}

func (s *dataKeyService) state() (*fsm.DataKeyState, error) {
	var st *fsm.DataKeyState
	err := s.store.View(func(r fsm.Reader) error {
		var err error
		st, err = r.DataKey()
		return err
	})
	return st, err
}

// current returns the data key once its registration is confirmed.
func (s *dataKeyService) current(ctx context.Context) ([]byte, *fsm.DataKeyState, error) {
	st, err := s.register(ctx)
	if errors.Is(err, errDataKeyMismatch) {
		return nil, nil, conflict(err.Error() + "; nothing was escrowed or issued")
	}
	if err != nil {
		return nil, nil, err
	}
	key, ok := s.vault.Secret(tpm.DataKeyName)
	if !ok || tpm.DataKeyFingerprint(key) != st.Fingerprint {
		return nil, nil, conflict("this node's cluster data key changed during the request")
	}
	return key, st, nil
}

func conflict(desc string) *api.Error {
	return &api.Error{Status: http.StatusConflict, Code: api.CodeConflict, Description: desc}
}

func actorOf(ctx context.Context) string {
	if a := authcore.RequestInfoFrom(ctx).Actor; a != "" {
		return a
	}
	return api.ActorLocalAdmin
}

// EscrowDataKey wraps the data key to the armored escrow public key and
// records the escrow in the replicated state.
func (s *dataKeyService) EscrowDataKey(ctx context.Context, publicKeyPEM string) (api.DataKeyEscrowed, error) {
	pub, err := tpm.ParseEscrowPublicKey([]byte(publicKeyPEM))
	if err != nil {
		return api.DataKeyEscrowed{}, &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidRequest,
			Description: "public_key: " + err.Error()}
	}
	kfp := tpm.EscrowKeyFingerprint(pub)
	key, st, err := s.current(ctx)
	if err != nil {
		return api.DataKeyEscrowed{}, err
	}
	defer clear(key)
	if e, ok := st.Escrow(kfp); ok {
		return api.DataKeyEscrowed{}, conflict(fmt.Sprintf("the data key is already escrowed to %s (since %s)",
			kfp, e.CreatedAt.Format(time.RFC3339)))
	}
	w, err := escrow.Wrap(pub, key, st.Fingerprint, kfp)
	if err != nil {
		return api.DataKeyEscrowed{}, err
	}
	cmd, err := fsm.NewCommand(fsm.TypeDataKeyEscrow, 1, s.now().UnixNano(), fsm.DataKeyEscrow{
		DataKey: st.Fingerprint, KeyFingerprint: kfp, KEM: tpm.EscrowKEM,
		PublicKey: pub, KEMCiphertext: w.KEMCiphertext, Ciphertext: w.Ciphertext})
	if err != nil {
		return api.DataKeyEscrowed{}, err
	}
	cmd = cmd.WithAudit(fsm.AuditAppend{Type: "datakey.escrow", Severity: fsm.AuditWarning, Actor: actorOf(ctx),
		Subject: kfp, Details: map[string]string{"data_key": st.Fingerprint, "kem": tpm.EscrowKEM}})
	v, err := s.store.Apply(ctx, cmd)
	switch {
	case errors.Is(err, fsm.ErrEscrowExists):
		return api.DataKeyEscrowed{}, conflict("the data key is already escrowed to " + kfp)
	case errors.Is(err, fsm.ErrInvalidCommand), errors.Is(err, fsm.ErrNoDataKey):
		return api.DataKeyEscrowed{}, conflict(err.Error())
	case err != nil:
		return api.DataKeyEscrowed{}, err
	}
	e, ok := v.(*fsm.Escrow)
	if !ok {
		return api.DataKeyEscrowed{}, fmt.Errorf("datakey.escrow answered %T", v)
	}
	s.log.Warn("cluster data key escrowed", "escrow_key", kfp, "data_key", st.Fingerprint)
	return api.DataKeyEscrowed{DataKeyFingerprint: st.Fingerprint, EscrowKeyFingerprint: kfp,
		KEM: tpm.EscrowKEM, CreatedAt: e.CreatedAt}, nil
}

// IssueRecoveryShares splits a fresh random pad into shares, seals the data
// key under the pad in the replicated state, and returns the shares: once,
// and only after the record is committed.
func (s *dataKeyService) IssueRecoveryShares(ctx context.Context, threshold, shares int) (api.RecoveryShares, error) {
	if err := escrow.CheckShareCounts(threshold, shares); err != nil {
		return api.RecoveryShares{}, &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidRequest, Description: err.Error()}
	}
	key, st, err := s.current(ctx)
	if err != nil {
		return api.RecoveryShares{}, err
	}
	defer clear(key)
	if st.Shares != nil {
		return api.RecoveryShares{}, conflict(sharesIssuedMessage(st.Shares))
	}
	set, err := escrow.NewShareSet(key, st.Fingerprint, threshold, shares)
	if err != nil {
		return api.RecoveryShares{}, err
	}
	cmd, err := fsm.NewCommand(fsm.TypeDataKeyShares, 1, s.now().UnixNano(), set.Record)
	if err != nil {
		return api.RecoveryShares{}, err
	}
	cmd = cmd.WithAudit(fsm.AuditAppend{Type: "datakey.shares", Severity: fsm.AuditWarning, Actor: actorOf(ctx),
		Subject: st.Fingerprint, Details: map[string]string{"threshold": strconv.Itoa(threshold),
			"shares": strconv.Itoa(shares), "set_id": set.Record.SetID}})
	v, err := s.store.Apply(ctx, cmd)
	switch {
	case errors.Is(err, fsm.ErrSharesIssued):
		if st, serr := s.state(); serr == nil && st.Shares != nil {
			return api.RecoveryShares{}, conflict(sharesIssuedMessage(st.Shares))
		}
		return api.RecoveryShares{}, conflict(err.Error())
	case errors.Is(err, fsm.ErrInvalidCommand), errors.Is(err, fsm.ErrNoDataKey):
		return api.RecoveryShares{}, conflict(err.Error())
	case err != nil:
		return api.RecoveryShares{}, err
	}
	rec, ok := v.(*fsm.RecoveryShares)
	if !ok {
		return api.RecoveryShares{}, fmt.Errorf("datakey.shares answered %T", v)
	}
	s.log.Warn("recovery shares issued", "threshold", threshold, "shares", shares, "set_id", set.Record.SetID)
	return api.RecoveryShares{DataKeyFingerprint: st.Fingerprint, Threshold: threshold, Total: shares,
		Shares: set.Texts, IssuedAt: rec.IssuedAt}, nil
}

func sharesIssuedMessage(r *fsm.RecoveryShares) string {
	return fmt.Sprintf("recovery shares were already issued at %s (%d of %d, set %s); they are shown only once "+
		"and cannot be issued again. Escrow the key to a public key instead (bulwark keys escrow-key)",
		r.IssuedAt.Format(time.RFC3339), r.Threshold, r.Shares, r.SetID)
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
		return fmt.Errorf("%w: run `bulwark keys recover` with the daemon stopped", errDataKeyMismatch)
	}
	return nil
}
