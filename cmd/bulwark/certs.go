package main

// The addresses and certificates a node presents, computed from the
// configuration the same way by serve, a join and a restore.

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/bulwark-auth/bulwark/api"
	"github.com/bulwark-auth/bulwark/cmd/bulwark/config"
	"github.com/bulwark-auth/bulwark/node"
	"github.com/bulwark-auth/bulwark/node/pki"
	"github.com/bulwark-auth/bulwark/tpm"
)

// advertiseAddr is cluster.advertise, or cluster.listen with its host
// filled in (the machine's hostname when the listen host is a wildcard).
func advertiseAddr(cfg config.Config) (string, error) {
	if cfg.Cluster.Advertise != "" {
		return cfg.Cluster.Advertise, nil
	}
	host, port, err := net.SplitHostPort(cfg.Cluster.Listen)
	if err != nil {
		return "", fmt.Errorf("cluster.listen: %w", err)
	}
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		if host, err = os.Hostname(); err != nil {
			return "", fmt.Errorf("cluster.advertise is empty and the hostname is unknown: %w", err)
		}
	}
	return net.JoinHostPort(host, port), nil
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

// crlURL is the CRL distribution point of this node's certificate: the
// cluster CA's CRL on this node's API port (pki.CRLPath), at the API
// listen host, or the advertised host when that is a wildcard. A client
// that checks the API certificate's revocation fetches the list from the
// node it reached; node/DESIGN.md, "Revocation", says why.
func crlURL(cfg config.Config, advertise string) string {
	host, port, err := net.SplitHostPort(cfg.API.Listen)
	if err != nil {
		return ""
	}
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		if host, _, err = net.SplitHostPort(advertise); err != nil {
			return ""
		}
	}
	return pki.CRLURL(host, port)
}

// nodeCertificate is this node's certificate from the cluster CA (server
// and client auth), for the cluster port and, unless the operator brings
// one, the API. It covers the advertised host, the API listen host,
// localhost and 127.0.0.1, and names crlURL as its CRL distribution point.
func nodeCertificate(cfg config.Config, ks *tpm.Keystore, advertise string) (tls.Certificate, *x509.CertPool, error) {
	return pki.Ensure(cfg.DataDir, ks, cfg.NodeName, certHosts(cfg, advertise), crlURL(cfg, advertise), time.Now())
}

// apiCertificate is the operator's certificate when configured, else the
// node's.
func apiCertificate(cfg config.Config, nodeCert tls.Certificate) (tls.Certificate, error) {
	if cfg.API.TLSCert != "" {
		return pki.LoadOperatorCert(cfg.API.TLSCert, cfg.API.TLSKey)
	}
	return nodeCert, nil
}

// clusterCRL serves the cluster CA's last published CRL (node.CRL) on the
// API; nil before the first.
func clusterCRL(n *node.Node) api.CRLFunc {
	return func() ([]byte, error) {
		der, err := n.CRL()
		if errors.Is(err, node.ErrNoCRL) {
			return nil, nil
		}
		return der, err
	}
}
