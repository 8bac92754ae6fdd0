package authcore

import (
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/clock"
)

// Signed checkpoints of the audit trail (fsm/checkpoint.go): the leader
// signs the newest entry's seq and hash with this node's two audit keys,
// every AuditCheckpointEntries entries or AuditCheckpointInterval,
// whichever comes first, and never while no entry was added since the last
// checkpoint.
//
// The audit keys are their own, not the token signing key: one ES256 key
// (made in the TPM with seal.signing = "tpm-resident", else in the sealed
// keystore) and one ML-DSA-65 key (in the sealed keystore), made once per
// node and never rotated with the token key. They are published through
// audit.key, apart from the JWKS, so they verify no token and a change of
// tokens.algorithm does not change them; a verifier finds them in the
// state. Their private halves never leave the vault.

// Keystore names of the audit keys.
const (
	AuditES256KeyName   = "audit/es256"
	AuditMLDSA65KeyName = "audit/ml-dsa-65"
)

// Defaults of the checkpoint schedule.
const (
	DefaultAuditCheckpointEntries  = 1000
	DefaultAuditCheckpointInterval = 5 * time.Minute
)

// ErrAuditKeysNotRecorded: the cluster is below feature level 4, whose
// commands record audit keys and checkpoints; nothing was written.
var ErrAuditKeysNotRecorded = errors.New("audit checkpoints need cluster feature level 4")

// auditSigner is this node's pair of audit keys.
type auditSigner struct {
	es256, mldsa       crypto.Signer
	es256Pub, mldsaPub []byte // the encodings fsm.AuditKey names
}

func (a *auditSigner) keys(node string) []fsm.AuditKey {
	return []fsm.AuditKey{
		{Kid: fsm.AuditKeyID(a.es256Pub), Node: node, Alg: fsm.AuditAlgES256, Public: a.es256Pub},
		{Kid: fsm.AuditKeyID(a.mldsaPub), Node: node, Alg: fsm.AuditAlgMLDSA65, Public: a.mldsaPub},
	}
}

// sign fills in cp's kids and both signatures.
func (a *auditSigner) sign(cp *fsm.AuditCheckpoint) error {
	cp.ES256Kid, cp.MLDSA65Kid = fsm.AuditKeyID(a.es256Pub), fsm.AuditKeyID(a.mldsaPub)
	msg := cp.Preimage()
	sum := sha256.Sum256(msg)
	var err error
	if cp.ES256Sig, err = a.es256.Sign(rand.Reader, sum[:], crypto.SHA256); err != nil {
		return fmt.Errorf("authcore: sign checkpoint (ES256): %w", err)
	}
	if cp.MLDSA65Sig, err = a.mldsa.Sign(rand.Reader, msg, crypto.Hash(0)); err != nil {
		return fmt.Errorf("authcore: sign checkpoint (ML-DSA-65): %w", err)
	}
	return nil
}

// loadAuditSigner returns the vault's audit keys, making each the first
// time: the ES256 key by the vault itself when it makes its keys (a TPM),
// the ML-DSA-65 key always in software, kept by the vault.
func loadAuditSigner(v KeyVault) (*auditSigner, error) {
	es, err := vaultKey(v, AuditES256KeyName, AlgES256)
	if err != nil {
		return nil, err
	}
	ml, err := vaultKey(v, AuditMLDSA65KeyName, AlgMLDSA65)
	if err != nil {
		return nil, err
	}
	ecPub, ok := es.Public().(*ecdsa.PublicKey)
	if !ok || ecPub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("authcore: %s is a %T, not a P-256 key", AuditES256KeyName, es.Public())
	}
	spki, err := x509.MarshalPKIXPublicKey(ecPub)
	if err != nil {
		return nil, err
	}
	mlPub, ok := ml.Public().(*mldsa65.PublicKey)
	if !ok {
		return nil, fmt.Errorf("authcore: %s is a %T, not an ML-DSA-65 key", AuditMLDSA65KeyName, ml.Public())
	}
	raw, err := mlPub.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return &auditSigner{es256: es, mldsa: ml, es256Pub: spki, mldsaPub: raw}, nil
}

