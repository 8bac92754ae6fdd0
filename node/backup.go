package node

// Online backup and offline restore.
//
// A backup is the state machine (state.db, as a consistent bbolt read
// transaction writes it) plus a manifest saying what it is. What the state
// holds, a backup holds:
//
//   - in the clear: users with their argon2id password hashes, sessions
//     (ids, owners, addresses; an id alone is no credential), SHA-256
//     hashes of refresh and join tokens, public signing keys, member key
//     hashes, the audit chain, the data key's fingerprint, and in the
//     manifest the cluster CA certificate;
//   - encrypted: the cluster CA's private key, sealed under the cluster
//     data key (fsm ca.key, shared so that every member can admit nodes),
//     and the data key itself, wrapped to each escrow public key and
//     sealed under a pad split into recovery shares (fsm datakey.*).
//
// It never holds the keystore, the sealed KEK, a node or signing private
// key, or the data key in a form that opens without more: but a backup plus
// the escrow private key, or plus K recovery shares, yields the data key
// and with it the backed-up cluster's CA key. Keep backups as carefully as
// the escrow key and the shares, and apart from them.
//
// Archive format, version 1 (integers big endian):
//
//	"BWBK"                 magic
//	uint16                 format version (1)
//	uint32 N, N bytes      manifest, JSON (BackupManifest), N ≤ 1 MiB
//	uint32 L, L bytes      state.db, in chunks of at most 4 MiB ...
//	uint32 0               ... ended by an empty chunk
//	uint64                 state.db length
//	[32]byte               SHA-256 of state.db
//	[32]byte               SHA-256 of every byte above
//
// The checksums come last because the archive is streamed from a live read
// transaction: its bytes are known only once written (bbolt also copies free
// pages, which concurrent writers may change, so a second pass would not
// reproduce them). They detect damage, not forgery: anyone able to edit a
// backup can recompute them, so keep backups where their contents are safe.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/auditsig"
	"github.com/bulwark-auth/bulwark/node/pki"
	"github.com/bulwark-auth/bulwark/tpm/atomicfile"
)

// Backup archive constants.
const (
	BackupMagic         = "BWBK"
	BackupFormatVersion = 1

	maxManifestBytes = 1 << 20
	maxChunkBytes    = 4 << 20
	writeChunkBytes  = 256 << 10
)

// BackupManifest describes a backup. It travels in the archive as JSON.
type BackupManifest struct {
	Format         int    `json:"format"`
	BulwarkVersion string `json:"bulwark_version,omitempty"`
	// NodeID is the node the backup was taken on.
	NodeID string `json:"node_id"`
	// CACertPEM is the cluster CA certificate of the backed-up cluster
	// (public; its key is in the state, sealed under the data key).
	CACertPEM string `json:"ca_cert_pem,omitempty"`
	// AppliedIndex and AppliedTerm are those of the last log entry the
	// state holds.
	AppliedIndex uint64    `json:"applied_index"`
	AppliedTerm  uint64    `json:"applied_term"`
	CreatedAt    time.Time `json:"created_at"`
}

// BackupInfo is what writing or reading an archive found.
type BackupInfo struct {
	Manifest BackupManifest `json:"manifest"`
	// StateBytes and StateSHA256 (hex) describe the state.db payload.
	StateBytes  int64  `json:"state_bytes"`
	StateSHA256 string `json:"state_sha256"`
	// ArchiveBytes is the size of the whole archive.
	ArchiveBytes int64 `json:"archive_bytes"`
}

// BackupOption adjusts Backup.
type BackupOption func(*BackupManifest)

// BackupVersion records the bulwark version that wrote the backup.
func BackupVersion(v string) BackupOption {
	return func(m *BackupManifest) { m.BulwarkVersion = v }
}

