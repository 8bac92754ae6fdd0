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
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/waitfor"
	"github.com/bulwark-auth/bulwark/node/loopback"
	"github.com/bulwark-auth/bulwark/node/pki"
)

// identityCluster is a three-node cluster whose CA key the test holds, as
// every member's keystore does: leader, and two followers b and c, each
// with its key recorded.
type identityCluster struct {
	ca           *testCA
	nodes        []*Node
	leader, b, c *Node
}

func startIdentityCluster(t *testing.T) *identityCluster {
	t.Helper()
	c := newCluster(t, 3, clusterOpts{})
	nodes := c.nodes
	ic := &identityCluster{ca: c.ca, nodes: nodes, leader: waitLeader(t, nodes)}
	for _, n := range nodes {
		switch {
		case n == ic.leader:
		case ic.b == nil:
			ic.b = n
		default:
			ic.c = n
		}
	}
	for _, n := range nodes {
		waitKeyRecorded(t, ic.leader, n.cfg.ID, spkiHash(n.cfg.TLS.Cert.Leaf))
		waitCertRecorded(t, ic.leader, n)
	}
	return ic
}

// waitCertRecorded waits until on's state records the certificate n
// presents (crl.go: each member records its own once the cluster is at
// level 5), so that no such write lands in a test's quiet window.
func waitCertRecorded(t *testing.T, on, n *Node) {
	t.Helper()
	serial := n.cfg.TLS.Cert.Leaf.SerialNumber.Text(16)
	waitfor.True(t, "the certificate of "+n.cfg.ID+" recorded", 15*time.Second, 20*time.Millisecond, func() bool {
		var have bool
		on.View(func(r fsm.Reader) error { _, have = r.CertsIssued(n.cfg.ID)[serial]; return nil })
		return have
	})
}

func waitKeyRecorded(t *testing.T, on *Node, id, want string) {
	t.Helper()
	waitfor.Nil(t, "the key of "+id+" recorded", 15*time.Second, 20*time.Millisecond, func() error {
		if got, _ := memberKeyOf(on, id); got != want {
			return fmt.Errorf("%s: key of %s is %q, want %q", on.cfg.ID, id, got, want)
		}
		return nil
	})
}

func command(t *testing.T, typ fsm.Type, payload any) fsm.Command {
	t.Helper()
	c, err := fsm.NewCommand(typ, 1, time.Now().UnixNano(), payload)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// keyPublish publishes kid as a signing key of node (the JWK is a
// well-formed public one; Apply does not check the curve point).
func keyPublish(t *testing.T, kid, node string, notAfter, retire time.Time) fsm.Command {
	t.Helper()
	jwk := fmt.Sprintf(`{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA","kid":%q,"alg":"ES256"}`, kid)
	p := fsm.KeyPublish{Kid: kid, Node: node, Alg: "ES256", JWK: json.RawMessage(jwk)}
	if !notAfter.IsZero() {
		p.NotAfter, p.Retire = notAfter.UnixNano(), retire.UnixNano()
	}
	return command(t, fsm.TypeKeyPublish, p)
}

func publicKey(n *Node, kid string) *fsm.PublicKey {
	var k *fsm.PublicKey
	n.View(func(r fsm.Reader) error { k, _ = r.PublicKey(kid); return nil })
	return k
}

// mint issues, with the CA key every member holds, a certificate naming
// name for key.
func (ic *identityCluster) mint(t *testing.T, name string, key crypto.Signer) *ClusterTLS {
	t.Helper()
	cert, err := pki.IssueNodeCert(ic.ca.cert, ic.ca.key, key.Public(), name, []string{"127.0.0.1"}, "", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &ClusterTLS{Cert: tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}, CA: ic.ca.pool}
}

// forwardAs sends cmd to the leader at addr over protocol 'F' presenting
// ct, as a follower would, and returns the leader's answer.
func forwardAs(ct *ClusterTLS, addr string, cmd fsm.Command) error {
	data, err := cmd.Encode()
	if err != nil {
		return err
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{ct.Cert}, RootCAs: ct.CA, ServerName: "127.0.0.1"})
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	w := bufio.NewWriter(c)
	w.WriteByte(protoForward)
	if err := writeFrameParts(w, binary.BigEndian.AppendUint64(nil, 1), data); err != nil {
		return err
	}
	b, err := readFrame(bufio.NewReader(c))
	if err != nil {
		return fmt.Errorf("no answer: %w", err)
	}
	var ans forwardAnswer
	if err := json.Unmarshal(b[idSize:], &ans); err != nil {
		return err
	}
	if ans.Error != "" {
		return errors.New(ans.Error)
	}
	res, err := fsm.DecodeResult(cmd.Type, cmd.Version, ans.Result)
	if err != nil {
		return err
	}
	return res.Err
}

