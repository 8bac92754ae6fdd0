package node

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/clock"
	"github.com/bulwark-auth/bulwark/internal/waitfor"
	"github.com/bulwark-auth/bulwark/node/loopback"
	"github.com/bulwark-auth/bulwark/node/pki"
	"github.com/bulwark-auth/bulwark/tpm"
)

// TestCertRenewer: a certificate that is due is renewed for the same key,
// written to tls/node.pem and presented on the cluster port; one that is
// not due is left, unless the renewal is forced.
func TestCertRenewer(t *testing.T) {
	ca := newTestCA(t)
	tlsA := ca.clusterTLS(t, "a") // valid for an hour: due
	tlsA.Cert.Certificate = append(tlsA.Cert.Certificate, ca.cert.Raw)
	a := openClusterNode(t, "a", loopback.Addr(t), tlsA, false)
	waitLeader(t, []*Node{a})
	a.EnableJoin(ca.cert, fakeKeys{keys: map[string]crypto.Signer{pki.CAKeyName: ca.key},
		secrets: map[string][]byte{tpm.DataKeyName: tpm.NewDataKey()}})
	if err := os.WriteFile(filepath.Join(a.cfg.DataDir, pki.CAFile), pki.EncodeCertPEM(ca.cert), 0o644); err != nil {
		t.Fatal(err)
	}
	keys := newMemKeys()
	keys.Put(pki.NodeKeyName, tlsA.Cert.PrivateKey.(crypto.Signer))
	reloads := 0
	r := a.NewCertRenewer(keys, []string{"127.0.0.1"}, "", func() error { reloads++; return nil })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	first := tlsA.Certificate().Leaf
	due, err := r.Renew(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	now := tlsA.Certificate().Leaf
	switch {
	case !due.Renewed || due.Serial == first.SerialNumber.Text(16) || reloads != 1:
		t.Fatalf("a due certificate: %+v, %d reloads", due, reloads)
	case now.SerialNumber.Text(16) != due.Serial || !pki.SamePublicKey(now.PublicKey, first.PublicKey):
		t.Fatalf("presented serial %s for another key, or not the renewed %s", now.SerialNumber.Text(16), due.Serial)
	case !now.NotAfter.After(first.NotAfter):
		t.Fatalf("renewed until %v, was %v", now.NotAfter, first.NotAfter)
	}
	b, err := os.ReadFile(filepath.Join(a.cfg.DataDir, pki.NodeCertFile))
	if err != nil {
		t.Fatal(err)
	}
	if certs, err := pki.ParseCertPEM(b); err != nil || certs[0].SerialNumber.Text(16) != due.Serial {
		t.Fatalf("%s does not hold the renewed certificate: %v", pki.NodeCertFile, err)
	}

	if again, err := r.Renew(ctx, false); err != nil || again.Renewed || again.Serial != due.Serial || reloads != 1 {
		t.Fatalf("not due: %+v, %v, %d reloads", again, err, reloads)
	}
	forced, err := r.Renew(ctx, true)
	if err != nil || !forced.Renewed || forced.Serial == due.Serial || reloads != 2 {
		t.Fatalf("forced: %+v, %v, %d reloads", forced, err, reloads)
	}
}

// TestCertRenewerRun: the running renewer looks at once and then every
// certCheckEvery of the node's clock, and renews once the certificate is
// within pki.RenewBefore of its expiry by that clock.
func TestCertRenewerRun(t *testing.T) {
	clk := clock.NewFake(time.Now())
	ca := newTestCA(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := pki.IssueNodeCert(ca.cert, ca.key, key.Public(), "a", []string{"127.0.0.1"}, "", clk.Now(), pki.NodeCertTTL)
	if err != nil {
		t.Fatal(err)
	}
	tlsA := &ClusterTLS{Cert: tls.Certificate{Certificate: [][]byte{leaf.Raw, ca.cert.Raw}, PrivateKey: key, Leaf: leaf}, CA: ca.pool}
	a := openClusterNode(t, "a", loopback.Addr(t), tlsA, false, func(c *Config) { c.Clock = clk })
	waitLeader(t, []*Node{a})
	a.EnableJoin(ca.cert, fakeKeys{keys: map[string]crypto.Signer{pki.CAKeyName: ca.key},
		secrets: map[string][]byte{tpm.DataKeyName: tpm.NewDataKey()}})
	if err := os.WriteFile(filepath.Join(a.cfg.DataDir, pki.CAFile), pki.EncodeCertPEM(ca.cert), 0o644); err != nil {
		t.Fatal(err)
	}
	keys := newMemKeys()
	keys.Put(pki.NodeKeyName, key)
	var reloads atomic.Int32
	r := a.NewCertRenewer(keys, []string{"127.0.0.1"}, "", func() error { reloads.Add(1); return nil })
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { defer close(stopped); r.Run(ctx) }()
	defer func() { cancel(); <-stopped }()

	// The look at start found nothing due and set its timer.
	waitfor.True(t, "the renewer's first look", 10*time.Second, time.Millisecond, func() bool { return clk.Waiting() == 1 })
	if reloads.Load() != 0 || tlsA.Certificate().Leaf.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Fatal("renewed a certificate with a year left")
	}
	// An hour after it comes due, the next look renews it.
	clk.Advance(pki.NodeCertTTL - pki.RenewBefore + time.Hour)
	waitfor.True(t, "the renewal", 10*time.Second, time.Millisecond, func() bool { return reloads.Load() == 1 })
	now := tlsA.Certificate().Leaf
	if now.SerialNumber.Cmp(leaf.SerialNumber) == 0 || !pki.SamePublicKey(now.PublicKey, leaf.PublicKey) || !now.NotAfter.After(leaf.NotAfter) {
		t.Fatalf("presented serial %s until %v after the renewal; was %s until %v", now.SerialNumber.Text(16), now.NotAfter,
			leaf.SerialNumber.Text(16), leaf.NotAfter)
	}
}

// TestCertRenewerCRLPoint: once the cluster publishes CRLs (level 5), a
// certificate that does not name the node's CRL URL is renewed early with
// it, so that an upgraded cluster's certificates all come to name it;
// below level 5 it is left alone.
func TestCertRenewerCRLPoint(t *testing.T) {
	const crlURL = "https://127.0.0.1:8443/pki/cluster-ca.crl"
	for _, tc := range []struct {
		name  string
		level int
		renew bool
	}{
		{"level 5", fsm.MaxLevel, true},
		{"level 4", 4, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := newTestCA(t)
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			leaf, err := pki.IssueNodeCert(ca.cert, ca.key, key.Public(), "a", []string{"127.0.0.1"}, "", time.Now(), pki.NodeCertTTL)
			if err != nil {
				t.Fatal(err)
			}
			tlsA := &ClusterTLS{Cert: tls.Certificate{Certificate: [][]byte{leaf.Raw, ca.cert.Raw}, PrivateKey: key, Leaf: leaf}, CA: ca.pool}
			a := openClusterNode(t, "a", loopback.Addr(t), tlsA, false, func(c *Config) { c.level = int32(tc.level) })
			waitLeader(t, []*Node{a})
			waitfor.True(t, "the cluster's level", 10*time.Second, 10*time.Millisecond, func() bool { return clusterLevelOf(a) == tc.level })
			a.EnableJoin(ca.cert, fakeKeys{keys: map[string]crypto.Signer{pki.CAKeyName: ca.key},
				secrets: map[string][]byte{tpm.DataKeyName: tpm.NewDataKey()}})
			if err := os.WriteFile(filepath.Join(a.cfg.DataDir, pki.CAFile), pki.EncodeCertPEM(ca.cert), 0o644); err != nil {
				t.Fatal(err)
			}
			keys := newMemKeys()
			keys.Put(pki.NodeKeyName, key)
			r := a.NewCertRenewer(keys, []string{"127.0.0.1"}, crlURL, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			got, err := r.Renew(ctx, false)
			if err != nil || got.Renewed != tc.renew {
				t.Fatalf("a year left, no CRL distribution point: %+v, %v; want renewed %v", got, err, tc.renew)
			}
			now := tlsA.Certificate().Leaf
			if want := map[bool]int{true: 1, false: 0}[tc.renew]; len(now.CRLDistributionPoints) != want ||
				want == 1 && now.CRLDistributionPoints[0] != crlURL {
				t.Fatalf("presented certificate names %q", now.CRLDistributionPoints)
			}
			if again, err := r.Renew(ctx, false); err != nil || again.Renewed {
				t.Fatalf("renewed again: %+v, %v", again, err)
			}
		})
	}
}
