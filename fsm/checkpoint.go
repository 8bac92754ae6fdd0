package fsm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Signed checkpoints of the audit trail (feature level 4).
//
// The hash chain shows that no entry was changed unless every hash after
// it was recomputed, which anyone who can write state.db can do. So the
// leader signs, every so many entries or minutes, the seq and hash of the
// newest entry with two keys of its own, ES256 and ML-DSA-65, whose private
// halves never leave its keystore (the ES256 one never leaves its TPM with
// seal.signing = "tpm-resident"). A checkpoint vouches for every entry up to
// its seq: changing any of them changes the hash at that seq, and forging a
// new signature needs the node's key. Recomputing the chain after an altered
// entry no longer helps.
//
// audit.key records a node's public audit keys (bucketAuditKeys, kid →
// AuditPublicKey), so a verifier finds them in the state itself, offline.
// They are not token signing keys: they are not in the JWKS and verify no
// token. audit.checkpoint stores the checkpoint, signatures included, in
// bucketCheckpoints (seq → AuditCheckpointRecord) and appends an
// "audit.checkpoint" entry to the trail naming it, in the same transaction:
// the trail shows who signed what and when, the next checkpoint covers that
// entry, and a checkpoint deleted from its bucket is missed by the entry
// that names it. Apply checks what the state can tell, deterministically:
// the entry at seq exists with that hash, the seq is past the previous
// checkpoint's, the keys are the signing node's recorded audit keys. It does
// not check the signatures (that needs ML-DSA, outside fsm's imports); the
// verifier does (Reader.VerifyAuditTrail), and the leader only writes what
// its own keys signed (node/authority.go keeps a member to its own name).

// TypeAuditKey records one public audit key of a node. Version 1 carries an
// AuditKey; its result is the stored *AuditPublicKey.
const TypeAuditKey Type = "audit.key"

// TypeAuditCheckpoint records a signed checkpoint. Version 1 carries an
// AuditCheckpoint; its result is the stored *AuditCheckpointRecord.
const TypeAuditCheckpoint Type = "audit.checkpoint"

// Algorithms of audit keys.
const (
	// AuditAlgES256: ECDSA P-256 with SHA-256. The public key is its
	// X.509 SubjectPublicKeyInfo (DER, 91 bytes); a signature is ASN.1
	// DER, over SHA-256 of the checkpoint's preimage.
	AuditAlgES256 = "ES256"
	// AuditAlgMLDSA65: ML-DSA-65 (FIPS 204). The public key is its
	// 1952-byte encoding; a signature (3309 bytes) is ML-DSA.Sign over
	// the preimage itself, with an empty context string.
	AuditAlgMLDSA65 = "ML-DSA-65"

	MLDSA65PublicKeySize = 1952
	MLDSA65SignatureSize = 3309
	maxES256Signature    = 72 // ASN.1 DER of two 32-byte integers, at most
)

// p256SPKIPrefix is the DER of a P-256 SubjectPublicKeyInfo up to the
// uncompressed point's 64 bytes of coordinates: every ES256 key's SPKI
// starts with it, so Apply checks the form without parsing.
var p256SPKIPrefix, _ = hex.DecodeString("3059301306072a8648ce3d020106082a8648ce3d030107034200" + "04")

// AuditKey is the payload of audit.key v1.
type AuditKey struct {
	// Kid is the lowercase hex SHA-256 of Public.
	Kid  string `json:"kid"`
	Node string `json:"node"` // the node whose keystore holds the private half
	Alg  string `json:"alg"`  // AuditAlgES256 or AuditAlgMLDSA65
	// Public is the public key, encoded as its Alg says.
	Public []byte `json:"public"`
}

// AuditPublicKey is a recorded audit key.
type AuditPublicKey struct {
	AuditKey
	PublishedAt time.Time `json:"published_at"`
}

// AuditCheckpoint is the payload of audit.checkpoint v1: the signed part
// (Seq, Hash, Time, Node and the two kids, see Preimage) and the two
// signatures.
type AuditCheckpoint struct {
	Seq  uint64 `json:"seq"`  // the entry vouched for, and every one before it
	Hash string `json:"hash"` // that entry's hash
	// Time is when the node signed, Unix nanoseconds, by its clock.
	Time       int64  `json:"time"`
	Node       string `json:"node"`
	ES256Kid   string `json:"es256_kid"`
	ES256Sig   []byte `json:"es256_sig"`
	MLDSA65Kid string `json:"mldsa65_kid"`
	MLDSA65Sig []byte `json:"mldsa65_sig"`
}

// AuditCheckpointRecord is a stored checkpoint.
type AuditCheckpointRecord struct {
	AuditCheckpoint
	// EntrySeq is the seq of the "audit.checkpoint" entry that records it
	// in the trail.
	EntrySeq uint64 `json:"entry_seq"`
}

// checkpointDomain starts every checkpoint's preimage.
const checkpointDomain = "bulwark.audit.checkpoint.v1"

