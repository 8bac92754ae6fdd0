package api

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

type fakeCluster struct {
	ttl     string
	removed string
	renews  int
}

func (f *fakeCluster) RenewCertificate(context.Context) (CertRenewal, error) {
	f.renews++
	return CertRenewal{Serial: "abc", NotAfter: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), Renewed: true}, nil
}

func (f *fakeCluster) ClusterStatus(context.Context) (ClusterStatus, error) {
	return ClusterStatus{Leader: "n1", Nodes: []ClusterNode{{ID: "n1", Address: "10.0.0.1:8444", Suffrage: "voter", Leader: true, Self: true, Reachable: true, AppliedIndex: 7}}}, nil
}

func (f *fakeCluster) JoinToken(_ context.Context, ttl string) (JoinToken, error) {
	f.ttl = ttl
	if ttl == "forever" {
		return JoinToken{}, &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Description: "bad ttl"}
	}
	return JoinToken{Token: "bwj1.x", ExpiresAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}, nil
}

func (f *fakeCluster) RemoveNode(_ context.Context, id string) error {
	if id == "nope" {
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Description: "nope is not a member"}
	}
	if id == "leaderless" {
		return errTestNoLeader
	}
	f.removed = id
	return nil
}

func clusterHandler(t *testing.T, c ClusterAdmin) *AdminClient {
	t.Helper()
	logger, _ := newTestLogger(t)
	path := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := ListenAdmin(path, ListenLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	opts := []AdminOption{AdminIsNoLeader(func(err error) bool { return errors.Is(err, errTestNoLeader) })}
	if c != nil {
		opts = append(opts, AdminCluster(c))
	}
	serveAdmin(t, ln, NewAdminHandler(newFakeUsers(), nil, nil, logger, opts...))
	return NewAdminClient(path)
}

func TestAdminClusterRoutes(t *testing.T) {
	ctx := context.Background()
	f := &fakeCluster{}
	c := clusterHandler(t, f)
	var st ClusterStatus
	if err := c.Do(ctx, "GET", "/admin/v1/cluster", nil, &st); err != nil || st.Leader != "n1" || len(st.Nodes) != 1 || st.Nodes[0].AppliedIndex != 7 {
		t.Fatalf("status: %+v, %v", st, err)
	}
	var tok JoinToken
	if err := c.Do(ctx, "POST", "/admin/v1/cluster/join-token", map[string]string{"ttl": "10m"}, &tok); err != nil || tok.Token != "bwj1.x" || f.ttl != "10m" {
		t.Fatalf("join-token: %+v, %v (ttl %q)", tok, err, f.ttl)
	}
	if err := c.Do(ctx, "POST", "/admin/v1/cluster/join-token", nil, &tok); err != nil || f.ttl != "" {
		t.Fatalf("join-token without a body: %v (ttl %q)", err, f.ttl)
	}
	var e *Error
	if err := c.Do(ctx, "POST", "/admin/v1/cluster/join-token", map[string]string{"ttl": "forever"}, nil); !errors.As(err, &e) || e.Status != 400 {
		t.Fatalf("bad ttl: %v", err)
	}
	if err := c.Do(ctx, "POST", "/admin/v1/cluster/join-token", map[string]any{"ttl": "1h", "extra": 1}, nil); !errors.As(err, &e) || e.Status != 400 {
		t.Fatalf("unknown field: %v", err)
	}
	if err := c.Do(ctx, "POST", "/admin/v1/cluster/remove/n2", nil, nil); err != nil || f.removed != "n2" {
		t.Fatalf("remove: %v (%q)", err, f.removed)
	}
	if err := c.Do(ctx, "POST", "/admin/v1/cluster/remove/nope", nil, nil); !errors.As(err, &e) || e.Status != 404 {
		t.Fatalf("remove unknown: %v", err)
	}
	if err := c.Do(ctx, "POST", "/admin/v1/cluster/remove/leaderless", nil, nil); !errors.As(err, &e) || e.Status != 503 || e.Code != CodeNoLeader {
		t.Fatalf("remove without leader: %v", err)
	}
	var cr CertRenewal
	if err := c.Do(ctx, "POST", "/admin/v1/cluster/renew-cert", nil, &cr); err != nil || cr.Serial != "abc" || !cr.Renewed || f.renews != 1 {
		t.Fatalf("renew-cert: %+v, %v", cr, err)
	}

	// Without AdminCluster the routes answer 404.
	c = clusterHandler(t, nil)
	if err := c.Do(ctx, "GET", "/admin/v1/cluster", nil, &st); !errors.As(err, &e) || e.Status != 404 {
		t.Fatalf("no cluster admin: %v", err)
	}
}