// vaultKey loads the key name, or makes and stores it for alg.
func vaultKey(v KeyVault, name, alg string) (crypto.Signer, error) {
	if g, ok := v.(KeyGenerator); ok && alg == AlgES256 {
		k, err := g.LoadKey(name)
		if errors.Is(err, fs.ErrNotExist) {
			k, err = g.GenerateKey(name, alg)
		}
		if err != nil {
			return nil, fmt.Errorf("audit key %s: %w", name, err)
		}
		return k, nil
	}
	if k, ok := v.PrivateKey(name); ok {
		return k, nil
	}
	k, err := GenerateSigningKey(alg)
	if err != nil {
		return nil, err
	}
	if err := v.Put(name, k); err != nil {
		return nil, fmt.Errorf("store audit key %s: %w", name, err)
	}
	return k, nil
}

// signerLocked returns this node's audit keys, loading (or making) them
// the first time. The caller holds the checkpoint lock.
func (s *Service) signerLocked() (*auditSigner, error) {
	if s.auditKeys != nil {
		return s.auditKeys, nil
	}
	if s.vault == nil {
		return nil, errors.New("authcore: this service has no key vault, so no audit keys")
	}
	a, err := loadAuditSigner(s.vault)
	if err != nil {
		return nil, err
	}
	s.auditKeys = a
	return a, nil
}

