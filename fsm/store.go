// Package fsm is bulwark's replicated state machine: the versioned command
// envelope, the deterministic Apply of committed entries into state.db
// (bbolt), snapshots, restore, and typed read views.
//
// It knows nothing of Raft, HTTP or the wall clock: node feeds it committed
// entries (one bbolt transaction per batch), authcore builds its commands and
// reads its views. It imports bbolt only. See DESIGN.md in this directory.
package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bulwark-auth/bulwark/internal/boltpages"
	bolt "go.etcd.io/bbolt"
)

// Buckets. Every bucket the state will ever need exists from the first open
// so that later versions add keys, not layout.
var (
	bucketMeta      = []byte("meta")
	bucketUsers     = []byte("users")        // id → User (JSON)
	bucketUsernames = []byte("usernames")    // normalised name → id
	bucketSessions  = []byte("sessions")     // session id (the sid, not a credential) → Session
	bucketRefresh   = []byte("refresh")      // hex sha256(refresh token) → refreshRecord
	bucketLockout   = []byte("lockout")      // normalised name → Lockout
	bucketAudit     = []byte("audit")        // seq (8 bytes, big endian) → AuditEntry
	bucketKeys      = []byte("signing_keys") // kid → PublicKey
	bucketBlocks    = []byte("ip_blocks")    // canonical CIDR → Block (blocks.go, level 4)
	bucketClients   = []byte("oidc_clients") // client id → OIDCClient (level 4, oidc.go)

	bucketUserSessions   = []byte("user_sessions")   // user id 0x00 session id → nil
	bucketSessionRefresh = []byte("session_refresh") // session id 0x00 refresh hash → nil

	// Level 3 (expiry.go, lockout.go). Added after the first release:
	// initDB creates them in a state.db that lacks them, at every Open and
	// Restore, and a binary that predates them ignores them, so the
	// format stays 1 and snapshots still cross a rolling upgrade both ways.
	bucketExpiry    = []byte("expiry")            // instant(8) kind(1) key → nil
	bucketAddresses = []byte("lockout_addresses") // client address or /64 → addressRecord

	// Level 4 (mfa.go, webhooks, blocks.go), added the same way.
	bucketMFA       = []byte("mfa")                  // user id → MFA
	bucketMFAUsed   = []byte("mfa_tickets")          // hex sha256(ticket) → nil, until swept
	bucketWebAuthn  = []byte("webauthn_credentials") // credential id → user id
	bucketWebhooks  = []byte("webhook_cursors")      // hex sha256(url) → last seq delivered (8 bytes)
	bucketDetect    = []byte("incident_addresses")   // client address or /64 → detectRecord
	bucketForbidden = []byte("incident_accounts")    // user id → forbiddenRecord (admin-route 403s)

	// Level 4 (checkpoint.go), added the same way.
	bucketAuditKeys   = []byte("audit_keys")        // kid → AuditPublicKey
	bucketCheckpoints = []byte("audit_checkpoints") // seq (8 bytes, big endian) → AuditCheckpointRecord

	// Level 4 (oidc.go), added the same way.
	bucketAuthRequests  = []byte("oidc_auth_requests") // request id → OIDCAuthRequest
	bucketCodes         = []byte("oidc_codes")         // hex sha256(code) → OIDCCode
	bucketRevokedTokens = []byte("oidc_revoked")       // jti of a revoked session-less access token → nil

	// Level 5 (oidc_grants.go, bucketGrants), added the same way.

	allBuckets = [][]byte{bucketMeta, bucketUsers, bucketUsernames, bucketSessions,
		bucketRefresh, bucketLockout, bucketAudit, bucketKeys, bucketBlocks, bucketClients,
		bucketUserSessions, bucketSessionRefresh, bucketExpiry, bucketAddresses,
		bucketMFA, bucketMFAUsed, bucketWebAuthn, bucketWebhooks,
		bucketAuditKeys, bucketCheckpoints, bucketAuthRequests, bucketCodes, bucketRevokedTokens, bucketDetect, bucketForbidden,
		bucketAuditCaps, bucketGrants}

	keyApplied = []byte("applied") // index(8) || term(8), big endian
	keyFormat  = []byte("format")
)

// formatVersion is the on-disk layout of state.db. Bump it, and add a
// migration in Open, when buckets or record encodings change.
const formatVersion = 1

// Entry is one committed log entry as the state machine sees it.
type Entry struct {
	Index uint64
	Term  uint64
	// Command is false for Raft's own entries (configuration changes): they
	// advance the applied index and change nothing else.
	Command bool
	Data    []byte
}

