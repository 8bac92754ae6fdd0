package fsm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	bolt "go.etcd.io/bbolt"
)

// auditSigner holds a node's two audit keys, as authcore does.
type auditSigner struct {
	node string
	ec   *ecdsa.PrivateKey
	ml   *mldsa65.PrivateKey
}

func newAuditSigner(t testing.TB, node string) *auditSigner {
	t.Helper()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ml, err := mldsa65.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &auditSigner{node: node, ec: ec, ml: ml}
}

func (a *auditSigner) keys(t testing.TB) []AuditKey {
	t.Helper()
	spki, err := x509.MarshalPKIXPublicKey(&a.ec.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ml, err := a.ml.Public().(*mldsa65.PublicKey).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return []AuditKey{
		{Kid: AuditKeyID(spki), Node: a.node, Alg: AuditAlgES256, Public: spki},
		{Kid: AuditKeyID(ml), Node: a.node, Alg: AuditAlgMLDSA65, Public: ml},
	}
}

func (a *auditSigner) sign(t testing.TB, seq uint64, hash string, at time.Time) AuditCheckpoint {
	t.Helper()
	k := a.keys(t)
	cp := AuditCheckpoint{Seq: seq, Hash: hash, Time: at.UnixNano(), Node: a.node, ES256Kid: k[0].Kid, MLDSA65Kid: k[1].Kid}
	msg := cp.Preimage()
	sum := sha256.Sum256(msg)
	var err error
	if cp.ES256Sig, err = ecdsa.SignASN1(rand.Reader, a.ec, sum[:]); err != nil {
		t.Fatal(err)
	}
	if cp.MLDSA65Sig, err = a.ml.Sign(rand.Reader, msg, crypto.Hash(0)); err != nil {
		t.Fatal(err)
	}
	return cp
}

// checkAuditSig is the verifier's SignatureCheck, as node supplies it.
func checkAuditSig(k *AuditPublicKey, msg, sig []byte) error {
	switch k.Alg {
	case AuditAlgES256:
		pub, err := x509.ParsePKIXPublicKey(k.Public)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(msg)
		if ec, ok := pub.(*ecdsa.PublicKey); !ok || !ecdsa.VerifyASN1(ec, sum[:], sig) {
			return errors.New("bad signature")
		}
	case AuditAlgMLDSA65:
		var pub mldsa65.PublicKey
		if err := pub.UnmarshalBinary(k.Public); err != nil {
			return err
		}
		if !mldsa65.Verify(&pub, msg, nil, sig) {
			return errors.New("bad signature")
		}
	default:
		return errors.New("unknown alg")
	}
	return nil
}

// applyRaw applies one command at index and returns its result.
func applyRaw(t testing.TB, s *Store, index uint64, typ Type, at time.Time, payload any) Result {
	t.Helper()
	return s.ApplyBatch([]Entry{{Index: index, Term: 1, Command: true, Data: mustEncode(t, typ, at, payload)}})[0]
}

// trailWithCheckpoints builds a trail: keys at index 1-2, then rounds of
// n entries each followed by a checkpoint of the newest entry. It returns
// the next free log index.
func trailWithCheckpoints(t testing.TB, s *Store, a *auditSigner, rounds, n int) uint64 {
	t.Helper()
	for i, k := range a.keys(t) {
		if r := applyRaw(t, s, uint64(1+i), TypeAuditKey, t0, k); r.Err != nil {
			t.Fatalf("audit.key: %v", r.Err)
		}
	}
	index := uint64(3)
	for range rounds {
		appendSamples(t, s, index, n)
		index += uint64(n)
		last := lastAuditOf(t, s)
		r := applyRaw(t, s, index, TypeAuditCheckpoint, t0, a.sign(t, last.Seq, last.Hash, t0))
		if r.Err != nil {
			t.Fatalf("checkpoint of %d: %v", last.Seq, r.Err)
		}
		index++
	}
	return index
}

func verifyTrail(t testing.TB, s *Store) (rep AuditTrailReport, err error) {
	t.Helper()
	if verr := s.View(func(r Reader) error { rep, err = r.VerifyAuditTrail(checkAuditSig); return nil }); verr != nil {
		t.Fatal(verr)
	}
	return rep, err
}

func TestAuditCheckpointApply(t *testing.T) {
	s := openTestStore(t)
	a := newAuditSigner(t, "node1")
	keys := a.keys(t)

	// audit.key: the form is checked, a key belongs to one node.
	bad := keys[0]
	bad.Kid = strings.Repeat("0", 64)
	short := keys[1]
	short.Public = short.Public[:100]
	short.Kid = AuditKeyID(short.Public)
	index := uint64(1)
	for name, k := range map[string]AuditKey{"kid not the key's hash": bad, "short ML-DSA key": short,
		"unknown alg": {Kid: keys[0].Kid, Node: "node1", Alg: "RS256", Public: keys[0].Public}} {
		if r := applyRaw(t, s, index, TypeAuditKey, t0, k); !errors.Is(r.Err, ErrInvalidCommand) {
			t.Errorf("%s: %v, want ErrInvalidCommand", name, r.Err)
		}
		index++
	}
	for _, k := range keys {
		if r := applyRaw(t, s, index, TypeAuditKey, t0, k); r.Err != nil {
			t.Fatal(r.Err)
		}
		index++
	}
	other := keys[0]
	other.Node = "node2"
	if r := applyRaw(t, s, index, TypeAuditKey, t0, other); !errors.Is(r.Err, ErrInvalidCommand) {
		t.Errorf("node1's key recorded for node2: %v", r.Err)
	}
	index++

	appendSamples(t, s, index, 3)
	index += 3
	last := lastAuditOf(t, s)
	good := a.sign(t, last.Seq, last.Hash, t0)
	wrongHash := a.sign(t, last.Seq, strings.Repeat("a", 64), t0)
	noEntry := a.sign(t, 9, last.Hash, t0)
	stranger := newAuditSigner(t, "node2").sign(t, last.Seq, last.Hash, t0)
	foreignKeys := good
	foreignKeys.Node = "node2"
	for name, cp := range map[string]AuditCheckpoint{"wrong hash": wrongHash, "no entry": noEntry,
		"keys not recorded": stranger, "keys of another node": foreignKeys} {
		if r := applyRaw(t, s, index, TypeAuditCheckpoint, t0, cp); !errors.Is(r.Err, ErrInvalidCommand) {
			t.Errorf("%s: %v, want ErrInvalidCommand", name, r.Err)
		}
		index++
	}
	if n := len(allAudit(t, s)); n != 3 {
		t.Fatalf("refused checkpoints wrote: %d entries", n)
	}
	r := applyRaw(t, s, index, TypeAuditCheckpoint, t0.Add(time.Minute), good)
	rec, ok := r.Value.(*AuditCheckpointRecord)
	if r.Err != nil || !ok || rec.Seq != 3 || rec.EntrySeq != 4 {
		t.Fatalf("checkpoint: %+v %v", r.Value, r.Err)
	}
	index++
	e := lastAuditOf(t, s)
	if e.Seq != 4 || e.Type != "audit.checkpoint" || e.Actor != "node:node1" || e.Details["seq"] != "3" || e.Details["hash"] != last.Hash {
		t.Errorf("the trail's record of the checkpoint: %+v", e)
	}
	// The same seq again, or an earlier one, is refused.
	if r := applyRaw(t, s, index, TypeAuditCheckpoint, t0, good); !errors.Is(r.Err, ErrInvalidCommand) {
		t.Errorf("checkpoint of seq 3 twice: %v", r.Err)
	}
	var got *AuditCheckpointRecord
	s.View(func(r Reader) (err error) { got, err = r.LastAuditCheckpoint(); return err })
	if got == nil || got.Seq != 3 || string(got.MLDSA65Sig) != string(good.MLDSA65Sig) {
		t.Errorf("stored checkpoint: %+v", got)
	}
	if rep, err := verifyTrail(t, s); err != nil || rep.Checkpoints != 1 || rep.LastCheckpoint != 3 || rep.Unvouched != 1 {
		t.Errorf("verify: %+v, %v", rep, err)
	}
}

// TestVerifyAuditTrailCatches alters a trail the ways an attacker with the
// file could, and checks the verifier names the first bad seq each time.
func TestVerifyAuditTrailCatches(t *testing.T) {
	// Rounds of 4 entries and a checkpoint: entries 1-4, checkpoint of 4
	// recorded at 5, 6-9, checkpoint of 9 at 10, 11-14, checkpoint of 14
	// at 15.
	build := func(t *testing.T) *Store {
		s := openTestStore(t)
		trailWithCheckpoints(t, s, newAuditSigner(t, "node1"), 3, 4)
		return s
	}
	recompute := func(t *testing.T, s *Store, from uint64) {
		// Recompute every hash from seq from on, as a careful forger would.
		prev := ""
		for seq := from; seq <= 15; seq++ {
			tamperAudit(t, s, seq, func(e *AuditEntry) {
				if prev != "" {
					e.PrevHash = prev
				}
				e.Hash = e.ComputeHash()
				prev = e.Hash
			})
		}
	}
	rawCheckpoint := func(t *testing.T, s *Store, seq uint64, fn func(b *bolt.Bucket, k []byte)) {
		if err := s.db.Update(func(tx *bolt.Tx) error { fn(tx.Bucket(bucketCheckpoints), auditKey(seq)); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	editCheckpoint := func(t *testing.T, s *Store, seq uint64, fn func(*AuditCheckpointRecord)) {
		rawCheckpoint(t, s, seq, func(b *bolt.Bucket, k []byte) {
			var cp AuditCheckpointRecord
			if err := json.Unmarshal(b.Get(k), &cp); err != nil {
				t.Fatal(err)
			}
			fn(&cp)
			v, _ := json.Marshal(&cp)
			b.Put(k, v)
		})
	}

	t.Run("intact", func(t *testing.T) {
		s := build(t)
		rep, err := verifyTrail(t, s)
		if err != nil || rep.Entries != 15 || rep.Checkpoints != 3 || rep.LastCheckpoint != 14 || rep.Unvouched != 1 || rep.FirstSeq != 1 {
			t.Fatalf("%+v, %v", rep, err)
		}
	})
	t.Run("altered, hash kept", func(t *testing.T) {
		s := build(t)
		tamperAudit(t, s, 7, func(e *AuditEntry) { e.Subject = "mallory" })
		_, err := verifyTrail(t, s)
		wantBreakAt(t, err, 7)
		if !strings.Contains(err.Error(), "hash does not match") {
			t.Errorf("reason: %v", err)
		}
	})
	t.Run("altered, chain recomputed", func(t *testing.T) {
		s := build(t)
		tamperAudit(t, s, 7, func(e *AuditEntry) { e.Subject = "mallory" })
		recompute(t, s, 7)
		if err := VerifyAuditChain(allAudit(t, s), AuditGenesisHash); err != nil {
			t.Fatalf("the chain alone should pass a recomputed chain, got %v", err)
		}
		_, err := verifyTrail(t, s)
		wantBreakAt(t, err, 9)
		var ce *AuditChainError
		errors.As(err, &ce)
		if ce.From != 5 || !strings.Contains(err.Error(), "checkpoint hash differs") || !strings.Contains(err.Error(), "seq 5..9") {
			t.Errorf("want the range 5..9 named: %v (from %d)", err, ce.From)
		}
	})
	for _, alg := range []string{AuditAlgES256, AuditAlgMLDSA65} {
		t.Run("forged "+alg+" signature", func(t *testing.T) {
			s := build(t)
			editCheckpoint(t, s, 9, func(cp *AuditCheckpointRecord) {
				if alg == AuditAlgES256 {
					cp.ES256Sig[len(cp.ES256Sig)-1] ^= 1
				} else {
					cp.MLDSA65Sig[100] ^= 1
				}
			})
			_, err := verifyTrail(t, s)
			wantBreakAt(t, err, 9)
			if !strings.Contains(err.Error(), "checkpoint signature bad") || !strings.Contains(err.Error(), alg) {
				t.Errorf("reason: %v", err)
			}
		})
	}
	t.Run("re-signed by a key not recorded", func(t *testing.T) {
		s := build(t)
		tamperAudit(t, s, 7, func(e *AuditEntry) { e.Subject = "mallory" })
		recompute(t, s, 7)
		forger := newAuditSigner(t, "node1")
		e9 := allAudit(t, s)[8]
		cp := forger.sign(t, 9, e9.Hash, t0)
		editCheckpoint(t, s, 9, func(r *AuditCheckpointRecord) { r.AuditCheckpoint = cp })
		_, err := verifyTrail(t, s)
		wantBreakAt(t, err, 9)
		if !strings.Contains(err.Error(), "not a recorded audit key") {
			t.Errorf("reason: %v", err)
		}
	})
	t.Run("checkpoint deleted", func(t *testing.T) {
		s := build(t)
		rawCheckpoint(t, s, 9, func(b *bolt.Bucket, k []byte) { b.Delete(k) })
		_, err := verifyTrail(t, s)
		wantBreakAt(t, err, 10)
		if !strings.Contains(err.Error(), "not stored") {
			t.Errorf("reason: %v", err)
		}
	})
	t.Run("cut short behind a checkpoint", func(t *testing.T) {
		s := build(t)
		rawAudit(t, s, 15, func(b *bolt.Bucket, k []byte) { b.Delete(k) })
		rawAudit(t, s, 14, func(b *bolt.Bucket, k []byte) { b.Delete(k) })
		_, err := verifyTrail(t, s)
		wantBreakAt(t, err, 14)
	})
	t.Run("pruned before a checkpoint", func(t *testing.T) {
		s := build(t)
		for seq := uint64(1); seq <= 9; seq++ {
			rawAudit(t, s, seq, func(b *bolt.Bucket, k []byte) { b.Delete(k) })
		}
		rep, err := verifyTrail(t, s)
		if err != nil || rep.FirstSeq != 10 || rep.Entries != 6 || rep.Checkpoints != 1 || rep.LastCheckpoint != 14 {
			t.Fatalf("a trail pruned up to a kept checkpoint: %+v, %v", rep, err)
		}
		// Without the checkpoint it continues from, it does not verify.
		rawAudit(t, s, 10, func(b *bolt.Bucket, k []byte) { b.Delete(k) })
		if _, err := verifyTrail(t, s); !errors.Is(err, ErrAuditChainBroken) || !strings.Contains(err.Error(), "starts at seq 11") {
			t.Fatalf("pruned to a seq no checkpoint vouches for: %v", err)
		}
	})
}

// BenchmarkVerifyAuditTrail compares the walk of a 10,000-entry trail
// without signatures (VerifyAudit) with the walk that also checks a signed
// checkpoint every 1000 entries (VerifyAuditTrail): the cost of the
// checkpoints' ES256 and ML-DSA-65 verifications over hashing every entry.
func BenchmarkVerifyAuditTrail(b *testing.B) {
	s := openTestStore(b)
	a := newAuditSigner(b, "node1")
	for i, k := range a.keys(b) {
		if r := applyRaw(b, s, uint64(1+i), TypeAuditKey, t0, k); r.Err != nil {
			b.Fatal(r.Err)
		}
	}
	index := uint64(3)
	for range 10 {
		batch := make([]Entry, 0, 999)
		for i := range 999 {
			batch = append(batch, auditCmd(b, index, t0, sampleAudit(i)))
			index++
		}
		s.ApplyBatch(batch)
		last := lastAuditOf(b, s)
		if r := applyRaw(b, s, index, TypeAuditCheckpoint, t0, a.sign(b, last.Seq, last.Hash, t0)); r.Err != nil {
			b.Fatal(r.Err)
		}
		index++
	}
	b.Run("chain", func(b *testing.B) {
		for b.Loop() {
			if n, err := verifyStored(b, s); err != nil || n != 10000 {
				b.Fatal(n, err)
			}
		}
	})
	b.Run("one checkpoint's signatures", func(b *testing.B) {
		s.View(func(r Reader) error {
			cp, err := r.LastAuditCheckpoint()
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if err := r.checkSignatures(cp, checkAuditSig); err != nil {
					b.Fatal(err)
				}
			}
			return nil
		})
	})
	b.Run("chain+checkpoints", func(b *testing.B) {
		for b.Loop() {
			if rep, err := verifyTrail(b, s); err != nil || rep.Entries != 10000 || rep.Checkpoints != 10 {
				b.Fatal(rep, err)
			}
		}
	})
}