// PublishAuditKeys records this node's audit keys in the replicated state,
// those not recorded yet, making them first if the vault holds none. Below
// feature level 4 it writes nothing and returns ErrAuditKeysNotRecorded.
func (s *Service) PublishAuditKeys(ctx context.Context) error {
	unlock, err := s.lockCheckpoints(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	return s.publishAuditKeysLocked(ctx)
}

// lockCheckpoints takes the checkpoint lock, or gives up when ctx ends.
func (s *Service) lockCheckpoints(ctx context.Context) (unlock func(), err error) {
	select {
	case s.checkpointLock <- struct{}{}:
		return func() { <-s.checkpointLock }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *Service) publishAuditKeysLocked(ctx context.Context) error {
	if !s.proposable(fsm.TypeAuditKey, 1) {
		return ErrAuditKeysNotRecorded
	}
	a, err := s.signerLocked()
	if err != nil {
		return err
	}
	for _, k := range a.keys(s.cfg.NodeID) {
		recorded := false
		if err := s.store.View(func(r fsm.Reader) error {
			got, err := r.AuditKey(k.Kid)
			recorded = err == nil && got.Node == k.Node
			if errors.Is(err, fsm.ErrKeyNotFound) {
				err = nil
			}
			return err
		}); err != nil {
			return err
		}
		if recorded {
			continue
		}
		cmd, err := fsm.NewCommand(fsm.TypeAuditKey, 1, s.now().UnixNano(), k)
		if err != nil {
			return err
		}
		if _, err := proposeAs[*fsm.AuditPublicKey](ctx, s, cmd.WithAudit(fsm.AuditAppend{Type: "audit.key",
			Severity: fsm.AuditInfo, Actor: "node:" + s.cfg.NodeID,
			Details: map[string]string{"kid": k.Kid, "alg": k.Alg}})); err != nil {
			return fmt.Errorf("publish audit key %s: %w", k.Alg, err)
		}
	}
	return nil
}

// CheckpointAudit signs the newest audit entry now, whatever the schedule
// says, and returns the checkpoint: the one already there when the newest
// entry is vouched for (it or its own record is the newest), nil when the
// trail is empty. It publishes this node's audit keys first if needed.
// A lockdown and a backup call it; elsewhere than on the leader the write
// is forwarded, which a checkpoint allows (its node is the proposer). It
// first waits for a read barrier, so it signs the newest entry the cluster
// committed and no checkpoint newer than the local state knows refuses
// it.
func (s *Service) CheckpointAudit(ctx context.Context) (*fsm.AuditCheckpointRecord, error) {
	unlock, err := s.lockCheckpoints(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := s.ReadBarrier(ctx); err != nil {
		return nil, err
	}
	return s.checkpoint(ctx, func(*fsm.AuditEntry, *fsm.AuditCheckpointRecord, time.Time) bool { return true })
}

// checkpoint writes a checkpoint of the newest entry when entries were
// added since the last checkpoint's record and due says so. The caller
// holds the checkpoint lock.
func (s *Service) checkpoint(ctx context.Context, due func(last *fsm.AuditEntry, cp *fsm.AuditCheckpointRecord, since time.Time) bool) (*fsm.AuditCheckpointRecord, error) {
	if !s.proposable(fsm.TypeAuditCheckpoint, 1) {
		return nil, ErrAuditKeysNotRecorded
	}
	var last *fsm.AuditEntry
	var cp *fsm.AuditCheckpointRecord
	var since time.Time
	if err := s.store.View(func(r fsm.Reader) error {
		var err error
		if last, err = r.AuditLast(); err != nil || last == nil {
			return err
		}
		if cp, err = r.LastAuditCheckpoint(); err != nil {
			return err
		}
		if cp != nil {
			since = time.Unix(0, cp.Time)
			return nil
		}
		// None yet: the oldest entry is the oldest not vouched for.
		return r.AuditAfter(0, 1, func(e *fsm.AuditEntry) bool { since = e.Time; return false })
	}); err != nil {
		return nil, err
	}
	switch {
	case last == nil:
		return nil, nil
	case cp != nil && last.Seq <= cp.EntrySeq:
		return cp, nil // nothing but the checkpoint's own record since
	case !due(last, cp, since):
		return nil, nil
	}
	// Recording the keys the first time adds entries: sign the newest.
	if err := s.publishAuditKeysLocked(ctx); err != nil {
		return nil, err
	}
	if err := s.store.View(func(r fsm.Reader) (err error) { last, err = r.AuditLast(); return err }); err != nil {
		return nil, err
	}
	now := s.now()
	c := fsm.AuditCheckpoint{Seq: last.Seq, Hash: last.Hash, Time: now.UnixNano(), Node: s.cfg.NodeID}
	if err := s.auditKeys.sign(&c); err != nil {
		return nil, err
	}
	cmd, err := fsm.NewCommand(fsm.TypeAuditCheckpoint, 1, now.UnixNano(), c)
	if err != nil {
		return nil, err
	}
	return proposeAs[*fsm.AuditCheckpointRecord](ctx, s, cmd)
}

// checkpointDue is the schedule: every entries entries (the checkpoint's
// own record counts) or interval after the last checkpoint, or after the
// oldest entry when there is none.
func (s *Service) checkpointDue(entries int, interval time.Duration) func(*fsm.AuditEntry, *fsm.AuditCheckpointRecord, time.Time) bool {
	return func(last *fsm.AuditEntry, cp *fsm.AuditCheckpointRecord, since time.Time) bool {
		var vouched uint64
		if cp != nil {
			vouched = cp.Seq
		}
		return last.Seq-vouched >= uint64(entries) || !s.now().Before(since.Add(interval))
	}
}

// RunAuditCheckpoints writes checkpoints on schedule while this node leads
// (WithLeader), looking every poll, until ctx ends. entries and interval
// of 0 take the defaults. A failed write is retried at the next look.
func (s *Service) RunAuditCheckpoints(ctx context.Context, entries int, interval, poll time.Duration) {
	if s.vault == nil {
		return
	}
	entries = cmp.Or(entries, DefaultAuditCheckpointEntries)
	interval = cmp.Or(interval, DefaultAuditCheckpointInterval)
	due := s.checkpointDue(entries, interval)
	var logged uint64
	clock.Every(ctx, s.clock, poll, func() {
		if !s.leads() {
			return
		}
		unlock, err := s.lockCheckpoints(ctx)
		if err != nil {
			return
		}
		cp, err := s.checkpoint(ctx, due)
		unlock()
		switch {
		case errors.Is(err, ErrAuditKeysNotRecorded):
		case err != nil:
			s.log.Warn("audit checkpoint not written", "error", err)
		case cp != nil && cp.Seq != logged:
			logged = cp.Seq
			s.log.Debug("audit checkpoint", "seq", cp.Seq)
		}
	})
}

// leads reports whether this node leads the cluster (WithLeader); true
// without it (a one-store service).
func (s *Service) leads() bool { return s.leader == nil || s.leader() }

// WithLeader tells the service whether its node leads: only the leader
// writes scheduled audit checkpoints.
func WithLeader(leads func() bool) Option { return func(s *Service) { s.leader = leads } }
