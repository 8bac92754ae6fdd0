package node

// The cluster CA key on every member.
//
// The node that creates the cluster makes the CA key. So that losing that
// node costs neither joins nor certificate renewals, it shares the key
// through the log (fsm ca.key), sealed under the cluster data key, which
// every member holds sealed by its own TPM; each member that lacks it
// opens it and keeps it in its keystore (ShareCAKey). A node that ever
// joined (or adopted the key) is marked, so that, holding the CA key, it
// still never bootstraps a cluster of its own from an empty log
// (HasJoined, MarkWhenClustered).

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/clock"
	"github.com/bulwark-auth/bulwark/node/pki"
	"github.com/bulwark-auth/bulwark/tpm"
)

const (
	// joinedMarker is the keystore secret that marks a node that joined a
	// cluster rather than created it.
	joinedMarker = "cluster/joined"
	// caKeyLabel and the pin as AAD bind the sealed CA key to its use.
	caKeyLabel = "ca-key"
	// caKeyRetry is how often the sharing is tried again until done.
	caKeyRetry = time.Second
)

// CAKeystore is what the CA key's sharing and the joined marker need from
// this node's keystore (*tpm.Keystore).
type CAKeystore interface {
	PrivateKey(name string) (crypto.Signer, bool)
	Put(name string, key crypto.Signer) error
	Secret(name string) ([]byte, bool)
	PutSecret(name string, b []byte) error
}

// HasJoined reports whether the node of keystore ks joined a cluster
// rather than made one: it is marked so, or it does not hold the CA key
// (nodes that joined before the marker existed). Such a node never
// bootstraps, even if its Raft state is gone; it waits to be added again
// (Config.Join).
func HasJoined(ks CAKeystore) bool {
	_, marked := ks.Secret(joinedMarker)
	_, holdsCA := ks.PrivateKey(pki.CAKeyName)
	return marked || !holdsCA
}

// markJoined records in the keystore that this node joined a cluster.
func markJoined(ks interface{ PutSecret(string, []byte) error }) error {
	return ks.PutSecret(joinedMarker, []byte{1})
}

