package fsm

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

var (
	fpA = strings.Repeat("a1", 32)
	fpB = strings.Repeat("b2", 32)
	fpK = strings.Repeat("c3", 32)
)

func escrowPayload(dataKey, keyFP string) DataKeyEscrow {
	return DataKeyEscrow{DataKey: dataKey, KeyFingerprint: keyFP, KEM: "X25519MLKEM768",
		PublicKey: []byte("public"), KEMCiphertext: []byte("kem-ct"), Ciphertext: []byte("aead-ct")}
}

func sharesPayload(dataKey string, k, n int) DataKeyShares {
	p := DataKeyShares{DataKey: dataKey, Threshold: k, Shares: n, SetID: "0badcafe", Ciphertext: []byte("aead-ct")}
	for i := range n {
		p.ShareHashes = append(p.ShareHashes, hashOf(fmt.Sprint("share", i)))
	}
	return p
}

func dataKeyOf(t *testing.T, s *Store) *DataKeyState {
	t.Helper()
	return viewValue(t, s, Reader.DataKey)
}

func TestDataKeyRegister(t *testing.T) {
	a := newApplier(t)
	if err := a.s.View(func(r Reader) error { _, err := r.DataKey(); return err }); !errors.Is(err, ErrNoDataKey) {
		t.Fatalf("before registration: %v, want ErrNoDataKey", err)
	}
	if r := a.apply(TypeDataKeyRegister, t0, DataKeyRegister{Fingerprint: fpA}); r.Err != nil {
		t.Fatal(r.Err)
	}
	// The same fingerprint again (every start proposes it) changes nothing.
	if r := a.apply(TypeDataKeyRegister, t0.Add(time.Hour), DataKeyRegister{Fingerprint: fpA}); r.Err != nil {
		t.Fatal(r.Err)
	}
	st := dataKeyOf(t, a.s)
	if st.Fingerprint != fpA || !st.RegisteredAt.Equal(t0) {
		t.Errorf("registered %+v", st)
	}
	// Another key is refused: the data key never changes in place.
	r := a.apply(TypeDataKeyRegister, t0, DataKeyRegister{Fingerprint: fpB})
	if !errors.Is(r.Err, ErrInvalidCommand) || !strings.Contains(r.Err.Error(), fpA) {
		t.Errorf("another fingerprint: %v, want ErrInvalidCommand naming the registered one", r.Err)
	}
	for _, bad := range []string{"", "A1" + fpA[2:], fpA[:62], fpA + "00", strings.Repeat("g", 64)} {
		if r := a.apply(TypeDataKeyRegister, t0, DataKeyRegister{Fingerprint: bad}); !errors.Is(r.Err, ErrInvalidCommand) {
			t.Errorf("fingerprint %q: %v", bad, r.Err)
		}
	}
	if got := dataKeyOf(t, a.s).Fingerprint; got != fpA {
		t.Errorf("after refusals: %s", got)
	}
}