// Result is what Apply returns for one entry: a value for the proposer, or a
// deterministic domain error.
type Result struct {
	Value any
	Err   error
}

// Store is state.db: bbolt with the applied index kept in the same
// transaction as the data it describes.
type Store struct {
	path string

	mu sync.RWMutex // guards db against Restore swapping it
	db *bolt.DB

	reads *readCache // records decoded for View
	// keysGen counts the batches that changed signing keys or the
	// tokens issuer, and restores (Reader.KeysGeneration).
	keysGen atomic.Uint64
	// counts are record counts for the metrics (counts.go).
	counts storeCounts
	// blocksGen counts the batches that added or removed a block, and
	// restores (Reader.BlocksGeneration).
	blocksGen atomic.Uint64
	// revokedBefore mirrors meta's sessions_revoked_before (0: none),
	// set from the write transaction of every batch and on open and
	// restore, so that a session check reads it without a bbolt look-up
	// (Reader.revokedBefore).
	revokedBefore atomic.Int64
	// erasedGen counts the batches that applied a user.erase, and
	// restores (ErasedGeneration, erase.go).
	erasedGen atomic.Uint64
	// noSpace, if set, is told when a commit failed for want of disk
	// space (SetNoSpace).
	noSpace atomic.Pointer[func(error)]
	// damaged, once CheckPages has found a damaged page, says what it
	// found; Close then marks the file damaged instead of clean.
	damaged atomic.Pointer[string]
}

// SetNoSpace sets fn to be called, before ApplyBatch tries again, each time
// a commit fails because the disk is full; the caller may free space then
// (node releases its reserve file) and log it. Once such a commit went
// through, fn is called with nil: the batch no longer waits.
func (s *Store) SetNoSpace(fn func(error)) { s.noSpace.Store(&fn) }

// Open opens or creates state.db at path and checks it.
//
// state.db is written without fsync: the Raft log, fsynced per batch, is
// the durable record, and state.db can always be rebuilt from the newest
// snapshot and the log after it. Close syncs it and leaves a marker file,
// <path>.clean, holding the session count; Open consumes the marker before
// anything is written. An existing state.db without the marker was not
// closed cleanly (a crash or power loss) and yields ErrUnclean; a file
// bbolt cannot open, whose meta pages are bad, that is shorter than they
// say, or that a page check (CheckPages) found damaged before its last
// close, yields ErrCorrupt. Either way the caller moves it aside and
// rebuilds.
//
// Open does not read the file's pages: that is CheckPages' work, which the
// node runs in the background once it serves, so that start-up does not
// grow with the state. Only a marker without a count (written by an older
// binary, or by a tool that marks a copy clean to have it checked) makes
// Open read every page before it returns, as CheckPages does, to count
// the sessions.
func Open(path string) (*Store, error) {
	if err := consumeDamagedMarker(path); err != nil {
		return nil, err
	}
	marker, clean, err := consumeCleanMarker(path)
	if err != nil {
		return nil, err
	}
	if !clean {
		if st, err := os.Stat(path); err == nil && st.Size() > 0 {
			return nil, fmt.Errorf("%w: %s", ErrUnclean, path)
		}
	}
	sessions, counted := parseCleanMarker(marker)
	db, walked, err := openDB(path, !counted)
	if err != nil {
		return nil, err
	}
	if !counted {
		sessions = walked
	}
	s := &Store{path: path, db: db, reads: newReadCache()}
	s.counts.sessions.Store(sessions)
	if err := noPanic(s.loadRevokedBefore); err != nil {
		db.Close()
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	return s, nil
}

func cleanMarker(path string) string   { return path + ".clean" }
func damagedMarker(path string) string { return path + ".damaged" }

// consumeCleanMarker reports whether the marker of a clean close is there,
// with its contents, and removes it durably, so that a crash from now on
// is noticed.
func consumeCleanMarker(path string) ([]byte, bool, error) {
	marker, err := os.ReadFile(cleanMarker(path))
	if os.IsNotExist(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if err := os.Remove(cleanMarker(path)); err != nil {
		return nil, false, err
	}
	return marker, true, syncDir(filepath.Dir(path))
}

// consumeDamagedMarker returns ErrCorrupt if CheckPages found the file at
// path damaged while it was open (Close then leaves this marker instead of
// the clean one), and removes the marker: the caller moves the file aside,
// and the next file at path starts afresh.
func consumeDamagedMarker(path string) error {
	why, err := os.ReadFile(damagedMarker(path))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := os.Remove(damagedMarker(path)); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return err
	}
	return fmt.Errorf("%w: %s: %s", ErrCorrupt, path, bytes.TrimSpace(why))
}

// The clean marker's contents: "sessions N\n". Anything else (an empty
// marker) leaves the count to a walk of the file.
const markerSessions = "sessions "

func parseCleanMarker(b []byte) (sessions int64, ok bool) {
	v, ok := bytes.CutPrefix(bytes.TrimSpace(b), []byte(markerSessions))
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// openDB opens the file at path and checks its meta pages; with walk it
// also reads every page (checkDB) and returns the number of sessions the
// file holds, counted on the way.
func openDB(path string, walk bool) (*bolt.DB, int64, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, 0, err
	}
	if err := checkHighWater(path); err != nil {
		return nil, 0, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	db, err := openBolt(path)
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, 0, fmt.Errorf("fsm: %s is locked by another process: %w", path, err)
		}
		return nil, 0, fmt.Errorf("%w: open %s: %v", ErrCorrupt, path, err)
	}
	var sessions int64
	if walk {
		if sessions, err = checkDB(db); err != nil {
			db.Close()
			return nil, 0, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
		}
	}
	if err := noPanic(func() error { return initDB(db) }); err != nil {
		db.Close()
		var damaged *damagedPage
		if errors.As(err, &damaged) {
			return nil, 0, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
		}
		return nil, 0, err
	}
	return db, sessions, nil
}

