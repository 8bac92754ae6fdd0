package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/bulwark-auth/bulwark/api"
	"github.com/bulwark-auth/bulwark/authcore"
	"github.com/bulwark-auth/bulwark/node"
	"github.com/bulwark-auth/bulwark/node/pki"
	"github.com/bulwark-auth/bulwark/tpm/atomicfile"
)

// backupNote says what a backup holds, wherever one is written
// (node/backup.go has the whole list).
const backupNote = "It holds users with their argon2id password hashes, sessions, refresh-token hashes, public signing keys\n" +
	"and the audit trail, and, sealed under the cluster data key, the cluster CA's private key. The data key is\n" +
	"not in it, except wrapped to the escrow keys and to the recovery shares: this backup plus the escrow private\n" +
	"key or K shares yields the CA key. Keep it apart from those, and as carefully."

// adminBackupOption serves GET /admin/v1/backup on the admin socket from n.
// A backup stops when the client goes away or the daemon shuts down
// (serveCtx ends), so it never holds state.db open past shutdown. The
// audit trail is checkpointed first, so the backup's trail is vouched for
// to its end; a checkpoint that fails is logged and the backup goes on.
func adminBackupOption(serveCtx context.Context, n *node.Node, core *authcore.Service, logger *slog.Logger) api.AdminOption {
	return api.AdminBackup(func(ctx context.Context, w io.Writer) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(serveCtx, cancel)()
		if _, err := core.CheckpointAudit(ctx); err != nil && !errors.Is(err, authcore.ErrAuditKeysNotRecorded) {
			logger.Warn("backup: no audit checkpoint first", "error", err)
		}
		_, err := n.Backup(ctx, w, node.BackupVersion(buildVersion()))
		return err
	})
}

// cmdBackup runs `bulwark backup create FILE | restore FILE`.
func cmdBackup(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usagef("backup: missing subcommand (create, restore)")
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "create":
		return backupCreate(args, stdout)
	case "restore":
		return backupRestore(args, stdout)
	}
	return usagef("backup: unknown subcommand %q", sub)
}

