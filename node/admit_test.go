package node

import (
	"context"
	"crypto"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/node/loopback"
	"github.com/bulwark-auth/bulwark/node/pki"
	"github.com/bulwark-auth/bulwark/tpm"
)

// TestBeforeAdmit: the leader runs its BeforeAdmit hook before it adds a
// joining node, so what the hook writes (serve: the cluster's
// tokens.issuer) is in the log the joiner receives; a hook's error refuses
// the join and adds nobody.
func TestBeforeAdmit(t *testing.T) {
	ca := newTestCA(t)
	addrA := loopback.Addr(t)
	tlsA := ca.clusterTLS(t, "a")
	tlsA.Cert.Certificate = append(tlsA.Cert.Certificate, ca.cert.Raw)
	a := openClusterNode(t, "a", addrA, tlsA, false)
	waitLeader(t, []*Node{a})
	a.EnableJoin(ca.cert, fakeKeys{keys: map[string]crypto.Signer{pki.CAKeyName: ca.key},
		secrets: map[string][]byte{tpm.DataKeyName: tpm.NewDataKey()}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	calls := 0
	a.BeforeAdmit(func(ctx context.Context) error {
		calls++
		if calls == 1 {
			return errors.New("not settled")
		}
		if _, ok := suffrages(a)["b"]; ok {
			t.Error("the hook ran after b was added")
		}
		createUser(t, a, "settled-before-b")
		return nil
	})
	refused, _, err := a.CreateJoinToken(ctx, time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Join(ctx, refused, JoinRequest{NodeID: "c", Advertise: loopback.Addr(t)}); err == nil || !strings.Contains(err.Error(), "not settled") {
		t.Fatalf("join with a failing hook: %v, want a refusal naming its error", err)
	}
	if got := suffrages(a); len(got) != 1 {
		t.Fatalf("a refused join changed the configuration: %v", got)
	}

	tok, _, err := a.CreateJoinToken(ctx, time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := joinAndOpen(t, tok, "b")
	waitVoters(t, a, "a", "b")
	waitUsers(t, b, 1)
	if calls != 2 {
		t.Fatalf("the hook ran %d times, want 2", calls)
	}
}
