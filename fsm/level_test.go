package fsm

import (
	"errors"
	"strings"
	"testing"
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
}
