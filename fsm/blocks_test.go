package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"
)

func newLevel4(t *testing.T) *applier {
	t.Helper()
	a := newApplier(t)
	if r := a.apply(TypeClusterLevel, t0, ClusterLevel{Level: 4}); r.Err != nil {
		t.Fatal(r.Err)
	}
	return a
}

// detect is API.md's [incident] defaults.
var detect = DetectLimits{Window: int64(time.Minute), BlockAfterFailures: 10, BlockAfterUsernames: 5, BlockFor: int64(time.Hour)}

// failFrom grants a slot for name from ip and fails it with login.failure
// v3 carrying d.
func failFrom(a *applier, at time.Time, name, ip string, d DetectLimits) FailureResult {
	a.t.Helper()
	res := attempt2(a, at, name, ip)
	slot := res.Slot
	if !res.Granted { // the name is locked: a failure still comes in (a check granted earlier)
		slot = at.UnixNano()
	}
	r := a.applyVersion(TypeLoginFailure, 3, at, LoginFailureV3{LoginFailureV2: LoginFailureV2{Username: name, Slot: slot,
		MaxAttempts: 5, Window: window, PendingTTL: ttl, IP: ip}, Detect: d})
	if r.Err != nil {
		a.t.Fatal(r.Err)
	}
	return r.Value.(FailureResult)
}

func blocksOf(t testing.TB, a *applier) []Block {
	t.Helper()
	return viewValue(t, a.s, func(r Reader) ([]Block, error) { return r.Blocks() })
}