// TestMemberCannotSpeakForAnother: a member's forwarded commands that
// speak for a node are applied only when it is that node.
func TestMemberCannotSpeakForAnother(t *testing.T) {
	ic := startIdentityCluster(t)
	b, c := ic.b, ic.c
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bKey, cKey := spkiHash(b.cfg.TLS.Cert.Leaf), spkiHash(c.cfg.TLS.Cert.Leaf)
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherKey := spkiHash(ic.mint(t, b.cfg.ID, other).Cert.Leaf)

	for _, tc := range []struct {
		name string
		cmd  fsm.Command
	}{
		{"b records its key under c's name", command(t, fsm.TypeMemberKey, fsm.MemberKey{Node: c.cfg.ID, SPKI: bKey})},
		{"b records a key it does not present", command(t, fsm.TypeMemberKey, fsm.MemberKey{Node: b.cfg.ID, SPKI: otherKey})},
		{"b publishes a signing key labelled c", keyPublish(t, "planted-by-b", c.cfg.ID, time.Time{}, time.Time{})},
		{"b makes a join token issued by c", command(t, fsm.TypeJoinToken, fsm.JoinTokenCreate{
			Hash: strings.Repeat("ab", 32), ExpiresAt: time.Now().Add(time.Hour).UnixNano(), Issuer: c.cfg.ID})},
		{"b raises the cluster's level", command(t, fsm.TypeClusterLevel, fsm.ClusterLevel{Level: fsm.MaxLevel + 1})},
		{"b records an audit key labelled c", command(t, fsm.TypeAuditKey, fsm.AuditKey{Kid: "k", Node: c.cfg.ID, Alg: fsm.AuditAlgES256, Public: []byte{1}})},
		{"b writes a checkpoint signed as c", command(t, fsm.TypeAuditCheckpoint, fsm.AuditCheckpoint{Seq: 1, Hash: strings.Repeat("ab", 32), Node: c.cfg.ID})},
		{"b prunes the audit trail", command(t, fsm.TypeAuditPrune, fsm.AuditPrune{BeforeSeq: 2, KeepFor: int64(fsm.MinAuditRetention), Limit: 10})},
		{"b prunes sessions", command(t, fsm.TypeSessionPrune, fsm.SessionPrune{Limit: 10})},
	} {
		before := ic.leader.Status().AppliedIndex
		if _, err := b.Apply(ctx, tc.cmd); !errors.Is(err, ErrRefused) {
			t.Errorf("%s: %v, want ErrRefused", tc.name, err)
		} else {
			t.Logf("%s: %v", tc.name, err)
		}
		if after := ic.leader.Status().AppliedIndex; after != before {
			t.Errorf("%s: the leader's applied index moved from %d to %d", tc.name, before, after)
		}
	}
	if got, _ := memberKeyOf(ic.leader, c.cfg.ID); got != cKey {
		t.Fatalf("c's recorded key is %q, want its own %q", got, cKey)
	}
	if got, _ := memberKeyOf(ic.leader, b.cfg.ID); got != bKey {
		t.Fatalf("b's recorded key is %q, want its own %q", got, bKey)
	}
	if k := publicKey(ic.leader, "planted-by-b"); k != nil {
		t.Fatalf("a key b published under c's name is in the state: %+v", k)
	}
	if lvl := clusterLevel(ic.leader); lvl != fsm.MaxLevel {
		t.Fatalf("cluster level %d", lvl)
	}

	// What b may do: speak for itself, and write what an administrator at
	// b may write.
	if _, err := b.Apply(ctx, keyPublish(t, "b-own", b.cfg.ID, time.Time{}, time.Time{})); err != nil {
		t.Fatalf("b publishing its own key: %v", err)
	}
	if _, err := b.Apply(ctx, command(t, fsm.TypeMemberKey, fsm.MemberKey{Node: b.cfg.ID, SPKI: bKey})); err != nil {
		t.Fatalf("b recording its own key: %v", err)
	}
	if _, err := b.Apply(ctx, userCmd(t, "made-at-b")); err != nil {
		t.Fatalf("a user created at b: %v", err)
	}
	// c may not retire b's key while b is a member, nor b c's.
	now := time.Now()
	if _, err := c.Apply(ctx, keyPublish(t, "b-own", b.cfg.ID, now, now.Add(time.Minute))); err == nil {
		t.Fatal("c retired a signing key of b, a member")
	}
	if k := publicKey(ic.leader, "b-own"); k == nil || !k.NotAfter.IsZero() {
		t.Fatalf("b's key %+v", k)
	}
	if _, err := c.Apply(ctx, userCmd(t, "made-at-c")); err != nil {
		t.Fatalf("c: %v", err)
	}
}

