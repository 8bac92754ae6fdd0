package fsm

import (
	"errors"
	"testing"
)

// A read barrier moves the applied index and changes nothing else; a
// malformed one is refused like any command.
func TestReadBarrier(t *testing.T) {
	s := openTestStore(t)
	appendSamples(t, s, 1, 3)
	res := s.ApplyBatch([]Entry{{Index: 4, Term: 1, Command: true, Data: mustEncode(t, TypeReadBarrier, t0, ReadBarrier{})}})
	if res[0].Err != nil || res[0].Value != nil {
		t.Fatalf("barrier: %+v", res[0])
	}
	if applied, _, err := s.Applied(); err != nil || applied != 4 {
		t.Fatalf("applied %d, %v; want 4", applied, err)
	}
	err := s.View(func(r Reader) error {
		n, err := r.VerifyAudit()
		if err == nil && n != 3 {
			t.Fatalf("%d audit entries after the barrier, want 3", n)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	bad := mustEncode(t, TypeReadBarrier, t0, map[string]int{"x": 1})
	if res := s.ApplyBatch([]Entry{{Index: 5, Term: 1, Command: true, Data: bad}}); !errors.Is(res[0].Err, ErrMalformedCommand) {
		t.Fatalf("barrier with a payload field: %v", res[0].Err)
	}
}
