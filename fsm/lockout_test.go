package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"
)

// Level-3 lockout: fail-closed slots, login.release, the cap on names per
// address. Limits as authcore's defaults: 5 attempts per 15 minutes, slots
// held 30 s.

func newLevel3(t *testing.T) *applier {
	t.Helper()
	a := newApplier(t)
	if r := a.apply(TypeClusterLevel, t0, ClusterLevel{Level: 3}); r.Err != nil {
		t.Fatal(r.Err)
	}
	return a
}

// capNames is the cap attempt2 and fail2 carry (0: off).
const capNames = 3

func attempt2(a *applier, at time.Time, name, ip string) AttemptResult {
	a.t.Helper()
	r := a.applyVersion(TypeLoginAttempt, 2, at, LoginAttemptV2{Username: name, MaxAttempts: 5, Window: window,
		PendingTTL: ttl, MaxNamesPerAddress: capNames, IP: ip})
	if r.Err != nil {
		a.t.Fatal(r.Err)
	}
	return r.Value.(AttemptResult)
}

func fail2(a *applier, at time.Time, name, ip string, slot int64) FailureResult {
	a.t.Helper()
	r := a.applyVersion(TypeLoginFailure, 2, at, LoginFailureV2{Username: name, Slot: slot, MaxAttempts: 5, Window: window,
		PendingTTL: ttl, MaxNamesPerAddress: capNames, IP: ip})
	if r.Err != nil {
		a.t.Fatal(r.Err)
	}
	return r.Value.(FailureResult)
}

func release(a *applier, at time.Time, name string, slot int64) {
	a.t.Helper()
	if r := a.apply(TypeLoginRelease, at, LoginRelease{Username: name, Slot: slot}); r.Err != nil {
		a.t.Fatal(r.Err)
	}
}

func lockoutOf(t testing.TB, a *applier, name string) Lockout {
	t.Helper()
	return viewValue(t, a.s, func(r Reader) (Lockout, error) { return r.Lockout(name) })
}

func lockoutAudits(t testing.TB, a *applier) []*AuditEntry {
	t.Helper()
	var out []*AuditEntry
	for _, e := range allAudit(t, a.s) {
		if e.Type == "lockout" {
			out = append(out, e)
		}
	}
	return out
}

// stateBytes is every key and value of the state but the applied index:
// what a command changed, if anything.
func stateBytes(t testing.TB, a *applier) []byte {
	t.Helper()
	var buf bytes.Buffer
	a.s.View(func(r Reader) error {
		c := r.tx.Cursor()
		for name, _ := c.First(); name != nil; name, _ = c.Next() {
			r.tx.Bucket(name).ForEach(func(k, v []byte) error {
				// The applied index and the applied time (clock.go) move
				// with every entry; what a command wrote is the rest.
				if !bytes.Equal(name, bucketMeta) || (!bytes.Equal(k, keyApplied) && !bytes.Equal(k, keyTime)) {
					fmt.Fprintf(&buf, "%s/%x=%x\n", name, k, v)
				}
				return nil
			})
		}
		return nil
	})
	return buf.Bytes()
}

