package authcore

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/auditsig"
	"github.com/bulwark-auth/bulwark/internal/waitfor"
)

// checkAuditSig verifies a checkpoint signature as an offline verifier does.
func checkAuditSig(k *fsm.AuditPublicKey, msg, sig []byte) error {
	switch k.Alg {
	case fsm.AuditAlgES256:
		pub, err := x509.ParsePKIXPublicKey(k.Public)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(msg)
		if ec, ok := pub.(*ecdsa.PublicKey); ok && ecdsa.VerifyASN1(ec, sum[:], sig) {
			return nil
		}
	case fsm.AuditAlgMLDSA65:
		var pub mldsa65.PublicKey
		if err := pub.UnmarshalBinary(k.Public); err != nil {
			return err
		}
		if mldsa65.Verify(&pub, msg, nil, sig) {
			return nil
		}
	}
	return errors.New("bad signature")
}

// newCheckpointService is a service with a key vault over a store at level.
func newCheckpointService(t *testing.T, level int, opts ...Option) (*Service, *localStore, *memVault) {
	t.Helper()
	st := newLocalStore(t)
	raise, _ := fsm.NewCommand(fsm.TypeClusterLevel, 1, 1, fsm.ClusterLevel{Level: level})
	if _, err := st.Apply(context.Background(), raise); err != nil {
		t.Fatal(err)
	}
	v := newMemVault()
	s, err := New(st, Config{Hash: testHash, Policy: PasswordPolicy{MinLength: 12, MaxLength: 128},
		Issuer: "https://bulwark.test:8443", NodeID: "n1"}, append([]Option{WithClock(newClock()), WithKeyVault(v)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return s, st, v
}

func appendEvents(t *testing.T, s *Service, n int) {
	t.Helper()
	for range n {
		cmd, _ := fsm.NewCommand(fsm.TypeAuditAppend, 1, s.now().UnixNano(), fsm.AuditAppend{Type: "test.event", Severity: fsm.AuditInfo})
		if _, err := s.propose(context.Background(), cmd); err != nil {
			t.Fatal(err)
		}
	}
}

func trailOf(t *testing.T, s *Service) (last *fsm.AuditEntry, cp *fsm.AuditCheckpointRecord, rep fsm.AuditTrailReport, verr error) {
	t.Helper()
	if err := s.store.View(func(r fsm.Reader) (err error) {
		if last, err = r.AuditLast(); err != nil {
			return err
		}
		if cp, err = r.LastAuditCheckpoint(); err != nil {
			return err
		}
		rep, verr = r.VerifyAuditTrail(checkAuditSig)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return last, cp, rep, verr
}

func TestAuditCheckpointBelowLevel4(t *testing.T) {
	s, _, v := newCheckpointService(t, 3)
	appendEvents(t, s, 2)
	if _, err := s.CheckpointAudit(context.Background()); !errors.Is(err, ErrAuditKeysNotRecorded) {
		t.Fatalf("CheckpointAudit at level 3: %v", err)
	}
	if err := s.PublishAuditKeys(context.Background()); !errors.Is(err, ErrAuditKeysNotRecorded) {
		t.Fatalf("PublishAuditKeys at level 3: %v", err)
	}
	if _, ok := v.PrivateKey(AuditES256KeyName); ok {
		t.Error("audit keys made at level 3, where nothing records them")
	}
}

// TestAuditCheckpointSchedule: every N entries or T, whichever first, and
// none while nothing was added; each checkpoint verifies against the keys
// the node published, whose private halves stay in its vault.
func TestAuditCheckpointSchedule(t *testing.T) {
	s, _, v := newCheckpointService(t, fsm.MaxLevel)
	clk := s.clock.(interface{ Advance(time.Duration) })
	ctx := context.Background()
	due := s.checkpointDue(5, time.Minute)
	run := func() *fsm.AuditCheckpointRecord {
		t.Helper()
		unlock, err := s.lockCheckpoints(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer unlock()
		cp, err := s.checkpoint(ctx, due)
		if err != nil {
			t.Fatal(err)
		}
		return cp
	}
	if cp := run(); cp != nil {
		t.Fatalf("a checkpoint of an empty trail: %+v", cp)
	}
	appendEvents(t, s, 1)
	if cp := run(); cp != nil {
		t.Fatalf("checkpoint after 1 entry and no time: %+v", cp)
	}
	clk.Advance(time.Minute)
	cp := run()
	last, stored, rep, err := trailOf(t, s)
	if cp == nil || stored == nil || cp.Seq != stored.Seq || err != nil || rep.Checkpoints != 1 {
		t.Fatalf("after T: checkpoint %+v, stored %+v, verify %+v %v", cp, stored, rep, err)
	}
	// The keys were published (with their audit entries) before it.
	if cp.Seq < 3 || last.Seq != cp.EntrySeq || last.Type != "audit.checkpoint" {
		t.Fatalf("checkpoint of seq %d recorded at %d; the newest entry is %+v", cp.Seq, cp.EntrySeq, last)
	}
	for _, name := range []string{AuditES256KeyName, AuditMLDSA65KeyName} {
		if _, ok := v.PrivateKey(name); !ok {
			t.Errorf("%s is not in the vault", name)
		}
	}

	// Entries: the fifth after the checkpoint's seq (its record counts)
	// makes one due before T.
	appendEvents(t, s, 3)
	if got := run(); got != nil {
		t.Fatalf("checkpoint after 4 entries: %+v", got)
	}
	appendEvents(t, s, 1)
	next := run()
	if next == nil || next.Seq != cp.Seq+5 {
		t.Fatalf("after 5 entries: %+v", next)
	}
	if _, _, rep, err := trailOf(t, s); err != nil || rep.Checkpoints != 2 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	if n, err := s.VerifyAudit(ctx); err != nil || n != next.EntrySeq {
		t.Fatalf("the daemon's verify: %d %v", n, err)
	}
	// Nothing added since but its own record: no checkpoint, however long.
	clk.Advance(time.Hour)
	if again := run(); again == nil || again.Seq != next.Seq {
		t.Fatalf("idle trail checkpointed again: %+v", again)
	}
	// Forced, as a lockdown does.
	appendEvents(t, s, 1)
	forced, err := s.CheckpointAudit(ctx)
	if err != nil || forced == nil || forced.Seq != next.EntrySeq+1 {
		t.Fatalf("forced checkpoint: %+v %v", forced, err)
	}
}

// TestAuditCheckpointsOnlyOnTheLeader: the scheduled loop writes nothing
// on a node that does not lead.
func TestAuditCheckpointsOnlyOnTheLeader(t *testing.T) {
	var leads atomic.Bool
	var asked atomic.Int32
	s, _, _ := newCheckpointService(t, fsm.MaxLevel, WithLeader(func() bool { asked.Add(1); return leads.Load() }))
	clk := s.clock.(interface {
		Advance(time.Duration)
		Waiting() int
	})
	appendEvents(t, s, 3)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.RunAuditCheckpoints(ctx, 1000, time.Minute, time.Second); close(done) }()
	defer func() { cancel(); <-done }()
	waitfor.True(t, "the loop waits on the clock", 5*time.Second, time.Millisecond, func() bool { return clk.Waiting() > 0 })
	for i := range 3 {
		clk.Advance(time.Minute)
		waitfor.True(t, "the loop asks whether it leads", 5*time.Second, time.Millisecond, func() bool { return asked.Load() > int32(i) })
	}
	if _, cp, _, _ := trailOf(t, s); cp != nil {
		t.Fatalf("a follower wrote a checkpoint: %+v", cp)
	}
	leads.Store(true)
	clk.Advance(time.Minute)
	waitfor.True(t, "a checkpoint by the leader", 5*time.Second, 5*time.Millisecond, func() bool {
		_, cp, _, err := trailOf(t, s)
		return cp != nil && err == nil
	})
}

// TestCheckAuditSignature: the daemon's check (`bulwark audit verify`
// without flags) accepts what the node signs and refuses either signature
// altered.
func TestCheckAuditSignature(t *testing.T) {
	a, err := loadAuditSigner(newMemVault())
	if err != nil {
		t.Fatal(err)
	}
	cp := fsm.AuditCheckpoint{Seq: 9, Hash: strings.Repeat("ab", 32), Time: 1, Node: "n1"}
	if err := a.sign(&cp); err != nil {
		t.Fatal(err)
	}
	keys := a.keys("n1")
	check := func(i int, sig []byte) error {
		k := &fsm.AuditPublicKey{AuditKey: keys[i]}
		return auditsig.Check(k, cp.Preimage(), sig)
	}
	if err := check(0, cp.ES256Sig); err != nil {
		t.Fatalf("ES256: %v", err)
	}
	if err := check(1, cp.MLDSA65Sig); err != nil {
		t.Fatalf("ML-DSA-65: %v", err)
	}
	for i, sig := range [][]byte{cp.ES256Sig, cp.MLDSA65Sig} {
		bad := bytes.Clone(sig)
		bad[len(bad)/2] ^= 1
		if err := check(i, bad); err == nil {
			t.Errorf("%s: an altered signature verifies", keys[i].Alg)
		}
		if err := check(1-i, sig); err == nil {
			t.Errorf("%s signature verifies under the other key", keys[i].Alg)
		}
	}
}
