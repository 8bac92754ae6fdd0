package node

// The cluster data key on every member: created in the keystore at the
// first start (EnsureDataKey), its fingerprint registered in the
// replicated state, and, on an administrator's request, escrowed to a
// public key or split into recovery shares (DataKeys; node/escrow has the
// formats). ReadDataKeyState (offline.go) reads the record back from a
// stopped node's state for `bulwark keys recover`.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/node/escrow"
	"github.com/bulwark-auth/bulwark/tpm"
)

// DataKeyError is an escrow or a share issue refused, worded for the
// operator: Invalid when the request itself is wrong (a public key that
// is none, impossible share counts), otherwise because of the state (the
// key is already escrowed to that key, shares were issued already, this
// node holds no data key or not the cluster's). Nothing was written.
type DataKeyError struct {
	Invalid bool
	Msg     string
	Err     error // what was refused, when a sentinel says it; may be nil
}

func (e *DataKeyError) Error() string { return e.Msg }

func (e *DataKeyError) Unwrap() error { return e.Err }

func conflict(msg string, err error) *DataKeyError { return &DataKeyError{Msg: msg, Err: err} }

// DataKeyKeystore is where this node keeps the data key (*tpm.Keystore).
type DataKeyKeystore interface {
	Secret(name string) ([]byte, bool)
	PutSecret(name string, b []byte) error
}

