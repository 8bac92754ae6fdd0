package node

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/clock"
	"github.com/bulwark-auth/bulwark/internal/waitfor"
	"github.com/bulwark-auth/bulwark/node/loopback"
	"github.com/bulwark-auth/bulwark/node/pki"
	"github.com/bulwark-auth/bulwark/tpm"
)

func TestJoin(t *testing.T) {
	ca := newTestCA(t)
	addrA := loopback.Addr(t)
	tlsA := ca.clusterTLS(t, "a")
	tlsA.Cert.Certificate = append(tlsA.Cert.Certificate, ca.cert.Raw) // the joiner checks the pin
	// A's clock, and the joiners' in the refusals below, moves when the
	// test advances it (the expired token). It starts at the real time:
	// the certificates A issues must be valid by the real clock TLS checks
	// them against.
	clk := clock.NewFake(time.Now())
	a := openClusterNode(t, "a", addrA, tlsA, false, func(c *Config) { c.Clock = clk })
	waitLeader(t, []*Node{a})
	dataKey := tpm.NewDataKey()
	a.EnableJoin(ca.cert, fakeKeys{keys: map[string]crypto.Signer{pki.CAKeyName: ca.key},
		secrets: map[string][]byte{tpm.DataKeyName: dataKey}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	tok, exp, err := a.CreateJoinToken(ctx, time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, "bwj1.") || time.Until(exp) < 59*time.Minute {
		t.Fatalf("token %q expiring %v", tok, exp)
	}
	parsed, err := ParseJoinToken(tok)
	if err != nil || parsed.Pin != pki.Pin(ca.cert) || len(parsed.Addrs) != 1 || parsed.Addrs[0] != addrA {
		t.Fatalf("token %+v: %v", parsed, err)
	}
	createUser(t, a, "before-join")

	// B joins, gets the data key, becomes a voter and replicates.
	b, jb := joinAndOpen(t, tok, "b")
	if !bytes.Equal(jb.DataKey, dataKey) {
		t.Fatal("the joined node did not receive the cluster data key")
	}
	if jb.Cert.Subject.CommonName != "b" || pki.Pin(jb.CA) != pki.Pin(ca.cert) {
		t.Fatalf("certificate for %q from CA %s", jb.Cert.Subject.CommonName, pki.Pin(jb.CA))
	}
	waitVoters(t, a, "a", "b")
	createUser(t, a, "after-join")
	waitUsers(t, b, 2)
	if _, err := b.Apply(ctx, userCmd(t, "through-b")); err != nil {
		t.Fatalf("write through the joined node: %v", err)
	}
	waitUsers(t, a, 3)

	// Refusals, each with its own error; none changes the cluster or the
	// joiner's (still empty) data directory, and the good token they
	// tampered with still works afterwards.
	fresh, _, err := a.CreateJoinToken(ctx, time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	short, _, err := a.CreateJoinToken(ctx, time.Minute, "test")
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute) // short expires; fresh has 59 minutes left
	tamper := func(tok string, fn func(*JoinToken)) string {
		p, err := ParseJoinToken(tok)
		if err != nil {
			t.Fatal(err)
		}
		fn(&p)
		return p.String()
	}
	other := newTestCA(t)
	dirC := t.TempDir()
	for _, tc := range []struct {
		name, token string
		want        error
		says        string
	}{
		{"used", tok, fsm.ErrJoinTokenUsed, "already used"},
		{"expired", short, fsm.ErrJoinTokenExpired, "expired"},
		{"expiry extended by the holder", tamper(short, func(p *JoinToken) { p.Expires = time.Now().Add(time.Hour) }), fsm.ErrJoinTokenExpired, "join refused by"},
		{"wrong secret", tamper(fresh, func(p *JoinToken) { p.Secret = make([]byte, 32); rand.Read(p.Secret) }), fsm.ErrJoinTokenUnknown, "does not know this join token"},
		{"wrong pin", tamper(fresh, func(p *JoinToken) { p.Pin = pki.Pin(other.cert) }), ErrJoinPin, "pinned"},
		{"not a token", "bwj1.!!", ErrJoinTokenMalformed, "malformed"},
		{"unreachable", tamper(fresh, func(p *JoinToken) { p.Addrs = []string{loopback.Addr(t)} }), ErrJoinUnreachable, "cannot reach"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Join(ctx, tc.token, JoinRequest{NodeID: "c", Advertise: loopback.Addr(t), Clock: clk})
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("join: %v, want %v saying %q", err, tc.want, tc.says)
			}
			for _, other := range []error{fsm.ErrJoinTokenUsed, fsm.ErrJoinTokenExpired, fsm.ErrJoinTokenUnknown, ErrJoinPin, ErrJoinTokenMalformed, ErrJoinUnreachable} {
				if other != tc.want && errors.Is(err, other) {
					t.Fatalf("join: %v is also %v", err, other)
				}
			}
		})
	}
	// A name already in the cluster is refused before the token is spent.
	if _, err := Join(ctx, fresh, JoinRequest{NodeID: "b", Advertise: loopback.Addr(t)}); err == nil || !strings.Contains(err.Error(), "already a member") {
		t.Fatalf("join as an existing name: %v", err)
	}
	if got := suffrages(a); len(got) != 2 {
		t.Fatalf("refused joins changed the configuration: %v", got)
	}
	if ents, _ := os.ReadDir(dirC); len(ents) != 0 {
		t.Fatalf("refused joins wrote %d files", len(ents))
	}

	// A node without the CA key makes tokens too; they send the joiner to
	// the member that holds it.
	b.EnableJoin(jb.CA, fakeKeys{})
	viaB, _, err := b.CreateJoinToken(ctx, time.Hour, "test")
	if err != nil {
		t.Fatalf("join-token on a node without the CA key: %v", err)
	}
	if p, err := ParseJoinToken(viaB); err != nil || len(p.Addrs) != 1 || p.Addrs[0] != addrA || p.Pin != pki.Pin(ca.cert) {
		t.Fatalf("token made by b: %+v, %v", p, err)
	}

	// C joins through A while B leads: the token is consumed through
	// forwarding and the membership changes go to B over 'M'.
	// (On a loaded machine a can lose its lease to b's silence and step
	// down first; the transfer is then asked again of whoever leads.)
	waitfor.Nil(t, "b leading", 20*time.Second, 50*time.Millisecond, func() error {
		l := waitLeader(t, []*Node{a, b})
		if l == b {
			return nil
		}
		if err := l.raft.LeadershipTransferToServer("b", raft.ServerAddress(b.cfg.Advertise)).Error(); err != nil {
			return fmt.Errorf("transfer from %s to b: %w", l.cfg.ID, err)
		}
		if l := waitLeader(t, []*Node{a, b}); l != b {
			return fmt.Errorf("leader is %s", l.cfg.ID)
		}
		return nil
	})
	c, _ := joinAndOpen(t, viaB, "c")
	waitVoters(t, b, "a", "b", "c")
	waitVoters(t, a, "a", "b", "c")
	waitUsers(t, c, 3)

	st, err := a.ClusterStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// One leader, the one the status names: b, unless an election moved
	// it since the transfer (a busy machine can delay heartbeats).
	var leaders []string
	for _, m := range st.Nodes {
		if m.Leader {
			leaders = append(leaders, m.ID)
		}
		if m.Suffrage != "voter" || !m.Reachable || m.AppliedIndex == 0 || m.CA != (m.ID == "a") {
			t.Errorf("status of %s: %+v", m.ID, m)
		}
	}
	if len(st.Nodes) != 3 || len(leaders) != 1 || st.LeaderID != leaders[0] {
		t.Fatalf("status %+v", st)
	}

	// The leader records a joiner's key as it admits it, before the node
	// ever runs (a member records only its own key; authority.go): here
	// admitted by a, a follower.
	viaA, _, err := a.CreateJoinToken(ctx, time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	jd, err := Join(ctx, viaA, JoinRequest{NodeID: "d", Advertise: loopback.Addr(t)})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := memberKeyOf(b, "d"); got != spkiHash(jd.Cert) {
		t.Fatalf("key recorded for the admitted d: %q, want %q", got, spkiHash(jd.Cert))
	}
	if err := a.RemoveMember(ctx, "d", "test"); err != nil {
		t.Fatal(err)
	}
	// Removing d revoked its certificate and marked d removed; a join
	// admitting the name again ends the mark, so the new certificate is
	// recorded, not revoked as a renewal recorded late would be.
	again, _, err := a.CreateJoinToken(ctx, time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	jd2, err := Join(ctx, again, JoinRequest{NodeID: "d", Advertise: loopback.Addr(t)})
	if err != nil {
		t.Fatalf("d joins again after its removal: %v", err)
	}
	old, renewed := jd.Cert.SerialNumber.Text(16), jd2.Cert.SerialNumber.Text(16)
	waitfor.Nil(t, "d's certificates as b applied them", 10*time.Second, 20*time.Millisecond, func() error {
		return b.View(func(r fsm.Reader) error {
			revoked := map[string]bool{}
			for _, rc := range r.RevokedCerts() {
				revoked[rc.Serial] = true
			}
			if _, issued := r.CertsIssued("d")[renewed]; !issued || revoked[renewed] || !revoked[old] {
				return fmt.Errorf("d joined again: its new certificate issued %v revoked %v, the old one revoked %v; want kept, and the old one revoked",
					issued, revoked[renewed], revoked[old])
			}
			return nil
		})
	})
	if err := a.RemoveMember(ctx, "d", "test"); err != nil {
		t.Fatal(err)
	}

	// Removal, from a follower, goes to the leader.
	if err := a.RemoveMember(ctx, "nope", "test"); !errors.Is(err, ErrNotMember) {
		t.Fatalf("remove an unknown node: %v", err)
	}
	if err := a.RemoveMember(ctx, "c", "test"); err != nil {
		t.Fatal(err)
	}
	waitVoters(t, b, "a", "b")
}