// TestRemovedMemberKeepsNothing: a member that tried to plant its key and
// a signing key under another's name, then was removed, gets no write
// applied with its own certificate or one it minted for that name with
// the CA key; the real member keeps working, and no key b published under
// any name stays current once its keys are retired.
func TestRemovedMemberKeepsNothing(t *testing.T) {
	ic := startIdentityCluster(t)
	b, c, leader := ic.b, ic.c, ic.leader
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bKey := spkiHash(b.cfg.TLS.Cert.Leaf)
	cKey := spkiHash(c.cfg.TLS.Cert.Leaf)

	// The leader holds the CA key and admits joiners (its chain carries the
	// CA, which a joiner checks against the token's pin); b makes a token.
	leaf := leader.cfg.TLS.Cert
	leader.cfg.TLS.SetCertificate(tls.Certificate{Certificate: [][]byte{leaf.Certificate[0], ic.ca.cert.Raw},
		PrivateKey: leaf.PrivateKey, Leaf: leaf.Leaf})
	leader.EnableJoin(ic.ca.cert, fakeKeys{keys: map[string]crypto.Signer{pki.CAKeyName: ic.ca.key}})
	b.EnableJoin(ic.ca.cert, fakeKeys{})
	bToken, _, err := b.CreateJoinToken(ctx, time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}

	// While a member: b's own key, and attempts at c's name.
	if _, err := b.Apply(ctx, keyPublish(t, "b-own", b.cfg.ID, time.Time{}, time.Time{})); err != nil {
		t.Fatalf("b publishing its own key: %v", err)
	}
	b.Apply(ctx, command(t, fsm.TypeMemberKey, fsm.MemberKey{Node: c.cfg.ID, SPKI: bKey}))
	b.Apply(ctx, keyPublish(t, "planted-under-c", c.cfg.ID, time.Time{}, time.Time{}))
	if _, err := c.Apply(ctx, userCmd(t, "c-before-removal")); err != nil {
		t.Errorf("c's write after b's attempts: %v", err)
	}

	if err := leader.RemoveMember(ctx, b.cfg.ID, "test"); err != nil {
		t.Fatal(err)
	}
	waitVoters(t, leader, leader.cfg.ID, c.cfg.ID)
	// What cluster remove does next (authcore.RetireNodeKeys), here from c
	// as an administrator at c would: b's keys stop signing now.
	now := time.Now()
	retired := 0
	leader.View(func(r fsm.Reader) error {
		return r.PublicKeys(func(k *fsm.PublicKey) bool {
			if k.Node == b.cfg.ID {
				if _, err := c.Apply(ctx, keyPublish(t, k.Kid, k.Node, now, now.Add(time.Minute))); err != nil {
					t.Errorf("retiring %s of the removed b through c: %v", k.Kid, err)
				}
				retired++
			}
			return true
		})
	})
	if retired == 0 {
		t.Fatal("no key of b to retire")
	}
	users0 := len(users(t, leader))
	applied0 := leader.Status().AppliedIndex

	// Removed, b gets nothing applied: not with its own certificate, nor
	// with one it mints for c's name, on its own key or a new one.
	fresh, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	bPriv := b.cfg.TLS.Cert.PrivateKey.(crypto.Signer)
	as := map[string]*ClusterTLS{
		"its own certificate":          b.cfg.TLS,
		"a certificate for c, its key": ic.mint(t, c.cfg.ID, bPriv),
		"a certificate for c, new key": ic.mint(t, c.cfg.ID, fresh),
		"a certificate for the leader": ic.mint(t, leader.cfg.ID, bPriv),
	}
	for how, ct := range as {
		for _, cmd := range []fsm.Command{
			userCmd(t, "made-by-removed-b"),
			keyPublish(t, "b-own", b.cfg.ID, time.Time{}, time.Time{}), // un-retire: refused by the state anyway
			keyPublish(t, "b-new", c.cfg.ID, time.Time{}, time.Time{}),
			keyPublish(t, "b-new2", b.cfg.ID, time.Time{}, time.Time{}),
			command(t, fsm.TypeMemberKey, fsm.MemberKey{Node: c.cfg.ID, SPKI: spkiHash(ct.Cert.Leaf)}),
		} {
			if err := forwardAs(ct, leader.cfg.Advertise, cmd); err == nil {
				t.Errorf("removed b with %s: %s applied", how, cmd.Type)
			}
		}
	}
	if _, err := b.Apply(ctx, userCmd(t, "made-by-removed-b-2")); err == nil {
		t.Error("removed b's own forwarding applied a write")
	}
	// Nor does the join token b made bring it back under a new name.
	if _, err := Join(ctx, bToken, JoinRequest{NodeID: "b-again", Advertise: loopback.Addr(t)}); err == nil {
		t.Error("a join token made by the removed b admitted a node")
	} else {
		t.Logf("join with b's token: %v", err)
	}
	if ids := suffrages(leader); len(ids) != 2 {
		t.Errorf("configuration %v after the removed b's attempts", ids)
	}
	if n := len(users(t, leader)); n != users0 {
		t.Errorf("%d users after the removed b's attempts, %d before", n, users0)
	}
	if a := leader.Status().AppliedIndex; a != applied0 {
		t.Errorf("the leader applied %d entries during the removed b's attempts", a-applied0)
	}

	// Nothing b published stays a current signing key, under any name.
	leader.View(func(r fsm.Reader) error {
		return r.PublicKeys(func(k *fsm.PublicKey) bool {
			if k.Node != leader.cfg.ID && k.Node != c.cfg.ID || strings.HasPrefix(k.Kid, "planted") || strings.HasPrefix(k.Kid, "b-") {
				if k.Signing(time.Now().Add(time.Second)) {
					t.Errorf("key %s labelled %s, published by b, still signs", k.Kid, k.Node)
				}
			}
			return true
		})
	})
	// c is still c, and keeps working.
	if got, _ := memberKeyOf(leader, c.cfg.ID); got != cKey {
		t.Errorf("c's recorded key is %q, want %q", got, cKey)
	}
	if _, err := c.Apply(ctx, userCmd(t, "c-after-removal")); err != nil {
		t.Errorf("c's write after b's removal: %v", err)
	}
	if _, err := c.Apply(ctx, command(t, fsm.TypeMemberKey, fsm.MemberKey{Node: c.cfg.ID, SPKI: cKey})); err != nil {
		t.Errorf("c recording its own key: %v", err)
	}
}

