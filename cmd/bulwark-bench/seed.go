package main

// Seeding for `make bench-scale`: a backup taken from a real node is
// grown to many users and live sessions by applying the replicated
// commands authcore proposes for them (user.create v1 with its audit
// entry, then session.create v3 with its login.success entry, as a
// password login at level 5 proposes it) to the backup's state through
// fsm.Store.ApplyBatch, the path every committed Raft entry takes, at the
// log indexes that follow the backup's. The grown state is written as a
// backup archive again (bwnode.BackupStore), which the node restores with
// its own `bulwark backup restore`. Nothing writes bbolt but fsm.
//
// One argon2id hash (the node's parameters, a random salt) is computed and
// shared by every seeded user: a hash per user would cost hours of CPU and
// change no figure measured here (the seeded users never log in; the
// benchmark's own users, from the base backup, have hashes of their own).

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/bulwark-auth/bulwark/authcore"
	"github.com/bulwark-auth/bulwark/fsm"
	bwnode "github.com/bulwark-auth/bulwark/node"
)

// seedSpec is what to add to a base backup.
type seedSpec struct {
	users           int // users to add
	sessionsPerUser int // live sessions each
	hash            hashParams
	// sessionLifetime and idleTimeout are the daemon's defaults
	// (refresh_token_expiry, sessions.idle_timeout), maxPerUser its
	// sessions.max_per_user, so no seeded session evicts another.
	sessionLifetime, idleTimeout time.Duration
	maxPerUser                   int
	batch                        int // entries per ApplyBatch (one bbolt transaction)
	now                          func() time.Time
}

func defaultSeedSpec(users, sessions int, hp hashParams) seedSpec {
	per := 1
	if users > 0 {
		per = max(1, sessions/users)
	}
	return seedSpec{users: users, sessionsPerUser: per, hash: hp,
		sessionLifetime: 7 * 24 * time.Hour, idleTimeout: 24 * time.Hour, maxPerUser: max(10, per),
		batch: 8000, now: time.Now}
}

// seedResult is what seeding did.
type seedResult struct {
	Users        int     `json:"users"`
	Sessions     int     `json:"sessions"`
	Entries      uint64  `json:"entries"`
	Sweeps       uint64  `json:"sweeps"` // state.sweep entries applied to the base first (sweepOnce)
	Seconds      float64 `json:"seconds"`
	StateBytes   int64   `json:"state_bytes"`
	ArchiveBytes int64   `json:"archive_bytes"`
	AppliedIndex uint64  `json:"applied_index"`
}