func TestLockoutV2ExpiredSlotsAreFailures(t *testing.T) {
	a := newLevel3(t)
	// Five checks whose clients vanished: nothing is ever reported.
	for i := 0; i < 5; i++ {
		if r := attempt2(a, t0.Add(time.Duration(i)*time.Millisecond), "bob", "192.0.2.1"); !r.Granted {
			t.Fatalf("attempt %d: %+v", i, r)
		}
	}
	if r := attempt2(a, t0.Add(time.Duration(ttl)-time.Millisecond), "bob", "192.0.2.1"); r.Granted || r.Locked {
		t.Fatalf("a sixth check while five are pending: %+v", r)
	}
	// At their deadlines they are five failures: the fifth locks the name
	// from its deadline for a window, as a reported fifth failure would.
	deadline5 := t0.Add(4*time.Millisecond + time.Duration(ttl))
	at := t0.Add(time.Duration(ttl) + time.Second)
	r := attempt2(a, at, "bob", "192.0.2.1")
	if !r.Locked || r.RetryAfter != deadline5.Add(time.Duration(window)).Sub(at) {
		t.Fatalf("after five expired slots: %+v, want locked until %v", r, deadline5.Add(time.Duration(window)))
	}
	// A refused attempt writes nothing: the lock is settled, and audited,
	// by the next write of the name (here, the sweep).
	if n := len(lockoutAudits(t, a)); n != 0 {
		t.Fatalf("%d lockout audit entries written by a refused attempt", n)
	}
	if r := a.applyVersion(TypeSweep, 2, at, SweepV2{Limit: 100}); r.Err != nil {
		t.Fatal(r.Err)
	}
	l := lockoutOf(t, a, "bob")
	if l.Failures != 5 || len(l.Pending) != 0 || l.LockedUntil != deadline5.Add(time.Duration(window)).UnixNano() {
		t.Fatalf("record after the sweep: %+v", l)
	}
	audits := lockoutAudits(t, a)
	if len(audits) != 1 || audits[0].Details["username"] != "bob" || audits[0].IP != "192.0.2.1" ||
		audits[0].Details["until"] != deadline5.Add(time.Duration(window)).UTC().Format(time.RFC3339) {
		t.Fatalf("lockout audit entries %+v", audits)
	}
	// Reported late, a slot already counted does not count twice.
	if r := fail2(a, at, "bob", "192.0.2.1", t0.UnixNano()); r.Locked {
		t.Fatal("a late failure locked again")
	}
	if l := lockoutOf(t, a, "bob"); l.Failures != 5 {
		t.Fatalf("a late failure counted twice: %d failures", l.Failures)
	}
}

func TestLockoutV2MixedExpiredAndReported(t *testing.T) {
	a := newLevel3(t)
	var slots []int64
	for i := 0; i < 5; i++ {
		slots = append(slots, attempt2(a, t0.Add(time.Duration(i)*time.Second), "carol", "192.0.2.1").Slot)
	}
	// Three vanish; two are reported after the three ran out: the second
	// reported failure is the window's fifth and locks, with the audit
	// entry of a reported failure.
	later := t0.Add(time.Duration(ttl) + 2*time.Second)
	if r := fail2(a, later, "carol", "192.0.2.1", slots[3]); r.Locked {
		t.Fatal("fourth failure locked")
	}
	if r := fail2(a, later, "carol", "192.0.2.1", slots[4]); !r.Locked {
		t.Fatal("fifth failure (three of them expired slots) did not lock")
	}
	if l := lockoutOf(t, a, "carol"); l.Failures != 5 || l.LockedUntil != later.UnixNano()+window {
		t.Fatalf("record %+v", l)
	}
	if n := len(lockoutAudits(t, a)); n != 1 {
		t.Fatalf("%d lockout audit entries", n)
	}
	// An expired slot resolving inside login.failure may be the one that
	// locks; the failure says so.
	b := newLevel3(t)
	for i := 0; i < 4; i++ {
		fail2(b, t0, "dan", "192.0.2.1", attempt2(b, t0, "dan", "192.0.2.1").Slot)
	}
	last := attempt2(b, t0, "dan", "192.0.2.1").Slot
	if r := fail2(b, t0.Add(time.Duration(ttl)), "dan", "192.0.2.1", last); !r.Locked {
		t.Fatalf("the failure that settled the locking slot: %+v", r)
	}
}

