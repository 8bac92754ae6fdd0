package main

// Cluster membership, daemon side: `serve --join TOKEN` on an empty data
// directory, the cluster port's certificate chain, and the admin socket's
// cluster routes (api.ClusterAdmin over the node).

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/bulwark-auth/bulwark/api"
	"github.com/bulwark-auth/bulwark/authcore"
	"github.com/bulwark-auth/bulwark/cmd/bulwark/config"
	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/node"
	"github.com/bulwark-auth/bulwark/node/pki"
	"github.com/bulwark-auth/bulwark/tpm"
	"github.com/bulwark-auth/bulwark/tpm/atomicfile"
)

// joinTimeout bounds the exchange with the cluster at `serve --join`.
const joinTimeout = 60 * time.Second

// joinAttempt is a `serve --join` on an empty data directory. Until it
// succeeds, abandon removes whatever the start created there, so a refused
// join leaves the directory as it found it.
type joinAttempt struct {
	token   string
	dataDir string
	existed bool
	done    bool
}

// beginJoin checks, before anything is written, that the token is one and
// has not expired, and that the data directory is empty.
func beginJoin(cfg config.Config, token string) (*joinAttempt, error) {
	tok, err := node.ParseJoinToken(token)
	if err != nil {
		return nil, fmt.Errorf("--join: %w", err)
	}
	if !time.Now().Before(tok.Expires) {
		return nil, fmt.Errorf("--join: the join token expired at %s; create a new one with `bulwark cluster join-token` on a node holding the cluster CA key",
			tok.Expires.UTC().Format(time.RFC3339))
	}
	j := &joinAttempt{token: token, dataDir: cfg.DataDir}
	ents, err := os.ReadDir(cfg.DataDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("--join: data directory: %w", err)
	case len(ents) > 0:
		return nil, fmt.Errorf("--join needs an empty data directory, and %s holds %s: it is already a node's; "+
			"start it without --join to rejoin its cluster, or empty it to join anew", cfg.DataDir, ents[0].Name())
	default:
		j.existed = true
	}
	return j, nil
}