// damagedPage is a panic of bbolt's on a page it cannot read, as an error.
type damagedPage struct{ v any }

func (d *damagedPage) Error() string { return fmt.Sprint(d.v) }

// noPanic runs fn, turning a panic (bbolt's on a damaged page) into a
// *damagedPage error: without a walk of the file at open, the first pages
// Open reads itself (the root's, meta's) are where such damage shows.
func noPanic(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &damagedPage{r}
		}
	}()
	return fn()
}

// openBolt opens the file, turning bbolt's panics on a damaged freelist
// into errors. The freelist is synced (bbolt's default): with
// NoFreelistSync, Open rebuilds it by walking every page in goroutines of
// its own, where a damaged page cannot be recovered from (and start-up
// would again grow with the file).
func openBolt(path string) (db *bolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	return bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      2 * time.Second,
		NoSync:       true, // the Raft log is the durable record; see Open
		FreelistType: bolt.FreelistMapType,
		// Room to grow without remapping under a long snapshot read.
		InitialMmapSize: 64 << 20,
	})
}

// checkDB reads every key and value of every bucket through cursors on
// this goroutine, so that a page bbolt finds inconsistent (it panics) is
// recovered and reported instead of killing the process, as a fault inside
// bbolt's own checker goroutine would. It is the check of a file from
// elsewhere (Restore) and of one Open cannot count the sessions of
// without it; CheckPages is the same walk on an open store, a piece at a
// time. On the way it counts the sessions (Store.counts).
//
// The read faults every page of the file into this process's memory map,
// which at a million sessions is gigabytes of resident memory the node
// never asked for again: every walkRelease values, and at the end, the
// walked pages are released from the map (boltpages.Drop; they stay in the
// page cache, and a later read maps a page again).
func checkDB(db *bolt.DB) (sessions int64, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("consistency check: %v", r)
		}
	}()
	err = db.View(func(tx *bolt.Tx) error {
		// The map does not move while a read transaction is open.
		addr, size := db.Info().Data, tx.Size()
		release := func() { boltpages.Drop(addr, size) }
		defer release()
		var seen int
		tick := func() {
			if seen++; seen%walkRelease == 0 {
				release()
			}
		}
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			n, err := walkBucket(b, tick)
			if bytes.Equal(name, bucketSessions) {
				sessions = n
			}
			return err
		})
	})
	return sessions, err
}

// walkRelease: values read between releases of the mapped pages (about
// 8 to 30 MiB of them at the sizes records have).
const walkRelease = 1 << 14

// walkBucket reads b's keys and values and returns how many values it
// holds (nested buckets' not counted), calling tick after each value.
func walkBucket(b *bolt.Bucket, tick func()) (int64, error) {
	var sum byte
	var n int64
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v == nil {
			if nb := b.Bucket(k); nb != nil {
				if _, err := walkBucket(nb, tick); err != nil {
					return n, err
				}
			}
			continue
		}
		n++
		for _, x := range v { // touch overflow pages too
			sum ^= x
		}
		tick()
	}
	_ = sum
	return n, nil
}

