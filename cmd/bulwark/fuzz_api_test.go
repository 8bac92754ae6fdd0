package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/bulwark-auth/bulwark/api"
	"github.com/bulwark-auth/bulwark/authcore"
	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/fsm/fsmtest"
	"github.com/bulwark-auth/bulwark/internal/clock"
	"github.com/bulwark-auth/bulwark/node"
	"github.com/bulwark-auth/bulwark/tpm"
)

// bodyRoutes are the routes that read a JSON body, on the API (over TLS)
// and on the admin socket, as FuzzRequestBodies drives them.
var bodyRoutes = []struct {
	admin        bool // the admin socket, not the API
	method, path string
	bearer       bool
	// scratch: served by a state of its own, which the route may ruin for
	// the others (a lockdown ends every session).
	scratch bool
}{
	{false, "POST", "/v1/auth/login", false, false},
	{false, "POST", "/v1/auth/refresh", false, false},
	{false, "POST", "/v1/me/password", true, false},
	{false, "POST", "/v1/admin/users", true, false},
	{false, "PATCH", "/v1/admin/users/bob", true, false},
	{true, "POST", "/admin/v1/users", false, false},
	{true, "POST", "/admin/v1/datakey/escrow", false, false},
	{true, "POST", "/admin/v1/datakey/recovery-shares", false, false},
	{false, "POST", "/v1/auth/mfa", false, false},
	{false, "POST", "/v1/me/mfa/totp/confirm", true, false},
	{true, "POST", "/admin/v1/incident/lockdown", false, true},
}

// countingStore is the replicated state of FuzzRequestBodies: fsmtest's,
// counting what is proposed.
type countingStore struct {
	*fsmtest.Store
	proposed atomic.Int64
}

func (s *countingStore) Apply(ctx context.Context, cmd fsm.Command) (any, error) {
	s.proposed.Add(1)
	return s.Store.Apply(ctx, cmd)
}

// errorCounter counts the log records at level Error: the middleware logs
// a recovered panic ("panic serving request") there.
type errorCounter struct {
	slog.Handler
	n *atomic.Int64
}

func (h errorCounter) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		h.n.Add(1)
	}
	return nil
}
func (h errorCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h errorCounter) WithGroup(string) slog.Handler      { return h }

// FuzzRequestBodies sends fuzzed bodies to every route that reads one, as
// serve wires them: the API and admin socket handlers over a real auth
// service and data-key service on one state. The Bearer routes get an
// admin's live token. It asserts that no body panics a handler or gets a
// 5xx; that every answer is JSON (errors exactly {"error",
// "error_description"}); that a body that is not JSON at all is a 4xx; and
// that a body refused as a bad request (400 invalid_request, 413, 415)
// proposed nothing: bad input changes nothing.
func FuzzRequestBodies(f *testing.F) {
	for i, s := range [][]string{
		{`{"username":"erin","password":"correct horse battery"}`, `{"username":"Ünïcode","password":"x"}`, `{"username":"","password":""}`},
		{`{"refresh_token":"bwr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`, `{"refresh_token":5}`},
		{`{"current_password":"correct horse battery","new_password":"another long passphrase"}`, `{"current_password":"x","new_password":"short"}`},
		{`{"username":"carol","password":"a long enough password","email":"c@example.com","roles":["ops"]}`, `{"username":"a b","password":"p","roles":[null]}`},
		{`{"disabled":true}`, `{"disabled":null}`, `{}`},
		{`{"username":"dave","password":"a long enough password"}`, `{"email":"x@@"}`},
		{`{"public_key":"-----BEGIN BULWARK ESCROW PUBLIC KEY-----\nAAAA\n-----END BULWARK ESCROW PUBLIC KEY-----\n"}`, `{"public_key":""}`},
		{`{"threshold":1,"shares":3}`, `{"threshold":-1,"shares":300}`, `{"threshold":2,"shares":3}`},
		{`{"mfa_token":"bwm_x","method":"totp","code":"123456"}`, `{"mfa_token":"","method":"recovery_code","code":"abcd-efgh"}`},
		{`{"code":"123456"}`, `{"code":12}`},
		{`{"reason":"breach"}`, `{"reason":""}`, `{"reason":"\u0000"}`},
	} {
		for _, b := range s {
			f.Add(uint8(i), []byte(b))
		}
		f.Add(uint8(i), []byte(`{"x":1}`))
		f.Add(uint8(i), []byte(`{"a":`+strings.Repeat("[", 40)))
		f.Add(uint8(i), []byte("{\"username\":\"\xff\"}"))
	}
	h, scratch := newWiredHandlers(f), newWiredHandlers(f)
	f.Fuzz(func(t *testing.T, sel uint8, body []byte) {
		rt := bodyRoutes[int(sel)%len(bodyRoutes)]
		h := h
		if rt.scratch {
			h = scratch
		}
		req := httptest.NewRequest(rt.method, rt.path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if rt.bearer {
			req.Header.Set("Authorization", "Bearer "+h.token)
		}
		rec := httptest.NewRecorder()
		before, errorsBefore := h.store.proposed.Load(), h.errors.Load()
		if rt.admin {
			h.admin.ServeHTTP(rec, req)
		} else {
			h.api.ServeHTTP(rec, req)
		}
		proposed := h.store.proposed.Load() - before
		if n := h.errors.Load() - errorsBefore; n != 0 || rec.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s (%d errors logged)", rt.method, rt.path, body, rec.Code, rec.Body, n)
		}
		if rec.Code == http.StatusNoContent {
			return
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s %s: Content-Type %q", rt.method, rt.path, ct)
		}
		if rec.Code < 400 {
			if !json.Valid(body) {
				t.Fatalf("%s %s accepted a body that is not JSON: %q → %d", rt.method, rt.path, body, rec.Code)
			}
			return
		}
		var e map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || len(e) != 2 || e["error"] == "" || e["error_description"] == "" {
			t.Fatalf("%s %s: error body %s", rt.method, rt.path, rec.Body)
		}
		refused := rec.Code == http.StatusRequestEntityTooLarge || rec.Code == http.StatusUnsupportedMediaType ||
			rec.Code == http.StatusBadRequest && e["error"] == api.CodeInvalidRequest
		if refused && proposed != 0 {
			t.Fatalf("%s %s %q: refused (%d %s) but proposed %d commands", rt.method, rt.path, body, rec.Code, e["error"], proposed)
		}
	})
}

