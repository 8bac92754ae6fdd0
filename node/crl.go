package node

// The cluster CA's certificate revocation list (node/DESIGN.md,
// "Revocation").
//
// Every certificate the CA issues is recorded in the state for the member
// it certifies (fsm cert.record): by the issuer before it hands the
// certificate out (certify.go, join.go), and by each member for the one
// it presents (certificates issued before level 5, or by pki.Ensure at a
// start). Removing a member revokes what is recorded for it (cert.revoke,
// RemoveMember). The leader, when it holds the CA key, signs a CRL of the
// revoked certificates and publishes it through the log (crl.publish)
// when the revocations pass the published CRL's, and once a day, a week
// before it expires. Every node serves the last published CRL (CRL), so
// a node without the CA key serves the same list as one with it.

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"math/big"
	"time"

	"github.com/hashicorp/raft"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/node/pki"
)

const (
	// crlValidity is a CRL's nextUpdate after its thisUpdate; one is
	// signed again once less than crlResignWithin is left: daily. A
	// cluster whose CA holders are all down for a week serves a CRL that
	// relying parties find expired, and those that check revocation
	// then refuse: they fail closed.
	crlValidity     = 7 * 24 * time.Hour
	crlResignWithin = 6 * 24 * time.Hour
	// crlEvery: how often the leader looks whether to sign, and each
	// member whether its certificate is recorded.
	crlEvery = time.Second
)

// certRecordOf is the cert.record of cert, issued to node.
func certRecordOf(node string, cert *x509.Certificate) fsm.CertRecord {
	return fsm.CertRecord{Node: node, Serial: cert.SerialNumber.Text(16), NotAfter: cert.NotAfter.UTC()}
}

// CRL returns the cluster CA's last published CRL (DER), or ErrNoCRL.
func (n *Node) CRL() ([]byte, error) {
	var der []byte
	err := n.View(func(r fsm.Reader) error {
		if c, ok := r.CRL(); ok {
			der = c.DER
		}
		return nil
	})
	if err == nil && der == nil {
		err = ErrNoCRL
	}
	return der, err
}

// revokeCerts revokes the certificates recorded for id, which was just
// removed, with audit (the removal's entry) riding on it; below level 5
// only the audit entry is written.
func (n *Node) revokeCerts(ctx context.Context, id string, audit fsm.AuditAppend) error {
	now := n.cfg.Clock.Now().UnixNano()
	var cmd fsm.Command
	var err error
	if n.proposable(fsm.TypeCertRevoke, 1) {
		cmd, err = fsm.NewCommand(fsm.TypeCertRevoke, 1, now, fsm.CertRevoke{Node: id})
		cmd = cmd.WithAudit(audit)
	} else {
		cmd, err = fsm.NewCommand(fsm.TypeAuditAppend, 1, now, audit)
	}
	if err == nil {
		_, err = n.Apply(ctx, cmd)
	}
	select {
	case n.crlNudge <- struct{}{}:
	default:
	}
	return err
}

// publishCRL runs until the node closes: every crlEvery, or when a removal
// nudges it, it records this node's certificate if it is not, and on the
// leader signs and publishes a CRL when one is due (publishCRLNow).
func (n *Node) publishCRL() {
	t := time.NewTimer(0)
	defer t.Stop()
	var recorded string // the serial this node recorded last
	var lastTry time.Time
	for {
		select {
		case <-n.done:
			return
		case <-t.C:
		case <-n.crlNudge:
		}
		if now := n.cfg.Clock.Now(); now.Sub(lastTry) >= levelEvery {
			if s, tried := n.recordOwnCert(recorded); tried {
				lastTry = now
				recorded = s
			}
		}
		if n.raft.State() == raft.Leader {
			if err := n.publishCRLNow(); err != nil {
				n.log.Warn("publishing the cluster CA's CRL failed; retrying", "error", err)
			}
		}
		t.Reset(crlEvery)
	}
}

