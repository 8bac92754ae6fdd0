package fsm

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func auditCmd(t testing.TB, index uint64, at time.Time, p AuditAppend) Entry {
	t.Helper()
	return Entry{Index: index, Term: 1, Command: true, Data: mustEncode(t, TypeAuditAppend, at, p)}
}

func sampleAudit(i int) AuditAppend {
	return AuditAppend{
		Type: "login.failure", Severity: AuditWarning, Actor: fmt.Sprintf("u%d", i), Subject: "alice",
		IP: "192.0.2.7", UserAgent: "Mozilla/5.0 (X11; Linux x86_64)",
		Details: map[string]string{"reason": "bad_password", "attempt": fmt.Sprint(i)},
	}
}

// appendSamples appends n entries, one per log index from first on.
func appendSamples(t testing.TB, s *Store, first uint64, n int) {
	t.Helper()
	var batch []Entry
	for i := 0; i < n; i++ {
		batch = append(batch, auditCmd(t, first+uint64(i), t0.Add(time.Duration(i)*time.Second), sampleAudit(i)))
	}
	for i, r := range s.ApplyBatch(batch) {
		if r.Err != nil {
			t.Fatalf("append %d: %v", i, r.Err)
		}
	}
}

func allAudit(t testing.TB, s *Store) []*AuditEntry {
	t.Helper()
	var out []*AuditEntry
	if err := s.View(func(r Reader) error {
		return r.AuditAfter(0, 0, func(e *AuditEntry) bool { out = append(out, e); return true })
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func verifyStored(t testing.TB, s *Store) (n uint64, err error) {
	t.Helper()
	if verr := s.View(func(r Reader) error { n, err = r.VerifyAudit(); return nil }); verr != nil {
		t.Fatal(verr)
	}
	return n, err
}

func lastAuditOf(t testing.TB, s *Store) *AuditEntry {
	t.Helper()
	var e *AuditEntry
	if err := s.View(func(r Reader) (err error) { e, err = r.AuditLast(); return err }); err != nil {
		t.Fatal(err)
	}
	return e
}

// rawAudit rewrites the stored entry seq with a raw bbolt update, as an
// attacker with the file would.
func rawAudit(t testing.TB, s *Store, seq uint64, fn func(b *bolt.Bucket, k []byte)) {
	t.Helper()
	if err := s.db.Update(func(tx *bolt.Tx) error {
		fn(tx.Bucket(bucketAudit), auditKey(seq))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func tamperAudit(t testing.TB, s *Store, seq uint64, mutate func(*AuditEntry)) {
	t.Helper()
	rawAudit(t, s, seq, func(b *bolt.Bucket, k []byte) {
		var e AuditEntry
		if err := json.Unmarshal(b.Get(k), &e); err != nil {
			t.Fatal(err)
		}
		mutate(&e)
		v, err := json.Marshal(&e)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Put(k, v); err != nil {
			t.Fatal(err)
		}
	})
}

func wantBreakAt(t testing.TB, err error, seq uint64) {
	t.Helper()
	var ce *AuditChainError
	if !errors.Is(err, ErrAuditChainBroken) || !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a chain break at seq %d", err, seq)
	}
	if ce.Seq != seq || !strings.Contains(err.Error(), fmt.Sprintf("seq %d", seq)) {
		t.Fatalf("break reported as %q (seq %d), want seq %d", err, ce.Seq, seq)
	}
}

func TestAuditAppendChains(t *testing.T) {
	s := openTestStore(t)
	if e := lastAuditOf(t, s); e != nil {
		t.Fatalf("empty trail has last entry %+v", e)
	}
	if n, err := verifyStored(t, s); n != 0 || err != nil {
		t.Fatalf("empty trail: %d, %v", n, err)
	}
	// Five in one batch (one transaction), then two more batches.
	appendSamples(t, s, 1, 5)
	at := time.Date(2026, 11, 27, 13, 0, 0, 999, time.FixedZone("CET", 3600))
	res := s.ApplyBatch([]Entry{auditCmd(t, 6, at, AuditAppend{Type: "lockout", Severity: AuditCritical, Subject: "alice"})})
	e6, ok := res[0].Value.(*AuditEntry)
	if res[0].Err != nil || !ok {
		t.Fatalf("append 6: %+v", res[0])
	}
	if e6.Seq != 6 || !e6.Time.Equal(at) || e6.Time.Location() != time.UTC || e6.Details != nil {
		t.Errorf("entry 6 = %+v", e6)
	}
	appendSamples(t, s, 7, 1)

	all := allAudit(t, s)
	if len(all) != 7 {
		t.Fatalf("%d entries, want 7", len(all))
	}
	for i, e := range all {
		if e.Seq != uint64(i+1) || len(e.Hash) != 64 || e.Hash != e.ComputeHash() {
			t.Errorf("entry %d: seq %d hash %q", i, e.Seq, e.Hash)
		}
	}
	if all[0].PrevHash != AuditGenesisHash || all[1].PrevHash != all[0].Hash {
		t.Errorf("links: %q, %q", all[0].PrevHash, all[1].PrevHash)
	}
	if all[5].Hash != e6.Hash || !all[5].Time.Equal(at) {
		t.Errorf("stored entry 6 = %+v, returned %+v", all[5], e6)
	}
	if got := all[2]; got.Actor != "u2" || got.Details["attempt"] != "2" || !got.Time.Equal(t0.Add(2*time.Second)) {
		t.Errorf("entry 3 = %+v", got)
	}
	if err := VerifyAuditChain(all, AuditGenesisHash); err != nil {
		t.Fatal(err)
	}
	if n, err := verifyStored(t, s); n != 7 || err != nil {
		t.Fatalf("VerifyAudit = %d, %v", n, err)
	}
	if last := lastAuditOf(t, s); last.Seq != 7 || last.Hash != all[6].Hash {
		t.Errorf("last = %+v", last)
	}

	// Paging: a page verifies against the hash that precedes it.
	var page []*AuditEntry
	if err := s.View(func(r Reader) error {
		return r.AuditAfter(2, 3, func(e *AuditEntry) bool { page = append(page, e); return true })
	}); err != nil {
		t.Fatal(err)
	}
	if len(page) != 3 || page[0].Seq != 3 || page[2].Seq != 5 {
		t.Fatalf("page after 2 = %d entries", len(page))
	}
	if err := VerifyAuditChain(page, all[1].Hash); err != nil {
		t.Fatal(err)
	}
	wantBreakAt(t, VerifyAuditChain(page, all[0].Hash), 3)
	// A page that does not start at 1 cannot claim the genesis hash.
	wantBreakAt(t, VerifyAuditChain(page, AuditGenesisHash), 1)
	wantBreakAt(t, VerifyAuditChain([]*AuditEntry{all[0], all[2]}, AuditGenesisHash), 2)
	wantBreakAt(t, VerifyAuditChain([]*AuditEntry{all[0], all[0]}, AuditGenesisHash), 1)

	// fn returning false stops; after beyond the end gives nothing.
	n := 0
	_ = s.View(func(r Reader) error {
		_ = r.AuditAfter(0, 0, func(*AuditEntry) bool { n++; return n < 2 })
		_ = r.AuditAfter(7, 10, func(*AuditEntry) bool { n += 100; return true })
		return r.AuditAfter(^uint64(0), 10, func(*AuditEntry) bool { n += 100; return true })
	})
	if n != 2 {
		t.Errorf("AuditAfter called fn %d times, want 2", n)
	}
}

// TestAuditHashGolden pins the hash encoding: if this test fails, the
// encoding changed and every stored trail stops verifying.
func TestAuditHashGolden(t *testing.T) {
	e := &AuditEntry{
		Seq: 42, Time: time.Unix(0, 1795780800123456789).UTC(),
		Type: "login.failure", Severity: "warning", Actor: "", Subject: "u-123",
		IP: "2001:db8::1", UserAgent: "curl/8.5.0",
		Details:  map[string]string{"reason": "bad_password", "attempt": "3"},
		PrevHash: strings.Repeat("ab", 32),
	}
	// The preimage, restated from the documented encoding.
	var want []byte
	u64 := func(n uint64) { want = binary.BigEndian.AppendUint64(want, n) }
	str := func(s string) { u64(uint64(len(s))); want = append(want, s...) }
	str("bulwark.audit.v1")
	u64(42)
	u64(1795780800123456789)
	for _, s := range []string{"login.failure", "warning", "", "u-123", "2001:db8::1", "curl/8.5.0"} {
		str(s)
	}
	u64(2)
	str("attempt")
	str("3")
	str("reason")
	str("bad_password")
	str(strings.Repeat("ab", 32))
	if got := auditPreimage(e); !bytes.Equal(got, want) {
		t.Fatalf("preimage\n got %x\nwant %x", got, want)
	}
	const golden = "7aaaf696a57235cca3dcfbbbf98df301daa87b42c4a40bffd1c0bef7eebfc914"
	if got := e.ComputeHash(); got != golden {
		t.Fatalf("hash = %s, want %s", got, golden)
	}
	// Surviving the JSON round trip of the store and the API.
	b, _ := json.Marshal(e)
	var back AuditEntry
	if err := json.Unmarshal(b, &back); err != nil || back.ComputeHash() != golden {
		t.Fatalf("after JSON round trip: %v %s", err, back.ComputeHash())
	}
}

func TestAuditTamperingIsDetected(t *testing.T) {
	cases := map[string]func(*AuditEntry){
		"seq":             func(e *AuditEntry) { e.Seq = 9 },
		"time":            func(e *AuditEntry) { e.Time = e.Time.Add(time.Nanosecond) },
		"type":            func(e *AuditEntry) { e.Type = "login.success" },
		"severity":        func(e *AuditEntry) { e.Severity = AuditInfo },
		"actor":           func(e *AuditEntry) { e.Actor = "" },
		"subject":         func(e *AuditEntry) { e.Subject = "bob" },
		"ip":              func(e *AuditEntry) { e.IP = "192.0.2.8" },
		"user agent":      func(e *AuditEntry) { e.UserAgent += " " },
		"detail value":    func(e *AuditEntry) { e.Details["reason"] = "ok" },
		"detail key":      func(e *AuditEntry) { e.Details["reasons"] = e.Details["reason"]; delete(e.Details, "reason") },
		"detail added":    func(e *AuditEntry) { e.Details["x"] = "" },
		"detail removed":  func(e *AuditEntry) { delete(e.Details, "attempt") },
		"details dropped": func(e *AuditEntry) { e.Details = nil },
		"prev hash":       func(e *AuditEntry) { e.PrevHash = AuditGenesisHash },
		"hash":            func(e *AuditEntry) { e.Hash = strings.Repeat("0", 63) + "1" },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			s := openTestStore(t)
			appendSamples(t, s, 1, 5)
			tamperAudit(t, s, 3, mutate)
			_, err := verifyStored(t, s)
			wantBreakAt(t, err, 3)
			wantBreakAt(t, VerifyAuditChain(allAudit(t, s), AuditGenesisHash), 3)
		})
	}
	t.Run("rehashed", func(t *testing.T) {
		// A forger who recomputes the altered entry's hash breaks the next link.
		s := openTestStore(t)
		appendSamples(t, s, 1, 5)
		tamperAudit(t, s, 3, func(e *AuditEntry) { e.Subject = "bob"; e.Hash = e.ComputeHash() })
		_, err := verifyStored(t, s)
		wantBreakAt(t, err, 4)
	})
	t.Run("garbage", func(t *testing.T) {
		s := openTestStore(t)
		appendSamples(t, s, 1, 5)
		rawAudit(t, s, 3, func(b *bolt.Bucket, k []byte) { _ = b.Put(k, []byte("{not json")) })
		n, err := verifyStored(t, s)
		wantBreakAt(t, err, 3)
		if n != 2 {
			t.Errorf("count = %d, want the 2 good entries", n)
		}
	})
}

func TestAuditDeletedEntryIsDetected(t *testing.T) {
	for _, seq := range []uint64{1, 3} {
		t.Run(fmt.Sprint(seq), func(t *testing.T) {
			s := openTestStore(t)
			appendSamples(t, s, 1, 5)
			rawAudit(t, s, seq, func(b *bolt.Bucket, k []byte) { _ = b.Delete(k) })
			_, err := verifyStored(t, s)
			wantBreakAt(t, err, seq)
			wantBreakAt(t, VerifyAuditChain(allAudit(t, s), AuditGenesisHash), seq)
		})
	}
	t.Run("renumbered", func(t *testing.T) {
		// Deleting 3 and relabelling 4 as 3 still breaks at 3.
		s := openTestStore(t)
		appendSamples(t, s, 1, 5)
		rawAudit(t, s, 3, func(b *bolt.Bucket, k []byte) {
			v := b.Get(auditKey(4))
			_ = b.Delete(auditKey(4))
			_ = b.Put(k, v)
		})
		tamperAudit(t, s, 3, func(e *AuditEntry) { e.Seq = 3 })
		_, err := verifyStored(t, s)
		wantBreakAt(t, err, 3)
	})
}

func TestAuditInvalidPayloadsWriteNothing(t *testing.T) {
	ok := AuditAppend{Type: "login.success", Severity: AuditInfo}
	with := func(f func(*AuditAppend)) AuditAppend {
		p := ok
		f(&p)
		return p
	}
	many := map[string]string{}
	for i := 0; i <= MaxAuditDetails; i++ {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	long := func(n int) string { return strings.Repeat("a", n) }
	invalid := map[string]AuditAppend{
		"no type":          with(func(p *AuditAppend) { p.Type = "" }),
		"upper type":       with(func(p *AuditAppend) { p.Type = "Login.success" }),
		"dash type":        with(func(p *AuditAppend) { p.Type = "login-success" }),
		"space type":       with(func(p *AuditAppend) { p.Type = "login success" }),
		"long type":        with(func(p *AuditAppend) { p.Type = long(MaxAuditType + 1) }),
		"no severity":      with(func(p *AuditAppend) { p.Severity = "" }),
		"bad severity":     with(func(p *AuditAppend) { p.Severity = "error" }),
		"upper severity":   with(func(p *AuditAppend) { p.Severity = "INFO" }),
		"long actor":       with(func(p *AuditAppend) { p.Actor = long(MaxAuditActor + 1) }),
		"long subject":     with(func(p *AuditAppend) { p.Subject = long(MaxAuditSubject + 1) }),
		"long ip":          with(func(p *AuditAppend) { p.IP = long(MaxAuditIP + 1) }),
		"space in ip":      with(func(p *AuditAppend) { p.IP = "1.2.3.4 " }),
		"long user agent":  with(func(p *AuditAppend) { p.UserAgent = long(MaxAuditUserAgent + 1) }),
		"escape in ua":     with(func(p *AuditAppend) { p.UserAgent = "x\x1b[2Jy" }),
		"newline in actor": with(func(p *AuditAppend) { p.Actor = "a\nb" }),
		"c1 in subject":    with(func(p *AuditAppend) { p.Subject = "a\u0085b" }),
		"too many details": with(func(p *AuditAppend) { p.Details = many }),
		"empty key":        with(func(p *AuditAppend) { p.Details = map[string]string{"": "v"} }),
		"long key":         with(func(p *AuditAppend) { p.Details = map[string]string{long(MaxAuditDetailKey + 1): "v"} }),
		"upper key":        with(func(p *AuditAppend) { p.Details = map[string]string{"Reason": "v"} }),
		"long value":       with(func(p *AuditAppend) { p.Details = map[string]string{"k": long(MaxAuditDetailValue + 1)} }),
		"tab in value":     with(func(p *AuditAppend) { p.Details = map[string]string{"k": "a\tb"} }),
	}
	raw := func(p string) []byte {
		return []byte(`{"type":"audit.append","v":1,"at":1,"p":` + p + `}`)
	}
	cases := map[string]struct {
		data []byte
		want error
	}{
		"unknown field":  {raw(`{"type":"x","severity":"info","admin":true}`), ErrMalformedCommand},
		"detail number":  {raw(`{"type":"x","severity":"info","details":{"k":1}}`), ErrMalformedCommand},
		"array payload":  {raw(`[]`), ErrMalformedCommand},
		"null payload":   {raw(`null`), ErrInvalidCommand},
		"type is number": {raw(`{"type":1,"severity":"info"}`), ErrMalformedCommand},
	}
	for name, p := range invalid {
		if err := p.Validate(); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("%s: Validate = %v", name, err)
		}
		cases[name] = struct {
			data []byte
			want error
		}{mustEncode(t, TypeAuditAppend, t0, p), ErrInvalidCommand}
	}
	s := openTestStore(t)
	appendSamples(t, s, 1, 1)
	before := lastAuditOf(t, s)
	index := uint64(1)
	for name, tc := range cases {
		index++
		res := s.ApplyBatch([]Entry{{Index: index, Term: 1, Command: true, Data: tc.data}})
		if !errors.Is(res[0].Err, tc.want) || res[0].Value != nil {
			t.Errorf("%s: result %+v, want %v", name, res[0], tc.want)
		}
		if last := lastAuditOf(t, s); last.Seq != 1 || last.Hash != before.Hash {
			t.Fatalf("%s: wrote entry %d", name, last.Seq)
		}
		if i, _, _ := s.Applied(); i != index {
			t.Fatalf("%s: applied = %d, want %d", name, i, index)
		}
	}

	// The limits themselves are accepted.
	full := map[string]string{}
	for i := 0; i < MaxAuditDetails; i++ {
		full[fmt.Sprintf("%02d", i)+long(MaxAuditDetailKey-2)] = strings.Repeat("é", MaxAuditDetailValue/2)
	}
	edge := AuditAppend{Type: long(MaxAuditType), Severity: AuditCritical,
		Actor: long(MaxAuditActor), Subject: strings.Repeat("ü", MaxAuditSubject/2), IP: "fe80::1%eth0",
		UserAgent: long(MaxAuditUserAgent), Details: full}
	res := s.ApplyBatch([]Entry{auditCmd(t, index+1, t0, edge)})
	if res[0].Err != nil {
		t.Fatalf("entry at the limits refused: %v", res[0].Err)
	}
	if n, err := verifyStored(t, s); n != 2 || err != nil {
		t.Fatalf("VerifyAudit = %d, %v", n, err)
	}
}

func TestAuditReplayIsSkipped(t *testing.T) {
	s := openTestStore(t)
	log := []Entry{
		auditCmd(t, 1, t0, sampleAudit(1)),
		auditCmd(t, 2, t0, sampleAudit(2)),
		auditCmd(t, 3, t0, sampleAudit(3)),
	}
	s.ApplyBatch(log)
	last := lastAuditOf(t, s)
	for _, batch := range [][]Entry{log[2:], log, log[1:2]} {
		for i, r := range s.ApplyBatch(batch) {
			if r.Value != nil || r.Err != nil {
				t.Errorf("replayed entry %d applied: %+v", i, r)
			}
		}
	}
	if got := lastAuditOf(t, s); got.Seq != 3 || got.Hash != last.Hash {
		t.Fatalf("after replay last = %d, want 3", got.Seq)
	}
	// Only a new index appends.
	res := s.ApplyBatch(append(log, auditCmd(t, 4, t0, sampleAudit(4))))
	if e, _ := res[3].Value.(*AuditEntry); e == nil || e.Seq != 4 || e.PrevHash != last.Hash {
		t.Fatalf("entry 4 = %+v", res[3])
	}
}

// TestAppendAuditInAnotherHandler is the pattern of a command that records
// its own security event: state change and entry in one transaction.
func TestAppendAuditInAnotherHandler(t *testing.T) {
	s := openTestStore(t)
	appendSamples(t, s, 1, 1)
	if err := s.db.Update(func(tx *bolt.Tx) error {
		tt := txn{tx: tx}
		ev := AuditAppend{Type: "lockout", Severity: AuditWarning, Subject: "alice",
			Details: map[string]string{"until": "2026-11-27T12:15:00Z"}}
		if err := ev.Validate(); err != nil {
			return err
		}
		e, err := appendAudit(tt, t0.UnixNano(), ev)
		if err != nil || e.Seq != 2 {
			t.Fatalf("appendAudit = %+v, %v", e, err)
		}
		ev.Details["until"] = "changed" // the stored entry does not alias the caller's map
		if e.Details["until"] == "changed" {
			t.Error("entry shares the caller's details map")
		}
		if _, err := appendAudit(tt, t0.UnixNano(), AuditAppend{Type: "BAD", Severity: AuditInfo}); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("invalid append: %v", err)
		}
		e, err = appendAudit(tt, t0.UnixNano()+1, AuditAppend{Type: "session.revoke", Severity: AuditInfo})
		if err != nil || e.Seq != 3 {
			t.Fatalf("appendAudit = %+v, %v", e, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n, err := verifyStored(t, s); n != 3 || err != nil {
		t.Fatalf("VerifyAudit = %d, %v", n, err)
	}
}

func TestAuditEncodingIsUnambiguous(t *testing.T) {
	base := AuditEntry{Seq: 7, Time: t0, Type: "ab", Severity: "cd", Actor: "ef", Subject: "gh",
		IP: "ij", UserAgent: "kl", Details: map[string]string{"mn": "op", "qr": "st"}, PrevHash: "uv"}
	// Each variant moves one byte across one boundary between adjacent
	// encoded fields, keeping the concatenation of the fields the same.
	variants := map[string]func(e *AuditEntry){
		"type|severity":      func(e *AuditEntry) { e.Type, e.Severity = "a", "bcd" },
		"severity|actor":     func(e *AuditEntry) { e.Severity, e.Actor = "cde", "f" },
		"actor|subject":      func(e *AuditEntry) { e.Actor, e.Subject = "e", "fgh" },
		"subject|ip":         func(e *AuditEntry) { e.Subject, e.IP = "ghi", "j" },
		"ip|user agent":      func(e *AuditEntry) { e.IP, e.UserAgent = "i", "jkl" },
		"user agent|details": func(e *AuditEntry) { e.UserAgent, e.Details = "klm", map[string]string{"n": "op", "qr": "st"} },
		"key|value":          func(e *AuditEntry) { e.Details = map[string]string{"m": "nop", "qr": "st"} },
		"value|key":          func(e *AuditEntry) { e.Details = map[string]string{"mn": "opq", "r": "st"} },
		"details|prev hash":  func(e *AuditEntry) { e.Details, e.PrevHash = map[string]string{"mn": "op", "qr": "s"}, "tuv" },
		"one detail fewer":   func(e *AuditEntry) { e.Details, e.UserAgent = map[string]string{"qr": "st"}, "klmnop" },
		"empty key":          func(e *AuditEntry) { e.Details = map[string]string{"": "mnop", "qr": "st"} },
	}
	seen := map[string]string{base.ComputeHash(): "base"}
	for name, f := range variants {
		e := base
		f(&e)
		h := e.ComputeHash()
		if other, dup := seen[h]; dup {
			t.Errorf("%s hashes like %s", name, other)
		}
		seen[h] = name
	}

	// The same through Apply: moving a byte from actor to subject.
	hashOf := func(actor, subject string) string {
		s := openTestStore(t)
		res := s.ApplyBatch([]Entry{auditCmd(t, 1, t0, AuditAppend{Type: "logout", Severity: AuditInfo, Actor: actor, Subject: subject})})
		if res[0].Err != nil {
			t.Fatal(res[0].Err)
		}
		return res[0].Value.(*AuditEntry).Hash
	}
	if hashOf("ab", "c") == hashOf("a", "bc") {
		t.Error("actor/subject boundary is ambiguous")
	}
	if hashOf("a", "b") != hashOf("a", "b") {
		t.Error("the same entry hashed differently")
	}
}

func FuzzAuditAppend(f *testing.F) {
	f.Add(mustEncode(f, TypeAuditAppend, t0, sampleAudit(1)))
	f.Add(mustEncode(f, TypeAuditAppend, t0, AuditAppend{Type: "x", Severity: AuditInfo}))
	f.Add(mustEncode(f, TypeAuditAppend, t0, AuditAppend{Type: "lockout", Severity: AuditCritical,
		IP: "::1", UserAgent: "ua", Details: map[string]string{"a-b": "c", "d": ""}}))
	f.Add([]byte(`{"type":"audit.append","v":1,"at":1,"p":{"type":"a","severity":"info","details":{"k":"\u0000"}}}`))
	f.Add([]byte(`{"type":"audit.append","v":1,"at":-1,"p":{}}`))
	f.Add([]byte(`{"type":"audit.append","v":2,"at":1,"p":{}}`))
	f.Add([]byte(`{"type":"audit.append","v":1,"at":9223372036854775807,"p":{"type":"a.b_c","severity":"warning","actor":"\ud800"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := openTestStore(t)
		appendSamples(t, s, 1, 2)
		res := s.ApplyBatch([]Entry{{Index: 3, Term: 1, Command: true, Data: data}})
		want := uint64(2)
		if e, ok := res[0].Value.(*AuditEntry); ok && res[0].Err == nil {
			want = 3
			if e.Seq != 3 || e.Hash != e.ComputeHash() {
				t.Fatalf("appended %+v", e)
			}
		}
		n, err := verifyStored(t, s)
		if err != nil || n != want {
			t.Fatalf("after %q: VerifyAudit = %d, %v; want %d entries", data, n, err, want)
		}
	})
}

func TestCleanAuditText(t *testing.T) {
	cases := []struct {
		in   string
		max  int
		want string
	}{
		{"curl/8", 512, "curl/8"},
		{"a\x1b[2Jb\n", 512, "a\ufffd[2Jb\ufffd"},
		{"a\xffb", 512, "a\ufffdb"},
		{"abcdef", 4, "abcd"},
		{"abcü", 4, "abc"}, // never half a rune
		{"a\tb", 3, "a"},   // the replacement is 3 bytes
	}
	for _, tc := range cases {
		got := CleanAuditText(tc.in, tc.max)
		if got != tc.want {
			t.Errorf("CleanAuditText(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
		p := AuditAppend{Type: "x", Severity: AuditInfo, UserAgent: CleanAuditText(tc.in+strings.Repeat("\x00", 600), MaxAuditUserAgent)}
		if err := p.Validate(); err != nil {
			t.Errorf("cleaned %q: %v", tc.in, err)
		}
	}
}
