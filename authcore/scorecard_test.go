package authcore

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
)

// AdminFactors counts enabled administrators and those with a confirmed
// second factor, and names those without.
func TestAdminFactors(t *testing.T) {
	s, clk := newAuthService(t, Config{RequireMFAForAdmin: true})
	ctx := context.Background()
	for _, u := range []NewUser{{Username: "bob", Password: pw, Roles: []string{"admin"}}, {Username: "carol", Password: pw},
		{Username: "dave", Password: pw, Roles: []string{"admin"}}} {
		if _, err := s.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.SetDisabled(ctx, "dave", true); err != nil {
		t.Fatal(err)
	}
	got, err := s.AdminFactors(ctx)
	if err != nil || got.Admins != 2 || got.WithFactor != 0 || !slices.Equal(got.Without, []string{"alice", "bob"}) {
		t.Fatalf("before enrolment: %+v, %v", got, err)
	}
	enrolAlice(t, s, clk)
	got, err = s.AdminFactors(ctx)
	if err != nil || got.Admins != 2 || got.WithFactor != 1 || !slices.Equal(got.Without, []string{"bob"}) {
		t.Fatalf("after alice's enrolment: %+v, %v", got, err)
	}
}

// AuditStatus verifies to the head and says since when entries wait for a
// checkpoint.
func TestAuditStatus(t *testing.T) {
	s, _, _ := newCheckpointService(t, fsm.MaxLevel)
	clk := s.clock.(interface{ Advance(time.Duration) })
	ctx := context.Background()
	if st, err := s.AuditStatus(ctx); err != nil || st != (AuditStatus{}) {
		t.Fatalf("an empty trail: %+v, %v", st, err)
	}
	first := s.now()
	appendEvents(t, s, 5)
	st, err := s.AuditStatus(ctx)
	if err != nil || st.Head != 5 || st.Verified != 5 || st.BrokenAt != 0 || st.CheckpointSeq != 0 || !st.UnvouchedSince.Equal(first) {
		t.Fatalf("five entries, no checkpoint: %+v, %v", st, err)
	}
	cp, err := s.CheckpointAudit(ctx)
	if err != nil || cp == nil {
		t.Fatalf("checkpoint: %v", err)
	}
	st, err = s.AuditStatus(ctx)
	if err != nil || st.CheckpointSeq != cp.Seq || !st.UnvouchedSince.IsZero() || st.Verified != st.Head {
		t.Fatalf("after a checkpoint of %d: %+v, %v", cp.Seq, st, err)
	}
	clk.Advance(time.Minute)
	later := s.now()
	appendEvents(t, s, 1)
	st, err = s.AuditStatus(ctx)
	if err != nil || !st.UnvouchedSince.Equal(later) || st.Verified != st.Head {
		t.Fatalf("an entry after the checkpoint: %+v, %v", st, err)
	}
}
