package api

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/internal/scorecard"
)

// The scorecard is served to administrators on the API and to the admin
// socket, the same report; a plain user gets 403 and no token 401.
func TestScorecardRoutes(t *testing.T) {
	calls := 0
	fn := func(ctx context.Context) (scorecard.Report, error) {
		calls++
		if _, ok := ctx.Deadline(); !ok {
			t.Error("the report is not bounded in time")
		}
		return scorecard.Evaluate(scorecard.Inputs{Node: "n1", Now: time.Unix(0, 0), TLS: scorecard.TLSFacts{MinVersion: "1.2"}}), nil
	}
	check := func(what string, h http.Handler, path string, opts ...reqOpt) {
		t.Helper()
		rec := send(t, h, "GET", path, "", opts...)
		var rep scorecard.Report
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &rep) != nil {
			t.Fatalf("%s: %d %s", what, rec.Code, rec.Body)
		}
		if c, ok := rep.Control("tls.min_version"); !ok || c.Status != scorecard.Fail || !rep.Failed || rep.Node != "n1" {
			t.Fatalf("%s: %s", what, rec.Body)
		}
	}
	logger, _ := newTestLogger(t)
	check("admin socket", NewAdminHandler(newFakeUsers(), nil, nil, logger, AdminScorecard(fn)), "/admin/v1/scorecard", from("@"))
	env := newAuthEnv(t, Options{Scorecard: fn})
	check("API, admin", env.h, "/v1/admin/scorecard", bearerOf("alice-token"))
	if calls != 2 {
		t.Fatalf("%d reports gathered for 2 requests", calls)
	}
	if rec := send(t, env.h, "GET", "/v1/admin/scorecard", "", bearerOf("bob-token")); rec.Code != http.StatusForbidden {
		t.Fatalf("a plain user: %d", rec.Code)
	}
	if rec := send(t, env.h, "GET", "/v1/admin/scorecard", ""); rec.Code != http.StatusUnauthorized {
		t.Fatalf("no token: %d", rec.Code)
	}
	if calls != 2 {
		t.Fatal("a refused request gathered a report")
	}
	// Without a scorecard, no route.
	if rec := send(t, newAuthEnv(t, Options{}).h, "GET", "/v1/admin/scorecard", "", bearerOf("alice-token")); rec.Code != http.StatusNotFound {
		t.Fatalf("no scorecard configured: %d", rec.Code)
	}
}