// Backup writes an archive of the current state to w, online: writes go on
// while it streams. It first waits for a Raft barrier on the leader, so
// every entry committed before the call (in particular every write
// acknowledged to a client) is applied, then pins the state in one bbolt
// read transaction and streams it. Nothing is written to w before that
// succeeds, so an early error (not the leader, shutting down) leaves w
// untouched. ctx bounds the barrier and stops the streaming.
func (n *Node) Backup(ctx context.Context, w io.Writer, opts ...BackupOption) (BackupInfo, error) {
	timeout := n.cfg.ApplyTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	if timeout <= 0 {
		return BackupInfo{}, context.DeadlineExceeded
	}
	if err := n.raft.Barrier(timeout).Error(); err != nil {
		return BackupInfo{}, n.raftErr(err)
	}
	return n.BackupHere(ctx, w, opts...)
}

// BackupHere writes an archive of this node's state as it stands, on any
// member, leader or not: a follower's state may trail the leader's, so
// the caller first waits for what the archive must hold (a read barrier).
// The incident lockdown's forensic copy uses it on whichever node the
// operator asked.
func (n *Node) BackupHere(ctx context.Context, w io.Writer, opts ...BackupOption) (BackupInfo, error) {
	if err := ctx.Err(); err != nil {
		return BackupInfo{}, err
	}
	// Any read transaction is a consistent state: the applied index is
	// written in the same transaction as the data it describes.
	snap, err := n.store.Snapshot()
	if err != nil {
		return BackupInfo{}, err
	}
	defer snap.Release()
	m := BackupManifest{
		Format:       BackupFormatVersion,
		NodeID:       n.cfg.ID,
		AppliedIndex: snap.Index(),
		CreatedAt:    n.cfg.Clock.Now().UTC(),
	}
	m.AppliedTerm = n.termAt(m.AppliedIndex)
	for _, o := range opts {
		o(&m)
	}
	ca, err := os.ReadFile(filepath.Join(n.cfg.DataDir, pki.CAFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return BackupInfo{}, fmt.Errorf("node: backup: %w", err)
	}
	m.CACertPEM = string(ca)
	info, err := writeBackup(ctx, w, m, snap.WriteTo)
	if err == nil {
		n.recordBackup(ctx, info)
	}
	return info, err
}

// recordBackup records a backup written whole in the replicated state
// (fsm backup.record, level 5), which is where `bulwark doctor` on any
// member finds the cluster's backup age. Best effort: the archive is
// written and stays good if the record fails, which is logged. Below
// level 5 nothing is recorded.
func (n *Node) recordBackup(ctx context.Context, info BackupInfo) {
	if !n.proposable(fsm.TypeBackupRecord, 1) {
		n.log.Info("backup not recorded: the cluster is below feature level 5")
		return
	}
	cmd, err := fsm.NewCommand(fsm.TypeBackupRecord, 1, n.cfg.Clock.Now().UnixNano(), fsm.BackupRecord{
		Node: n.cfg.ID, AppliedIndex: info.Manifest.AppliedIndex, Bytes: info.ArchiveBytes, StateSHA256: info.StateSHA256})
	if err == nil {
		// The archive is out: recorded whatever its client does next.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, err = n.Apply(rctx, cmd)
	}
	if err != nil {
		n.log.Warn("backup written but not recorded for the scorecard", "error", err)
	}
}

// BackupStore writes an archive of store as it stands, a state.db no node
// has open (the scale benchmark's, seeded through fsm.Store.ApplyBatch):
// m names the node, term and CA the archive describes; its Format and
// AppliedIndex are set here, from the store's read transaction.
func BackupStore(ctx context.Context, w io.Writer, store *fsm.Store, m BackupManifest) (BackupInfo, error) {
	snap, err := store.Snapshot()
	if err != nil {
		return BackupInfo{}, err
	}
	defer snap.Release()
	m.Format, m.AppliedIndex = BackupFormatVersion, snap.Index()
	return writeBackup(ctx, w, m, snap.WriteTo)
}

// termAt is the term of the entry at index: from the log, else from the
// snapshot that ends there (a freshly restored node has no log yet), else
// from state.db if it is still there.
func (n *Node) termAt(index uint64) uint64 {
	if index == 0 {
		return 0
	}
	var l raft.Log
	if err := n.logs.GetLog(index, &l); err == nil {
		return l.Term
	}
	if metas, err := n.snaps.List(); err == nil {
		for _, s := range metas {
			if s.Index == index {
				return s.Term
			}
		}
	}
	if i, t, err := n.store.Applied(); err == nil && i == index {
		return t
	}
	return 0
}

// writeBackup writes the archive: header, manifest, the state written by
// writeState in chunks, trailer.
func writeBackup(ctx context.Context, w io.Writer, m BackupManifest, writeState func(io.Writer) (int64, error)) (BackupInfo, error) {
	mj, err := json.Marshal(m)
	if err != nil {
		return BackupInfo{}, err
	}
	if len(mj) > maxManifestBytes {
		return BackupInfo{}, fmt.Errorf("node: backup manifest of %d bytes is too large", len(mj))
	}
	aw := &hashWriter{w: w, h: sha256.New()}
	head := append([]byte(BackupMagic), 0, 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint16(head[4:], BackupFormatVersion)
	binary.BigEndian.PutUint32(head[6:], uint32(len(mj)))
	aw.Write(head)
	aw.Write(mj)

	cw := &chunkWriter{ctx: ctx, w: aw, h: sha256.New(), buf: make([]byte, 0, writeChunkBytes)}
	if _, err := writeState(cw); err != nil {
		return BackupInfo{}, fmt.Errorf("node: backup: %w", err)
	}
	if err := cw.flush(); err != nil {
		return BackupInfo{}, fmt.Errorf("node: backup: %w", err)
	}
	stateSum := cw.h.Sum(nil)
	tail := binary.BigEndian.AppendUint32(nil, 0)
	tail = binary.BigEndian.AppendUint64(tail, uint64(cw.n))
	tail = append(tail, stateSum...)
	aw.Write(tail)
	aw.Write(aw.h.Sum(nil)) // the checksum of every byte before it
	if aw.err != nil {
		return BackupInfo{}, fmt.Errorf("node: backup: %w", aw.err)
	}
	return BackupInfo{Manifest: m, StateBytes: cw.n, StateSHA256: hex.EncodeToString(stateSum), ArchiveBytes: aw.n}, nil
}

// hashWriter writes to w, hashing and counting what it wrote, and keeps
// the first error so the writer can check once.
type hashWriter struct {
	w   io.Writer
	h   hash.Hash
	n   int64
	err error
}

func (a *hashWriter) Write(p []byte) (int, error) {
	if a.err != nil {
		return 0, a.err
	}
	n, err := a.w.Write(p)
	a.h.Write(p[:n])
	a.n += int64(n)
	a.err = err
	return n, err
}

// chunkWriter frames the state into length-prefixed chunks and hashes it.
// It stops with ctx's error between chunks.
type chunkWriter struct {
	ctx context.Context
	w   *hashWriter
	h   hash.Hash
	n   int64
	buf []byte
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		k := min(len(p), cap(c.buf)-len(c.buf))
		c.buf = append(c.buf, p[:k]...)
		p, written = p[k:], written+k
		if len(c.buf) == cap(c.buf) {
			if err := c.flush(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

func (c *chunkWriter) flush() error {
	if err := c.ctx.Err(); err != nil {
		return err
	}
	if len(c.buf) == 0 {
		return c.w.err
	}
	c.w.Write(binary.BigEndian.AppendUint32(nil, uint32(len(c.buf))))
	c.w.Write(c.buf)
	c.h.Write(c.buf)
	c.n += int64(len(c.buf))
	c.buf = c.buf[:0]
	return c.w.err
}

// ReadBackup reads an archive from r, writes its state.db bytes to state
// and checks both checksums. On any error what went to state must be
// discarded: it may be incomplete or damaged. Bytes after the archive are
// an error too.
func ReadBackup(r io.Reader, state io.Writer) (BackupInfo, error) {
	cr := &countReader{r: r}
	br := bufio.NewReaderSize(cr, 64<<10)
	ah := sha256.New()
	hr := io.TeeReader(br, ah) // everything before the final checksum
	var info BackupInfo
	damaged := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBackupDamaged, fmt.Sprintf(format, args...))
	}
	head := make([]byte, 10)
	if _, err := io.ReadFull(hr, head[:4]); err != nil || string(head[:4]) != BackupMagic {
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			return info, err
		}
		return info, fmt.Errorf("%w (it does not start with %q)", ErrNotBackup, BackupMagic)
	}
	if _, err := io.ReadFull(hr, head[4:]); err != nil {
		return info, damaged("truncated header")
	}
	if v := binary.BigEndian.Uint16(head[4:]); v != BackupFormatVersion {
		return info, fmt.Errorf("backup format version %d is not supported by this bulwark (it reads version %d)", v, BackupFormatVersion)
	}
	ml := binary.BigEndian.Uint32(head[6:])
	if ml == 0 || ml > maxManifestBytes {
		return info, damaged("manifest length %d", ml)
	}
	mj := make([]byte, ml)
	if _, err := io.ReadFull(hr, mj); err != nil {
		return info, damaged("truncated manifest")
	}
	if err := json.Unmarshal(mj, &info.Manifest); err != nil {
		return info, damaged("manifest: %v", err)
	}
	if info.Manifest.Format != BackupFormatVersion {
		return info, damaged("manifest says format %d, header %d", info.Manifest.Format, BackupFormatVersion)
	}

	sh := sha256.New()
	out := io.MultiWriter(state, sh)
	var lenBuf [4]byte
	for {
		if _, err := io.ReadFull(hr, lenBuf[:]); err != nil {
			return info, damaged("truncated state after %d bytes", info.StateBytes)
		}
		l := binary.BigEndian.Uint32(lenBuf[:])
		if l == 0 {
			break
		}
		if l > maxChunkBytes {
			return info, damaged("state chunk of %d bytes", l)
		}
		n, err := io.CopyN(out, hr, int64(l))
		info.StateBytes += n
		if err != nil {
			if n < int64(l) && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
				return info, damaged("truncated state after %d bytes", info.StateBytes)
			}
			return info, err
		}
	}
	tail := make([]byte, 8+32)
	if _, err := io.ReadFull(hr, tail); err != nil {
		return info, damaged("truncated trailer")
	}
	sum := ah.Sum(nil)
	want := make([]byte, 32)
	if _, err := io.ReadFull(br, want); err != nil {
		return info, damaged("truncated trailer")
	}
	if !bytes.Equal(sum, want) {
		return info, damaged("archive checksum mismatch (SHA-256 %x, recorded %x)", sum, want)
	}
	if got := binary.BigEndian.Uint64(tail); got != uint64(info.StateBytes) {
		return info, damaged("state is %d bytes, trailer says %d", info.StateBytes, got)
	}
	stateSum := sh.Sum(nil)
	if !bytes.Equal(stateSum, tail[8:]) {
		return info, damaged("state checksum mismatch")
	}
	info.StateSHA256 = hex.EncodeToString(stateSum)
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		if err != nil {
			return info, err
		}
		return info, damaged("unexpected bytes after the archive")
	}
	info.ArchiveBytes = cr.n
	return info, nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// RestoreInfo is what RestoreBackup did.
type RestoreInfo struct {
	Backup BackupInfo `json:"backup"`
	// NodeID and Advertise name the one voter of the restored cluster.
	NodeID    string `json:"node_id"`
	Advertise string `json:"advertise"`
	// AppliedIndex and AppliedTerm are read from the restored state.db.
	AppliedIndex uint64 `json:"applied_index"`
	AppliedTerm  uint64 `json:"applied_term"`
	Users        int    `json:"users"`
	AuditEntries uint64 `json:"audit_entries"`
	// AuditProblem, when not empty, says why the restored audit chain does
	// not verify (it did not in the backed-up cluster either: the archive's
	// checksums matched).
	AuditProblem string `json:"audit_problem,omitempty"`
	// DroppedCAKey, when not empty, is the pin of the backed-up cluster's
	// CA, whose key (sealed under the cluster data key) the backup held
	// and the restored state no longer does: the restored cluster makes
	// and shares a CA of its own.
	DroppedCAKey string `json:"dropped_ca_key,omitempty"`
}

// RestoreBackup restores the archive r into dataDir, which must be empty
// or not exist, for a one-node cluster whose only voter is nodeID at
// advertise: it writes state.db (closed cleanly) and the same bytes as a
// Raft snapshot, so Open finds existing state, does not bootstrap, and the
// node elects itself. Nothing else is written: the keystore, TLS material
// and CA are created by the first start. The state is the backed-up one
// but for the members' recorded keys (fsm.Store.DropMemberKeys: each
// member records its key again when it starts) and the shared CA key
// record, which it drops (fsm.Store.DropCAKey):
// the restored cluster's CA is the one its first start makes, and that
// CA's key is shared with the members that join, as in a new cluster. On
// any error, including a damaged archive, dataDir is left as it was found.
func RestoreBackup(dataDir, nodeID, advertise string, r io.Reader) (RestoreInfo, error) {
	ri := RestoreInfo{NodeID: nodeID, Advertise: advertise}
	if nodeID == "" || advertise == "" || dataDir == "" {
		return ri, errors.New("node: restore: node ID, advertise address and data directory are required")
	}
	created, err := claimEmptyDir(dataDir)
	if err != nil {
		return ri, err
	}
	ok := false
	defer func() {
		if !ok {
			emptyDir(dataDir, created)
		}
	}()

	tmp, err := os.CreateTemp(dataDir, ".restore-*.state")
	if err != nil {
		return ri, err
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	if ri.Backup, err = ReadBackup(r, tmp); err != nil {
		return ri, err
	}

	// state.db first: Restore checks the bytes are a sound state.db
	// before anything else is written.
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return ri, err
	}
	store, err := fsm.Open(filepath.Join(dataDir, "state.db"))
	if err != nil {
		return ri, err
	}
	if err := store.Restore(tmp); err != nil {
		store.Close()
		return ri, fmt.Errorf("node: restore: %w", err)
	}
	ri.AppliedIndex, ri.AppliedTerm, err = store.Applied()
	if err == nil {
		err = store.View(func(rd fsm.Reader) error {
			rep, aerr := rd.VerifyAuditTrail(auditsig.Check)
			ri.AuditEntries = rep.Entries
			if aerr != nil {
				ri.AuditProblem = aerr.Error()
			}
			return rd.Users(func(*fsm.User) bool { ri.Users++; return true })
		})
	}
	if err == nil && ri.AppliedIndex == ri.Backup.Manifest.AppliedIndex {
		// The backed-up cluster's CA is not the restored one's: its first
		// start makes a new CA, whose key it shares as a new cluster does,
		// which ca.key would refuse while the old CA's record is there.
		var old *fsm.CAKey
		if old, err = store.DropCAKey(); old != nil {
			ri.DroppedCAKey = old.Pin
		}
		// Nor are the members' recorded keys: the restored node has a new
		// key, and a member that joins would refuse its certificate while
		// its state, from the snapshot, held the old one.
		if err == nil {
			_, err = store.DropMemberKeys()
		}
	}
	if cerr := store.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return ri, fmt.Errorf("node: restore: %w", err)
	}
	if ri.AppliedIndex != ri.Backup.Manifest.AppliedIndex {
		return ri, fmt.Errorf("%w: the state is at index %d, the manifest says %d",
			ErrBackupDamaged, ri.AppliedIndex, ri.Backup.Manifest.AppliedIndex)
	}
	if ri.AppliedIndex == 0 {
		return ri, fmt.Errorf("node: restore: the backup holds an empty state (applied index 0)")
	}

	// The snapshot is the state as restored, read back from the closed
	// state.db, so that node and snapshot start from the same bytes.
	state, err := os.Open(filepath.Join(dataDir, "state.db"))
	if err != nil {
		return ri, err
	}
	defer state.Close()
	if err := RestoreSnapshot(dataDir, nodeID, advertise, state, ri.AppliedIndex, ri.AppliedTerm); err != nil {
		return ri, err
	}
	if err := atomicfile.SyncDir(dataDir); err != nil {
		return ri, err
	}
	ok = true
	return ri, nil
}