func TestLoginRelease(t *testing.T) {
	a := newLevel3(t)
	var slots []int64
	for i := 0; i < 5; i++ {
		slots = append(slots, attempt2(a, t0, "erin", "192.0.2.1").Slot)
	}
	for _, s := range slots {
		release(a, t0.Add(time.Second), "erin", s)
	}
	// Nothing counted, nothing left: the record and the address's held
	// slots are gone.
	if l := lockoutOf(t, a, "erin"); l.Failures != 0 || len(l.Pending) != 0 {
		t.Fatalf("after five releases: %+v", l)
	}
	a.s.View(func(r Reader) error {
		if v := r.tx.Bucket(bucketLockout).Get([]byte("erin")); v != nil {
			t.Errorf("an empty record stays: %s", v)
		}
		return nil
	})
	at := t0.Add(time.Hour)
	for i := 0; i < 5; i++ {
		if r := attempt2(a, at, "erin", "192.0.2.1"); !r.Granted {
			t.Fatalf("after releases, attempt %d: %+v", i, r)
		}
	}
	// A release after the slot ran out changes nothing: it counted.
	later := at.Add(time.Duration(ttl))
	release(a, later, "erin", at.UnixNano())
	if l := lockoutOf(t, a, "erin"); l.Failures != 5 || l.LockedUntil == 0 {
		t.Fatalf("a late release uncounted a failure: %+v", l)
	}
	// An unknown slot, an unknown name: nothing written.
	before := stateBytes(t, a)
	release(a, later, "erin", 12345)
	release(a, later, "nobody", 12345)
	if !bytes.Equal(before, stateBytes(t, a)) {
		t.Fatal("a release of nothing wrote")
	}
	if r := a.apply(TypeLoginRelease, later, LoginRelease{Username: "erin"}); !errors.Is(r.Err, ErrInvalidCommand) {
		t.Fatalf("release without a slot: %v", r.Err)
	}
}

// login.attempt v1 and login.failure v1 answer as they always did, at any
// level: an expired slot frees, it does not count.
func TestLockoutV1Unchanged(t *testing.T) {
	script := func(a *applier) []any {
		var out []any
		for i := 0; i < 5; i++ {
			out = append(out, attempt(a, t0, "bob"))
		}
		out = append(out, attempt(a, t0.Add(time.Duration(ttl)), "bob"))
		out = append(out, fail(a, t0.Add(time.Duration(ttl)), "bob", t0.UnixNano()))
		for i := 0; i < 4; i++ {
			r := attempt(a, t0.Add(time.Minute), "bob")
			out = append(out, r, fail(a, t0.Add(time.Minute), "bob", r.Slot))
		}
		out = append(out, attempt(a, t0.Add(2*time.Minute), "bob"))
		return out
	}
	want := script(newApplier(t))
	got := script(newLevel3(t))
	if fmt.Sprint(want) != fmt.Sprint(got) {
		t.Fatalf("v1 at level 3:\n%v\nat level 1:\n%v", got, want)
	}
	if r := want[5].(AttemptResult); !r.Granted {
		t.Fatalf("v1 no longer frees an expired slot: %+v", r)
	}
}

func TestLockoutV2Validation(t *testing.T) {
	a := newLevel3(t)
	good := LoginAttemptV2{Username: "x", MaxAttempts: 5, Window: window, PendingTTL: ttl, MaxNamesPerAddress: 100}
	for _, mut := range []func(*LoginAttemptV2){
		func(p *LoginAttemptV2) { p.Username = "" },
		func(p *LoginAttemptV2) { p.MaxAttempts = 0 },
		func(p *LoginAttemptV2) { p.Window = 0 },
		func(p *LoginAttemptV2) { p.Window = 1 << 62 },
		func(p *LoginAttemptV2) { p.PendingTTL = -1 },
		func(p *LoginAttemptV2) { p.MaxNamesPerAddress = -1 },
		func(p *LoginAttemptV2) { p.MaxNamesPerAddress = MaxNamesPerAddressLimit + 1 },
		func(p *LoginAttemptV2) { p.IP = string(make([]byte, MaxAuditIP+1)) },
	} {
		p := good
		mut(&p)
		if r := a.applyVersion(TypeLoginAttempt, 2, t0, p); !errors.Is(r.Err, ErrInvalidCommand) {
			t.Errorf("%+v: %v", p, r.Err)
		}
	}
	// v1's payload is not v2's: a field of v2 in a v1 command is refused.
	c, _ := NewCommand(TypeLoginAttempt, 1, t0.UnixNano(), good)
	b, _ := c.Encode()
	a.index++
	if r := a.s.ApplyBatch([]Entry{{Index: a.index, Term: 1, Command: true, Data: b}})[0]; !errors.Is(r.Err, ErrMalformedCommand) {
		t.Fatalf("v2 payload as v1: %v", r.Err)
	}
}

