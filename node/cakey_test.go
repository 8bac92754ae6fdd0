package node

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/fsm/fsmtest"
	"github.com/bulwark-auth/bulwark/internal/clock"
	"github.com/bulwark-auth/bulwark/node/pki"
	"github.com/bulwark-auth/bulwark/tpm"
)

// memKeys is a keystore in memory that can be written (CAKeystore,
// JoinedKeystore).
type memKeys struct {
	mu      sync.Mutex
	keys    map[string]crypto.Signer
	secrets map[string][]byte
}

func newMemKeys() *memKeys {
	return &memKeys{keys: map[string]crypto.Signer{}, secrets: map[string][]byte{}}
}

func (k *memKeys) PrivateKey(name string) (crypto.Signer, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	s, ok := k.keys[name]
	return s, ok
}

func (k *memKeys) Put(name string, key crypto.Signer) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.keys[name] = key
	return nil
}

func (k *memKeys) Secret(name string) ([]byte, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	b, ok := k.secrets[name]
	return bytes.Clone(b), ok
}

func (k *memKeys) PutSecret(name string, b []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.secrets[name] = bytes.Clone(b)
	return nil
}

func newCAKey(t *testing.T) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.NewCA("test", key, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return key, ca
}

func auditTypes(t *testing.T, ms *fsmtest.Store) string {
	t.Helper()
	var types []string
	ms.View(func(r fsm.Reader) error {
		return r.AuditAfter(0, 100, func(e *fsm.AuditEntry) bool { types = append(types, e.Type+"/"+e.Actor); return true })
	})
	return strings.Join(types, ",")
}

// TestCAKeyShared: the CA holder shares its key through the state, sealed
// under the data key, once every member applies ca.key; a member with the
// same data key adopts it and is marked as joined; a node of another CA
// or another data key adopts nothing.
func TestCAKeyShared(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	caKey, ca := newCAKey(t)
	dataKey := tpm.NewDataKey()
	holder, member := newMemKeys(), newMemKeys()
	holder.Put(pki.CAKeyName, caKey)
	holder.PutSecret(tpm.DataKeyName, dataKey)
	member.PutSecret(tpm.DataKeyName, dataKey)
	if HasJoined(holder) || !HasJoined(member) {
		t.Fatalf("joined: holder %v, member %v; want false, true", HasJoined(holder), HasJoined(member))
	}
	ms := fsmtest.New(t)

	// Not before the cluster's feature level records the key.
	if done, err := syncCAKey(ctx, holder, ms, clock.Real{}, ca, "a", log); done || err == nil || !strings.Contains(err.Error(), "level 2") {
		t.Fatalf("below level 2: done %v, %v", done, err)
	}
	for _, c := range []fsm.Command{command(t, fsm.TypeClusterLevel, fsm.ClusterLevel{Level: 2}),
		command(t, fsm.TypeDataKeyRegister, fsm.DataKeyRegister{Fingerprint: tpm.DataKeyFingerprint(dataKey)})} {
		if _, err := ms.Apply(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if done, err := syncCAKey(ctx, member, ms, clock.Real{}, ca, "b", log); done || err == nil || !strings.Contains(err.Error(), "waiting for a member holding") {
		t.Fatalf("nothing shared yet: done %v, %v", done, err)
	}
	// The holder shares it, then is done.
	if done, err := syncCAKey(ctx, holder, ms, clock.Real{}, ca, "a", log); done || err != nil {
		t.Fatalf("share: done %v, %v", done, err)
	}
	if done, err := syncCAKey(ctx, holder, ms, clock.Real{}, ca, "a", log); !done || err != nil {
		t.Fatalf("shared: done %v, %v", done, err)
	}
	var rec *fsm.CAKey
	ms.View(func(r fsm.Reader) error { var err error; rec, err = r.CAKey(); return err })
	if rec == nil || rec.Pin != pki.Pin(ca) || rec.DataKey != tpm.DataKeyFingerprint(dataKey) {
		t.Fatalf("record %+v", rec)
	}
	// A member of another data key does not adopt it.
	stranger := newMemKeys()
	stranger.PutSecret(tpm.DataKeyName, tpm.NewDataKey())
	if done, err := syncCAKey(ctx, stranger, ms, clock.Real{}, ca, "c", log); !done || err != nil {
		t.Fatalf("another data key: done %v, %v", done, err)
	}
	if _, ok := stranger.PrivateKey(pki.CAKeyName); ok {
		t.Fatal("a member of another data key adopted the CA key")
	}
	// A member of another CA does not either.
	_, otherCA := newCAKey(t)
	if done, err := syncCAKey(ctx, member, ms, clock.Real{}, otherCA, "b", log); !done || err != nil {
		t.Fatalf("another CA: done %v, %v", done, err)
	}
	if _, ok := member.PrivateKey(pki.CAKeyName); ok {
		t.Fatal("a member of another CA adopted the CA key")
	}
	// The member adopts it (shareCAKey runs until then) and is marked.
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	shareCAKey(sctx, member, ms, clock.Real{}, ca, "b", log, time.Millisecond)
	got, ok := member.PrivateKey(pki.CAKeyName)
	if !ok || !pki.SamePublicKey(got.Public(), ca.PublicKey) {
		t.Fatal("the member did not adopt the CA key")
	}
	if !HasJoined(member) {
		t.Error("a member that adopted the CA key is not marked as joined")
	}
	if got, want := auditTypes(t, ms), "cluster.ca_key_shared/node:a,cluster.ca_key_adopted/node:b"; got != want {
		t.Errorf("audit %s, want %s", got, want)
	}
}

// TestMarkWhenClustered: the node that made the cluster is marked once it
// has another voter, so that it never bootstraps again.
func TestMarkWhenClustered(t *testing.T) {
	nodes := startCluster(t, 2)
	ks := newMemKeys()
	caKey, _ := newCAKey(t)
	ks.Put(pki.CAKeyName, caKey)
	if HasJoined(ks) {
		t.Fatal("a CA holder without the marker counts as joined")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nodes[0].MarkWhenClustered(ctx, ks)
	if !HasJoined(ks) {
		t.Fatal("a node of a two-voter cluster is not marked")
	}
}
