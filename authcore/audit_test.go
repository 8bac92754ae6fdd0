package authcore

import (
	"context"
	"errors"
	"testing"
)

func TestAuditPages(t *testing.T) {
	s, _ := newAuthService(t, Config{})
	ctx := context.Background()
	for range 3 {
		login(t, s)
	}
	all, err := s.Audit(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	// key.publish, user.create, then three login.success.
	if len(all) != 5 || all[0].Seq != 1 || all[4].Type != "login.success" {
		t.Fatalf("trail %+v", all)
	}
	page, err := s.Audit(ctx, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 2 || page[0].Seq != 3 || page[1].Seq != 4 || page[1].PrevHash != page[0].Hash {
		t.Errorf("page after 2: %+v", page)
	}
	if end, err := s.Audit(ctx, 5, 10); err != nil || end == nil || len(end) != 0 {
		t.Errorf("page past the end = %v, %v; want an empty slice", end, err)
	}
	for _, bad := range []int{-1, MaxAuditLimit + 1} {
		if _, err := s.Audit(ctx, 0, bad); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("limit %d: %v, want ErrInvalidInput", bad, err)
		}
	}
	if n, err := s.VerifyAudit(ctx); err != nil || n != 5 {
		t.Errorf("VerifyAudit = %d, %v; want 5, nil", n, err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Audit(canceled, 0, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled Audit: %v", err)
	}
}

func TestRequestInfoFrom(t *testing.T) {
	ctx := WithRequestInfo(context.Background(), RequestInfo{IP: "192.0.2.1", UserAgent: "curl/8\x1b[31m", Actor: "u1"})
	ri := RequestInfoFrom(ctx)
	if ri.IP != "192.0.2.1" || ri.UserAgent != "curl/8\uFFFD[31m" || ri.Actor != "u1" {
		t.Errorf("RequestInfoFrom = %+v", ri)
	}
	if ri := RequestInfoFrom(context.Background()); ri != (RequestInfo{}) {
		t.Errorf("no info: %+v", ri)
	}
}
