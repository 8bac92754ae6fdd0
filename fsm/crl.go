package fsm

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/big"
	"reflect"
	"strings"
	"time"
)

// The cluster CA's revocation list (level 5; node/crl.go proposes these,
// node/DESIGN.md "Revocation" says why this way).
//
// cert.record: a certificate the CA issued to a member (its serial and
// expiry), recorded by the node that issued it before the certificate
// leaves, and by every member for the certificate it presents.
// cert.revoke: a removed member's recorded certificates become revoked,
// the revocation generation goes up, and the member stays marked removed:
// a certificate recorded for it later (a renewal that was issued before
// the removal and committed after it) is revoked as it is recorded,
// until a join admits a node of that name again (CertRecord.Admit). crl.publish: a CRL signed by
// the CA key, which Apply checks against the shared CA key's public key
// (ca.key), numbered above the last one. Every node serves the last
// published CRL, whether or not it holds the CA key; a CA holder leading
// the cluster signs a new one when the generation passes the published
// one's and before the published one's nextUpdate.
const (
	TypeCertRecord Type = "cert.record"
	TypeCertRevoke Type = "cert.revoke"
	TypeCRLPublish Type = "crl.publish"
)

// CertRecord is the payload of cert.record v1. Admit is set by the join
// that admits Node: it ends Node's removal mark (cert.revoke), which
// otherwise revokes the certificate as it is recorded.
type CertRecord struct {
	Node     string    `json:"node"`
	Serial   string    `json:"serial"` // lowercase hex, as big.Int.Text(16)
	NotAfter time.Time `json:"not_after"`
	Admit    bool      `json:"admit,omitempty"`
}

// CertRevoke is the payload of cert.revoke v1: every certificate recorded
// for Node is revoked.
type CertRevoke struct {
	Node string `json:"node"`
}

// CRLPublish is the payload of crl.publish v1: the CRL (DER) and the
// revocation generation it covers.
type CRLPublish struct {
	DER        []byte `json:"der"`
	Generation uint64 `json:"generation"`
}

// RevokedCert is a revoked certificate as the state keeps it.
type RevokedCert struct {
	Serial    string    `json:"serial"`
	Node      string    `json:"node"`
	NotAfter  time.Time `json:"not_after"`
	RevokedAt time.Time `json:"revoked_at"`
}

// PublishedCRL is the last CRL published.
type PublishedCRL struct {
	DER        []byte    `json:"der"`
	Number     uint64    `json:"number"`
	Generation uint64    `json:"generation"`
	ThisUpdate time.Time `json:"this_update"`
	NextUpdate time.Time `json:"next_update"`
}

const (
	certIssuedPrefix  = "cert_issued/"  // + node + 0 + serial -> not_after (unix ns, 8 bytes)
	certRevokedPrefix = "cert_revoked/" // + serial -> RevokedCert
	certRemovedPrefix = "cert_removed/" // + node -> removed at (unix ns, 8 bytes)
	// maxCertsPerNode bounds the unexpired certificates recorded for one
	// node: renewals are due a month before a year's expiry, so only
	// operators forcing renewals come near it, and they are told.
	maxCertsPerNode = 64
	maxCRLBytes     = 256 << 10
)

var (
	keyCRL    = []byte("crl")
	keyCRLGen = []byte("crl_generation")
)

var crlCommands = []CommandSpec{
	{Type: TypeCertRecord, Version: 1, Level: 5, Apply: applyCertRecord, Result: nil},
	{Type: TypeCertRevoke, Version: 1, Level: 5, Apply: applyCertRevoke, Result: reflect.TypeFor[int]()},
	{Type: TypeCRLPublish, Version: 1, Level: 5, Apply: applyCRLPublish, Result: reflect.TypeFor[uint64]()},
}

func validNodeName(s string) bool {
	return s != "" && len(s) <= 64 && !strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r > '~' })
}

func validSerial(s string) bool {
	if s == "" || len(s) > 40 || s[0] == '0' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !('0' <= s[i] && s[i] <= '9' || 'a' <= s[i] && s[i] <= 'f') {
			return false
		}
	}
	return true
}

func issuedPrefix(node string) []byte { return []byte(certIssuedPrefix + node + "\x00") }

