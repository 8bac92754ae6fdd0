package fsm

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"
)

// cert.record keeps a member's certificates; cert.revoke moves them to
// the revoked list and raises the generation; crl.publish takes only a
// CRL the shared CA key signed, numbered above the last, for a
// generation the state has reached.
func TestCertRevocationAndCRL(t *testing.T) {
	a := newApplier(t)
	view := func() (issued map[string]time.Time, revoked []RevokedCert, gen uint64, crl PublishedCRL, have bool) {
		t.Helper()
		viewValue(t, a.s, func(r Reader) (bool, error) {
			issued, revoked, gen = r.CertsIssued("node2"), r.RevokedCerts(), r.CRLGeneration()
			crl, have = r.CRL()
			return true, nil
		})
		return
	}
	day := 24 * time.Hour
	for _, rec := range []CertRecord{
		{Node: "node2", Serial: "a1", NotAfter: t0.Add(365 * day)},
		{Node: "node2", Serial: "a2", NotAfter: t0.Add(2 * day)},
		{Node: "node2", Serial: "a3", NotAfter: t0.Add(-day)}, // expired: not kept
		{Node: "node3", Serial: "b1", NotAfter: t0.Add(365 * day)},
	} {
		if r := a.apply(TypeCertRecord, t0, rec); r.Err != nil {
			t.Fatalf("%+v: %v", rec, r.Err)
		}
	}
	for _, bad := range []CertRecord{
		{Node: "node2", Serial: "0a1", NotAfter: t0.Add(day)},
		{Node: "node2", Serial: "A1", NotAfter: t0.Add(day)},
		{Node: "node 2", Serial: "a1", NotAfter: t0.Add(day)},
		{Node: "node2", Serial: "a1"},
	} {
		if r := a.apply(TypeCertRecord, t0, bad); !errors.Is(r.Err, ErrInvalidCommand) {
			t.Errorf("%+v: %v, want ErrInvalidCommand", bad, r.Err)
		}
	}
	issued, revoked, gen, _, _ := view()
	if len(issued) != 2 || len(revoked) != 0 || gen != 0 {
		t.Fatalf("issued %v revoked %v gen %d; want a1 and a2, none, 0", issued, revoked, gen)
	}

	if r := a.apply(TypeCertRevoke, t0.Add(time.Hour), CertRevoke{Node: "node2"}); r.Err != nil || r.Value != 2 {
		t.Fatalf("cert.revoke: %v %v, want 2", r.Value, r.Err)
	}
	issued, revoked, gen, _, _ = view()
	if len(issued) != 0 || len(revoked) != 2 || gen != 1 || revoked[0].Node != "node2" || !revoked[0].RevokedAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("after cert.revoke: issued %v revoked %+v gen %d", issued, revoked, gen)
	}
	// Nothing more to revoke: the generation stays.
	if r := a.apply(TypeCertRevoke, t0.Add(time.Hour), CertRevoke{Node: "node2"}); r.Err != nil || r.Value != 0 {
		t.Fatalf("cert.revoke again: %v %v", r.Value, r.Err)
	}
	// A revoked serial recorded again stays revoked.
	a.apply(TypeCertRecord, t0.Add(time.Hour), CertRecord{Node: "node2", Serial: "a1", NotAfter: t0.Add(365 * day)})
	if issued, _, _, _, _ := view(); len(issued) != 0 {
		t.Fatalf("a revoked serial recorded again: %v", issued)
	}
	// A renewal issued before the removal and recorded after it is
	// revoked as it is recorded, and the generation goes up for it.
	if r := a.apply(TypeCertRecord, t0.Add(2*time.Hour), CertRecord{Node: "node2", Serial: "c1", NotAfter: t0.Add(365 * day)}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if issued, revoked, gen, _, _ := view(); len(issued) != 0 || len(revoked) != 3 || gen != 2 {
		t.Fatalf("a removed member's certificate recorded late: issued %v revoked %+v gen %d; want it revoked, generation 2", issued, revoked, gen)
	}
	// A join admitting the name again ends the mark: its certificate and
	// later renewals are kept, not revoked.
	a.apply(TypeCertRecord, t0.Add(3*time.Hour), CertRecord{Node: "node2", Serial: "d1", NotAfter: t0.Add(365 * day), Admit: true})
	a.apply(TypeCertRecord, t0.Add(4*time.Hour), CertRecord{Node: "node2", Serial: "d2", NotAfter: t0.Add(365 * day)})
	if issued, revoked, gen, _, _ := view(); len(issued) != 2 || len(revoked) != 3 || gen != 2 {
		t.Fatalf("node2 admitted again: issued %v revoked %+v gen %d; want d1 and d2 kept", issued, revoked, gen)
	}
	a.apply(TypeCertRevoke, t0.Add(5*time.Hour), CertRevoke{Node: "node2"})
	if _, revoked, gen, _, _ := view(); len(revoked) != 5 || gen != 3 {
		t.Fatalf("node2 removed again: %+v gen %d; want d1 and d2 revoked too, 3", revoked, gen)
	}

	// A later revocation drops the expired a2.
	a.apply(TypeCertRevoke, t0.Add(3*day), CertRevoke{Node: "node3"})
	if _, revoked, gen, _, _ = view(); len(revoked) != 5 || gen != 4 {
		t.Fatalf("after revoking node3 3 days on: %+v gen %d; want a1, c1, d1, d2 and b1, 4", revoked, gen)
	}

	crl := func(key *ecdsa.PrivateKey, number int64) []byte {
		t.Helper()
		issuer := &x509.Certificate{Subject: pkix.Name{CommonName: "bulwark CA"}, SubjectKeyId: []byte{1}, KeyUsage: x509.KeyUsageCRLSign}
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(number),
			ThisUpdate: t0, NextUpdate: t0.Add(7 * day)}, issuer, key)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	share := seedCA(t)
	if r := a.apply(TypeCRLPublish, t0, CRLPublish{DER: crl(seedCAKey, 1)}); !errors.Is(r.Err, ErrNoCAKey) {
		t.Fatalf("crl.publish without a shared CA key: %v", r.Err)
	}
	a.apply(TypeDataKeyRegister, t0, DataKeyRegister{Fingerprint: fpA})
	if r := a.apply(TypeCAKey, t0, share); r.Err != nil {
		t.Fatal(r.Err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if r := a.apply(TypeCRLPublish, t0, CRLPublish{DER: crl(other, 1), Generation: 1}); !errors.Is(r.Err, ErrInvalidCommand) {
		t.Fatalf("a CRL signed by another key: %v", r.Err)
	}
	if r := a.apply(TypeCRLPublish, t0, CRLPublish{DER: crl(seedCAKey, 5), Generation: 5}); !errors.Is(r.Err, ErrInvalidCommand) {
		t.Fatalf("a generation the state has not reached: %v", r.Err)
	}
	if r := a.apply(TypeCRLPublish, t0, CRLPublish{DER: crl(seedCAKey, 5), Generation: 4}); r.Err != nil || r.Value != uint64(5) {
		t.Fatalf("crl.publish: %v %v", r.Value, r.Err)
	}
	for _, n := range []int64{5, 4} {
		if r := a.apply(TypeCRLPublish, t0, CRLPublish{DER: crl(seedCAKey, n), Generation: 4}); !errors.Is(r.Err, ErrInvalidCommand) {
			t.Errorf("CRL number %d after 5: %v", n, r.Err)
		}
	}
	if r := a.apply(TypeCRLPublish, t0, CRLPublish{DER: crl(seedCAKey, 6), Generation: 3}); !errors.Is(r.Err, ErrInvalidCommand) {
		t.Errorf("a generation below the published one: %v", r.Err)
	}
	_, _, _, pub, have := view()
	if !have || pub.Number != 5 || pub.Generation != 4 || !pub.NextUpdate.Equal(t0.Add(7*day)) {
		t.Fatalf("published: %+v %v", pub, have)
	}
}
