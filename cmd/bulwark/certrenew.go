package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/bulwark-auth/bulwark/api"
	"github.com/bulwark-auth/bulwark/cmd/bulwark/config"
	"github.com/bulwark-auth/bulwark/node"
	"github.com/bulwark-auth/bulwark/node/pki"
	"github.com/bulwark-auth/bulwark/tpm"
)

// How often the daemon looks at its node certificate, and how soon it
// tries again after a renewal failed. A certificate is due
// pki.RenewBefore (30 days) ahead of its expiry, so a cluster without a
// reachable CA holder has a month of retries before anything breaks.
const (
	certCheckEvery = time.Hour
	certRetryEvery = 10 * time.Minute
)

// certRenewer keeps the node certificate fresh while the daemon runs. When
// pki.RenewalDue says so (a month before expiry, or the configured hosts
// changed), it gets a new certificate for the same key from the cluster
// (node.RenewCertificate: this node issues it when it holds the CA key,
// else a member that does), writes it to tls/node.pem and presents it on
// the cluster port and, unless the operator brings one, on the API port.
// A node that joined holds no CA key, so without this it could not start
// once its certificate neared expiry.
type certRenewer struct {
	n         *node.Node
	cluster   *node.ClusterTLS
	api       *certReloader
	cfg       config.Config
	ks        *tpm.Keystore
	advertise string
	log       *slog.Logger

	mu sync.Mutex // one renewal at a time
}

// run checks now and every certCheckEvery until ctx ends.
func (r *certRenewer) run(ctx context.Context) {
	for {
		wait := certCheckEvery
		if _, err := r.renew(ctx, false); err != nil && ctx.Err() == nil {
			wait = certRetryEvery
			left := time.Until(r.cluster.Certificate().Leaf.NotAfter).Round(time.Hour)
			level := slog.LevelWarn
			if left < 7*24*time.Hour {
				level = slog.LevelError
			}
			r.log.Log(ctx, level, "node certificate renewal failed; retrying", "error", err,
				"expires_in", left.String(), "retry_in", wait.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// renew replaces the node certificate when it is due, or at once with
// force, and reports the certificate presented afterwards.
func (r *certRenewer) renew(ctx context.Context, force bool) (api.CertRenewal, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	leaf := r.cluster.Certificate().Leaf
	hosts := certHosts(r.cfg, r.advertise)
	why := pki.RenewalDue(leaf, hosts, time.Now())
	if why == "" && !force {
		return api.CertRenewal{Serial: leaf.SerialNumber.Text(16), NotAfter: leaf.NotAfter.UTC()}, nil
	}
	if why == "" {
		why = "asked by an operator"
	}
	key, ok := r.ks.PrivateKey(pki.NodeKeyName)
	if !ok {
		return api.CertRenewal{}, fmt.Errorf("keystore has no %q key", pki.NodeKeyName)
	}
	cert, err := r.n.RenewCertificate(ctx, key.Public(), hosts)
	if err != nil {
		return api.CertRenewal{}, err
	}
	if err := pki.WriteNodeCert(r.cfg.DataDir, cert); err != nil {
		return api.CertRenewal{}, err
	}
	// Read back the way a start would, so what is presented is what the
	// next start accepts.
	nodeCert, _, err := nodeCertificate(r.cfg, r.ks, r.advertise)
	if err != nil {
		return api.CertRenewal{}, fmt.Errorf("the renewed %s does not load: %w", pki.NodeCertFile, err)
	}
	clusterCert, _, err := clusterCertificate(r.cfg.DataDir, nodeCert)
	if err != nil {
		return api.CertRenewal{}, err
	}
	r.cluster.SetCertificate(clusterCert)
	if err := r.api.reload(); err != nil {
		r.log.Error("node certificate renewed, but the API certificate was not reloaded", "error", err)
	}
	r.log.Info("node certificate renewed", "reason", why, "serial", cert.SerialNumber.Text(16),
		"not_after", cert.NotAfter.UTC(), "previous_serial", leaf.SerialNumber.Text(16))
	return api.CertRenewal{Serial: cert.SerialNumber.Text(16), NotAfter: cert.NotAfter.UTC(), Renewed: true}, nil
}

// RenewCertificate is `bulwark cluster renew-cert`: renew now, due or not.
func (s clusterService) RenewCertificate(ctx context.Context) (api.CertRenewal, error) {
	if s.renewer == nil {
		return api.CertRenewal{}, errors.New("certificate renewal is not available on this listener")
	}
	c, err := s.renewer.renew(ctx, true)
	if err != nil {
		return api.CertRenewal{}, &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable,
			Description: "node certificate not renewed: " + err.Error()}
	}
	return c, nil
}