func applyCertRecord(t txn, c Command) (any, error) {
	var p CertRecord
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if !validNodeName(p.Node) || !validSerial(p.Serial) || p.NotAfter.IsZero() {
		return nil, fmt.Errorf("%w: cert.record needs a node name, a serial (lowercase hex) and not_after", ErrInvalidCommand)
	}
	now := time.Unix(0, c.Time)
	if !p.NotAfter.After(now) {
		return nil, nil // expired: nothing to revoke
	}
	meta := t.tx.Bucket(bucketMeta)
	if meta.Get([]byte(certRevokedPrefix+p.Serial)) != nil {
		return nil, nil // revoked already: it stays revoked
	}
	removed := []byte(certRemovedPrefix + p.Node)
	if p.Admit {
		if err := meta.Delete(removed); err != nil {
			return nil, err
		}
	} else if meta.Get(removed) != nil {
		// Issued to the member before its removal (the issuer checked
		// membership then) and recorded after it: revoked now, as
		// cert.revoke would have.
		return nil, t.revokeCert(p.Serial, p.Node, p.NotAfter.UnixNano(), time.Unix(0, c.Time).UTC())
	}
	prefix := issuedPrefix(p.Node)
	var expired [][]byte
	live := 0
	cur := meta.Cursor()
	for k, v := cur.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = cur.Next() {
		if string(k[len(prefix):]) == p.Serial {
			return nil, nil
		}
		if len(v) != 8 || int64(binary.BigEndian.Uint64(v)) <= c.Time {
			expired = append(expired, append([]byte(nil), k...))
		} else {
			live++
		}
	}
	if live >= maxCertsPerNode {
		return nil, fmt.Errorf("%w: cert.record: %s has %d unexpired certificates recorded, at most %d", ErrInvalidCommand, p.Node, live, maxCertsPerNode)
	}
	for _, k := range expired {
		if err := meta.Delete(k); err != nil {
			return nil, err
		}
	}
	return nil, meta.Put(append(prefix, p.Serial...), binary.BigEndian.AppendUint64(nil, uint64(p.NotAfter.UnixNano())))
}

