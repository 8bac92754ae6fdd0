package fsm

import (
	"errors"
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