// Preimage returns the bytes both signatures cover, in the encoding of
// AuditEntry.ComputeHash (u64 big endian; str = u64 length || bytes):
//
//	str("bulwark.audit.checkpoint.v1")
//	u64(seq) str(hash) u64(time as Unix nanoseconds, two's complement)
//	str(node) str(es256_kid) str(mldsa65_kid)
//
// Both kids are signed, so neither signature can be passed off as made by
// another key.
func (c *AuditCheckpoint) Preimage() []byte {
	b := make([]byte, 0, 8*7+len(checkpointDomain)+len(c.Hash)+len(c.Node)+len(c.ES256Kid)+len(c.MLDSA65Kid))
	str := func(s string) {
		b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
		b = append(b, s...)
	}
	str(checkpointDomain)
	b = binary.BigEndian.AppendUint64(b, c.Seq)
	str(c.Hash)
	b = binary.BigEndian.AppendUint64(b, uint64(c.Time))
	str(c.Node)
	str(c.ES256Kid)
	str(c.MLDSA65Kid)
	return b
}

// AuditKeyID is the kid of an audit key: the lowercase hex SHA-256 of its
// public encoding.
func AuditKeyID(public []byte) string {
	sum := sha256.Sum256(public)
	return hex.EncodeToString(sum[:])
}

var checkpointCommands = []CommandSpec{
	{Type: TypeAuditKey, Version: 1, Level: 4, Apply: applyAuditKey, Result: reflect.TypeFor[*AuditPublicKey]()},
	{Type: TypeAuditCheckpoint, Version: 1, Level: 4, Apply: applyAuditCheckpoint, Result: reflect.TypeFor[*AuditCheckpointRecord]()},
}

// Validate checks an audit key as Apply does. Errors wrap ErrInvalidCommand.
func (k *AuditKey) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: audit.key: "+format, append([]any{ErrInvalidCommand}, args...)...)
	}
	if !printableASCII(k.Node, maxKidLen) {
		return bad("node must be 1 to %d printable ASCII bytes", maxKidLen)
	}
	switch k.Alg {
	case AuditAlgES256:
		if len(k.Public) != len(p256SPKIPrefix)+64 || !bytes.HasPrefix(k.Public, p256SPKIPrefix) {
			return bad("an ES256 key is the %d-byte SubjectPublicKeyInfo of a P-256 point", len(p256SPKIPrefix)+64)
		}
	case AuditAlgMLDSA65:
		if len(k.Public) != MLDSA65PublicKeySize {
			return bad("an ML-DSA-65 key is %d bytes", MLDSA65PublicKeySize)
		}
	default:
		return bad("alg must be %s or %s", AuditAlgES256, AuditAlgMLDSA65)
	}
	if k.Kid != AuditKeyID(k.Public) {
		return bad("kid must be the hex SHA-256 of the public key")
	}
	return nil
}

func applyAuditKey(t txn, c Command) (any, error) {
	var p AuditKey
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	b := t.tx.Bucket(bucketAuditKeys)
	if old, err := getAuditKey(b, p.Kid); err == nil {
		// The kid is the key's hash: the same kid is the same key, but it
		// belongs to one node.
		if old.Node != p.Node || old.Alg != p.Alg {
			return nil, fmt.Errorf("%w: audit.key: key %s is recorded for %s", ErrInvalidCommand, p.Kid, old.Node)
		}
		return old, nil
	} else if !errors.Is(err, ErrKeyNotFound) {
		return nil, err
	}
	k := &AuditPublicKey{AuditKey: p, PublishedAt: time.Unix(0, c.Time).UTC()}
	v, err := json.Marshal(k)
	if err != nil {
		return nil, err
	}
	return k, b.Put([]byte(k.Kid), v)
}

func getAuditKey(b *bolt.Bucket, kid string) (*AuditPublicKey, error) {
	v := b.Get([]byte(kid))
	if v == nil {
		return nil, ErrKeyNotFound
	}
	var k AuditPublicKey
	if err := json.Unmarshal(v, &k); err != nil {
		return nil, fmt.Errorf("fsm: stored audit key %q: %w", kid, err)
	}
	return &k, nil
}

// checkForm checks what a checkpoint must look like, state aside.
func (c *AuditCheckpoint) checkForm() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: audit.checkpoint: "+format, append([]any{ErrInvalidCommand}, args...)...)
	}
	switch {
	case c.Seq == 0:
		return bad("seq must be 1 or more")
	case !isHex(c.Hash, 64):
		return bad("hash must be 64 lowercase hex digits")
	case !printableASCII(c.Node, maxKidLen):
		return bad("node must be 1 to %d printable ASCII bytes", maxKidLen)
	case !isHex(c.ES256Kid, 64) || !isHex(c.MLDSA65Kid, 64):
		return bad("kids must be 64 lowercase hex digits")
	case len(c.ES256Sig) < 8 || len(c.ES256Sig) > maxES256Signature:
		return bad("es256_sig must be 8 to %d bytes", maxES256Signature)
	case len(c.MLDSA65Sig) != MLDSA65SignatureSize:
		return bad("mldsa65_sig must be %d bytes", MLDSA65SignatureSize)
	}
	return nil
}