// MarkWhenClustered marks the node that created the cluster too, once its
// configuration holds another voter: from then on, with its log lost, it
// waits to be added back instead of bootstrapping a second cluster with
// the same CA and data key. It returns once marked, or when ctx ends.
func (n *Node) MarkWhenClustered(ctx context.Context, ks CAKeystore) {
	for {
		if _, marked := ks.Secret(joinedMarker); marked {
			return
		}
		if n.Voters() > 1 {
			if err := markJoined(ks); err != nil {
				n.cfg.Logger.Error("could not mark this node as a cluster member", "error", err)
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}

// caKeyState is the replicated state the sharing needs (*Node).
type caKeyState interface {
	Apply(ctx context.Context, cmd fsm.Command) (any, error)
	View(fn func(fsm.Reader) error) error
}

// ShareCAKey runs until the CA key of ca is in the state and in this
// node's keystore, or ctx ends: a CA holder shares it, a member without it
// adopts it once shared.
func (n *Node) ShareCAKey(ctx context.Context, ks CAKeystore, ca *x509.Certificate) {
	shareCAKey(ctx, ks, n, n.cfg.Clock, ca, n.cfg.ID, n.cfg.Logger.With("component", "pki"), caKeyRetry)
}

func shareCAKey(ctx context.Context, ks CAKeystore, st caKeyState, clk clock.Clock, ca *x509.Certificate, id string, log *slog.Logger, retry time.Duration) {
	for {
		done, err := syncCAKey(ctx, ks, st, clk, ca, id, log)
		switch {
		case done:
			return
		case err != nil && ctx.Err() == nil:
			log.Debug("cluster CA key not shared yet; retrying", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
	}
}

// syncCAKey takes one step: share, adopt, or report why not yet.
func syncCAKey(ctx context.Context, ks CAKeystore, st caKeyState, clk clock.Clock, ca *x509.Certificate, id string, log *slog.Logger) (done bool, err error) {
	dataKey, ok := ks.Secret(tpm.DataKeyName)
	if !ok {
		log.Warn("no cluster data key in the keystore: the cluster CA key cannot be shared with this node")
		return true, nil
	}
	defer clear(dataKey)
	pin := pki.Pin(ca)
	var rec *fsm.CAKey
	level := 1
	err = st.View(func(r fsm.Reader) error {
		level = r.ClusterLevel()
		var err error
		rec, err = r.CAKey()
		return err
	})
	if err != nil && !errors.Is(err, fsm.ErrNoCAKey) {
		return false, err
	}
	if !fsm.Proposable(fsm.TypeCAKey, 1, level) {
		need, _ := fsm.CommandLevel(fsm.TypeCAKey, 1)
		return false, fmt.Errorf("waiting for every member to apply ca.key (cluster feature level %d; it is at %d)", need, level)
	}
	if rec != nil && rec.Pin != pin {
		log.Error("the state holds the key of another cluster CA; not sharing", "state_pin", rec.Pin, "ca_pem_pin", pin)
		return true, nil
	}
	key, holds := ks.PrivateKey(pki.CAKeyName)
	switch {
	case holds && rec != nil:
		return true, nil
	case holds:
		return false, proposeCAKey(ctx, st, clk, key, dataKey, pin, id, log)
	case rec == nil:
		return false, errors.New("waiting for a member holding the CA key to share it")
	case rec.DataKey != tpm.DataKeyFingerprint(dataKey):
		log.Error("the shared CA key is sealed under another data key than this node's; not adopting it",
			"shared_under", rec.DataKey)
		return true, nil
	}
	return true, adoptCAKey(ctx, ks, st, clk, ca, rec, dataKey, id, log)
}

func proposeCAKey(ctx context.Context, st caKeyState, clk clock.Clock, key crypto.Signer, dataKey []byte, pin, id string, log *slog.Logger) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	defer clear(der)
	sealed, err := tpm.SealWithSecret(dataKey, der, caKeyLabel, []byte(pin))
	if err != nil {
		return err
	}
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return err
	}
	fp := tpm.DataKeyFingerprint(dataKey)
	var opts crypto.SignerOpts = crypto.SHA256
	if _, ok := key.Public().(ed25519.PublicKey); ok {
		opts = crypto.Hash(0)
	}
	sig, err := key.Sign(rand.Reader, fsm.CAKeyDigest(pin, fp, sealed), opts)
	if err != nil {
		return err
	}
	cmd, err := fsm.NewCommand(fsm.TypeCAKey, 1, clk.Now().UnixNano(),
		fsm.CAKey{Pin: pin, DataKey: fp, Sealed: sealed, CAPublicKey: spki, Signature: sig})
	if err != nil {
		return err
	}
	cmd = cmd.WithAudit(fsm.AuditAppend{Type: "cluster.ca_key_shared", Severity: fsm.AuditWarning, Actor: "node:" + id,
		Subject: pin, Details: map[string]string{"sealed_under": tpm.DataKeyFingerprint(dataKey)}})
	if _, err := st.Apply(ctx, cmd); err != nil {
		return err
	}
	log.Info("cluster CA key shared with the members, sealed under the cluster data key", "ca_pin", pin)
	return nil
}

func adoptCAKey(ctx context.Context, ks CAKeystore, st caKeyState, clk clock.Clock, ca *x509.Certificate, rec *fsm.CAKey, dataKey []byte, id string, log *slog.Logger) error {
	der, err := tpm.OpenWithSecret(dataKey, rec.Sealed, caKeyLabel, []byte(rec.Pin))
	if err != nil {
		return fmt.Errorf("opening the shared CA key: %w", err)
	}
	defer clear(der)
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return fmt.Errorf("the shared CA key: %w", err)
	}
	key, ok := k.(crypto.Signer)
	if !ok || !pki.SamePublicKey(key.Public(), ca.PublicKey) {
		return errors.New("the shared CA key does not match ca.pem")
	}
	// Marked first: a node holding the CA key but not marked would count
	// as the cluster's creator.
	if err := markJoined(ks); err != nil {
		return err
	}
	if err := ks.Put(pki.CAKeyName, key); err != nil {
		return err
	}
	cmd, err := fsm.NewCommand(fsm.TypeAuditAppend, 1, clk.Now().UnixNano(), fsm.AuditAppend{
		Type: "cluster.ca_key_adopted", Severity: fsm.AuditWarning, Actor: "node:" + id, Subject: id,
		Details: map[string]string{"ca_pin": rec.Pin}})
	if err == nil {
		_, err = st.Apply(ctx, cmd)
	}
	if err != nil {
		log.Warn("adopted the cluster CA key, but its audit entry was not written", "error", err)
	}
	log.Info("this node now holds the cluster CA key: it admits nodes and renews certificates", "ca_pin", rec.Pin)
	return nil
}