// backupCreate downloads a backup from the running daemon into FILE: into
// a temporary file beside it (mode 0600), checked, synced, then put in
// place, so FILE is either absent, as it was, or a whole verified backup.
func backupCreate(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("backup create", flag.ContinueOnError)
	var af adminFlags
	af.register(fs)
	force := fs.Bool("force", false, "replace FILE if it exists")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("backup create takes one FILE")
	}
	path := pos[0]
	if _, err := os.Lstat(path); err == nil && !*force {
		return fmt.Errorf("%s exists; use --force to replace it", path)
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	tmpName := tmp.Name()
	installed := false
	defer func() {
		tmp.Close()
		if !installed {
			os.Remove(tmpName)
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if _, err := c.Download(ctx, "/admin/v1/backup", tmp); err != nil {
		var e *api.Error
		if errors.As(err, &e) && e.Code == api.CodeNoLeader {
			return fmt.Errorf("backup: %w (take backups on the cluster's leader)", err)
		}
		return fmt.Errorf("backup: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	info, err := node.ReadBackup(tmp, io.Discard)
	if err != nil {
		return fmt.Errorf("backup: the downloaded backup does not verify, nothing written: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := install(tmpName, path, *force); err != nil {
		return err
	}
	installed = true

	if af.json {
		return writeJSON(stdout, struct {
			File string `json:"file"`
			node.BackupInfo
		}{path, info})
	}
	m := info.Manifest
	fmt.Fprintf(stdout, "backup written to %s (%d bytes, mode 0600)\n", path, info.ArchiveBytes)
	fmt.Fprintf(stdout, "  node %s, bulwark %s, taken %s\n", m.NodeID, m.BulwarkVersion, m.CreatedAt.Format(time.RFC3339))
	fmt.Fprintf(stdout, "  state at applied index %d (term %d): %d bytes, sha256 %s\n",
		m.AppliedIndex, m.AppliedTerm, info.StateBytes, info.StateSHA256)
	fmt.Fprintln(stdout, backupNote)
	return nil
}

// install puts the verified temporary file at path: without force by a
// hard link, which fails rather than replace a file that appeared
// meanwhile; with force by rename. Then it syncs the directory.
func install(tmp, path string, force bool) error {
	if force {
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("backup: %w", err)
		}
	} else {
		if err := os.Link(tmp, path); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%s exists; use --force to replace it", path)
			}
			return fmt.Errorf("backup: %w", err)
		}
		os.Remove(tmp)
	}
	if err := atomicfile.SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

// backupRestore restores FILE into the data directory of the node that
// --config (or the default configuration file) describes, offline: the
// daemon must not be running, and the data directory must be empty or
// missing. The node id and advertised address are computed as serve
// computes them, so `bulwark serve` with the same configuration starts
// the restored one-node cluster.
func backupRestore(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("backup restore", flag.ContinueOnError)
	configFile := fs.String("config", "", "configuration file of the node to restore")
	dataDir := fs.String("data-dir", "", "data directory (overrides data_dir)")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("backup restore takes one FILE")
	}
	cfg, err := loadConfig(*configFile, true)
	if err != nil {
		return err
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	if err := cfg.Resolve(); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	advertise, err := advertiseAddr(cfg)
	if err != nil {
		return err
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	owner, hasOwner := dirOwner(cfg.DataDir)

	ri, err := node.RestoreBackup(cfg.DataDir, cfg.NodeName, advertise, f)
	if err != nil {
		return fmt.Errorf("restore from %s refused, nothing changed: %w", pos[0], err)
	}
	if hasOwner {
		if err := chownTree(cfg.DataDir, owner); err != nil {
			return fmt.Errorf("restore: giving %s to its owner: %w", cfg.DataDir, err)
		}
	}

	if *asJSON {
		return writeJSON(stdout, struct {
			DataDir string `json:"data_dir"`
			node.RestoreInfo
		}{cfg.DataDir, ri})
	}
	m := ri.Backup.Manifest
	audit := "chain verifies"
	if ri.AuditProblem != "" {
		audit = "WARNING, chain does not verify: " + ri.AuditProblem
	}
	fmt.Fprintf(stdout, "restored %s into %s\n", pos[0], cfg.DataDir)
	fmt.Fprintf(stdout, "  from node %s (bulwark %s), taken %s; state at applied index %d, term %d\n",
		m.NodeID, m.BulwarkVersion, m.CreatedAt.Format(time.RFC3339), ri.AppliedIndex, ri.AppliedTerm)
	fmt.Fprintf(stdout, "  %d users, %d audit entries (%s)\n", ri.Users, ri.AuditEntries, audit)
	fmt.Fprintf(stdout, "  this node: %s at %s, the only voter of a new one-node cluster\n", ri.NodeID, ri.Advertise)
	if ri.DroppedCAKey != "" {
		fmt.Fprintf(stdout, "  not restored: the old CA's key (%s); the backup still holds it, sealed under the data key\n", ri.DroppedCAKey)
	}
	fmt.Fprintf(stdout, "Next: install the cluster data key with `bulwark keys recover` (escrow key or recovery\n"+
		"shares; the backup holds it only wrapped to those), then start the node with `bulwark serve`\n"+
		"and the same configuration. Its first start creates a new keystore, signing key, TLS\n"+
		"certificate and cluster CA, and shares the CA's key with the members that join, sealed\n"+
		"under the data key. Clients must trust the new CA in %s%s.\n"+
		"Sessions in the backup stay valid (their refresh tokens, like second factors, need the\n"+
		"data key); access tokens issued before the backup keep verifying until\n"+
		"they expire, provided tokens.issuer is unchanged.\n",
		filepath.Join(cfg.DataDir, pki.CAFile), oldCAPin(m.CACertPEM))
	return nil
}

// oldCAPin names the backed-up cluster's CA for the restore summary.
func oldCAPin(caPEM string) string {
	if caPEM == "" {
		return ""
	}
	certs, err := pki.ParseCertPEM([]byte(caPEM))
	if err != nil {
		return ""
	}
	return ",\nnot the old CA " + pki.Pin(certs[0])
}

type owner struct{ uid, gid int }

// dirOwner is the owner of an existing data directory, when restore runs
// as root and the directory belongs to someone else (the bulwark user, as
// packaging creates it): the restored files are given to that owner, so
// the daemon can open them.
func dirOwner(dir string) (owner, bool) {
	if os.Geteuid() != 0 {
		return owner{}, false
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return owner{}, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || (st.Uid == 0 && st.Gid == 0) {
		return owner{}, false
	}
	return owner{int(st.Uid), int(st.Gid)}, true
}

func chownTree(dir string, o owner) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "lost+found" && filepath.Dir(path) == dir {
			return filepath.SkipDir
		}
		return os.Lchown(path, o.uid, o.gid)
	})
}