func applyCertRevoke(t txn, c Command) (any, error) {
	var p CertRevoke
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if !validNodeName(p.Node) {
		return nil, fmt.Errorf("%w: cert.revoke needs a node name", ErrInvalidCommand)
	}
	meta := t.tx.Bucket(bucketMeta)
	at := time.Unix(0, c.Time).UTC()
	// Revoked certificates past their expiry leave the list: a CRL need
	// not name a certificate no one accepts anyway (RFC 5280, 3.3).
	var drop [][]byte
	rp := []byte(certRevokedPrefix)
	cur := meta.Cursor()
	for k, v := cur.Seek(rp); k != nil && hasPrefix(k, rp); k, v = cur.Next() {
		var r RevokedCert
		if json.Unmarshal(v, &r) != nil || !r.NotAfter.After(at) {
			drop = append(drop, append([]byte(nil), k...))
		}
	}
	prefix := issuedPrefix(p.Node)
	type rec struct {
		key      []byte
		notAfter int64
	}
	var moved []rec
	for k, v := cur.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = cur.Next() {
		r := rec{key: append([]byte(nil), k...)}
		if len(v) == 8 {
			r.notAfter = int64(binary.BigEndian.Uint64(v))
		}
		moved = append(moved, r)
	}
	for _, k := range drop {
		if err := meta.Delete(k); err != nil {
			return nil, err
		}
	}
	if err := meta.Put([]byte(certRemovedPrefix+p.Node), binary.BigEndian.AppendUint64(nil, uint64(c.Time))); err != nil {
		return nil, err
	}
	n := 0
	for _, r := range moved {
		if err := meta.Delete(r.key); err != nil {
			return nil, err
		}
		if r.notAfter <= c.Time {
			continue
		}
		if err := t.putRevoked(string(r.key[len(prefix):]), p.Node, r.notAfter, at); err != nil {
			return nil, err
		}
		n++
	}
	if n > 0 {
		if err := t.raiseCRLGeneration(); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// revokeCert revokes one certificate of node and raises the generation,
// so that the leader publishes a CRL naming it.
func (t txn) revokeCert(serial, node string, notAfter int64, at time.Time) error {
	if err := t.putRevoked(serial, node, notAfter, at); err != nil {
		return err
	}
	return t.raiseCRLGeneration()
}

func (t txn) putRevoked(serial, node string, notAfter int64, at time.Time) error {
	return t.putJSONMeta([]byte(certRevokedPrefix+serial), RevokedCert{Serial: serial, Node: node,
		NotAfter: time.Unix(0, notAfter).UTC(), RevokedAt: at})
}

func (t txn) raiseCRLGeneration() error {
	gen := Reader{tx: t.tx}.CRLGeneration() + 1
	return t.tx.Bucket(bucketMeta).Put(keyCRLGen, binary.BigEndian.AppendUint64(nil, gen))
}

func applyCRLPublish(t txn, c Command) (any, error) {
	var p CRLPublish
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if len(p.DER) == 0 || len(p.DER) > maxCRLBytes {
		return nil, fmt.Errorf("%w: crl.publish: a CRL of %d bytes (1 to %d)", ErrInvalidCommand, len(p.DER), maxCRLBytes)
	}
	r := Reader{tx: t.tx}
	ca, err := getCAKey(t.tx)
	if err != nil {
		return nil, err // ErrNoCAKey: nothing to check the signature against
	}
	pub, err := x509.ParsePKIXPublicKey(ca.CAPublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: crl.publish: the shared CA public key: %v", ErrInvalidCommand, err)
	}
	crl, err := x509.ParseRevocationList(p.DER)
	if err != nil {
		return nil, fmt.Errorf("%w: crl.publish: %v", ErrInvalidCommand, err)
	}
	// A certificate holding only the public key: CheckSignatureFrom then
	// checks the signature alone.
	if err := crl.CheckSignatureFrom(&x509.Certificate{PublicKey: pub, PublicKeyAlgorithm: publicKeyAlgorithm(pub)}); err != nil {
		return nil, fmt.Errorf("%w: crl.publish: not signed by the cluster CA: %v", ErrInvalidCommand, err)
	}
	old, have := r.CRL()
	gen := r.CRLGeneration()
	switch {
	case crl.Number == nil || crl.Number.Sign() <= 0 || !crl.Number.IsUint64():
		return nil, fmt.Errorf("%w: crl.publish: the CRL number must be a positive 64-bit number", ErrInvalidCommand)
	case have && crl.Number.Cmp(new(big.Int).SetUint64(old.Number)) <= 0:
		return nil, fmt.Errorf("%w: crl.publish: CRL number %d, the last published is %d", ErrInvalidCommand, crl.Number, old.Number)
	case p.Generation > gen || have && p.Generation < old.Generation:
		return nil, fmt.Errorf("%w: crl.publish: generation %d (the state's is %d, the last CRL's %d)", ErrInvalidCommand, p.Generation, gen, old.Generation)
	case !crl.NextUpdate.After(crl.ThisUpdate):
		return nil, fmt.Errorf("%w: crl.publish: nextUpdate is not after thisUpdate", ErrInvalidCommand)
	}
	rec := PublishedCRL{DER: p.DER, Number: crl.Number.Uint64(), Generation: p.Generation,
		ThisUpdate: crl.ThisUpdate.UTC(), NextUpdate: crl.NextUpdate.UTC()}
	return rec.Number, t.putJSONMeta(keyCRL, rec)
}

// publicKeyAlgorithm is the algorithm of a key ca.key accepts.
func publicKeyAlgorithm(pub any) x509.PublicKeyAlgorithm {
	switch pub.(type) {
	case *ecdsa.PublicKey:
		return x509.ECDSA
	case ed25519.PublicKey:
		return x509.Ed25519
	}
	return x509.UnknownPublicKeyAlgorithm
}

// CertsIssued returns the serials recorded for node and not yet revoked,
// with their expiry, unexpired ones and expired ones alike.
func (r Reader) CertsIssued(node string) map[string]time.Time {
	out := map[string]time.Time{}
	prefix := issuedPrefix(node)
	cur := r.tx.Bucket(bucketMeta).Cursor()
	for k, v := cur.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = cur.Next() {
		if len(v) == 8 {
			out[string(k[len(prefix):])] = time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC()
		}
	}
	return out
}

// RevokedCerts returns every revoked certificate the state keeps, by
// serial.
func (r Reader) RevokedCerts() []RevokedCert {
	var out []RevokedCert
	rp := []byte(certRevokedPrefix)
	cur := r.tx.Bucket(bucketMeta).Cursor()
	for k, v := cur.Seek(rp); k != nil && hasPrefix(k, rp); k, v = cur.Next() {
		var rc RevokedCert
		if json.Unmarshal(v, &rc) == nil {
			out = append(out, rc)
		}
	}
	return out
}

// CRLGeneration counts the commands that revoked something: cert.revoke,
// and cert.record of a removed member.
func (r Reader) CRLGeneration() uint64 {
	v := r.tx.Bucket(bucketMeta).Get(keyCRLGen)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// CRL returns the last published CRL, false if none.
func (r Reader) CRL() (PublishedCRL, bool) {
	var rec PublishedCRL
	v := r.tx.Bucket(bucketMeta).Get(keyCRL)
	if v == nil {
		return rec, false
	}
	return rec, json.Unmarshal(v, &rec) == nil // written by applyCRLPublish: it decodes
}