// impostor listens at addr presenting ct, completing handshakes and
// reading until the dialler goes.
func impostor(t *testing.T, addr string, ct *ClusterTLS) {
	t.Helper()
	ln, err := tls.Listen("tcp", addr, ct.serverConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				c.(*tls.Conn).Handshake()
				c.Read(make([]byte, 1))
			}()
		}
	}()
}

// TestDiallerChecksThePeer: a node dialling a member, for Raft, forwarding
// or membership, takes for it only a peer presenting that member's name
// and recorded key; anyone else answering at its address, holding a
// certificate of the cluster CA, is refused before a byte is sent.
func TestDiallerChecksThePeer(t *testing.T) {
	ic := startIdentityCluster(t)
	gone := ic.c
	addr := gone.cfg.Advertise
	gone.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fresh, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		ct   *ClusterTLS
	}{
		{"a certificate minted for its name on another key", ic.mint(t, gone.cfg.ID, fresh)},
		{"another member's own certificate", ic.b.cfg.TLS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			impostor(t, addr, tc.ct)
			raftLayer := &raftLayer{l: ic.leader.cluster}
			if c, err := raftLayer.Dial(raft.ServerAddress(addr), 2*time.Second); err == nil {
				c.Close()
				t.Fatal("Raft dialled the impostor")
			}
			if _, err := ic.leader.memberCall(ctx, gone.cfg.ID, addr, memberRequest{Op: opInfo}, 2*time.Second); err == nil {
				t.Fatal("a membership call went to the impostor")
			}
			if _, err := ic.leader.fwd.conn(gone.cfg.ID, addr, 2*time.Second); err == nil {
				t.Fatal("a forwarding connection went to the impostor")
			}
		})
	}
	// The real members pass.
	if c, err := (&raftLayer{l: ic.leader.cluster}).Dial(raft.ServerAddress(ic.b.cfg.Advertise), 2*time.Second); err != nil {
		t.Fatalf("Raft dialling b: %v", err)
	} else {
		c.Close()
	}
	if _, err := ic.leader.memberCall(ctx, ic.b.cfg.ID, ic.b.cfg.Advertise, memberRequest{Op: opInfo}, 2*time.Second); err != nil {
		t.Fatalf("info from b: %v", err)
	}
}