// seedArchive reads the backup at basePath, applies spec's users and
// sessions to its state in a temporary directory beside outPath, and
// writes the grown state as a backup to outPath.
func seedArchive(ctx context.Context, basePath, outPath string, spec seedSpec) (seedResult, error) {
	var res seedResult
	start := time.Now()
	work, err := os.MkdirTemp(filepath.Dir(outPath), ".seed-*")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(work)

	// The base state, checked by its archive's checksums, then restored
	// into a store of our own by fsm's Restore (which checks it again).
	base, err := os.Open(basePath)
	if err != nil {
		return res, err
	}
	defer base.Close()
	raw, err := os.Create(filepath.Join(work, "base.state"))
	if err != nil {
		return res, err
	}
	defer raw.Close()
	info, err := bwnode.ReadBackup(base, raw)
	if err != nil {
		return res, fmt.Errorf("base backup %s: %w", basePath, err)
	}
	if _, err := raw.Seek(0, io.SeekStart); err != nil {
		return res, err
	}
	store, err := fsm.Open(filepath.Join(work, "state.db"))
	if err != nil {
		return res, err
	}
	defer store.Close()
	if err := store.Restore(raw); err != nil {
		return res, err
	}
	raw.Close()
	os.Remove(raw.Name())
	index, term, err := store.Applied()
	if err != nil {
		return res, err
	}
	swept, err := sweepOnce(store, index, term, spec.now())
	if err != nil {
		return res, err
	}
	res.Sweeps, index = swept-index, swept

	entries := make(chan []fsm.Entry, 2)
	genErr := make(chan error, 1)
	genCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(entries)
		genErr <- generate(genCtx, spec, index, term, entries)
	}()
	for batch := range entries {
		for i, r := range store.ApplyBatch(batch) {
			if r.Err != nil {
				cancel()
				for range entries { // let the generator finish
				}
				return res, fmt.Errorf("seed entry %d: %w", batch[i].Index, r.Err)
			}
		}
		res.Entries += uint64(len(batch))
	}
	if err := <-genErr; err != nil {
		return res, err
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	res.Users, res.Sessions = spec.users, spec.users*spec.sessionsPerUser

	tmp, err := os.CreateTemp(filepath.Dir(outPath), "."+filepath.Base(outPath)+".tmp-*")
	if err != nil {
		return res, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	m := info.Manifest
	m.CreatedAt = spec.now().UTC()
	m.AppliedTerm = term
	bi, err := bwnode.BackupStore(ctx, tmp, store, m)
	if err == nil {
		err = tmp.Close()
	}
	if err == nil {
		err = os.Rename(tmp.Name(), outPath)
	}
	if err != nil {
		return res, fmt.Errorf("writing %s: %w", outPath, err)
	}
	res.StateBytes, res.ArchiveBytes, res.AppliedIndex = bi.StateBytes, bi.ArchiveBytes, bi.Manifest.AppliedIndex
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// sweepOnce applies state.sweep v2 (as authcore.Sweep proposes it) to
// store after index until it has nothing more to do, and returns the last
// index used. The base node is younger than its sweeper's first round (a
// minute), which also ends the one-off walk of records written before
// feature level 3 (fsm's migrate); a node that has run a minute is past
// it. Unswept, the restored node at size made that walk over the million
// seeded sessions during the measurements, mapping the file into its
// memory as it went (RSS peaked at 790 MiB, file-backed).
func sweepOnce(store *fsm.Store, index, term uint64, at time.Time) (uint64, error) {
	for range 100 {
		cmd, err := fsm.NewCommand(fsm.TypeSweep, 2, at.UnixNano(), fsm.SweepV2{Limit: 32, Migrate: 64})
		if err != nil {
			return index, err
		}
		data, err := cmd.Encode()
		if err != nil {
			return index, err
		}
		index++
		r := store.ApplyBatch([]fsm.Entry{{Index: index, Term: term, Command: true, Data: data}})[0]
		if r.Err != nil {
			return index, fmt.Errorf("sweeping the base state: %w", r.Err)
		}
		if res, ok := r.Value.(fsm.SweepResult); !ok || !res.More {
			return index, nil
		}
	}
	return index, fmt.Errorf("sweeping the base state: still more after 100 sweeps")
}

// generate sends spec's commands as log entries after index, in batches:
// every user first, then each user's sessions.
func generate(ctx context.Context, spec seedSpec, index, term uint64, out chan<- []fsm.Entry) error {
	salt, err := authcore.NewSalt()
	if err != nil {
		return err
	}
	hp := authcore.HashParams{MemoryKiB: spec.hash.memoryKiB, Iterations: spec.hash.iterations, Parallelism: spec.hash.parallelism}
	phc, err := authcore.HashPassword("scale-"+randomHex(16), hp, salt)
	if err != nil {
		return err
	}
	ids := make([]string, spec.users)
	batch := make([]fsm.Entry, 0, spec.batch)
	emit := func(cmd fsm.Command) error {
		data, err := cmd.Encode()
		if err != nil {
			return err
		}
		index++
		batch = append(batch, fsm.Entry{Index: index, Term: term, Command: true, Data: data})
		if len(batch) == cap(batch) {
			select {
			case out <- batch:
			case <-ctx.Done():
				return ctx.Err()
			}
			batch = make([]fsm.Entry, 0, spec.batch)
		}
		return nil
	}
	for i := range ids {
		ids[i] = hex16()
		name := fmt.Sprintf("scale%07d", i)
		cmd, err := fsm.NewCommand(fsm.TypeUserCreate, 1, spec.now().UnixNano(), fsm.UserCreate{
			ID: ids[i], Username: name, Roles: []string{}, PasswordHash: phc})
		if err != nil {
			return err
		}
		cmd = cmd.WithAudit(fsm.AuditAppend{Type: "user.create", Severity: fsm.AuditInfo, Actor: "admin-socket",
			Subject: ids[i], Details: map[string]string{"username": name, "roles": ""}})
		if err := emit(cmd); err != nil {
			return err
		}
	}
	var gen uint64 // a new user's password generation
	for s := range spec.sessionsPerUser {
		for i, uid := range ids {
			at := spec.now()
			sid, err := authcore.NewSessionID(at) // the product's ids, in creation order
			if err != nil {
				return err
			}
			refresh := token("bwr_")
			p := fsm.SessionCreate{ID: sid, UserID: uid, RefreshHash: sha256Hex(refresh),
				Lifetime: int64(spec.sessionLifetime), IdleTimeout: int64(spec.idleTimeout),
				MaxPerUser: spec.maxPerUser, OnLimit: "evict_oldest",
				IP: fmt.Sprintf("10.%d.%d.%d", s, (i>>8)&0xff, i&0xff), UserAgent: "bulwark-bench-seed",
				AMR: []string{"pwd"}, ResetLockout: fmt.Sprintf("scale%07d", i)}
			cmd, err := fsm.NewCommand(fsm.TypeSessionCreate, 3, at.UnixNano(), fsm.SessionCreateV3{
				SessionCreateV2: fsm.SessionCreateV2{SessionCreate: p, PasswordGen: &gen}})
			if err != nil {
				return err
			}
			cmd = cmd.WithAudit(fsm.AuditAppend{Type: "login.success", Severity: fsm.AuditInfo,
				Actor: uid, Subject: uid, IP: p.IP, UserAgent: p.UserAgent,
				Details: map[string]string{"username": p.ResetLockout, "session_id": sid, "amr": "pwd"}})
			if err := emit(cmd); err != nil {
				return err
			}
		}
	}
	if len(batch) > 0 {
		select {
		case out <- batch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if spec.users == 0 {
		return errors.New("seed: no users")
	}
	return nil
}

// token is a random 32-byte token as authcore mints session ids and
// refresh tokens.
func token(prefix string) string {
	b := make([]byte, 32)
	rand.Read(b)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

func hex16() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
