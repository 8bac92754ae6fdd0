package node

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/waitfor"
	"github.com/bulwark-auth/bulwark/node/loopback"
	"github.com/bulwark-auth/bulwark/node/pki"
	"github.com/bulwark-auth/bulwark/tpm"
)

// presented dials the member to as from and returns the certificate it
// presents to new connections.
func presented(t *testing.T, from, to *Node) *x509.Certificate {
	t.Helper()
	c, err := dialCluster(from.fwd.tls, to.cfg.Advertise, protoMember, 5*time.Second, from.serverIs(to.cfg.ID))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0]
}

// auditEntries returns the audit entries of type typ that n holds.
func auditEntries(t *testing.T, n *Node, typ string) []fsm.AuditEntry {
	t.Helper()
	var out []fsm.AuditEntry
	err := n.View(func(r fsm.Reader) error {
		return r.AuditAfter(0, 0, func(e *fsm.AuditEntry) bool {
			if e.Type == typ {
				out = append(out, *e)
			}
			return true
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRenewCertificate(t *testing.T) {
	ca := newTestCA(t)
	tlsA := ca.clusterTLS(t, "a")
	tlsA.Cert.Certificate = append(tlsA.Cert.Certificate, ca.cert.Raw)
	a := openClusterNode(t, "a", loopback.Addr(t), tlsA, false)
	waitLeader(t, []*Node{a})
	a.EnableJoin(ca.cert, fakeKeys{keys: map[string]crypto.Signer{pki.CAKeyName: ca.key},
		secrets: map[string][]byte{tpm.DataKeyName: tpm.NewDataKey()}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tok, _, err := a.CreateJoinToken(ctx, time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	b, jb := joinAndOpen(t, tok, "b")
	b.EnableJoin(jb.CA, fakeKeys{}) // b holds no CA key
	waitVoters(t, a, "a", "b")

	// b renews through a, keeping its key; the certificate is recorded in
	// the audit trail before it is handed out.
	renewed, err := b.RenewCertificate(ctx, jb.Key.Public(), []string{"b.example.com"}, "")
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case renewed.SerialNumber.Cmp(jb.Cert.SerialNumber) == 0:
		t.Fatal("renewal returned the old certificate")
	case renewed.Subject.CommonName != "b":
		t.Fatalf("renewed certificate names %q", renewed.Subject.CommonName)
	case renewed.NotAfter.Before(jb.Cert.NotAfter):
		t.Fatalf("renewed certificate expires %v, the old one %v", renewed.NotAfter, jb.Cert.NotAfter)
	case renewed.VerifyHostname("b.example.com") != nil || renewed.VerifyHostname("127.0.0.1") != nil:
		t.Fatalf("renewed certificate names %v %v", renewed.DNSNames, renewed.IPAddresses)
	}
	issued := auditEntries(t, a, "cluster.cert_issue")
	if len(issued) != 1 || issued[0].Subject != "b" || issued[0].Details["serial"] != renewed.SerialNumber.Text(16) ||
		issued[0].Details["issued_by"] != "a" {
		t.Fatalf("audit entries %+v", issued)
	}

	// Presented from now on: new connections see it, and cluster status
	// reports its expiry.
	if got := presented(t, a, b); got.SerialNumber.Cmp(jb.Cert.SerialNumber) != 0 {
		t.Fatal("b presents a certificate other than the one it joined with")
	}
	b.fwd.tls.SetCertificate(tls.Certificate{Certificate: [][]byte{renewed.Raw, jb.CA.Raw}, PrivateKey: jb.Key, Leaf: renewed})
	if got := presented(t, a, b); got.SerialNumber.Cmp(renewed.SerialNumber) != 0 {
		t.Fatal("b does not present its renewed certificate")
	}
	if _, err := b.Apply(ctx, userCmd(t, "after-renewal")); err != nil {
		t.Fatalf("write through b after its renewal: %v", err)
	}
	st, err := a.ClusterStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st.Nodes {
		if m.ID == "b" && !m.CertNotAfter.Equal(renewed.NotAfter) {
			t.Fatalf("status of b: cert expires %v, want %v", m.CertNotAfter, renewed.NotAfter)
		}
	}

	// The CA holder renews its own certificate without a round trip.
	ownKey := a.fwd.tls.Certificate().PrivateKey.(crypto.Signer)
	if own, err := a.RenewCertificate(ctx, ownKey.Public(), nil, ""); err != nil || own.Subject.CommonName != "a" {
		t.Fatalf("the CA holder's own renewal: %v", err)
	}

	// Refusals: a key that is not allowed, a certificate for another
	// node, a caller that is not a member.
	weak, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.RenewCertificate(ctx, weak.Public(), nil, ""); err == nil || !strings.Contains(err.Error(), "P-256") {
		t.Fatalf("renewal for a P-224 key: %v", err)
	}
	der, _ := x509.MarshalPKIXPublicKey(jb.Key.Public())
	ans, err := b.memberCall(ctx, "a", a.cfg.Advertise, memberRequest{Op: opCertify, ID: "a", Pub: der}, memberTimeout)
	if err != nil || ans.Cert != nil || !strings.Contains(ans.Error, "renews its own") {
		t.Fatalf("b asking a certificate for a: %+v, %v", ans, err)
	}
	// Once b's key is recorded, a certificate for the name b on another key,
	// minted by whoever holds the CA key, does not pass for b.
	waitfor.True(t, "b's key recorded", 10*time.Second, 50*time.Millisecond, func() (ok bool) {
		a.View(func(r fsm.Reader) error { _, ok = r.MemberKey("b"); return nil })
		return ok
	})
	impostorKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	impostorCert, err := pki.IssueNodeCert(ca.cert, ca.key, impostorKey.Public(), "b", []string{"127.0.0.1"}, "", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	impostor := &ClusterTLS{Cert: tls.Certificate{Certificate: [][]byte{impostorCert.Raw}, PrivateKey: impostorKey, Leaf: impostorCert}, CA: ca.pool}
	if err := callInfo(ctx, impostor, a.cfg.Advertise); err == nil {
		t.Fatal("a certificate for b on another key was accepted")
	}
	if err := callInfo(ctx, b.fwd.tls, a.cfg.Advertise); err != nil {
		t.Fatalf("b itself refused: %v", err)
	}

	if err := a.RemoveMember(ctx, "b", "test"); err != nil {
		t.Fatal(err)
	}
	waitVoters(t, a, "a")
	before := len(auditEntries(t, a, "cluster.cert_issue"))
	users0 := len(users(t, a))

	// A removed node's certificate opens nothing on the cluster port: no
	// renewal, no write, no membership change.
	if _, err := b.memberCall(ctx, "a", a.cfg.Advertise, memberRequest{Op: opCertify, ID: "b", Pub: der}, memberTimeout); err == nil {
		t.Fatal("a removed node reached the membership service")
	}
	cmd := userCmd(t, "by-a-removed-node")
	data, _ := cmd.Encode()
	if _, err := b.forward(ctx, "a", a.cfg.Advertise, cmd, data); err == nil {
		t.Fatal("a removed node forwarded a write")
	}
	// The services check it too, should a connection get that far.
	if ans := a.certifyLocal(ctx, memberRequest{Op: opCertify, ID: "b", Pub: der}, "b"); ans.Code != "not_member" {
		t.Fatalf("certify for a removed node: %+v", ans)
	}
	if ans := a.memberLocal(memberRequest{Op: opAddNonvoter, ID: "b", Address: b.cfg.Advertise}, "b"); ans.Code != "refused" || !strings.Contains(ans.Error, "not a member") {
		t.Fatalf("a removed node adding itself back: %+v", ans)
	}
	if after := len(auditEntries(t, a, "cluster.cert_issue")); after != before {
		t.Fatalf("refused renewals wrote %d audit entries", after-before)
	}
	if len(users(t, a)) != users0 {
		t.Fatal("the removed node's write was applied")
	}
}

// callInfo asks the member at addr for its info, as ct.
func callInfo(ctx context.Context, ct *ClusterTLS, addr string) error {
	c, err := dialCluster(ct, addr, protoMember, 5*time.Second, anyServer)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b, _ := json.Marshal(memberRequest{Op: opInfo})
	if err := writeFrame(bufio.NewWriter(c), b); err != nil {
		return err
	}
	_, err = readFrameMax(bufio.NewReader(c), maxMemberFrame)
	return err
}

// A node whose cluster has no reachable CA holder says so.
func TestRenewCertificateWithoutCAHolder(t *testing.T) {
	nodes := startCluster(t, 3) // no node has EnableJoin: none holds the CA key
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := nodes[1].fwd.tls.Certificate().PrivateKey.(crypto.Signer)
	if _, err := nodes[1].RenewCertificate(ctx, key.Public(), nil, ""); !errors.Is(err, ErrNoCAHolder) {
		t.Fatalf("renewal without a CA holder: %v", err)
	}
}