// recordOwnCert records the certificate this node presents unless it
// recorded that serial already (recorded). It returns the serial recorded
// and whether it proposed anything.
func (n *Node) recordOwnCert(recorded string) (string, bool) {
	leaf := n.fwd.tls.Certificate().Leaf
	if leaf == nil || !n.proposable(fsm.TypeCertRecord, 1) {
		return recorded, false
	}
	rec := certRecordOf(n.cfg.ID, leaf)
	if rec.Serial == recorded {
		return recorded, false
	}
	var have bool
	n.View(func(r fsm.Reader) error { _, have = r.CertsIssued(n.cfg.ID)[rec.Serial]; return nil })
	if have {
		return rec.Serial, false
	}
	cmd, err := fsm.NewCommand(fsm.TypeCertRecord, 1, n.cfg.Clock.Now().UnixNano(), rec)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), memberTimeout)
		_, err = n.Apply(ctx, cmd)
		cancel()
	}
	if err != nil {
		n.log.Debug("this node's certificate not recorded yet", "serial", rec.Serial, "error", err)
		return recorded, true
	}
	return rec.Serial, true
}

// publishCRLNow signs and publishes a CRL, on a node that holds the CA
// key, when the state has revocations the published CRL lacks, or the
// published one is within crlResignWithin of its nextUpdate or is another
// CA's (a state restored into a new cluster, which makes its own CA), or
// there is none. Otherwise, below level 5, and before the CA key is shared (fsm
// ca.key), it does nothing.
func (n *Node) publishCRLNow() error {
	a := n.joinAuth.Load()
	caKey, ok := a.caKey()
	if !ok || !n.proposable(fsm.TypeCRLPublish, 1) {
		return nil
	}
	now := n.cfg.Clock.Now()
	var gen uint64
	var last fsm.PublishedCRL
	var have bool
	var revoked []fsm.RevokedCert
	var shared error
	if err := n.View(func(r fsm.Reader) error {
		gen, revoked = r.CRLGeneration(), r.RevokedCerts()
		last, have = r.CRL()
		_, shared = r.CAKey()
		return nil
	}); err != nil {
		return err
	}
	switch {
	case shared != nil:
		// crl.publish checks the signature with the shared CA key's
		// public key; ShareCAKey records it moments after the start.
		return nil
	case have && last.Generation >= gen && last.NextUpdate.Sub(now) > crlResignWithin && signedBy(last.DER, a.ca):
		return nil
	}
	var entries []pki.Revoked
	for _, rc := range revoked {
		serial, ok := new(big.Int).SetString(rc.Serial, 16)
		if !ok || !rc.NotAfter.After(now) {
			continue
		}
		entries = append(entries, pki.Revoked{Serial: serial, RevokedAt: rc.RevokedAt})
	}
	number := new(big.Int).SetUint64(last.Number + 1)
	der, err := pki.NewCRL(a.ca, caKey, entries, number, now, crlValidity)
	if err != nil {
		return err
	}
	cmd, err := fsm.NewCommand(fsm.TypeCRLPublish, 1, now.UnixNano(), fsm.CRLPublish{DER: der, Generation: gen})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), memberTimeout)
	defer cancel()
	if _, err := n.Apply(ctx, cmd); err != nil {
		return fmt.Errorf("crl.publish: %w", err)
	}
	n.log.Info("published the cluster CA's CRL", "number", number, "revoked", len(entries), "next_update", now.Add(crlValidity).UTC())
	return nil
}

// signedBy reports whether the CRL der names ca's key as its issuer's
// (the authority key identifier; crl.publish checked the signature).
func signedBy(der []byte, ca *x509.Certificate) bool {
	crl, err := x509.ParseRevocationList(der)
	return err == nil && len(ca.SubjectKeyId) > 0 && bytes.Equal(crl.AuthorityKeyId, ca.SubjectKeyId)
}