// RestoreSnapshot writes state (state.db bytes at index and term) as the
// Raft snapshot of a new one-node cluster under <dataDir>/raft: the
// snapshot's configuration has nodeID at advertise as its only voter, and
// the stable store's current term is set to term, so the node's first
// election starts a later term than any entry it holds. It refuses a raft
// directory that already has state.
func RestoreSnapshot(dataDir, nodeID, advertise string, state io.Reader, index, term uint64) error {
	if index == 0 {
		return errors.New("node: restore snapshot: index 0")
	}
	raftDir := filepath.Join(dataDir, "raft")
	if err := os.MkdirAll(raftDir, 0o700); err != nil {
		return err
	}
	logs, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(raftDir, "raft.db")})
	if err != nil {
		return fmt.Errorf("node: open raft log: %w", err)
	}
	defer logs.Close()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(raftDir, 2, hclog.NewNullLogger())
	if err != nil {
		return fmt.Errorf("node: open snapshots: %w", err)
	}
	has, err := raft.HasExistingState(logs, logs, snaps)
	if err != nil {
		return fmt.Errorf("node: read raft state: %w", err)
	}
	if has {
		return fmt.Errorf("node: restore snapshot: %s already holds Raft state", raftDir)
	}
	conf := raft.Configuration{Servers: []raft.Server{{
		Suffrage: raft.Voter, ID: raft.ServerID(nodeID), Address: raft.ServerAddress(advertise),
	}}}
	// The transport only encodes the peer list of old snapshot formats.
	_, trans := raft.NewInmemTransport(raft.ServerAddress(advertise))
	defer trans.Close()
	sink, err := snaps.Create(raft.SnapshotVersionMax, index, term, conf, index, trans)
	if err != nil {
		return fmt.Errorf("node: create snapshot: %w", err)
	}
	if _, err := io.Copy(sink, state); err != nil {
		sink.Cancel()
		return fmt.Errorf("node: write snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("node: write snapshot: %w", err)
	}
	if err := logs.SetUint64([]byte("CurrentTerm"), term); err != nil {
		return fmt.Errorf("node: set current term: %w", err)
	}
	return nil
}

// claimEmptyDir makes sure dir is an empty directory, creating it (and
// reporting so) when missing. lost+found, which a file system's root has,
// does not count.
func claimEmptyDir(dir string) (created bool, err error) {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return false, err
		}
		return true, nil
	case err != nil:
		return false, err
	case !fi.IsDir():
		return false, fmt.Errorf("%s is not a directory", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if e.Name() != "lost+found" {
			return false, fmt.Errorf("%w: %s holds %s; restore only into an empty or new directory",
				ErrDataDirNotEmpty, dir, e.Name())
		}
	}
	return false, nil
}

// emptyDir undoes a failed restore: it removes what the restore put in dir
// (everything, since dir was empty) and dir itself if the restore made it.
func emptyDir(dir string, created bool) {
	if created {
		os.RemoveAll(dir)
		return
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != "lost+found" {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}