func TestAddressKey(t *testing.T) {
	for ip, want := range map[string]string{
		"192.0.2.1":              "192.0.2.1",
		"::ffff:192.0.2.1":       "192.0.2.1",
		"2001:db8:1:2:3:4:5:6":   "2001:db8:1:2::/64",
		"2001:db8:1:2::9":        "2001:db8:1:2::/64",
		"fe80::1%eth0":           "fe80::/64",
		"":                       "",
		"not an address":         "",
		"192.0.2.1:443":          "",
		"2001:db8:1:3:3:4:5:6/8": "",
	} {
		if got := addressKey(ip); got != want {
			t.Errorf("addressKey(%q) = %q, want %q", ip, got, want)
		}
	}
}

// One address may make at most capNames names fail per window; after
// that, a name with no live record is refused, known or not, and the
// refusal writes nothing.
func TestNamesPerAddressCap(t *testing.T) {
	a := newLevel3(t)
	if r := a.apply(TypeUserCreate, t0, UserCreate{ID: "u1", Username: "alice", PasswordHash: "h"}); r.Err != nil {
		t.Fatal(r.Err)
	}
	const ip = "192.0.2.7"
	for i := 0; i < capNames; i++ {
		name := fmt.Sprint("ghost", i)
		fail2(a, t0, name, ip, attempt2(a, t0, name, ip).Slot)
	}
	at := t0.Add(time.Minute)
	before := stateBytes(t, a)
	windowEnd := time.Duration(t0.UnixNano() + window - at.UnixNano())
	for _, name := range []string{"ghost-new", "alice"} {
		r := attempt2(a, at, name, ip)
		if !r.Locked || r.RetryAfter != windowEnd {
			t.Fatalf("%s from a capped address: %+v, want locked for %v", name, r, windowEnd)
		}
	}
	if !bytes.Equal(before, stateBytes(t, a)) {
		t.Fatal("refused attempts wrote")
	}
	// A name with a live record goes on to its own lockout.
	if r := attempt2(a, at, "ghost0", ip); !r.Granted {
		t.Fatalf("a live name from a capped address: %+v", r)
	}
	// The same /64 is the same address; another address is not capped.
	for i := 0; i < capNames; i++ {
		name, ip := fmt.Sprint("six", i), fmt.Sprint("2001:db8::", i+10)
		fail2(a, at, name, ip, attempt2(a, at, name, ip).Slot)
	}
	for ip, want := range map[string]bool{"2001:db8::1": false, "2001:db8:0:1::1": true, "192.0.2.8": true} {
		if r := attempt2(a, at, "fresh-"+ip, ip); r.Granted != want {
			t.Errorf("from %s: %+v, want granted %v", ip, r, want)
		}
	}
	// The window over, the address starts again.
	if r := attempt2(a, t0.Add(time.Duration(window)), "ghost-new", ip); !r.Granted {
		t.Fatalf("after the address's window: %+v", r)
	}
}