// EnsureDataKey creates the cluster data key in the keystore on the first
// start; later starts check the stored one. A node that joined received
// the cluster's (Join) before its first start.
func EnsureDataKey(ks DataKeyKeystore) error {
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

// DataKeyVault is where the service reads this node's data key
// (*tpm.Keystore).
type DataKeyVault interface {
	Secret(name string) ([]byte, bool)
}

// DataKeyStore is the replicated state (*Node).
type DataKeyStore interface {
	Apply(ctx context.Context, cmd fsm.Command) (any, error)
	View(fn func(fsm.Reader) error) error
}

// DataKeys registers this node's data key fingerprint in the replicated
// state and escrows the key or issues its recovery shares.
type DataKeys struct {
	vault DataKeyVault
	store DataKeyStore
	log   *slog.Logger
	now   func() time.Time
	retry time.Duration
}

// NewDataKeys returns the service over this node's vault and the state.
// RunRegistration registers the fingerprint.
func NewDataKeys(vault DataKeyVault, store DataKeyStore, logger *slog.Logger) *DataKeys {
	return &DataKeys{vault: vault, store: store, log: logger.With("component", "datakey"),
		now: time.Now, retry: 250 * time.Millisecond}
}

// RunRegistration registers this node's data key fingerprint, retrying
// until a leader takes it, the cluster has another one (logged: the node
// must recover the cluster's key) or ctx ends.
func (d *DataKeys) RunRegistration(ctx context.Context) {
	for {
		st, err := d.Register(ctx)
		switch {
		case err == nil:
			d.log.Info("cluster data key registered", "fingerprint", st.Fingerprint, "escrows", len(st.Escrows),
				"recovery_shares", st.Shares != nil)
			return
		case errors.Is(err, ErrDataKeyMismatch):
			d.log.Error("cluster data key mismatch: if this node was restored from a backup, stop it and run `bulwark keys recover`",
				"error", err)
			return
		case errors.Is(err, ErrNoLocalDataKey):
			d.log.Error("cluster data key not registered", "error", err)
			return
		case ctx.Err() != nil:
			return
		}
		d.log.Debug("cluster data key not registered yet; retrying", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(d.retry):
		}
	}
}

// Register makes sure the state holds this node's data key fingerprint and
// returns the state's record.
func (d *DataKeys) Register(ctx context.Context) (*fsm.DataKeyState, error) {
	key, ok := d.vault.Secret(tpm.DataKeyName)
	if !ok {
		return nil, conflict(ErrNoLocalDataKey.Error(), ErrNoLocalDataKey)
	}
	fp := tpm.DataKeyFingerprint(key)
	clear(key)
	st, err := d.state()
	switch {
	case err == nil:
		return st, checkRegistered(st, fp)
	case !errors.Is(err, fsm.ErrNoDataKey):
		return nil, err
	}
	cmd, err := fsm.NewCommand(fsm.TypeDataKeyRegister, 1, d.now().UnixNano(), fsm.DataKeyRegister{Fingerprint: fp})
	if err != nil {
		return nil, err
	}
	cmd = cmd.WithAudit(fsm.AuditAppend{Type: "datakey.register", Severity: fsm.AuditInfo, Actor: "system", Subject: fp})
	v, err := d.store.Apply(ctx, cmd)
	if errors.Is(err, fsm.ErrInvalidCommand) { // another fingerprint won
		if st, serr := d.state(); serr == nil {
			return st, checkRegistered(st, fp)
		}
		return nil, fmt.Errorf("%w: %v", ErrDataKeyMismatch, err)
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
	return fmt.Errorf("%w: this node holds %s, the cluster registered %s at %s", ErrDataKeyMismatch,
		fp, st.Fingerprint, st.RegisteredAt.Format(time.RFC3339))
}

func (d *DataKeys) state() (*fsm.DataKeyState, error) {
	var st *fsm.DataKeyState
	err := d.store.View(func(r fsm.Reader) error {
		var err error
		st, err = r.DataKey()
		return err
	})
	return st, err
}

// current returns the data key once its registration is confirmed.
func (d *DataKeys) current(ctx context.Context) ([]byte, *fsm.DataKeyState, error) {
	st, err := d.Register(ctx)
	if errors.Is(err, ErrDataKeyMismatch) {
		return nil, nil, conflict(err.Error()+"; nothing was escrowed or issued", err)
	}
	if err != nil {
		return nil, nil, err
	}
	key, ok := d.vault.Secret(tpm.DataKeyName)
	if !ok || tpm.DataKeyFingerprint(key) != st.Fingerprint {
		return nil, nil, conflict("this node's cluster data key changed during the request", ErrDataKeyMismatch)
	}
	return key, st, nil
}

// Escrow wraps the data key to the armored escrow public key and records
// the escrow in the replicated state. actor names who asked, for the
// audit trail.
func (d *DataKeys) Escrow(ctx context.Context, publicKeyPEM, actor string) (*fsm.Escrow, error) {
	pub, err := tpm.ParseEscrowPublicKey([]byte(publicKeyPEM))
	if err != nil {
		return nil, &DataKeyError{Invalid: true, Msg: err.Error(), Err: err}
	}
	kfp := tpm.EscrowKeyFingerprint(pub)
	key, st, err := d.current(ctx)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	if e, ok := st.Escrow(kfp); ok {
		return nil, conflict(fmt.Sprintf("the data key is already escrowed to %s (since %s)",
			kfp, e.CreatedAt.Format(time.RFC3339)), fsm.ErrEscrowExists)
	}
	w, err := escrow.Wrap(pub, key, st.Fingerprint, kfp)
	if err != nil {
		return nil, err
	}
	cmd, err := fsm.NewCommand(fsm.TypeDataKeyEscrow, 1, d.now().UnixNano(), fsm.DataKeyEscrow{
		DataKey: st.Fingerprint, KeyFingerprint: kfp, KEM: tpm.EscrowKEM,
		PublicKey: pub, KEMCiphertext: w.KEMCiphertext, Ciphertext: w.Ciphertext})
	if err != nil {
		return nil, err
	}
	cmd = cmd.WithAudit(fsm.AuditAppend{Type: "datakey.escrow", Severity: fsm.AuditWarning, Actor: actor,
		Subject: kfp, Details: map[string]string{"data_key": st.Fingerprint, "kem": tpm.EscrowKEM}})
	v, err := d.store.Apply(ctx, cmd)
	switch {
	case errors.Is(err, fsm.ErrEscrowExists):
		return nil, conflict("the data key is already escrowed to "+kfp, err)
	case errors.Is(err, fsm.ErrInvalidCommand), errors.Is(err, fsm.ErrNoDataKey):
		return nil, conflict(err.Error(), err)
	case err != nil:
		return nil, err
	}
	e, ok := v.(*fsm.Escrow)
	if !ok {
		return nil, fmt.Errorf("datakey.escrow answered %T", v)
	}
	d.log.Warn("cluster data key escrowed", "escrow_key", kfp, "data_key", st.Fingerprint)
	return e, nil
}

// IssuedShares is a share set as issued: the state's record and the
// printed shares, which exist nowhere else.
type IssuedShares struct {
	*fsm.RecoveryShares
	Texts []string
}

// IssueShares splits a fresh random pad into shares, seals the data key
// under the pad in the replicated state, and returns the shares: once,
// and only after the record is committed. actor names who asked.
func (d *DataKeys) IssueShares(ctx context.Context, threshold, shares int, actor string) (IssuedShares, error) {
	if err := escrow.CheckShareCounts(threshold, shares); err != nil {
		return IssuedShares{}, &DataKeyError{Invalid: true, Msg: err.Error(), Err: err}
	}
	key, st, err := d.current(ctx)
	if err != nil {
		return IssuedShares{}, err
	}
	defer clear(key)
	if st.Shares != nil {
		return IssuedShares{}, conflict(sharesIssuedMessage(st.Shares), fsm.ErrSharesIssued)
	}
	set, err := escrow.NewShareSet(key, st.Fingerprint, threshold, shares)
	if err != nil {
		return IssuedShares{}, err
	}
	cmd, err := fsm.NewCommand(fsm.TypeDataKeyShares, 1, d.now().UnixNano(), set.Record)
	if err != nil {
		return IssuedShares{}, err
	}
	cmd = cmd.WithAudit(fsm.AuditAppend{Type: "datakey.shares", Severity: fsm.AuditWarning, Actor: actor,
		Subject: st.Fingerprint, Details: map[string]string{"threshold": strconv.Itoa(threshold),
			"shares": strconv.Itoa(shares), "set_id": set.Record.SetID}})
	v, err := d.store.Apply(ctx, cmd)
	switch {
	case errors.Is(err, fsm.ErrSharesIssued):
		if st, serr := d.state(); serr == nil && st.Shares != nil {
			return IssuedShares{}, conflict(sharesIssuedMessage(st.Shares), err)
		}
		return IssuedShares{}, conflict(err.Error(), err)
	case errors.Is(err, fsm.ErrInvalidCommand), errors.Is(err, fsm.ErrNoDataKey):
		return IssuedShares{}, conflict(err.Error(), err)
	case err != nil:
		return IssuedShares{}, err
	}
	rec, ok := v.(*fsm.RecoveryShares)
	if !ok {
		return IssuedShares{}, fmt.Errorf("datakey.shares answered %T", v)
	}
	d.log.Warn("recovery shares issued", "threshold", threshold, "shares", shares, "set_id", set.Record.SetID)
	return IssuedShares{RecoveryShares: rec, Texts: set.Texts}, nil
}

func sharesIssuedMessage(r *fsm.RecoveryShares) string {
	return fmt.Sprintf("recovery shares were already issued at %s (%d of %d, set %s); they are shown only once "+
		"and cannot be issued again. Escrow the key to a public key instead (bulwark keys escrow-key)",
		r.IssuedAt.Format(time.RFC3339), r.Threshold, r.Shares, r.SetID)
}
