package node

import (
	"context"
	"crypto"
	"os"
	"path/filepath"
	"testing"
	"time"

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
	r := a.NewCertRenewer(keys, []string{"127.0.0.1"}, func() error { reloads++; return nil })
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
