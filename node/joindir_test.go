package node

import (
	"bytes"
	"context"
	"crypto"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/node/loopback"
	"github.com/bulwark-auth/bulwark/node/pki"
	"github.com/bulwark-auth/bulwark/tpm"
)

// TestJoinAttempt: a join stores what the cluster sent in the keystore and
// the data directory, marked as joined; one that fails leaves the data
// directory as it found it, present and empty or absent; a used data
// directory or a bad token is refused before anything is written.
func TestJoinAttempt(t *testing.T) {
	ca := newTestCA(t)
	addrA := loopback.Addr(t)
	tlsA := ca.clusterTLS(t, "a")
	tlsA.Cert.Certificate = append(tlsA.Cert.Certificate, ca.cert.Raw) // the joiner checks the pin
	a := openClusterNode(t, "a", addrA, tlsA, false)
	waitLeader(t, []*Node{a})
	dataKey := tpm.NewDataKey()
	a.EnableJoin(ca.cert, fakeKeys{keys: map[string]crypto.Signer{pki.CAKeyName: ca.key},
		secrets: map[string][]byte{tpm.DataKeyName: dataKey}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tok, _, err := a.CreateJoinToken(ctx, time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)

	// Refused before anything is written.
	used := t.TempDir()
	os.WriteFile(filepath.Join(used, "state.db"), nil, 0o600)
	for _, tc := range []struct{ dir, token, says string }{
		{used, tok, "--join needs an empty data directory, and " + used + " holds state.db"},
		{t.TempDir(), "bwj1.!!", "--join: the join token is malformed"},
	} {
		if _, err := BeginJoin(tc.dir, tc.token); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("BeginJoin: %v, want %q", err, tc.says)
		}
	}

	// A join that fails (the cluster is not at this address) leaves an
	// absent data directory absent and an empty one empty.
	p, _ := ParseJoinToken(tok)
	p.Addrs = []string{loopback.Addr(t)}
	for _, dir := range []string{filepath.Join(t.TempDir(), "absent"), t.TempDir()} {
		_, existed := os.Stat(dir)
		j, err := BeginJoin(dir, p.String())
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Join(dir, "tpm"), 0o700) // what a start writes before the join
		if err := j.Run(ctx, newMemKeys(), JoinRequest{NodeID: "c", Advertise: loopback.Addr(t)}, log); err == nil {
			t.Fatal("a join to an address without a cluster succeeded")
		}
		j.Abandon()
		ents, err := os.ReadDir(dir)
		switch {
		case existed != nil && err == nil:
			t.Errorf("a failed join left %s behind", dir)
		case existed == nil && len(ents) != 0:
			t.Errorf("a failed join left %d entries in %s", len(ents), dir)
		}
	}

	// A join that succeeds stores what was sent, and Abandon leaves it.
	dir := t.TempDir()
	j, err := BeginJoin(dir, tok)
	if err != nil {
		t.Fatal(err)
	}
	ks := newMemKeys()
	if err := j.Run(ctx, ks, JoinRequest{NodeID: "b", Advertise: loopback.Addr(t)}, log); err != nil {
		t.Fatal(err)
	}
	j.Abandon()
	if !HasJoined(ks) {
		t.Error("a node that joined is not marked so")
	}
	if got, ok := ks.Secret(tpm.DataKeyName); !ok || !bytes.Equal(got, dataKey) {
		t.Error("the keystore does not hold the cluster's data key")
	}
	key, ok := ks.PrivateKey(pki.NodeKeyName)
	if !ok {
		t.Fatal("no node key in the keystore")
	}
	b, err := os.ReadFile(filepath.Join(dir, pki.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	if certs, err := pki.ParseCertPEM(b); err != nil || pki.Pin(certs[0]) != pki.Pin(ca.cert) {
		t.Fatalf("%s: %v", pki.CAFile, err)
	}
	b, err = os.ReadFile(filepath.Join(dir, pki.NodeCertFile))
	if err != nil {
		t.Fatal(err)
	}
	if certs, err := pki.ParseCertPEM(b); err != nil || certs[0].Subject.CommonName != "b" ||
		!pki.SamePublicKey(certs[0].PublicKey, key.Public()) {
		t.Fatalf("%s: %v", pki.NodeCertFile, err)
	}
}