func applyAuditCheckpoint(t txn, c Command) (any, error) {
	var p AuditCheckpoint
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if err := p.checkForm(); err != nil {
		return nil, err
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: audit.checkpoint: "+format, append([]any{ErrInvalidCommand}, args...)...)
	}
	audit := t.tx.Bucket(bucketAudit)
	v := audit.Get(auditKey(p.Seq))
	if v == nil {
		return nil, bad("no audit entry %d", p.Seq)
	}
	e, err := decodeAudit(auditKey(p.Seq), v)
	if err != nil {
		return nil, err
	}
	if e.Hash != p.Hash {
		return nil, bad("entry %d has another hash", p.Seq)
	}
	cps := t.tx.Bucket(bucketCheckpoints)
	if k, _ := cps.Cursor().Last(); k != nil && binary.BigEndian.Uint64(k) >= p.Seq {
		return nil, bad("seq %d is not past the last checkpoint's, %d", p.Seq, binary.BigEndian.Uint64(k))
	}
	keys := t.tx.Bucket(bucketAuditKeys)
	for _, want := range []struct{ kid, alg string }{{p.ES256Kid, AuditAlgES256}, {p.MLDSA65Kid, AuditAlgMLDSA65}} {
		k, err := getAuditKey(keys, want.kid)
		if errors.Is(err, ErrKeyNotFound) || err == nil && (k.Node != p.Node || k.Alg != want.alg) {
			return nil, bad("%s is not a recorded %s audit key of %s", want.kid, want.alg, p.Node)
		}
		if err != nil {
			return nil, err
		}
	}
	ev := checkpointEntry(&p)
	if err := ev.Validate(); err != nil {
		return nil, err
	}
	entry, err := appendAudit(t, c.Time, ev)
	if err != nil {
		return nil, err
	}
	rec := &AuditCheckpointRecord{AuditCheckpoint: p, EntrySeq: entry.Seq}
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	return rec, cps.Put(auditKey(p.Seq), b)
}

// checkpointEntry is the trail's record of checkpoint c.
func checkpointEntry(c *AuditCheckpoint) AuditAppend {
	return AuditAppend{Type: string(TypeAuditCheckpoint), Severity: AuditInfo, Actor: "node:" + c.Node,
		Details: map[string]string{"seq": strconv.FormatUint(c.Seq, 10), "hash": c.Hash,
			"es256_kid": c.ES256Kid, "mldsa65_kid": c.MLDSA65Kid}}
}

// AuditKey returns the recorded audit key kid, or ErrKeyNotFound.
func (r Reader) AuditKey(kid string) (*AuditPublicKey, error) {
	return getAuditKey(r.tx.Bucket(bucketAuditKeys), kid)
}

// AuditKeys calls fn for every recorded audit key in kid order until fn
// returns false.
func (r Reader) AuditKeys(fn func(*AuditPublicKey) bool) error {
	c := r.tx.Bucket(bucketAuditKeys).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		var pk AuditPublicKey
		if err := json.Unmarshal(v, &pk); err != nil {
			return fmt.Errorf("fsm: stored audit key %q: %w", k, err)
		}
		if !fn(&pk) {
			return nil
		}
	}
	return nil
}

// LastAuditCheckpoint returns the newest checkpoint, or nil, nil when there
// is none.
func (r Reader) LastAuditCheckpoint() (*AuditCheckpointRecord, error) {
	k, v := r.tx.Bucket(bucketCheckpoints).Cursor().Last()
	if k == nil {
		return nil, nil
	}
	return decodeCheckpoint(k, v)
}

// AuditCheckpoints calls fn for each checkpoint with a seq above after, in
// seq order, until fn returns false.
func (r Reader) AuditCheckpoints(after uint64, fn func(*AuditCheckpointRecord) bool) error {
	if after == ^uint64(0) {
		return nil
	}
	c := r.tx.Bucket(bucketCheckpoints).Cursor()
	for k, v := c.Seek(auditKey(after + 1)); k != nil; k, v = c.Next() {
		cp, err := decodeCheckpoint(k, v)
		if err != nil {
			return err
		}
		if !fn(cp) {
			return nil
		}
	}
	return nil
}

func decodeCheckpoint(k, v []byte) (*AuditCheckpointRecord, error) {
	if len(k) != 8 {
		return nil, fmt.Errorf("fsm: checkpoint key %x is not a seq", k)
	}
	var cp AuditCheckpointRecord
	if err := json.Unmarshal(v, &cp); err != nil {
		return nil, fmt.Errorf("fsm: stored checkpoint %d: %w", binary.BigEndian.Uint64(k), err)
	}
	if cp.Seq != binary.BigEndian.Uint64(k) {
		return nil, fmt.Errorf("fsm: checkpoint stored under seq %d says %d", binary.BigEndian.Uint64(k), cp.Seq)
	}
	return &cp, nil
}