func initDB(db *bolt.DB) error {
	return db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keyFormat); v != nil {
			if got := binary.BigEndian.Uint64(v); got > formatVersion {
				return fmt.Errorf("fsm: state.db format %d is newer than this binary's %d", got, formatVersion)
			}
			return nil
		}
		return meta.Put(keyFormat, binary.BigEndian.AppendUint64(nil, formatVersion))
	})
}

// Close syncs and closes state.db and marks it clean, with the number of
// sessions it holds; or, if CheckPages found it damaged, marks it so
// (the next Open yields ErrCorrupt).
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil
	}
	err := s.db.Sync()
	if cerr := s.db.Close(); err == nil {
		err = cerr
	}
	s.db = nil
	if err != nil {
		return err
	}
	if why := s.damaged.Load(); why != nil {
		return writeMarker(damagedMarker(s.path), []byte(*why+"\n"))
	}
	return writeMarker(cleanMarker(s.path), fmt.Appendf(nil, "%s%d\n", markerSessions, s.counts.sessions.Load()))
}

// markClean marks the file at path clean without a session count, so that
// Open reads (and checks) every page of it.
func markClean(path string) error { return writeMarker(cleanMarker(path), nil) }

// writeMarker writes a marker file durably.
func writeMarker(name string, content []byte) error {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(content)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return syncDir(filepath.Dir(name))
}

// Path is the file the store lives in.
func (s *Store) Path() string { return s.path }

// Applied returns the index and term of the last entry applied.
func (s *Store) Applied() (index, term uint64, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		index, term = readApplied(tx)
		return nil
	})
	return index, term, err
}

func readApplied(tx *bolt.Tx) (index, term uint64) {
	v := tx.Bucket(bucketMeta).Get(keyApplied)
	if len(v) != 16 {
		return 0, 0
	}
	return binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])
}

func (s *Store) view(fn func(*bolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return ErrClosed
	}
	return s.db.View(fn)
}

// appendBuckets are the buckets whose new keys sort after the old ones:
// audit seqs, expiry instants, and session ids, which begin with their
// creation time (authcore.NewSessionID). bbolt splits a page that
// overflows at FillPercent of a page (half, by default), so appending
// leaves every page behind the newest half empty; appendFill fills them.
// It changes where keys sit on pages, never what is stored, so nodes that
// differ in it hold the same state.
var appendBuckets = [][]byte{bucketAudit, bucketExpiry, bucketSessions}

const appendFill = 0.9

// fillAppended sets appendFill on tx's handles of appendBuckets (bbolt
// keeps the setting on the handle, for this transaction).
func fillAppended(tx *bolt.Tx) {
	for _, name := range appendBuckets {
		if b := tx.Bucket(name); b != nil {
			b.FillPercent = appendFill
		}
	}
}

// ApplyBatch applies committed entries in one bbolt transaction and returns
// one Result per entry. Entries at or below the stored applied index are
// skipped (a restart replays the log from the last snapshot), so applying
// the same entry twice changes nothing.
//
// A failure to commit the transaction means the disk refused a write the
// cluster already agreed on; the state can no longer be trusted to match
// the log, so ApplyBatch panics and the node restarts from what is durable.
// A full disk is the exception: the commit is tried again until it fits
// (SetNoSpace), since a restart would find the disk as full.
func (s *Store) ApplyBatch(entries []Entry) []Result {
	results := make([]Result, len(entries))
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		panic("fsm: ApplyBatch on a closed store")
	}
	var keysChanged, blocksChanged, erased bool
	var counts batchCounts
	var rb int64
	apply := func(tx *bolt.Tx) error {
		keysChanged, blocksChanged, erased, counts = false, false, false, batchCounts{}
		fillAppended(tx)
		defer func() { rb = storedRevokedBefore(tx) }()
		applied, _ := readApplied(tx)
		var last *Entry
		for i := range entries {
			e := &entries[i]
			if e.Index <= applied {
				continue
			}
			last = e
			if e.Command {
				var t Type
				results[i], t = applyOne(txn{tx: tx, counts: &counts}, e.Data)
				keysChanged = keysChanged || (results[i].Err == nil && changesKeys[t])
				blocksChanged = blocksChanged || changesBlocks(t, results[i])
				erased = erased || (t == TypeUserErase && results[i].Err == nil)
			}
		}
		if last == nil {
			return nil
		}
		return tx.Bucket(bucketMeta).Put(keyApplied,
			binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, last.Index), last.Term))
	}
	err := s.db.Update(apply)
	// A full disk refuses the commit but leaves the file as it was (bbolt
	// rolls the transaction back, freelist included): the entries are
	// committed in the log and must be applied, in order, so wait for
	// space and apply them again, from scratch, rather than crash. Raft's
	// applies wait meanwhile; reads go on.
	waited := false
	for wait := 10 * time.Millisecond; err != nil && noSpace(err); wait = min(2*wait, time.Second) {
		if fn := s.noSpace.Load(); fn != nil {
			(*fn)(err)
		}
		waited = true
		time.Sleep(wait)
		err = s.db.Update(apply)
	}
	if fn := s.noSpace.Load(); waited && err == nil && fn != nil {
		(*fn)(nil)
	}
	if err != nil {
		panic(fmt.Sprintf("fsm: commit of a batch of %d entries failed: %v", len(entries), err))
	}
	if keysChanged {
		s.keysGen.Add(1)
	}
	s.counts.sessions.Add(counts.sessions)
	if blocksChanged {
		s.blocksGen.Add(1)
	}
	if erased {
		s.erasedGen.Add(1)
	}
	s.revokedBefore.Store(rb) // before any of these entries is answered
	return results
}