func auditOfType(t testing.TB, a *applier, typ string) []*AuditEntry {
	t.Helper()
	var out []*AuditEntry
	for _, e := range allAudit(t, a.s) {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func TestDetectBlocksAfterFailures(t *testing.T) {
	a := newLevel4(t)
	at := t0.Add(time.Second)
	// Two names, five failures each, from one address: the tenth blocks.
	for i := range 10 {
		fr := failFrom(a, at.Add(time.Duration(i)*time.Second), fmt.Sprintf("user%d", i%2), "192.0.2.7", detect)
		if fr.Blocked != (i == 9) {
			t.Fatalf("failure %d: Blocked = %v", i+1, fr.Blocked)
		}
		// Another address fails as often less one, interleaved: never blocked.
		if i < 9 && failFrom(a, at.Add(time.Duration(i)*time.Second), "carol", "192.0.2.8", detect).Blocked {
			t.Fatalf("192.0.2.8 blocked after %d failures", i+1)
		}
	}
	bs := blocksOf(t, a)
	if len(bs) != 1 || bs[0].CIDR != "192.0.2.7/32" || !bs[0].Auto || bs[0].Until != at.Add(9*time.Second+time.Hour).UnixNano() {
		t.Fatalf("blocks = %+v", bs)
	}
	ev := auditOfType(t, a, "address.block")
	if len(ev) != 1 || ev[0].Severity != AuditWarning || ev[0].Details["address"] != "192.0.2.7/32" ||
		ev[0].Details["until"] != at.Add(9*time.Second+time.Hour).Format(time.RFC3339) || ev[0].Details["reason"] == "" {
		t.Fatalf("audit = %+v", ev)
	}
	// The address's record started over.
	if n := keyCount(t, a, bucketDetect); n != 1 { // 192.0.2.8's only
		t.Fatalf("%d detection records, want 1", n)
	}
}

func TestDetectBlocksCredentialStuffing(t *testing.T) {
	a := newLevel4(t)
	ip := "2001:db8:1:2::77"
	for i := range 5 {
		// Another host of the same /64 counts as the same address.
		from := ip
		if i == 3 {
			from = "2001:db8:1:2::99"
		}
		fr := failFrom(a, t0.Add(time.Duration(i+1)*time.Second), fmt.Sprintf("victim%d", i), from, detect)
		if fr.Blocked != (i == 4) {
			t.Fatalf("name %d: Blocked = %v", i+1, fr.Blocked)
		}
	}
	bs := blocksOf(t, a)
	if len(bs) != 1 || bs[0].CIDR != "2001:db8:1:2::/64" {
		t.Fatalf("blocks = %+v", bs)
	}
	if ev := auditOfType(t, a, "address.block"); len(ev) != 1 || ev[0].Severity != AuditCritical {
		t.Fatalf("audit = %+v", ev)
	}
}

func TestDetectWindowAndExempt(t *testing.T) {
	a := newLevel4(t)
	// Nine failures a window, windows apart: never ten within one.
	for w := range 3 {
		for i := range 9 {
			at := t0.Add(time.Duration(w)*61*time.Second + time.Duration(i)*time.Second)
			if failFrom(a, at, fmt.Sprintf("u%d", i%2), "198.51.100.1", detect).Blocked {
				t.Fatalf("blocked in window %d at failure %d", w, i+1)
			}
		}
	}
	// An exempt address carries no limits: nothing is counted.
	for i := range 20 {
		if failFrom(a, t0.Add(time.Duration(i)*time.Second), fmt.Sprintf("x%d", i), "203.0.113.5", DetectLimits{}).Blocked {
			t.Fatal("an exempt address was blocked")
		}
	}
	if bs := blocksOf(t, a); len(bs) != 0 {
		t.Fatalf("blocks = %+v", bs)
	}
	// A rule at 0 is off: failures alone, names off.
	onlyNames := detect
	onlyNames.BlockAfterFailures = 0
	for i := range 20 {
		if failFrom(a, t0.Add(5*time.Minute+time.Duration(i)*time.Second), "same", "203.0.113.9", onlyNames).Blocked {
			t.Fatal("blocked by a rule that is off")
		}
	}
}

// The same log applied on two stores gives the same bytes, blocks and
// detection records included: every node blocks alike.
func TestDetectDeterministic(t *testing.T) {
	var states [][]byte
	for range 2 {
		a := newLevel4(t)
		for i := range 12 {
			failFrom(a, t0.Add(time.Duration(i)*time.Second), fmt.Sprintf("n%d", i%3), fmt.Sprintf("192.0.2.%d", i%2), detect)
		}
		a.applyVersion(TypeBlockAdd, 1, t0.Add(20*time.Second), BlockAdd{CIDR: "10.0.0.0/8", For: int64(time.Hour), Reason: "r"})
		sweep2(a, t0.Add(2*time.Hour), 100, 0)
		states = append(states, stateBytes(t, a))
	}
	if !bytes.Equal(states[0], states[1]) {
		t.Fatal("two stores applying the same log differ")
	}
}

func TestBlockAddRemoveExpire(t *testing.T) {
	a := newLevel4(t)
	gen := func() uint64 {
		return viewValue(t, a.s, func(r Reader) (uint64, error) { return r.BlocksGeneration(), nil })
	}
	g0 := gen()
	r := a.applyVersion(TypeBlockAdd, 1, t0.Add(time.Second), BlockAdd{CIDR: "10.0.0.0/8", For: int64(time.Hour), Reason: "scanner", Actor: "local-admin"})
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if b := r.Value.(Block); b.CIDR != "10.0.0.0/8" || b.Until != t0.Add(time.Second+time.Hour).UnixNano() || b.Actor != "local-admin" || b.Auto {
		t.Fatalf("block = %+v", b)
	}
	g1 := gen()
	if g1 == g0 {
		t.Fatal("BlocksGeneration unchanged by block.add")
	}
	// A failure that blocks nothing leaves the generation alone.
	failFrom(a, t0.Add(2*time.Second), "x", "192.0.2.1", detect)
	if gen() != g1 {
		t.Fatal("BlocksGeneration changed by a failure that blocked nothing")
	}
	if r := a.applyVersion(TypeBlockRemove, 1, t0.Add(3*time.Second), BlockRemove{CIDR: "10.0.0.0/8", Actor: "local-admin"}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if gen() == g1 {
		t.Fatal("BlocksGeneration unchanged by block.remove")
	}
	if bs := blocksOf(t, a); len(bs) != 0 {
		t.Fatalf("blocks after remove = %+v", bs)
	}
	if r := a.applyVersion(TypeBlockRemove, 1, t0.Add(4*time.Second), BlockRemove{CIDR: "10.0.0.0/8"}); !errors.Is(r.Err, ErrBlockNotFound) {
		t.Fatalf("second remove: %v", r.Err)
	}
	if n := len(auditOfType(t, a, "address.block")); n != 1 {
		t.Fatalf("%d address.block entries", n)
	}
	if ev := auditOfType(t, a, "address.unblock"); len(ev) != 1 || ev[0].Actor != "local-admin" || ev[0].Details["address"] != "10.0.0.0/8" {
		t.Fatalf("address.unblock = %+v", ev)
	}

	// Expiry: over at its end (remove refuses it), deleted by the sweep.
	// (Commands apply in time order: time never runs backwards.)
	a.applyVersion(TypeBlockAdd, 1, t0.Add(10*time.Second), BlockAdd{CIDR: "2001:db8::/32", For: int64(time.Minute)})
	if res := sweep2(a, t0.Add(69*time.Second), 100, 0); res.Blocks != 0 || len(blocksOf(t, a)) != 1 {
		t.Fatalf("swept before its end: %+v", res)
	}
	if r := a.applyVersion(TypeBlockRemove, 1, t0.Add(70*time.Second), BlockRemove{CIDR: "2001:db8::/32"}); !errors.Is(r.Err, ErrBlockNotFound) {
		t.Fatalf("remove of an expired block: %v", r.Err)
	}
	if res := sweep2(a, t0.Add(70*time.Second), 100, 0); res.Blocks != 1 || len(blocksOf(t, a)) != 0 {
		t.Fatalf("sweep at its end: %+v, blocks %+v", res, blocksOf(t, a))
	}
	// The detection record of 192.0.2.1 went at its window's end too.
	if n := keyCount(t, a, bucketDetect); n != 0 {
		t.Fatalf("%d detection records left after their window", n)
	}
}

func TestBlockCommandsValidate(t *testing.T) {
	a := newLevel4(t)
	before := stateBytes(t, a)
	for _, tc := range []struct {
		typ Type
		p   any
	}{
		{TypeBlockAdd, BlockAdd{CIDR: "10.0.0.1/8", For: int64(time.Hour)}},          // not masked
		{TypeBlockAdd, BlockAdd{CIDR: "::ffff:10.0.0.1/128", For: int64(time.Hour)}}, // not unmapped
		{TypeBlockAdd, BlockAdd{CIDR: "10.0.0.1", For: int64(time.Hour)}},            // no length
		{TypeBlockAdd, BlockAdd{CIDR: "10.0.0.0/8", For: 0}},
		{TypeBlockAdd, BlockAdd{CIDR: "10.0.0.0/8", For: int64(MaxBlockFor) + 1}},
		{TypeBlockAdd, BlockAdd{CIDR: "10.0.0.0/8", For: int64(time.Hour), Reason: string(make([]byte, MaxBlockReason+1))}},
		{TypeBlockRemove, BlockRemove{CIDR: "nonsense"}},
		{TypeLoginFailure, LoginFailureV3{LoginFailureV2: LoginFailureV2{Username: "a", Slot: 1, MaxAttempts: 5, Window: window, PendingTTL: ttl},
			Detect: DetectLimits{Window: int64(time.Minute), BlockAfterUsernames: MaxBlockAfterUsernames + 1, BlockFor: int64(time.Hour)}}},
		{TypeLoginFailure, LoginFailureV3{LoginFailureV2: LoginFailureV2{Username: "a", Slot: 1, MaxAttempts: 5, Window: window, PendingTTL: ttl},
			Detect: DetectLimits{BlockAfterFailures: 3}}}, // no window
	} {
		v := uint16(1)
		if tc.typ == TypeLoginFailure {
			v = 3
		}
		if r := a.applyVersion(tc.typ, v, t0.Add(time.Second), tc.p); !errors.Is(r.Err, ErrInvalidCommand) {
			t.Errorf("%s %+v: %v, want ErrInvalidCommand", tc.typ, tc.p, r.Err)
		}
	}
	if !bytes.Equal(before, stateBytes(t, a)) {
		t.Fatal("a refused command changed the state")
	}
}

func TestBlockCommandsNeedLevel4(t *testing.T) {
	for _, c := range []struct {
		t Type
		v uint16
	}{{TypeBlockAdd, 1}, {TypeBlockRemove, 1}, {TypeLoginFailure, 3}} {
		if Proposable(c.t, c.v, 3) || !Proposable(c.t, c.v, 4) {
			t.Errorf("%s v%d: proposable at 3 or not at 4", c.t, c.v)
		}
	}
}

func TestCanonicalCIDR(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":            "192.0.2.7/32",
		"192.0.2.7/24":         "192.0.2.0/24",
		"::ffff:192.0.2.7":     "192.0.2.7/32",
		"::ffff:192.0.2.0/120": "192.0.2.0/24",
		"2001:db8::1":          "2001:db8::1/128",
		"2001:DB8:0:0:1::/64":  "2001:db8::/64",
	} {
		p, err := CanonicalCIDR(in)
		if err != nil || p.String() != want {
			t.Errorf("CanonicalCIDR(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, bad := range []string{"", "nonsense", "10.0.0.0/33", "fe80::1%eth0", "::ffff:0:0/90"} {
		if p, err := CanonicalCIDR(bad); err == nil {
			t.Errorf("CanonicalCIDR(%q) = %v, want an error", bad, p)
		}
	}
}

// BenchmarkLoginFailure is what a failed login costs the state machine
// with the detection rules (v3) and without (v2): a slot granted and its
// failure, names and addresses spread so that no rule trips. The
// "+entry" cases carry the failure's audit entry as authcore sends it (v3
// in the envelope; v4 in the payload, with the unknown-name cap of 10 per
// address per hour), spread over addresses or all from one, and report
// the audit trail's growth per failure (audit-B/op).
func BenchmarkLoginFailure(b *testing.B) {
	for _, v := range []uint16{2, 3} {
		b.Run(fmt.Sprintf("v%d", v), func(b *testing.B) {
			a := &applier{t: b, s: openTestStore(b)}
			a.apply(TypeClusterLevel, t0, ClusterLevel{Level: 4})
			i := 0
			for b.Loop() {
				at := t0.Add(time.Duration(i) * time.Millisecond)
				name, ip := fmt.Sprintf("name%d", i), fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
				res := attempt2(a, at, name, ip)
				v2 := LoginFailureV2{Username: name, Slot: res.Slot, MaxAttempts: 5, Window: window, PendingTTL: ttl,
					MaxNamesPerAddress: capNames, IP: ip}
				var p any = v2
				if v == 3 {
					p = LoginFailureV3{LoginFailureV2: v2, Detect: detect}
				}
				if r := a.applyVersion(TypeLoginFailure, v, at, p); r.Err != nil || r.Value.(FailureResult).Blocked {
					b.Fatal(r)
				}
				i++
			}
		})
	}
	for _, v := range []uint16{3, 4} {
		for _, oneAddress := range []bool{false, true} {
			where := "spread"
			if oneAddress {
				where = "one-address"
			}
			b.Run(fmt.Sprintf("v%d+entry/%s", v, where), func(b *testing.B) {
				a := &applier{t: b, s: openTestStore(b)}
				a.apply(TypeClusterLevel, t0, ClusterLevel{Level: 5})
				start := auditBytes(b, a.s)
				i := 0
				for b.Loop() {
					at := t0.Add(time.Duration(i) * time.Millisecond)
					name, ip := fmt.Sprintf("name%d", i), fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
					if oneAddress {
						ip = "192.0.2.7"
					}
					r := a.applyVersion(TypeLoginAttempt, 2, at, LoginAttemptV2{Username: name, MaxAttempts: 5, Window: window,
						PendingTTL: ttl, IP: ip})
					if r.Err != nil || !r.Value.(AttemptResult).Granted {
						b.Fatal(r)
					}
					v2 := LoginFailureV2{Username: name, Slot: r.Value.(AttemptResult).Slot, MaxAttempts: 5, Window: window,
						PendingTTL: ttl, IP: ip, UserAgent: "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"}
					ev := AuditAppend{Type: "login.failure", Severity: AuditWarning, IP: ip, UserAgent: v2.UserAgent,
						Details: map[string]string{"username": name, "reason": "unknown_user"}}
					c, err := NewCommand(TypeLoginFailure, 3, at.UnixNano(), LoginFailureV3{LoginFailureV2: v2})
					if v == 4 {
						c, err = NewCommand(TypeLoginFailure, 4, at.UnixNano(), LoginFailureV4{LoginFailureV3: LoginFailureV3{LoginFailureV2: v2},
							Event: ev, Cap: AuditCap{Entries: 10, Window: int64(time.Hour)}})
					} else {
						c = c.WithAudit(ev)
					}
					if err != nil {
						b.Fatal(err)
					}
					data, err := c.Encode()
					if err != nil {
						b.Fatal(err)
					}
					a.index++
					if r := a.s.ApplyBatch([]Entry{{Index: a.index, Term: 1, Command: true, Data: data}})[0]; r.Err != nil {
						b.Fatal(r.Err)
					}
					i++
				}
				b.ReportMetric(float64(auditBytes(b, a.s)-start)/float64(i), "audit-B/op")
			})
		}
	}
}

// auditBytes is the size of the audit trail's stored entries.
func auditBytes(t testing.TB, s *Store) int {
	n := 0
	if err := s.View(func(r Reader) error {
		return r.tx.Bucket(bucketAudit).ForEach(func(_, v []byte) error { n += len(v); return nil })
	}); err != nil {
		t.Fatal(err)
	}
	return n
}