func TestDataKeyEscrowRecords(t *testing.T) {
	a := newApplier(t)
	if r := a.apply(TypeDataKeyEscrow, t0, escrowPayload(fpA, fpK)); !errors.Is(r.Err, ErrNoDataKey) {
		t.Fatalf("escrow before registration: %v, want ErrNoDataKey", r.Err)
	}
	a.apply(TypeDataKeyRegister, t0, DataKeyRegister{Fingerprint: fpA})
	r := a.apply(TypeDataKeyEscrow, t0.Add(time.Minute), escrowPayload(fpA, fpK))
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if e := r.Value.(*Escrow); !e.CreatedAt.Equal(t0.Add(time.Minute)) || string(e.KEMCiphertext) != "kem-ct" {
		t.Errorf("escrow result %+v", e)
	}
	if r := a.apply(TypeDataKeyEscrow, t0, escrowPayload(fpA, fpK)); !errors.Is(r.Err, ErrEscrowExists) {
		t.Errorf("second escrow to the same key: %v, want ErrEscrowExists", r.Err)
	}
	if r := a.apply(TypeDataKeyEscrow, t0, escrowPayload(fpB, fpB)); !errors.Is(r.Err, ErrInvalidCommand) {
		t.Errorf("escrow of another data key: %v, want ErrInvalidCommand", r.Err)
	}
	bad := map[string]func(*DataKeyEscrow){
		"kem":         func(p *DataKeyEscrow) { p.KEM = "Kyber768-X25519" },
		"fingerprint": func(p *DataKeyEscrow) { p.KeyFingerprint = "x" },
		"no ct":       func(p *DataKeyEscrow) { p.Ciphertext = nil },
		"big ct":      func(p *DataKeyEscrow) { p.Ciphertext = make([]byte, 257) },
		"no kem ct":   func(p *DataKeyEscrow) { p.KEMCiphertext = nil },
		"no pub":      func(p *DataKeyEscrow) { p.PublicKey = nil },
	}
	for name, mutate := range bad {
		p := escrowPayload(fpA, fpB)
		mutate(&p)
		if r := a.apply(TypeDataKeyEscrow, t0, p); !errors.Is(r.Err, ErrInvalidCommand) {
			t.Errorf("%s: %v, want ErrInvalidCommand", name, r.Err)
		}
	}
	// Up to MaxEscrows holders.
	for i := 1; i < MaxEscrows; i++ {
		if r := a.apply(TypeDataKeyEscrow, t0, escrowPayload(fpA, hashOf(fmt.Sprint(i)))); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if r := a.apply(TypeDataKeyEscrow, t0, escrowPayload(fpA, fpB)); !errors.Is(r.Err, ErrInvalidCommand) {
		t.Errorf("escrow %d: %v", MaxEscrows+1, r.Err)
	}
	st := dataKeyOf(t, a.s)
	if len(st.Escrows) != MaxEscrows {
		t.Fatalf("%d escrows stored", len(st.Escrows))
	}
	if e, ok := st.Escrow(fpK); !ok || string(e.PublicKey) != "public" {
		t.Errorf("Escrow(%s) = %+v, %v", fpK, e, ok)
	}
}

func TestDataKeySharesIssuedOnce(t *testing.T) {
	a := newApplier(t)
	if r := a.apply(TypeDataKeyShares, t0, sharesPayload(fpA, 2, 3)); !errors.Is(r.Err, ErrNoDataKey) {
		t.Fatalf("shares before registration: %v", r.Err)
	}
	a.apply(TypeDataKeyRegister, t0, DataKeyRegister{Fingerprint: fpA})
	for name, p := range map[string]DataKeyShares{
		"k=1":           sharesPayload(fpA, 1, 3),
		"k>n":           sharesPayload(fpA, 4, 3),
		"n=33":          sharesPayload(fpA, 2, 33),
		"hash count":    func() DataKeyShares { p := sharesPayload(fpA, 2, 3); p.ShareHashes = p.ShareHashes[:2]; return p }(),
		"same hashes":   func() DataKeyShares { p := sharesPayload(fpA, 2, 3); p.ShareHashes[2] = p.ShareHashes[0]; return p }(),
		"set id":        func() DataKeyShares { p := sharesPayload(fpA, 2, 3); p.SetID = "xyz"; return p }(),
		"other key":     sharesPayload(fpB, 2, 3),
		"no sealed key": func() DataKeyShares { p := sharesPayload(fpA, 2, 3); p.Ciphertext = nil; return p }(),
	} {
		if r := a.apply(TypeDataKeyShares, t0, p); !errors.Is(r.Err, ErrInvalidCommand) {
			t.Errorf("%s: %v, want ErrInvalidCommand", name, r.Err)
		}
	}
	at := t0.Add(2 * time.Hour)
	if r := a.apply(TypeDataKeyShares, at, sharesPayload(fpA, 2, 3)); r.Err != nil {
		t.Fatal(r.Err)
	}
	r := a.apply(TypeDataKeyShares, at.Add(time.Hour), sharesPayload(fpA, 3, 5))
	if !errors.Is(r.Err, ErrSharesIssued) || !strings.Contains(r.Err.Error(), at.Format(time.RFC3339)) {
		t.Errorf("second issue: %v, want ErrSharesIssued with the first time", r.Err)
	}
	st := dataKeyOf(t, a.s)
	if st.Shares == nil || st.Shares.Threshold != 2 || st.Shares.Shares != 3 || !st.Shares.IssuedAt.Equal(at) {
		t.Errorf("stored shares %+v", st.Shares)
	}
}

// TestDataKeyAuditOnlyOnSuccess: the envelope's audit entries are
// appended with the change, and not with a refusal.
func TestDataKeyAuditOnlyOnSuccess(t *testing.T) {
	a := newApplier(t)
	a.apply(TypeDataKeyRegister, t0, DataKeyRegister{Fingerprint: fpA})
	audit := AuditAppend{Type: "datakey.escrow", Severity: AuditWarning, Actor: "local-admin", Subject: fpK}
	propose := func() Result {
		cmd, err := NewCommand(TypeDataKeyEscrow, 1, t0.UnixNano(), escrowPayload(fpA, fpK))
		if err != nil {
			t.Fatal(err)
		}
		b, err := cmd.WithAudit(audit).Encode()
		if err != nil {
			t.Fatal(err)
		}
		a.index++
		return a.s.ApplyBatch([]Entry{{Index: a.index, Term: 1, Command: true, Data: b}})[0]
	}
	if r := propose(); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := propose(); !errors.Is(r.Err, ErrEscrowExists) {
		t.Fatalf("second: %v", r.Err)
	}
	var n int
	for _, e := range allAudit(t, a.s) {
		if e.Type == "datakey.escrow" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d datakey.escrow audit entries, want 1", n)
	}
}