// loadRevokedBefore sets Store.revokedBefore from state.db (open, restore).
func (s *Store) loadRevokedBefore() error {
	return s.db.View(func(tx *bolt.Tx) error {
		s.revokedBefore.Store(storedRevokedBefore(tx))
		return nil
	})
}

// noSpace reports whether err says the disk (or the quota) is full.
func noSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// applyOne decodes and applies one command, and says which type it was.
// Handlers check every precondition before their first write, so a domain
// error leaves the transaction as it was.
func applyOne(t txn, data []byte) (Result, Type) {
	cmd, err := DecodeCommand(data)
	if err != nil {
		return Result{Err: err}, ""
	}
	row, _ := lookup(cmd.Type, cmd.Version) // DecodeCommand refused a command without one
	if levelOf(t.tx.Bucket(bucketMeta).Get(keyLevel)) >= levelMonotonicTime {
		if err := t.advanceTime(&cmd); err != nil { // clock.go
			return Result{Err: err}, cmd.Type
		}
	}
	v, err := row.Apply(t, cmd)
	if err == nil {
		for _, a := range cmd.Audit {
			if _, err := appendAudit(t, cmd.Time, a); err != nil {
				return Result{Err: err}, cmd.Type
			}
		}
	}
	return Result{Value: v, Err: err}, cmd.Type
}

// Snapshot is a point-in-time copy of state.db. Take it on the goroutine
// that applies entries; Persist it from any goroutine while applies go on.
type Snapshot struct {
	tx *bolt.Tx
}

// Snapshot opens a read transaction that pins the current state.
func (s *Store) Snapshot() (*Snapshot, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return nil, ErrClosed
	}
	tx, err := s.db.Begin(false)
	if err != nil {
		return nil, err
	}
	return &Snapshot{tx: tx}, nil
}

// Index is the applied index the snapshot contains.
func (sn *Snapshot) Index() uint64 {
	i, _ := readApplied(sn.tx)
	return i
}

// WriteTo writes the whole database file as of the snapshot.
func (sn *Snapshot) WriteTo(w io.Writer) (int64, error) { return sn.tx.WriteTo(w) }

// Release ends the snapshot's read transaction.
func (sn *Snapshot) Release() { _ = sn.tx.Rollback() }

// Restore replaces the state with a snapshot's bytes. The new file is
// written beside state.db, checked and compacted (compactCopy) before it
// replaces the old one, so a failed restore leaves the old state in place.
func (s *Store) Restore(r io.Reader) error {
	tmp := s.path + ".restore"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("fsm: write restored state: %w", err)
	}
	// Read every page of the candidate into a compacted copy before it
	// replaces anything.
	compacted := s.path + ".restore.compact"
	sessions, err := compactCopy(tmp, compacted)
	os.Remove(tmp)
	if err != nil {
		os.Remove(compacted)
		return fmt.Errorf("fsm: restored state: %w", err)
	}
	tmp = compacted

	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.swapIn(tmp, sessions); err != nil {
		return err
	}
	s.keysGen.Add(1)
	s.blocksGen.Add(1)
	s.erasedGen.Add(1)
	return s.loadRevokedBefore()
}

// swapIn replaces state.db with the checked file at tmp, which holds
// sessions sessions, and opens it, with s.mu held (Restore, Compact).
func (s *Store) swapIn(tmp string, sessions int64) error {
	if s.db != nil {
		if err := s.db.Close(); err != nil {
			return err
		}
		s.db = nil
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(s.path)); err != nil {
		return err
	}
	db, _, err := openDB(s.path, false)
	if err != nil {
		return err
	}
	s.db = db
	s.counts.sessions.Store(sessions)
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