// Successful logins do not count against their address: an office behind
// one NAT is not refused.
func TestNamesPerAddressSuccessesDoNotCount(t *testing.T) {
	a := newLevel3(t)
	const ip = "198.51.100.1"
	for i := 0; i < 10*capNames; i++ {
		name := fmt.Sprint("user", i)
		uid := fmt.Sprint("u", i)
		if r := a.apply(TypeUserCreate, t0, UserCreate{ID: uid, Username: name, PasswordHash: "h"}); r.Err != nil {
			t.Fatal(r.Err)
		}
		if r := attempt2(a, t0, name, ip); !r.Granted {
			t.Fatalf("login %d from the office: %+v", i, r)
		}
		r := a.apply(TypeSessionCreate, t0, SessionCreate{ID: fmt.Sprint("s", i), UserID: uid, RefreshHash: hashOf(name),
			Lifetime: int64(time.Hour), MaxPerUser: 10, OnLimit: "deny", ResetLockout: name})
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	// Checks in flight do count, until they resolve: capNames of them at
	// once fill the address for a moment.
	var slots []int64
	for i := 0; i < capNames; i++ {
		slots = append(slots, attempt2(a, t0, fmt.Sprint("busy", i), ip).Slot)
	}
	if r := attempt2(a, t0, "one-more", ip); !r.Locked || r.RetryAfter != time.Duration(ttl) {
		t.Fatalf("with %d checks in flight: %+v", capNames, r)
	}
	release(a, t0, "busy0", slots[0])
	if r := attempt2(a, t0, "one-more", ip); !r.Granted {
		t.Fatalf("after a release: %+v", r)
	}
}

// A client that disconnects after every grant never reports a failure:
// its expired slots count against its address all the same.
func TestNamesPerAddressCountsVanishedChecks(t *testing.T) {
	a := newLevel3(t)
	const ip = "203.0.113.9"
	for i := 0; i < capNames; i++ {
		if r := attempt2(a, t0, fmt.Sprint("v", i), ip); !r.Granted {
			t.Fatal(r)
		}
	}
	at := t0.Add(time.Duration(ttl) + time.Second)
	if r := attempt2(a, at, "v-next", ip); !r.Locked {
		t.Fatalf("after %d vanished checks: %+v", capNames, r)
	}
	// The sweep settles them; the address stays capped for its window.
	if r := a.applyVersion(TypeSweep, 2, at, SweepV2{Limit: 100}); r.Err != nil {
		t.Fatal(r.Err)
	}
	var rec addressRecord
	a.s.View(func(r Reader) error { return json.Unmarshal(r.tx.Bucket(bucketAddresses).Get([]byte(ip)), &rec) })
	if rec.Failed != capNames || rec.Held != 0 || keyCount(t, a, bucketAddresses) != 1+capNames {
		t.Fatalf("address after the sweep: %+v", rec)
	}
	if r := attempt2(a, at, "v-next", ip); !r.Locked {
		t.Fatalf("after the sweep: %+v", r)
	}
}

// An hour of failures for ever-new names from one address, at 10 a
// second: the state holds at most capNames names per window of that
// address, and the address's own record.
func TestUnknownNamesFromOneAddressAreBounded(t *testing.T) {
	a := newLevel3(t)
	const ip = "192.0.2.66"
	granted := 0
	for i := 0; i < 36000; i++ {
		at := t0.Add(time.Duration(i) * 100 * time.Millisecond)
		name := fmt.Sprint("nobody", i)
		if r := attempt2(a, at, name, ip); r.Granted {
			granted++
			fail2(a, at, name, ip, r.Slot)
		}
		if i%600 == 0 {
			a.applyVersion(TypeSweep, 2, at, SweepV2{Limit: 1000})
		}
	}
	windows := int(time.Hour/time.Duration(window)) + 1
	if granted > capNames*windows {
		t.Fatalf("%d names checked in an hour from one address, want at most %d", granted, capNames*windows)
	}
	var lockouts, addrs int
	a.s.View(func(r Reader) error {
		lockouts = r.tx.Bucket(bucketLockout).Stats().KeyN
		return r.tx.Bucket(bucketAddresses).ForEach(func(k, _ []byte) error {
			if !bytes.Contains(k, []byte{0}) {
				addrs++
			}
			return nil
		})
	})
	if lockouts > 2*capNames || addrs != 1 {
		t.Fatalf("%d lockout records and %d address records after an hour", lockouts, addrs)
	}
	t.Logf("an hour at 10/s from one address: %d of 36000 attempts checked; %d lockout records and %d address record left", granted, lockouts, addrs)
}

// A maximum lowered below the failures a name already has: login.attempt
// v1 read Pending[0] of an empty list there and panicked on every node
// (a crash loop of the whole cluster on that entry); v1 and v2 answer
// Locked until the window ends.
func TestLoweredMaximumLocks(t *testing.T) {
	for _, v := range []uint16{1, 2} {
		a := newLevel3(t)
		for i := 0; i < 6; i++ {
			if r := a.apply(TypeLoginFailure, t0, LoginFailure{Username: "x", Slot: int64(i + 1), MaxAttempts: 10, Window: window}); r.Err != nil {
				t.Fatal(r.Err)
			}
		}
		var r AttemptResult
		if v == 1 {
			r = attempt(a, t0.Add(time.Minute), "x")
		} else {
			r = attempt2(a, t0.Add(time.Minute), "x", "")
		}
		if !r.Locked || r.RetryAfter != time.Duration(window)-time.Minute {
			t.Errorf("v%d with 6 failures and a maximum of 5: %+v", v, r)
		}
	}
}