// TestCertifyNamesOnlyTheCaller: a CA holder issues a member a
// certificate for its own name and recorded key only, naming no other
// member's name or address.
func TestCertifyNamesOnlyTheCaller(t *testing.T) {
	ic := startIdentityCluster(t)
	holder, b := ic.leader, ic.b
	holder.EnableJoin(ic.ca.cert, fakeKeys{keys: map[string]crypto.Signer{pki.CAKeyName: ic.ca.key}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	own, err := x509.MarshalPKIXPublicKey(b.cfg.TLS.Cert.Leaf.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := x509.MarshalPKIXPublicKey(fresh.Public())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		pub   []byte
		hosts []string
	}{
		{"another key", other, nil},
		{"another member's name as a host", own, []string{ic.c.cfg.ID}},
		{"the leader's name as a host", own, []string{strings.ToUpper(holder.cfg.ID)}},
	} {
		ans := holder.certifyLocal(ctx, memberRequest{Op: opCertify, ID: b.cfg.ID, Pub: tc.pub, Hosts: tc.hosts}, b.cfg.ID)
		if ans.Cert != nil || ans.Code != "refused" {
			t.Errorf("%s: issued %v, code %q, %s", tc.name, ans.Cert != nil, ans.Code, ans.Error)
		}
	}
	// Over the wire too.
	if _, err := b.RenewCertificate(ctx, fresh.Public(), nil, ""); err == nil {
		t.Error("b renewed its certificate for another key")
	}
	// Its own name and key, with a host of its own, are fine.
	cert, err := b.RenewCertificate(ctx, b.cfg.TLS.Cert.Leaf.PublicKey, []string{"b.example.com"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != b.cfg.ID || cert.VerifyHostname("b.example.com") != nil || cert.VerifyHostname(ic.c.cfg.ID) == nil {
		t.Fatalf("certificate for %q, hosts %v %v", cert.Subject.CommonName, cert.DNSNames, cert.IPAddresses)
	}
}