// abandon undoes the start of a join that did not complete: the data
// directory was empty (or absent), so everything in it is this start's.
func (j *joinAttempt) abandon() {
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

// run joins the cluster and stores what it sent: the node's TLS key and
// the cluster data key in the keystore, sealed by this node's own sealer,
// and ca.pem and tls/node.pem. node.Open then starts without
// bootstrapping and waits to be promoted.
func (j *joinAttempt) run(ctx context.Context, cfg config.Config, ks *tpm.Keystore, logger *slog.Logger) error {
	advertise, err := advertiseAddr(cfg)
	if err != nil {
		return err
	}
	jctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	res, err := node.Join(jctx, j.token, node.JoinRequest{NodeID: cfg.NodeName, Advertise: advertise,
		Hosts: certHosts(cfg, advertise)})
	if err != nil {
		return err
	}
	defer clear(res.DataKey)
	if err := storeJoined(cfg.DataDir, ks, res); err != nil {
		return fmt.Errorf("the cluster admitted %s, but storing what it sent failed: %w; "+
			"run `bulwark cluster remove %s` on the cluster and join again with a new token", cfg.NodeName, err, cfg.NodeName)
	}
	if res.DataKey == nil {
		logger.Warn("the cluster sent no data key; this node makes its own, which the cluster will not accept")
	}
	j.done = true
	peers := make([]string, len(res.Members))
	for i, m := range res.Members {
		peers[i] = m.ID + "@" + m.Address
	}
	logger.Info("joined the cluster; waiting to catch up and be promoted to voter", "node", cfg.NodeName,
		"advertise", advertise, "admitted_by", res.Via, "members", peers, "ca_pin", pki.Pin(res.CA))
	return nil
}

func storeJoined(dataDir string, ks *tpm.Keystore, res *node.Joined) error {
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

// certHosts are the names a node certificate covers besides the defaults:
// the advertised host and the API listen host (unless a wildcard). A
// joining node asks for exactly these, so the certificate it receives is
// the one later starts accept.
func certHosts(cfg config.Config, advertise string) []string {
	var hosts []string
	if h, _, err := net.SplitHostPort(advertise); err == nil {
		hosts = append(hosts, h)
	}
	if h, _, err := net.SplitHostPort(cfg.API.Listen); err == nil && h != "" {
		if ip, err := netip.ParseAddr(h); err != nil || !ip.IsUnspecified() {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// clusterCertificate is the node certificate with the CA certificate
// appended: a joining node, which trusts the cluster by the CA's pin
// alone, finds the CA in the chain the cluster port presents.
func clusterCertificate(dataDir string, nodeCert tls.Certificate) (tls.Certificate, *x509.Certificate, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, pki.CAFile))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	certs, err := pki.ParseCertPEM(b)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("%s: %w", pki.CAFile, err)
	}
	ca := certs[0]
	c := nodeCert
	c.Certificate = append(append([][]byte(nil), nodeCert.Certificate...), ca.Raw)
	return c, ca, nil
}

// startClusterAdmin lets the node admit joiners when it holds the CA key,
// finishes its own join (promotion to voter) in the background once
// published is closed, and returns the admin socket's cluster routes.
// published closes when this node's signing key is in the log, after its
// tokens.issuer was held to its cluster's: a joiner configured with
// another issuer exits as a nonvoter, which costs the cluster no quorum.
func startClusterAdmin(ctx context.Context, n *node.Node, ks *tpm.Keystore, ca *x509.Certificate, renewer *certRenewer, keys nodeKeys, published <-chan struct{}, logger *slog.Logger) api.AdminOption {
	n.EnableJoin(ca, ks)
	go shareCAKey(ctx, ks, n, ca, n.Status().ID, logger)
	go markWhenClustered(ctx, ks, n, logger)
	go func() {
		select {
		case <-published:
		case <-ctx.Done():
			return
		}
		if err := n.EnsureVoter(ctx); err != nil && ctx.Err() == nil {
			logger.Error("could not become a voter of the cluster", "error", err)
		}
	}()
	go renewer.run(ctx)
	return api.AdminCluster(clusterService{n: n, renewer: renewer, keys: keys})
}

// nodeKeys retires a removed node's signing keys (authcore.Service).
type nodeKeys interface {
	RetireNodeKeys(ctx context.Context, id, actor string) (int, error)
}

// clusterService is api.ClusterAdmin over the node.
type clusterService struct {
	n       *node.Node
	renewer *certRenewer // nil: renew-cert is refused
	keys    nodeKeys     // nil: removal leaves signing keys alone
}

func (s clusterService) ClusterStatus(ctx context.Context) (api.ClusterStatus, error) {
	st, err := s.n.ClusterStatus(ctx)
	if err != nil {
		return api.ClusterStatus{}, err
	}
	out := api.ClusterStatus{Leader: st.LeaderID, Nodes: make([]api.ClusterNode, 0, len(st.Nodes))}
	for _, m := range st.Nodes {
		out.Nodes = append(out.Nodes, api.ClusterNode{ID: m.ID, Address: m.Address, Suffrage: m.Suffrage,
			Leader: m.Leader, Self: m.Self, Reachable: m.Reachable, State: m.State, AppliedIndex: m.AppliedIndex,
			Lag: m.Lag, LastContact: m.LastContact, CAHolder: m.CA, Error: m.Error})
		if !m.CertNotAfter.IsZero() {
			out.Nodes[len(out.Nodes)-1].CertNotAfter = &m.CertNotAfter
		}
	}
	return out, nil
}

func (s clusterService) JoinToken(ctx context.Context, ttl string) (api.JoinToken, error) {
	d := node.DefaultJoinTokenTTL
	if ttl != "" {
		var err error
		if d, err = config.ParseDuration(ttl); err != nil || d <= 0 || d > fsm.MaxJoinTokenTTL {
			return api.JoinToken{}, &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidRequest,
				Description: fmt.Sprintf("ttl %q: want a positive duration of at most 7d, such as 30m, 1h or 1d", ttl)}
		}
	}
	tok, exp, err := s.n.CreateJoinToken(ctx, d, clusterActor(ctx))
	switch {
	case errors.Is(err, node.ErrNotCAHolder):
		return api.JoinToken{}, &api.Error{Status: http.StatusConflict, Code: api.CodeConflict, Description: err.Error()}
	case err != nil:
		return api.JoinToken{}, err
	}
	return api.JoinToken{Token: tok, ExpiresAt: exp.UTC()}, nil
}

// RemoveNode removes the member, then retires its signing keys: a removed
// node (or whoever holds its disk) can no longer mint tokens the cluster
// accepts. Those it signed before with the cluster's tokens.issuer stay
// valid until they expire; those it signed with its own URL are refused
// at once, since no member's key signs with that issuer any more.
func (s clusterService) RemoveNode(ctx context.Context, id string) error {
	err := s.n.RemoveMember(ctx, id, clusterActor(ctx))
	switch {
	case errors.Is(err, node.ErrNotMember):
		// Removed before, perhaps with its keys still live: retire them.
		if s.keys != nil {
			if n, rerr := s.keys.RetireNodeKeys(ctx, id, clusterActor(ctx)); rerr == nil && n > 0 {
				return nil
			}
		}
		return &api.Error{Status: http.StatusNotFound, Code: api.CodeNotFound, Description: err.Error()}
	case errors.Is(err, node.ErrMembership):
		return &api.Error{Status: http.StatusConflict, Code: api.CodeConflict, Description: err.Error()}
	case err != nil:
		return err
	}
	if s.keys != nil {
		if _, err := s.keys.RetireNodeKeys(ctx, id, clusterActor(ctx)); err != nil {
			return fmt.Errorf("%s was removed, but retiring its signing keys failed (run `bulwark cluster remove %s` again): %w", id, id, err)
		}
	}
	return nil
}

func clusterActor(ctx context.Context) string {
	if a := authcore.RequestInfoFrom(ctx).Actor; a != "" {
		return a
	}
	return "local-admin"
}
