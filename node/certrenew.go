package node

// Keeping the node certificate fresh while the daemon runs (certify.go
// issues it). When pki.RenewalDue says so (a month before expiry, or the
// hosts changed), CertRenewer gets a new certificate for the same key from
// the cluster (RenewCertificate: this node issues it when it holds the CA
// key, else a member that does), writes it to tls/node.pem, reads it back
// as a start would, and presents it on the cluster port; its caller
// presents it elsewhere (the daemon's API port). A node that joined holds
// no CA key, so without this it could not start once its certificate
// neared expiry.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/node/pki"
)

// How often the renewer looks at the node certificate, and how soon it
// tries again after a renewal failed. A certificate is due
// pki.RenewBefore (30 days) ahead of its expiry, so a cluster without a
// reachable CA holder has a month of retries before anything breaks.
const (
	certCheckEvery = time.Hour
	certRetryEvery = 10 * time.Minute
)

// ClusterCertificate is the node certificate with the CA certificate of
// <dataDir>/ca.pem appended, as the cluster port presents it: a joining
// node, which trusts the cluster by the CA's pin alone, finds the CA in
// the chain. It returns the CA certificate too.
func ClusterCertificate(dataDir string, nodeCert tls.Certificate) (tls.Certificate, *x509.Certificate, error) {
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

// CertRenewal reports the certificate presented after a renewal.
type CertRenewal struct {
	Serial   string // hex
	NotAfter time.Time
	Renewed  bool // false: it was not due, and is the one presented before
}

// CertRenewer keeps this node's certificate fresh (Run), or renews it on
// request (Renew). One renewal runs at a time.
type CertRenewer struct {
	n       *Node
	keys    pki.KeyStore
	hosts   []string
	crlURL  string
	renewed func() error
	log     *slog.Logger

	mu sync.Mutex
}

// NewCertRenewer returns a renewer of this node's certificate, whose key
// ("tls") is in keys, for the hosts it covers besides the defaults (the
// names pki.Ensure is given at start), naming crlURL (pki.CRLURL; empty:
// none) as its CRL distribution point once the cluster publishes CRLs
// (crl.go). renewed, when not nil, runs after a new certificate is
// presented on the cluster port; its error is logged.
func (n *Node) NewCertRenewer(keys pki.KeyStore, hosts []string, crlURL string, renewed func() error) *CertRenewer {
	return &CertRenewer{n: n, keys: keys, hosts: hosts, crlURL: crlURL, renewed: renewed, log: n.cfg.Logger.With("component", "pki")}
}

// Run checks now and every certCheckEvery until ctx ends, renewing when
// due; after a failure it tries again every certRetryEvery, logging an
// error once less than a week is left. Both are on the node's clock.
func (r *CertRenewer) Run(ctx context.Context) {
	if r.n.cfg.TLS == nil {
		return
	}
	clk := r.n.cfg.Clock
	t := clk.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		wait := certCheckEvery
		if _, err := r.Renew(ctx, false); err != nil && ctx.Err() == nil {
			wait = certRetryEvery
			left := r.n.cfg.TLS.Certificate().Leaf.NotAfter.Sub(clk.Now()).Round(time.Hour)
			level := slog.LevelWarn
			if left < 7*24*time.Hour {
				level = slog.LevelError
			}
			r.log.Log(ctx, level, "node certificate renewal failed; retrying", "error", err,
				"expires_in", left.String(), "retry_in", wait.String())
		}
		t.Reset(wait)
	}
}

// Renew replaces the node certificate when it is due, or at once with
// force, and reports the certificate presented afterwards.
func (r *CertRenewer) Renew(ctx context.Context, force bool) (CertRenewal, error) {
	cluster := r.n.cfg.TLS
	if cluster == nil {
		return CertRenewal{}, errors.New("node: no cluster transport")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	leaf := cluster.Certificate().Leaf
	// A certificate without the CRL distribution point is due only once
	// the cluster publishes CRLs: before, a holder of an earlier release
	// would issue one without it, due again at once.
	crlURL := ""
	if r.n.proposable(fsm.TypeCRLPublish, 1) {
		crlURL = r.crlURL
	}
	why := pki.RenewalDue(leaf, r.hosts, crlURL, r.n.cfg.Clock.Now())
	if why == "" && !force {
		return CertRenewal{Serial: leaf.SerialNumber.Text(16), NotAfter: leaf.NotAfter.UTC()}, nil
	}
	if why == "" {
		why = "asked by an operator"
	}
	key, ok := r.keys.PrivateKey(pki.NodeKeyName)
	if !ok {
		return CertRenewal{}, fmt.Errorf("keystore has no %q key", pki.NodeKeyName)
	}
	cert, err := r.n.RenewCertificate(ctx, key.Public(), r.hosts, crlURL)
	if err != nil {
		return CertRenewal{}, err
	}
	dataDir := r.n.cfg.DataDir
	if err := pki.WriteNodeCert(dataDir, cert); err != nil {
		return CertRenewal{}, err
	}
	// Read back the way a start would, so what is presented is what the
	// next start accepts.
	nodeCert, _, err := pki.Ensure(dataDir, r.keys, r.n.cfg.ID, r.hosts, crlURL, r.n.cfg.Clock.Now())
	if err != nil {
		return CertRenewal{}, fmt.Errorf("the renewed %s does not load: %w", pki.NodeCertFile, err)
	}
	clusterCert, _, err := ClusterCertificate(dataDir, nodeCert)
	if err != nil {
		return CertRenewal{}, err
	}
	cluster.SetCertificate(clusterCert)
	if r.renewed != nil {
		if err := r.renewed(); err != nil {
			r.log.Error("node certificate renewed, but the API certificate was not reloaded", "error", err)
		}
	}
	r.log.Info("node certificate renewed", "reason", why, "serial", cert.SerialNumber.Text(16),
		"not_after", cert.NotAfter.UTC(), "previous_serial", leaf.SerialNumber.Text(16))
	return CertRenewal{Serial: cert.SerialNumber.Text(16), NotAfter: cert.NotAfter.UTC(), Renewed: true}, nil
}