type wiredHandlers struct {
	api, admin http.Handler
	store      *countingStore
	errors     *atomic.Int64
	token      string // alice's (admin) access token
}

// newWiredHandlers wires the API and admin socket handlers over one auth
// service and data-key service, as serve does, with users alice (admin,
// with TOTP, signed in with it so that her session passes step-up), bob
// (whom the PATCH route changes) and erin (whom the login seeds log in:
// logins as alice would evict the session the Bearer routes use once past
// max_per_user). The clock stands still, so her session stays fresh.
func newWiredHandlers(t testing.TB) *wiredHandlers {
	t.Helper()
	ctx := context.Background()
	st := &countingStore{Store: fsmtest.New(t)}
	raise, err := fsm.NewCommand(fsm.TypeClusterLevel, 1, 1, fsm.ClusterLevel{Level: fsm.MaxLevel})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Apply(ctx, raise); err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := authcore.NewSigner(key, authcore.AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	errs := &atomic.Int64{}
	logger := slog.New(errorCounter{slog.DiscardHandler, errs})
	dataKey := tpm.NewDataKey()
	box, err := authcore.NewSecretBox(dataKey)
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Now())
	core, err := authcore.New(st, authcore.Config{
		Hash:   authcore.HashParams{MemoryKiB: 8192, Iterations: 1, Parallelism: 1},
		Policy: authcore.PasswordPolicy{MinLength: 12, MaxLength: 128},
		Issuer: "https://bulwark.test:8443", NodeID: "n1",
	}, authcore.WithSigner(sig), authcore.WithLogger(logger), authcore.WithSecretBox(box), authcore.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(core.Close)
	if err := core.PublishSigningKey(ctx); err != nil {
		t.Fatal(err)
	}
	for _, u := range []authcore.NewUser{{Username: "alice", Password: "correct horse battery", Roles: []string{authcore.RoleAdmin}},
		{Username: "bob", Password: "correct horse battery"}, {Username: "erin", Password: "correct horse battery"}} {
		if _, err := core.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	tok := aliceWithTOTP(t, core, clk)
	dk := node.NewDataKeys(testVault{tpm.DataKeyName: dataKey}, st, logger)
	return &wiredHandlers{
		api: api.NewHandler(api.Options{Logger: logger, NodeID: "n1", SealMode: "software"}, nil, core, core),
		admin: api.NewAdminHandler(core, core, func() any { return map[string]string{} }, logger,
			api.AdminDataKey(dataKeyAdmin{dk})),
		store: st, errors: errs, token: tok.AccessToken,
	}
}

// aliceWithTOTP turns TOTP on for alice and signs her in with it.
func aliceWithTOTP(t testing.TB, core *authcore.Service, clk *clock.Fake) authcore.Tokens {
	t.Helper()
	ctx := context.Background()
	code := func(secret string) string {
		c, err := totp.GenerateCodeCustom(secret, clk.Now(), totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	first, err := core.Login(ctx, "alice", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	p, err := core.Authenticate(ctx, first.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	e, err := core.EnrollTOTP(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := core.ConfirmTOTP(ctx, p, code(e.Secret)); err != nil {
		t.Fatal(err)
	}
	clk.Advance(30 * time.Second) // a code is good once
	second, err := core.Login(ctx, "alice", "correct horse battery")
	if err != nil || second.MFA == nil {
		t.Fatalf("login: %+v, %v; want an mfa_token", second, err)
	}
	tok, err := core.VerifyMFA(ctx, second.MFA.Token, "totp", code(e.Secret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
