package fsm

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestClusterLevelOnlyRises(t *testing.T) {
	a := newApplier(t)
	level := func() (l int) {
		a.s.View(func(r Reader) error { l = r.ClusterLevel(); return nil })
		return l
	}
	if level() != 1 {
		t.Fatalf("a new state is at level %d, want 1", level())
	}
	for _, bad := range []int{0, -1, 1<<20 + 1} {
		if r := a.apply(TypeClusterLevel, t0, ClusterLevel{Level: bad}); !errors.Is(r.Err, ErrInvalidCommand) {
			t.Fatalf("level %d: %v", bad, r.Err)
		}
	}
	steps := []struct{ propose, want int }{{2, 2}, {1, 2}, {2, 2}, {3, 3}}
	for _, s := range steps {
		r := a.apply(TypeClusterLevel, t0, ClusterLevel{Level: s.propose})
		if r.Err != nil || r.Value.(int) != s.want || level() != s.want {
			t.Fatalf("propose %d: %+v, level %d; want %d", s.propose, r, level(), s.want)
		}
	}
}

func TestMemberKey(t *testing.T) {
	a := newApplier(t)
	spki := strings.Repeat("ab", 32)
	for _, bad := range []MemberKey{{Node: "", SPKI: spki}, {Node: "n 1", SPKI: spki}, {Node: "n1", SPKI: "xyz"}} {
		if r := a.apply(TypeMemberKey, t0, bad); !errors.Is(r.Err, ErrInvalidCommand) {
			t.Fatalf("%+v: %v", bad, r.Err)
		}
	}
	for _, k := range []string{spki, strings.Repeat("cd", 32)} { // recorded, then replaced
		if r := a.apply(TypeMemberKey, t0, MemberKey{Node: "n1", SPKI: k}); r.Err != nil {
			t.Fatal(r.Err)
		}
		a.s.View(func(r Reader) error {
			if got, ok := r.MemberKey("n1"); !ok || got != k {
				t.Fatalf("member key %q %v, want %q", got, ok, k)
			}
			if _, ok := r.MemberKey("n2"); ok {
				t.Fatal("a key for n2")
			}
			return nil
		})
	}
	// From level 3 on, a key recorded for n1 is refused for another name;
	// n1 may record it again.
	k1 := strings.Repeat("cd", 32)
	if r := a.apply(TypeClusterLevel, t0, ClusterLevel{Level: 3}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := a.apply(TypeMemberKey, t0, MemberKey{Node: "n2", SPKI: k1}); !errors.Is(r.Err, ErrInvalidCommand) {
		t.Fatalf("n1's key recorded for n2: %v", r.Err)
	}
	for _, m := range []MemberKey{{Node: "n1", SPKI: k1}, {Node: "n2", SPKI: spki}} {
		if r := a.apply(TypeMemberKey, t0, m); r.Err != nil {
			t.Fatalf("%+v: %v", m, r.Err)
		}
	}
	a.s.View(func(r Reader) error {
		if got, _ := r.MemberKey("n2"); got != spki {
			t.Fatalf("n2's key %q, want %q", got, spki)
		}
		return nil
	})
}

// TestTimeNeverRunsBackwards: from level 3 on, a command stamped before
// the latest time applied is applied at that time, results and audit
// entries included, and a snapshot carries the latest time; below level 3
// the command's own time stands, as on a node of an earlier release.
func TestTimeNeverRunsBackwards(t *testing.T) {
	a := newApplier(t)
	later, earlier := t0.Add(time.Hour), t0
	if got := attempt(a, later, "old"); got.Slot != later.UnixNano() {
		t.Fatalf("slot %v", time.Unix(0, got.Slot))
	}
	if got := attempt(a, earlier, "old"); got.Slot != earlier.UnixNano() {
		t.Fatalf("below level 3, a command stamped %v was applied at %v", earlier, time.Unix(0, got.Slot))
	}
	if r := a.apply(TypeClusterLevel, t0, ClusterLevel{Level: 3}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if got := attempt(a, later, "new"); got.Slot != later.UnixNano() {
		t.Fatalf("slot %v, want %v", time.Unix(0, got.Slot), later)
	}
	r := a.apply(TypeAuditAppend, earlier, AuditAppend{Type: "test.event", Severity: AuditInfo})
	if r.Err != nil || !r.Value.(*AuditEntry).Time.Equal(later) {
		t.Fatalf("an audit entry stamped %v: %+v, want it at %v", earlier, r, later)
	}
	l := viewValue(t, a.s, func(r Reader) (Lockout, error) { return r.Lockout("new") })
	if got := attempt(a, earlier, "new"); got.Slot != later.UnixNano() {
		t.Fatalf("a command stamped %v was applied at %v, after one at %v", earlier, time.Unix(0, got.Slot), later)
	}
	if l2 := viewValue(t, a.s, func(r Reader) (Lockout, error) { return r.Lockout("new") }); l2.WindowStart != l.WindowStart {
		t.Fatalf("window start moved from %d to %d", l.WindowStart, l2.WindowStart)
	}
	if got := viewValue(t, a.s, func(r Reader) (time.Time, error) { return r.AppliedTime(), nil }); !got.Equal(later) {
		t.Fatalf("applied time %v, want %v", got, later)
	}

	// A node restored from a snapshot goes on from the same time.
	snap, err := a.s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_, err = snap.WriteTo(&buf)
	snap.Release()
	if err != nil {
		t.Fatal(err)
	}
	b := newApplier(t)
	if err := b.s.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	b.index = a.index
	if got := attempt(b, earlier, "restored"); got.Slot != later.UnixNano() {
		t.Fatalf("after a restore, a command stamped %v was applied at %v", earlier, time.Unix(0, got.Slot))
	}
	// Time still moves forward.
	if got := attempt(b, later.Add(time.Second), "restored"); got.Slot != later.Add(time.Second).UnixNano() {
		t.Fatalf("slot %v, want %v", time.Unix(0, got.Slot), later.Add(time.Second))
	}
}

// TestProposable: the command table gates each version on its level, and
// knows nothing of a version it has no row for.
func TestProposable(t *testing.T) {
	for _, c := range []struct {
		typ   Type
		v     uint16
		level int
		want  bool
	}{
		{TypeSessionCreate, 1, 1, true},
		{TypeSessionCreate, 2, 2, false},
		{TypeSessionCreate, 2, 3, true},
		{TypeSessionRefresh, 2, 1, false},
		{TypeSessionRefresh, 2, 2, true},
		{TypeReadBarrier, 1, 1, false},
		{TypeMemberKey, 1, 2, true},
		{TypeKeyPublish, 2, LevelIssuers - 1, false},
		{TypeKeyPublish, 2, LevelIssuers, true},
		{TypeSweep, 3, MaxLevel, false},
		{"no.such", 1, MaxLevel, false},
	} {
		if got := Proposable(c.typ, c.v, c.level); got != c.want {
			t.Errorf("Proposable(%s, %d, %d) = %v", c.typ, c.v, c.level, got)
		}
	}
}
