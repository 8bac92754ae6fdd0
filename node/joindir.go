package node

// The joining node's side of `bulwark serve --join`, around Join: the data
// directory must be empty, what the cluster sends is stored in it (the
// keystore, ca.pem, tls/node.pem), and a join that does not complete
// leaves the directory as it found it. The error messages name --join,
// the flag that starts a join.

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/bulwark-auth/bulwark/node/pki"
	"github.com/bulwark-auth/bulwark/tpm"
	"github.com/bulwark-auth/bulwark/tpm/atomicfile"
)

// joinTimeout bounds the exchange with the cluster at `serve --join`.
const joinTimeout = 60 * time.Second

// JoinAttempt is a join into an empty data directory. Until it succeeds,
// Abandon removes whatever the start created there, so a refused join
// leaves the directory as it found it.
type JoinAttempt struct {
	token   string
	dataDir string
	existed bool
	done    bool
}

// BeginJoin checks, before anything is written, that token is one and has
// not expired, and that dataDir is empty or absent.
func BeginJoin(dataDir, token string) (*JoinAttempt, error) {
	tok, err := ParseJoinToken(token)
	if err != nil {
		return nil, fmt.Errorf("--join: %w", err)
	}
	if !time.Now().Before(tok.Expires) {
		return nil, fmt.Errorf("--join: the join token expired at %s; create a new one with `bulwark cluster join-token` on a node holding the cluster CA key",
			tok.Expires.UTC().Format(time.RFC3339))
	}
	j := &JoinAttempt{token: token, dataDir: dataDir}
	ents, err := os.ReadDir(dataDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("--join: data directory: %w", err)
	case len(ents) > 0:
		return nil, fmt.Errorf("--join needs an empty data directory, and %s holds %s: it is already a node's; "+
			"start it without --join to rejoin its cluster, or empty it to join anew", dataDir, ents[0].Name())
	default:
		j.existed = true
	}
	return j, nil
}

// Abandon undoes the start of a join that did not complete: the data
// directory was empty (or absent), so everything in it is this start's.
// After a successful Run it does nothing.
func (j *JoinAttempt) Abandon() {
	if j == nil || j.done {
		return
	}
	if !j.existed {
		os.RemoveAll(j.dataDir)
		return
	}
	ents, _ := os.ReadDir(j.dataDir)
	for _, e := range ents {
		os.RemoveAll(filepath.Join(j.dataDir, e.Name()))
	}
}

// JoinedKeystore is where a joining node keeps what the cluster sent
// (*tpm.Keystore, sealed by this node's own sealer).
type JoinedKeystore interface {
	Put(name string, key crypto.Signer) error
	PutSecret(name string, b []byte) error
}

// Run joins the cluster (Join, within joinTimeout) and stores what it
// sent: the node's TLS key and the cluster data key in ks, marked as a
// node that joined, and ca.pem and tls/node.pem in the data directory.
// Open with Config.Join then starts without bootstrapping and waits to be
// promoted.
func (j *JoinAttempt) Run(ctx context.Context, ks JoinedKeystore, req JoinRequest, logger *slog.Logger) error {
	jctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	res, err := Join(jctx, j.token, req)
	if err != nil {
		return err
	}
	defer clear(res.DataKey)
	if err := storeJoined(j.dataDir, ks, res); err != nil {
		return fmt.Errorf("the cluster admitted %s, but storing what it sent failed: %w; "+
			"run `bulwark cluster remove %s` on the cluster and join again with a new token", req.NodeID, err, req.NodeID)
	}
	if res.DataKey == nil {
		logger.Warn("the cluster sent no data key; this node makes its own, which the cluster will not accept")
	}
	j.done = true
	peers := make([]string, len(res.Members))
	for i, m := range res.Members {
		peers[i] = m.ID + "@" + m.Address
	}
	logger.Info("joined the cluster; waiting to catch up and be promoted to voter", "node", req.NodeID,
		"advertise", req.Advertise, "admitted_by", res.Via, "members", peers, "ca_pin", pki.Pin(res.CA))
	return nil
}

func storeJoined(dataDir string, ks JoinedKeystore, res *Joined) error {
	if err := markJoined(ks); err != nil {
		return err
	}
	if err := ks.Put(pki.NodeKeyName, res.Key); err != nil {
		return err
	}
	if res.DataKey != nil {
		if err := ks.PutSecret(tpm.DataKeyName, res.DataKey); err != nil {
			return err
		}
	}
	if err := pki.WriteNodeCert(dataDir, res.Cert); err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dataDir, pki.CAFile), pki.EncodeCertPEM(res.CA), 0o644)
}
