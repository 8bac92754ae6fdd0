package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/authcore"
	"github.com/bulwark-auth/bulwark/authcore/altcha"
)

// fakeAccount is a user the fake auth service knows.
type fakeAccount struct {
	id, name, password, email string
	roles                     []string
	disabled                  bool
}

// fakeAuth is an in-memory Auth. It counts calls per method, keeps the
// RequestInfo each method last saw, and answers errs[method] instead of
// working when that is set.
type fakeAuth struct {
	mu       sync.Mutex
	calls    map[string]int
	info     map[string]authcore.RequestInfo
	errs     map[string]error
	accounts map[string]*fakeAccount        // by name
	access   map[string]*authcore.Principal // access token → caller
	refresh  map[string]string              // refresh token → session id
	sessions map[string]string              // session id → user id
	seq      int

	unlocked    []string
	auditAfter  uint64
	auditLimit  int
	audit       []authcore.AuditEntry
	verifyCount uint64
	verifyErr   error
	// webauthn: the arguments the passkey methods last saw (webauthn_test.go).
	webauthn []string
}

// newFakeAuth knows alice (admin; sessions s-alice and s-alice2), bob
// (sessions s-bob) and carol (disabled), with passwords "<name> password"
// and access tokens "<name>-token" for their first session. ids are
// "id-<name>" as with fakeUsers.
func newFakeAuth() *fakeAuth {
	f := &fakeAuth{calls: map[string]int{}, info: map[string]authcore.RequestInfo{}, errs: map[string]error{},
		accounts: map[string]*fakeAccount{}, access: map[string]*authcore.Principal{},
		refresh: map[string]string{}, sessions: map[string]string{}}
	for _, a := range []*fakeAccount{
		{name: "alice", email: "alice@example.com", roles: []string{"admin"}},
		{name: "bob", roles: []string{"ops"}},
		{name: "carol", disabled: true},
		{name: "erin"},
	} {
		a.id, a.password = "id-"+a.name, a.name+" password"
		f.accounts[a.name] = a
	}
	f.sessions["s-alice"], f.sessions["s-alice2"], f.sessions["s-bob"] = "id-alice", "id-alice", "id-bob"
	f.sessions["s-erin"], f.sessions["s-erin2"] = "id-erin", "id-erin"
	f.access["alice-token"] = f.principal(f.accounts["alice"], "s-alice")
	f.access["bob-token"] = f.principal(f.accounts["bob"], "s-bob")
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	prev := strings.Repeat("0", 64)
	for i := 1; i <= 5; i++ {
		h := fmt.Sprintf("%064x", i)
		f.audit = append(f.audit, authcore.AuditEntry{Seq: uint64(i), Time: t0, Type: "login.success",
			Severity: "info", PrevHash: prev, Hash: h})
		prev = h
	}
	return f
}

func (f *fakeAuth) principal(a *fakeAccount, sid string) *authcore.Principal {
	return &authcore.Principal{UserID: a.id, Username: a.name, SessionID: sid, Roles: a.roles}
}

// enter counts a call, notes its RequestInfo and returns the forced error.
// The caller holds f.mu.
func (f *fakeAuth) enter(ctx context.Context, method string) error {
	f.calls[method]++
	f.info[method] = authcore.RequestInfoFrom(ctx)
	return f.errs[method]
}

func (f *fakeAuth) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

func (f *fakeAuth) lastInfo(method string) authcore.RequestInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.info[method]
}

func (f *fakeAuth) setErr(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs[method] = err
}

func (f *fakeAuth) issue(a *fakeAccount, sid string) authcore.Tokens {
	f.seq++
	if sid == "" {
		sid = fmt.Sprintf("s-%d", f.seq)
		f.sessions[sid] = a.id
	}
	at, rt := fmt.Sprintf("at-%d", f.seq), fmt.Sprintf("rt-%d", f.seq)
	f.access[at] = f.principal(a, sid)
	f.refresh[rt] = sid
	return authcore.Tokens{AccessToken: at, TokenType: "Bearer", ExpiresIn: 3600, RefreshToken: rt, SessionID: sid}
}

func (f *fakeAuth) byID(id string) *fakeAccount {
	for _, a := range f.accounts {
		if a.id == id || a.name == strings.ToLower(id) {
			return a
		}
	}
	return nil
}

func (f *fakeAuth) Login(ctx context.Context, username, password string) (authcore.Tokens, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(ctx, "Login"); err != nil {
		return authcore.Tokens{}, err
	}
	name, err := authcore.NormalizeUsername(username)
	if err != nil {
		return authcore.Tokens{}, err
	}
	if password == "" {
		return authcore.Tokens{}, fmt.Errorf("%w: password must be 1 to 4096 bytes", authcore.ErrInvalidInput)
	}
	a := f.accounts[name]
	if a == nil || a.password != password || a.disabled {
		return authcore.Tokens{}, authcore.ErrInvalidCredentials
	}
	return f.issue(a, ""), nil
}

func (f *fakeAuth) Refresh(ctx context.Context, refreshToken string) (authcore.Tokens, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(ctx, "Refresh"); err != nil {
		return authcore.Tokens{}, err
	}
	sid, ok := f.refresh[refreshToken]
	if !ok {
		return authcore.Tokens{}, authcore.ErrInvalidGrant
	}
	delete(f.refresh, refreshToken)
	return f.issue(f.byID(f.sessions[sid]), sid), nil
}

func (f *fakeAuth) Authenticate(ctx context.Context, bearer string) (*authcore.Principal, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(ctx, "Authenticate"); err != nil {
		return nil, err
	}
	p, ok := f.access[bearer]
	if !ok || f.sessions[p.SessionID] == "" {
		return nil, fmt.Errorf("%w: session ended", authcore.ErrInvalidToken)
	}
	return p, nil
}

func (f *fakeAuth) Logout(ctx context.Context, p *authcore.Principal) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(ctx, "Logout"); err != nil {
		return err
	}
	delete(f.sessions, p.SessionID)
	return nil
}

func (f *fakeAuth) Sessions(ctx context.Context, p *authcore.Principal) ([]authcore.SessionInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(ctx, "Sessions"); err != nil {
		return nil, err
	}
	var out []authcore.SessionInfo
	for sid, uid := range f.sessions {
		if uid == p.UserID {
			out = append(out, authcore.SessionInfo{ID: sid, IP: "192.0.2.1", Current: sid == p.SessionID})
		}
	}
	slices.SortFunc(out, func(a, b authcore.SessionInfo) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func (f *fakeAuth) RevokeSession(ctx context.Context, p *authcore.Principal, sid string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(ctx, "RevokeSession"); err != nil {
		return err
	}
	if f.sessions[sid] != p.UserID {
		return authcore.ErrNotFound
	}
	delete(f.sessions, sid)
	return nil
}

func (f *fakeAuth) ChangePassword(ctx context.Context, p *authcore.Principal, current, next string) (authcore.Tokens, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(ctx, "ChangePassword"); err != nil {
		return authcore.Tokens{}, err
	}
	if current == "" {
		return authcore.Tokens{}, fmt.Errorf("%w: current_password must be 1 to 4096 bytes", authcore.ErrInvalidInput)
	}
	if len(next) < 12 {
		return authcore.Tokens{}, fmt.Errorf("%w: shorter than 12 characters", authcore.ErrWeakPassword)
	}
	a := f.byID(p.UserID)
	if a.password != current {
		return authcore.Tokens{}, authcore.ErrInvalidCredentials
	}
	a.password = next
	return f.issue(a, p.SessionID), nil
}

func (f *fakeAuth) Me(ctx context.Context, p *authcore.Principal) (authcore.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(ctx, "Me"); err != nil {
		return authcore.User{}, err
	}
	a := f.byID(p.UserID)
	return authcore.User{ID: a.id, Username: a.name, Email: a.email, Roles: a.roles}, nil
}

const fakeJWKS = `{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","x":"x","y":"y","alg":"ES256","use":"sig"}]}`

func (f *fakeAuth) JWKS() ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(context.Background(), "JWKS"); err != nil {
		return nil, err
	}
	return []byte(fakeJWKS), nil
}

func (f *fakeAuth) Unlock(ctx context.Context, username string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(ctx, "Unlock"); err != nil {
		return err
	}
	f.unlocked = append(f.unlocked, username)
	return nil
}

func (f *fakeAuth) RevokeUserSessions(ctx context.Context, nameOrID string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(ctx, "RevokeUserSessions"); err != nil {
		return 0, err
	}
	a := f.byID(nameOrID)
	if a == nil {
		return 0, authcore.ErrUserNotFound
	}
	n := 0
	for sid, uid := range f.sessions {
		if uid == a.id {
			delete(f.sessions, sid)
			n++
		}
	}
	return n, nil
}

func (f *fakeAuth) Audit(ctx context.Context, after uint64, limit int) ([]authcore.AuditEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(ctx, "Audit"); err != nil {
		return nil, err
	}
	f.auditAfter, f.auditLimit = after, limit
	var out []authcore.AuditEntry
	for _, e := range f.audit {
		if e.Seq > after && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, nil
}

func (f *fakeAuth) SigningKeys(ctx context.Context) ([]authcore.KeyInfo, error) {
	return []authcore.KeyInfo{{Kid: "k1", Alg: "ES256", Current: true, InJWKS: true}}, nil
}

func (f *fakeAuth) RotateSigningKey(ctx context.Context) (authcore.KeyRotation, error) {
	return authcore.KeyRotation{OldKid: "k1", NewKid: "k2"}, nil
}

func (f *fakeAuth) VerifyAudit(ctx context.Context) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(ctx, "VerifyAudit"); err != nil {
		return 0, err
	}
	return f.verifyCount, f.verifyErr
}

// authEnv is an API handler over fakes.
type authEnv struct {
	h     http.Handler
	auth  *fakeAuth
	users *fakeUsers
}

func newAuthEnv(t *testing.T, opts Options) *authEnv {
	t.Helper()
	logger, _ := newTestLogger(t)
	opts.Logger = logger
	env := &authEnv{auth: newFakeAuth(), users: newFakeUsers()}
	env.users.users["erin"] = authcore.User{ID: "id-erin", Username: "erin", Roles: []string{}, Flagged: true}
	env.h = NewHandler(opts, fakeReady{ok: true}, env.users, env.auth)
	return env
}

// reqOpt adjusts a test request.
type reqOpt func(*http.Request)

func header(k, v string) reqOpt  { return func(r *http.Request) { r.Header.Add(k, v) } }
func bearerOf(tok string) reqOpt { return header("Authorization", "Bearer "+tok) }
func from(addr string) reqOpt    { return func(r *http.Request) { r.RemoteAddr = addr } }

// send serves one request; a body is labelled application/json unless an
// option sets another Content-Type.
func send(t *testing.T, h http.Handler, method, target, body string, opts ...reqOpt) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, o := range opts {
		o(req)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func decodeAs[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("answer %q: %v", rec.Body, err)
	}
	return v
}

func checkTokens(t *testing.T, rec *httptest.ResponseRecorder) authcore.Tokens {
	t.Helper()
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d %s, want 200 tokens", rec.Code, rec.Body)
	}
	h := rec.Header()
	if h.Get("Content-Type") != "application/json" || h.Get("Cache-Control") != "no-store" || h.Get("Pragma") != "no-cache" {
		t.Errorf("token answer headers: %v", h)
	}
	var m map[string]any
	json.Unmarshal(rec.Body.Bytes(), &m)
	for _, k := range []string{"access_token", "token_type", "expires_in", "refresh_token", "session_id"} {
		if _, ok := m[k]; !ok {
			t.Errorf("token answer %s lacks %q", rec.Body, k)
		}
	}
	tok := decodeAs[authcore.Tokens](t, rec)
	if tok.TokenType != "Bearer" || tok.AccessToken == "" {
		t.Errorf("token answer %+v", tok)
	}
	return tok
}

func TestLogin(t *testing.T) {
	env := newAuthEnv(t, Options{})
	rec := send(t, env.h, "POST", "/v1/auth/login", `{"username":"Alice","password":"alice password"}`)
	tok := checkTokens(t, rec)
	checkSecurityHeaders(t, rec.Header())
	if rec.Header().Get("WWW-Authenticate") != "" {
		t.Error("a 200 with a challenge")
	}
	// The access token works at once.
	if rec := send(t, env.h, "GET", "/v1/me", "", bearerOf(tok.AccessToken)); rec.Code != 200 {
		t.Errorf("GET /v1/me with the new token = %d %s", rec.Code, rec.Body)
	}
}

func TestLoginErrors(t *testing.T) {
	sameBody := func(user, pass string) string {
		return fmt.Sprintf(`{"username":%q,"password":%q}`, user, pass)
	}
	tests := []struct {
		name, body string
		forced     error
		status     int
		code, desc string
		retryAfter string
	}{
		{"wrong password", sameBody("alice", "nope"), nil, 401, CodeInvalidCredentials, "invalid username or password", ""},
		{"unknown user", sameBody("mallory", "nope"), nil, 401, CodeInvalidCredentials, "invalid username or password", ""},
		{"disabled", sameBody("carol", "carol password"), nil, 401, CodeInvalidCredentials, "invalid username or password", ""},
		{"locked", sameBody("alice", "alice password"), &authcore.LockedError{RetryAfter: 89200 * time.Millisecond},
			429, CodeTooManyAttempts, tooManyAttemptsDescription, "90"},
		{"locked, no time", sameBody("alice", "x"), fmt.Errorf("x: %w", authcore.ErrTooManyAttempts),
			429, CodeTooManyAttempts, tooManyAttemptsDescription, "1"},
		{"invalid username", sameBody(" ", "x"), nil, 400, CodeInvalidRequest, "invalid username", ""},
		{"empty username", sameBody("", "x"), nil, 400, CodeInvalidRequest, "invalid username", ""},
		{"empty password", sameBody("alice", ""), nil, 400, CodeInvalidRequest, "password", ""},
		{"session limit", sameBody("alice", "alice password"), fmt.Errorf("apply: %w", authcore.ErrSessionLimit),
			403, CodeForbidden, "session limit reached", ""},
		{"busy", sameBody("alice", "alice password"), authcore.ErrBusy, 503, CodeUnavailable, "busy", "1"},
		{"internal", sameBody("alice", "alice password"), errDiskOnFire, 500, CodeInternal, "internal error", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newAuthEnv(t, Options{})
			env.auth.setErr("Login", tt.forced)
			rec := send(t, env.h, "POST", "/v1/auth/login", tt.body)
			eb := checkError(t, rec, tt.status, tt.code)
			checkSecurityHeaders(t, rec.Header())
			if !strings.Contains(eb.Description, tt.desc) {
				t.Errorf("description %q, want %q in it", eb.Description, tt.desc)
			}
			if got := rec.Header().Get("Retry-After"); got != tt.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tt.retryAfter)
			}
			if tt.code == CodeInvalidCredentials && rec.Body.String() !=
				`{"error":"invalid_credentials","error_description":"invalid username or password"}`+"\n" {
				t.Errorf("unknown, wrong and disabled must answer alike; got %s", rec.Body)
			}
			if strings.Contains(rec.Body.String(), "disk on fire") {
				t.Error("internals reached the client")
			}
		})
	}
}

// TestLoginRefusedBeforeService: what input validation refuses never
// reaches Login, so it never counts as a failed login, and charges no
// username bucket.
func TestLoginRefusedBeforeService(t *testing.T) {
	long := `{"username":"alice","password":"` + strings.Repeat("x", 600) + `"}`
	tests := []struct {
		name, body string
		opts       []reqOpt
		status     int
		code       string
	}{
		{"bad JSON", `{"username":"alice",`, nil, 400, CodeInvalidRequest},
		{"not an object", `["alice","pw"]`, nil, 400, CodeInvalidRequest},
		{"unknown field", `{"username":"alice","password":"x","remember":true}`, nil, 400, CodeInvalidRequest},
		{"wrong type", `{"username":"alice","password":5}`, nil, 400, CodeInvalidRequest},
		{"trailing data", `{"username":"alice","password":"x"} {}`, nil, 400, CodeInvalidRequest},
		{"empty body", ``, []reqOpt{header("Content-Type", "application/json")}, 400, CodeInvalidRequest},
		{"oversize", long, nil, 413, CodePayloadTooLarge},
		{"form", `username=alice&password=x`, []reqOpt{func(r *http.Request) {
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}}, 415, CodeUnsupportedMediaType},
		{"no content type", `{"username":"alice","password":"x"}`, []reqOpt{func(r *http.Request) {
			r.Header.Del("Content-Type")
		}}, 415, CodeUnsupportedMediaType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rl := NewRateLimiter(RateLimitConfig{PerIP: 10, PerIPBurst: 30, PerUsername: 5, PerUsernameBurst: 10})
			env := newAuthEnv(t, Options{MaxBodyBytes: 512, RateLimit: rl})
			rec := send(t, env.h, "POST", "/v1/auth/login", tt.body, tt.opts...)
			checkError(t, rec, tt.status, tt.code)
			if n := env.auth.count("Login"); n != 0 {
				t.Errorf("refused request reached Login (%d calls)", n)
			}
			if _, users := rl.size(); users != 0 {
				t.Errorf("refused request charged %d username buckets", users)
			}
		})
	}
}

func TestRefresh(t *testing.T) {
	env := newAuthEnv(t, Options{})
	first := checkTokens(t, send(t, env.h, "POST", "/v1/auth/login", `{"username":"bob","password":"bob password"}`))
	next := checkTokens(t, send(t, env.h, "POST", "/v1/auth/refresh", `{"refresh_token":"`+first.RefreshToken+`"}`))
	if next.SessionID != first.SessionID || next.RefreshToken == first.RefreshToken {
		t.Errorf("refresh: %+v after %+v", next, first)
	}
	rec := send(t, env.h, "POST", "/v1/auth/refresh", `{"refresh_token":"`+first.RefreshToken+`"}`)
	checkError(t, rec, 400, CodeInvalidGrant)
	if rec.Header().Get("WWW-Authenticate") != "" {
		t.Error("invalid_grant carries a Bearer challenge")
	}
	before := env.auth.count("Refresh")
	checkError(t, send(t, env.h, "POST", "/v1/auth/refresh", `{"refresh":"x"}`), 400, CodeInvalidRequest)
	if env.auth.count("Refresh") != before {
		t.Error("a refused body reached Refresh")
	}
}

// TestBearerParsing: only one "Bearer <b64token>" header is accepted;
// everything else is 401 invalid_token with the RFC 6750 challenge, and
// only well-formed tokens reach Authenticate.
func TestBearerParsing(t *testing.T) {
	tests := []struct {
		name      string
		values    []string
		status    int
		challenge string
		checked   bool // reaches Authenticate
	}{
		{"missing", nil, 401, challengeRealm, false},
		{"basic", []string{"Basic YWxpY2U6cHc="}, 401, challengeInvalidToken, false},
		{"scheme only", []string{"Bearer"}, 401, challengeInvalidToken, false},
		{"empty token", []string{"Bearer "}, 401, challengeInvalidToken, false},
		{"two spaces", []string{"Bearer  alice-token"}, 401, challengeInvalidToken, false},
		{"trailing words", []string{"Bearer alice-token extra"}, 401, challengeInvalidToken, false},
		{"bad characters", []string{"Bearer alice\"token"}, 401, challengeInvalidToken, false},
		{"two headers", []string{"Bearer alice-token", "Bearer alice-token"}, 401, challengeInvalidToken, false},
		{"empty header", []string{""}, 401, challengeInvalidToken, false},
		{"dead or forged", []string{"Bearer eyJhbGciOiJub25lIn0.e30.="}, 401, challengeInvalidToken, true},
		{"good", []string{"Bearer alice-token"}, 200, "", true},
		{"scheme lower case", []string{"bearer alice-token"}, 200, "", true},
		{"scheme upper case", []string{"BEARER alice-token"}, 200, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newAuthEnv(t, Options{})
			var opts []reqOpt
			for _, v := range tt.values {
				opts = append(opts, header("Authorization", v))
			}
			rec := send(t, env.h, "GET", "/v1/me", "", opts...)
			if tt.status == 401 {
				checkError(t, rec, 401, CodeInvalidToken)
			} else if rec.Code != tt.status {
				t.Errorf("status %d %s, want %d", rec.Code, rec.Body, tt.status)
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != tt.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, tt.challenge)
			}
			if got := env.auth.count("Authenticate") == 1; got != tt.checked {
				t.Errorf("reached Authenticate: %v, want %v", got, tt.checked)
			}
		})
	}
}

func TestMe(t *testing.T) {
	env := newAuthEnv(t, Options{})
	rec := send(t, env.h, "GET", "/v1/me", "", bearerOf("alice-token"))
	want := `{"id":"id-alice","username":"alice","email":"alice@example.com","roles":["admin"],"mfa":{"enabled":false,"totp":false,"webauthn":0,"recovery_codes_left":0}}`
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != want {
		t.Errorf("GET /v1/me = %d %s, want %s", rec.Code, rec.Body, want)
	}
	checkSecurityHeaders(t, rec.Header())
	rec = send(t, env.h, "GET", "/v1/me", "", bearerOf("bob-token"))
	if !strings.Contains(rec.Body.String(), `"email":""`) {
		t.Errorf("email must be present even when empty: %s", rec.Body)
	}
}

func TestMySessions(t *testing.T) {
	env := newAuthEnv(t, Options{})
	rec := send(t, env.h, "GET", "/v1/me/sessions", "", bearerOf("alice-token"))
	out := decodeAs[struct {
		Sessions []map[string]any `json:"sessions"`
	}](t, rec)
	if rec.Code != 200 || len(out.Sessions) != 2 || out.Sessions[0]["id"] != "s-alice" || out.Sessions[0]["current"] != true ||
		out.Sessions[1]["current"] != false {
		t.Fatalf("GET /v1/me/sessions = %d %s", rec.Code, rec.Body)
	}
	for _, k := range []string{"id", "created_at", "last_seen_at", "ip", "user_agent", "current"} {
		if _, ok := out.Sessions[0][k]; !ok {
			t.Errorf("session lacks %q: %s", k, rec.Body)
		}
	}

	// Another user's session is not found, the same as an unknown one.
	checkError(t, send(t, env.h, "DELETE", "/v1/me/sessions/s-bob", "", bearerOf("alice-token")), 404, CodeNotFound)
	checkError(t, send(t, env.h, "DELETE", "/v1/me/sessions/nope", "", bearerOf("alice-token")), 404, CodeNotFound)
	rec = send(t, env.h, "DELETE", "/v1/me/sessions/s-alice2", "", bearerOf("alice-token"))
	if rec.Code != 204 || rec.Body.Len() != 0 {
		t.Errorf("DELETE own session = %d %q", rec.Code, rec.Body)
	}
	rec = send(t, env.h, "GET", "/v1/me/sessions", "", bearerOf("bob-token"))
	if !strings.Contains(rec.Body.String(), `"id":"s-bob"`) {
		t.Errorf("bob's session was touched: %s", rec.Body)
	}
}

func TestLogout(t *testing.T) {
	env := newAuthEnv(t, Options{})
	rec := send(t, env.h, "POST", "/v1/auth/logout", "", bearerOf("bob-token"))
	if rec.Code != 204 || rec.Body.Len() != 0 {
		t.Fatalf("logout = %d %q", rec.Code, rec.Body)
	}
	rec = send(t, env.h, "GET", "/v1/me", "", bearerOf("bob-token"))
	checkError(t, rec, 401, CodeInvalidToken)
	if rec.Header().Get("WWW-Authenticate") != challengeInvalidToken {
		t.Errorf("WWW-Authenticate %q", rec.Header().Get("WWW-Authenticate"))
	}
	checkError(t, send(t, env.h, "POST", "/v1/auth/logout", ""), 401, CodeInvalidToken)
}

func TestChangePassword(t *testing.T) {
	body := func(cur, next string) string {
		return fmt.Sprintf(`{"current_password":%q,"new_password":%q}`, cur, next)
	}
	tests := []struct {
		name, body string
		forced     error
		status     int
		code       string
		retryAfter string
	}{
		{"weak", body("bob password", "short"), nil, 400, CodeInvalidRequest, ""},
		{"wrong current", body("guess", "a much longer passphrase"), nil, 401, CodeInvalidCredentials, ""},
		{"empty current", body("", "a much longer passphrase"), nil, 400, CodeInvalidRequest, ""},
		{"locked", body("bob password", "a much longer passphrase"), &authcore.LockedError{RetryAfter: 10 * time.Minute},
			429, CodeTooManyAttempts, "600"},
		{"unknown field", `{"current_password":"bob password","new_password":"a much longer passphrase","x":1}`, nil,
			400, CodeInvalidRequest, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newAuthEnv(t, Options{})
			env.auth.setErr("ChangePassword", tt.forced)
			rec := send(t, env.h, "POST", "/v1/me/password", tt.body, bearerOf("bob-token"))
			checkError(t, rec, tt.status, tt.code)
			if got := rec.Header().Get("Retry-After"); got != tt.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tt.retryAfter)
			}
			if rec.Header().Get("WWW-Authenticate") != "" {
				t.Error("a wrong current password must not look like a bad token")
			}
		})
	}
	env := newAuthEnv(t, Options{})
	tok := checkTokens(t, send(t, env.h, "POST", "/v1/me/password", body("bob password", "a much longer passphrase"), bearerOf("bob-token")))
	if tok.SessionID != "s-bob" {
		t.Errorf("fresh tokens for session %q, want s-bob", tok.SessionID)
	}
	checkError(t, send(t, env.h, "POST", "/v1/me/password", body("bob password", "a much longer passphrase")), 401, CodeInvalidToken)
}

func TestJWKS(t *testing.T) {
	env := newAuthEnv(t, Options{})
	for _, method := range []string{"GET", "HEAD"} {
		rec := send(t, env.h, method, "/.well-known/jwks.json", "")
		h := rec.Header()
		if rec.Code != 200 || h.Get("Content-Type") != "application/json" || h.Get("Cache-Control") != "public, max-age=300" {
			t.Errorf("%s JWKS = %d, headers %v", method, rec.Code, h)
		}
		if method == "GET" && rec.Body.String() != fakeJWKS {
			t.Errorf("JWKS body %q", rec.Body)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Strict-Transport-Security") == "" {
			t.Errorf("JWKS lost the security headers: %v", h)
		}
	}
	env.auth.setErr("JWKS", errDiskOnFire)
	rec := send(t, env.h, "GET", "/.well-known/jwks.json", "")
	checkError(t, rec, 500, CodeInternal)
	if rec.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("an error answer is cacheable: %q", rec.Header().Get("Cache-Control"))
	}
}

// TestAdminRoutesAuthorization: every admin route is 401 without a token,
// 403 for a plain user, and served for an admin; refused callers reach
// no service.
func TestAdminRoutesAuthorization(t *testing.T) {
	tests := []struct {
		method, path, body string
		status             int
		check              func(t *testing.T, env *authEnv, rec *httptest.ResponseRecorder)
	}{
		{"POST", "/v1/admin/users", `{"username":"Dave","password":"long enough","roles":["ops"]}`, 201,
			func(t *testing.T, env *authEnv, rec *httptest.ResponseRecorder) {
				u := decodeAs[authcore.User](t, rec)
				if u.ID != "id-dave" || u.Username != "dave" || rec.Header().Get("Location") != "/v1/admin/users/id-dave" {
					t.Errorf("created %s, Location %q", rec.Body, rec.Header().Get("Location"))
				}
			}},
		{"GET", "/v1/admin/users", "", 200, func(t *testing.T, env *authEnv, rec *httptest.ResponseRecorder) {
			if !strings.Contains(rec.Body.String(), `{"users":[{"id":"id-erin"`) {
				t.Errorf("list %s", rec.Body)
			}
		}},
		{"GET", "/v1/admin/users/id-erin", "", 200, func(t *testing.T, env *authEnv, rec *httptest.ResponseRecorder) {
			if decodeAs[authcore.User](t, rec).Username != "erin" {
				t.Errorf("get %s", rec.Body)
			}
		}},
		{"PATCH", "/v1/admin/users/id-erin", `{"disabled":true}`, 200, func(t *testing.T, env *authEnv, rec *httptest.ResponseRecorder) {
			if !decodeAs[authcore.User](t, rec).Disabled {
				t.Errorf("patch %s", rec.Body)
			}
		}},
		{"PATCH", "/v1/admin/users/id-erin", `{"flagged":true}`, 400, func(t *testing.T, env *authEnv, rec *httptest.ResponseRecorder) {}},
		{"PATCH", "/v1/admin/users/id-erin", `{"flagged":false}`, 200, func(t *testing.T, env *authEnv, rec *httptest.ResponseRecorder) {
			if u := decodeAs[authcore.User](t, rec); u.Flagged || env.users.users["erin"].Flagged {
				t.Errorf("unflag %s", rec.Body)
			}
		}},
		{"DELETE", "/v1/admin/users/id-erin", "", 204, func(t *testing.T, env *authEnv, rec *httptest.ResponseRecorder) {
			if _, ok := env.users.users["erin"]; ok || rec.Body.Len() != 0 {
				t.Errorf("delete: %q, erin still there: %v", rec.Body, ok)
			}
		}},
		{"POST", "/v1/admin/users/id-erin/unlock", "", 204, func(t *testing.T, env *authEnv, rec *httptest.ResponseRecorder) {
			if fmt.Sprint(env.auth.unlocked) != "[erin]" {
				t.Errorf("unlocked %v, want [erin] (by username)", env.auth.unlocked)
			}
		}},
		{"DELETE", "/v1/admin/users/id-erin/sessions", "", 200, func(t *testing.T, env *authEnv, rec *httptest.ResponseRecorder) {
			if strings.TrimSpace(rec.Body.String()) != `{"revoked":2}` {
				t.Errorf("revoke %s", rec.Body)
			}
		}},
		{"GET", "/v1/admin/audit?after=1&limit=2", "", 200, func(t *testing.T, env *authEnv, rec *httptest.ResponseRecorder) {
			out := decodeAs[struct {
				Entries []map[string]any `json:"entries"`
			}](t, rec)
			if len(out.Entries) != 2 || out.Entries[0]["seq"] != 2.0 || out.Entries[0]["hash"] == nil ||
				out.Entries[0]["prev_hash"] == nil {
				t.Errorf("audit %s", rec.Body)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			env := newAuthEnv(t, Options{})
			rec := send(t, env.h, tt.method, tt.path, tt.body)
			checkError(t, rec, 401, CodeInvalidToken)
			if rec.Header().Get("WWW-Authenticate") != challengeRealm {
				t.Errorf("no token: WWW-Authenticate %q", rec.Header().Get("WWW-Authenticate"))
			}
			checkError(t, send(t, env.h, tt.method, tt.path, tt.body, bearerOf("nope")), 401, CodeInvalidToken)
			checkError(t, send(t, env.h, tt.method, tt.path, tt.body, bearerOf("bob-token")), 403, CodeForbidden)
			served := env.users.callCount() + env.auth.count("Unlock") + env.auth.count("RevokeUserSessions") + env.auth.count("Audit")
			if served != 0 {
				t.Fatalf("a refused caller reached the service (%d calls)", served)
			}
			rec = send(t, env.h, tt.method, tt.path, tt.body, bearerOf("alice-token"))
			if rec.Code != tt.status {
				t.Fatalf("admin: %d %s, want %d", rec.Code, rec.Body, tt.status)
			}
			checkSecurityHeaders(t, rec.Header())
			if tt.status != 204 && rec.Header().Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type %q", rec.Header().Get("Content-Type"))
			}
			tt.check(t, env, rec)
		})
	}
}

// TestAdminReadsAreLinearizable: the admin API's reads pass a read
// barrier first; without a leader they answer 503 no_leader and read
// nothing. Writes and self-service reads take no barrier.
func TestAdminReadsAreLinearizable(t *testing.T) {
	for _, path := range []string{"/v1/admin/users", "/v1/admin/users/id-erin", "/v1/admin/audit"} {
		t.Run(path, func(t *testing.T) {
			env := newAuthEnv(t, Options{IsNoLeader: func(err error) bool { return errors.Is(err, errTestNoLeader) }})
			if rec := send(t, env.h, "GET", path, "", bearerOf("alice-token")); rec.Code != 200 || env.users.barriers != 1 {
				t.Fatalf("GET %s: %d, %d barriers", path, rec.Code, env.users.barriers)
			}
			env.users.barrierErr = errTestNoLeader
			calls, audits := env.users.callCount(), env.auth.count("Audit")
			checkError(t, send(t, env.h, "GET", path, "", bearerOf("alice-token")), 503, CodeNoLeader)
			if env.users.callCount() != calls || env.auth.count("Audit") != audits {
				t.Fatal("a read without its barrier reached the service")
			}
		})
	}
	env := newAuthEnv(t, Options{})
	send(t, env.h, "GET", "/v1/me", "", bearerOf("alice-token"))
	send(t, env.h, "PATCH", "/v1/admin/users/id-erin", `{"disabled":true}`, bearerOf("alice-token"))
	if env.users.barriers != 0 {
		t.Fatalf("%d barriers for routes that need none", env.users.barriers)
	}
}

func TestAdminAPIErrors(t *testing.T) {
	tests := []struct {
		name, method, path, body string
		status                   int
		code, desc               string
	}{
		{"patch unknown field", "PATCH", "/v1/admin/users/id-erin", `{"email":"e@example.com"}`, 400, CodeInvalidRequest, `unknown field "email"`},
		{"patch wrong type", "PATCH", "/v1/admin/users/id-erin", `{"disabled":"yes"}`, 400, CodeInvalidRequest, "true or false"},
		{"patch unknown user", "PATCH", "/v1/admin/users/nobody", `{"disabled":true}`, 404, CodeNotFound, "no such user"},
		{"get unknown user", "GET", "/v1/admin/users/nobody", "", 404, CodeNotFound, "no such user"},
		{"unlock unknown user", "POST", "/v1/admin/users/nobody/unlock", "", 404, CodeNotFound, "no such user"},
		{"revoke unknown user", "DELETE", "/v1/admin/users/nobody/sessions", "", 404, CodeNotFound, "no such user"},
		{"create duplicate", "POST", "/v1/admin/users", `{"username":"erin","password":"long enough"}`, 409, CodeConflict, "exists"},
		{"create weak", "POST", "/v1/admin/users", `{"username":"dave","password":"short"}`, 400, CodeInvalidRequest, "weak"},
		{"audit after negative", "GET", "/v1/admin/audit?after=-1", "", 400, CodeInvalidRequest, "after"},
		{"audit after text", "GET", "/v1/admin/audit?after=x", "", 400, CodeInvalidRequest, "after"},
		{"audit limit zero", "GET", "/v1/admin/audit?limit=0", "", 400, CodeInvalidRequest, "1 to 1000"},
		{"audit limit big", "GET", "/v1/admin/audit?limit=1001", "", 400, CodeInvalidRequest, "1 to 1000"},
		{"audit limit text", "GET", "/v1/admin/audit?limit=ten", "", 400, CodeInvalidRequest, "limit"},
		{"audit limit twice", "GET", "/v1/admin/audit?limit=1&limit=2", "", 400, CodeInvalidRequest, "more than once"},
		{"wrong method", "PUT", "/v1/admin/users/id-erin", "", 405, CodeMethodNotAllowed, "PUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newAuthEnv(t, Options{})
			rec := send(t, env.h, tt.method, tt.path, tt.body, bearerOf("alice-token"))
			eb := checkError(t, rec, tt.status, tt.code)
			if !strings.Contains(eb.Description, tt.desc) {
				t.Errorf("description %q, want %q in it", eb.Description, tt.desc)
			}
			if n := env.auth.count("Unlock") + env.auth.count("Audit"); n != 0 {
				t.Errorf("a refused request reached the service (%d calls)", n)
			}
		})
	}

	env := newAuthEnv(t, Options{})
	rec := send(t, env.h, "PATCH", "/v1/admin/users/id-erin", `{}`, bearerOf("alice-token"))
	if rec.Code != 200 || decodeAs[authcore.User](t, rec).Disabled {
		t.Errorf("empty patch = %d %s, want the user unchanged", rec.Code, rec.Body)
	}
	rec = send(t, env.h, "GET", "/v1/admin/audit", "", bearerOf("alice-token"))
	if rec.Code != 200 || env.auth.auditAfter != 0 || env.auth.auditLimit != authcore.DefaultAuditLimit {
		t.Errorf("audit defaults: %d, after %d limit %d", rec.Code, env.auth.auditAfter, env.auth.auditLimit)
	}
	rec = send(t, env.h, "GET", "/v1/admin/audit?after=5&limit=1000", "", bearerOf("alice-token"))
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"entries":[]}` || env.auth.auditAfter != 5 || env.auth.auditLimit != 1000 {
		t.Errorf("audit past the end: %d %s (after %d limit %d)", rec.Code, rec.Body, env.auth.auditAfter, env.auth.auditLimit)
	}
}

// TestRequestInfo: every call reaches the service with the client's
// address (X-Forwarded-For believed only from a trusted proxy), its
// User-Agent, and for authenticated calls the caller as actor.
func TestRequestInfo(t *testing.T) {
	env := newAuthEnv(t, Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	login := `{"username":"alice","password":"alice password"}`

	send(t, env.h, "POST", "/v1/auth/login", login, from("203.0.113.9:5555"),
		header("X-Forwarded-For", "1.2.3.4"), header("User-Agent", "ua-direct"))
	if got, want := env.auth.lastInfo("Login"), (authcore.RequestInfo{IP: "203.0.113.9", UserAgent: "ua-direct"}); got != want {
		t.Errorf("direct client: %+v, want %+v", got, want)
	}
	send(t, env.h, "POST", "/v1/auth/login", login, from("10.0.0.1:5555"),
		header("X-Forwarded-For", "6.6.6.6, 198.51.100.4"), header("User-Agent", "ua-proxied"))
	if got, want := env.auth.lastInfo("Login"), (authcore.RequestInfo{IP: "198.51.100.4", UserAgent: "ua-proxied"}); got != want {
		t.Errorf("behind a trusted proxy: %+v, want %+v", got, want)
	}
	send(t, env.h, "POST", "/v1/auth/refresh", `{"refresh_token":"x"}`, from("[2001:db8::7]:443"), header("User-Agent", "ua-6"))
	if got, want := env.auth.lastInfo("Refresh"), (authcore.RequestInfo{IP: "2001:db8::7", UserAgent: "ua-6"}); got != want {
		t.Errorf("refresh: %+v, want %+v", got, want)
	}

	send(t, env.h, "GET", "/v1/me", "", bearerOf("bob-token"), from("203.0.113.10:1"), header("User-Agent", "ua-me"))
	if got, want := env.auth.lastInfo("Authenticate"), (authcore.RequestInfo{IP: "203.0.113.10", UserAgent: "ua-me"}); got != want {
		t.Errorf("Authenticate: %+v, want %+v", got, want)
	}
	if got, want := env.auth.lastInfo("Me"), (authcore.RequestInfo{IP: "203.0.113.10", UserAgent: "ua-me", Actor: "id-bob"}); got != want {
		t.Errorf("Me: %+v, want %+v", got, want)
	}
	send(t, env.h, "DELETE", "/v1/admin/users/bob/sessions", "", bearerOf("alice-token"), from("203.0.113.11:1"),
		header("User-Agent", "ua-admin"))
	if got, want := env.auth.lastInfo("RevokeUserSessions"), (authcore.RequestInfo{IP: "203.0.113.11", UserAgent: "ua-admin", Actor: "id-alice"}); got != want {
		t.Errorf("admin route: %+v, want %+v", got, want)
	}

	logger, _ := newTestLogger(t)
	fa := newFakeAuth()
	sock := NewAdminHandler(newFakeUsers(), fa, nil, logger)
	send(t, sock, "POST", "/admin/v1/users/alice/unlock", "", from("@"), header("User-Agent", "bulwark-cli"))
	if got, want := fa.lastInfo("Unlock"), (authcore.RequestInfo{UserAgent: "bulwark-cli", Actor: ActorLocalAdmin}); got != want {
		t.Errorf("admin socket: %+v, want %+v", got, want)
	}
}

// TestLoginPerIPLimit: every /v1/auth/ route draws on the client's bucket;
// other routes and other clients do not.
func TestLoginPerIPLimit(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rl := NewRateLimiter(RateLimitConfig{PerIP: 1, PerIPBurst: 3, Now: func() time.Time { return now }})
	env := newAuthEnv(t, Options{RateLimit: rl})
	login := `{"username":"bob","password":"bob password"}`
	for i := range 3 {
		if rec := send(t, env.h, "POST", "/v1/auth/login", login, from("203.0.113.1:1")); rec.Code != 200 {
			t.Fatalf("login %d: %d %s", i+1, rec.Code, rec.Body)
		}
	}
	for _, path := range []string{"/v1/auth/login", "/v1/auth/refresh", "/v1/auth/logout"} {
		rec := send(t, env.h, "POST", path, login, from("203.0.113.1:1"))
		checkError(t, rec, 429, CodeTooManyAttempts)
		if rec.Header().Get("Retry-After") != "1" {
			t.Errorf("%s: Retry-After %q", path, rec.Header().Get("Retry-After"))
		}
	}
	if n := env.auth.count("Login"); n != 3 {
		t.Errorf("Login called %d times, want 3", n)
	}
	if rec := send(t, env.h, "POST", "/v1/auth/login", login, from("203.0.113.2:1")); rec.Code != 200 {
		t.Errorf("another client: %d %s", rec.Code, rec.Body)
	}
	if rec := send(t, env.h, "GET", "/v1/me", "", bearerOf("bob-token"), from("203.0.113.1:1")); rec.Code != 200 {
		t.Errorf("/v1/me is not an auth route: %d %s", rec.Code, rec.Body)
	}
}

// TestUsernameLimitChargedByFailuresOnly: an operator's script may log in
// 30 times at once as one user (API.md); failures of one name, from
// however many addresses, run out its bucket and are then refused before
// Login, with the lockout's answer.
func TestUsernameLimitChargedByFailuresOnly(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	rl := NewRateLimiter(RateLimitConfig{PerIP: 10, PerIPBurst: 30, PerUsername: 5, PerUsernameBurst: 10, Now: clock})
	env := newAuthEnv(t, Options{RateLimit: rl})

	for i := range 30 {
		rec := send(t, env.h, "POST", "/v1/auth/login", `{"username":"alice","password":"alice password"}`, from("198.51.100.1:1"))
		if rec.Code != 200 {
			t.Fatalf("successful login %d of a burst of 30: %d %s", i+1, rec.Code, rec.Body)
		}
	}
	checkError(t, send(t, env.h, "POST", "/v1/auth/login", `{"username":"alice","password":"alice password"}`,
		from("198.51.100.1:1")), 429, CodeTooManyAttempts)

	wrong := `{"username":"bob","password":"guess"}`
	for i := range 10 {
		rec := send(t, env.h, "POST", "/v1/auth/login", wrong, from(fmt.Sprintf("203.0.113.%d:1", i+1)))
		checkError(t, rec, 401, CodeInvalidCredentials)
	}
	calls := env.auth.count("Login")
	for _, body := range []string{wrong, `{"username":"BOB","password":"bob password"}`} {
		rec := send(t, env.h, "POST", "/v1/auth/login", body, from("203.0.113.99:1"))
		eb := checkError(t, rec, 429, CodeTooManyAttempts)
		if eb.Description != tooManyAttemptsDescription || rec.Header().Get("Retry-After") != "1" {
			t.Errorf("per-name refusal %q, Retry-After %q; want the lockout's answer", eb.Description, rec.Header().Get("Retry-After"))
		}
	}
	if n := env.auth.count("Login"); n != calls {
		t.Errorf("a limited name reached Login (%d calls)", n-calls)
	}
	// Another name is untouched, and the wait said is honest.
	if rec := send(t, env.h, "POST", "/v1/auth/login", `{"username":"erin","password":"erin password"}`, from("203.0.113.99:1")); rec.Code != 200 {
		t.Errorf("another name: %d %s", rec.Code, rec.Body)
	}
	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	checkTokens(t, send(t, env.h, "POST", "/v1/auth/login", `{"username":"bob","password":"bob password"}`, from("203.0.113.99:1")))
	if _, users := rl.size(); users != 1 {
		t.Errorf("%d username buckets, want 1 (successes and peeks store none)", users)
	}
}

// TestAuthErrorMapping: authcore's auth errors keep their meaning however
// wrapped.
func TestAuthErrorMapping(t *testing.T) {
	tests := []struct {
		err                     error
		status                  int
		code, challenge, header string
	}{
		{fmt.Errorf("verify: %w", authcore.ErrInvalidToken), 401, CodeInvalidToken, challengeInvalidToken, ""},
		{fmt.Errorf("x: %w", authcore.ErrInvalidGrant), 400, CodeInvalidGrant, "", ""},
		{authcore.ErrInvalidCredentials, 401, CodeInvalidCredentials, "", ""},
		{fmt.Errorf("x: %w", &authcore.LockedError{RetryAfter: 1500 * time.Millisecond}), 429, CodeTooManyAttempts, "", "2"},
		{authcore.ErrSessionLimit, 403, CodeForbidden, "", ""},
		{authcore.ErrNotFound, 404, CodeNotFound, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			logger, _ := newTestLogger(t)
			h := newRouter(Options{Logger: logger}, func(mux *http.ServeMux) {
				mux.HandleFunc("GET /fail", func(w http.ResponseWriter, r *http.Request) { writeError(w, r, tt.err) })
			})
			rec := do(t, h, "GET", "/fail", "", "")
			checkError(t, rec, tt.status, tt.code)
			if got := rec.Header().Get("WWW-Authenticate"); got != tt.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, tt.challenge)
			}
			if got := rec.Header().Get("Retry-After"); got != tt.header {
				t.Errorf("Retry-After %q, want %q", got, tt.header)
			}
		})
	}
}

func TestAdminSocketAuthRoutes(t *testing.T) {
	logger, _ := newTestLogger(t)
	fa := newFakeAuth()
	h := NewAdminHandler(newFakeUsers(), fa, nil, logger)

	rec := send(t, h, "POST", "/admin/v1/users/Mallory/unlock", "")
	if rec.Code != 204 || fmt.Sprint(fa.unlocked) != "[Mallory]" {
		t.Errorf("unlock = %d %s, unlocked %v (any name, as given)", rec.Code, rec.Body, fa.unlocked)
	}
	fa.setErr("Unlock", fmt.Errorf("%w: empty", authcore.ErrInvalidUsername))
	checkError(t, send(t, h, "POST", "/admin/v1/users/%20/unlock", ""), 400, CodeInvalidRequest)

	rec = send(t, h, "POST", "/admin/v1/users/alice/revoke-sessions", "")
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"revoked":2}` {
		t.Errorf("revoke-sessions = %d %s", rec.Code, rec.Body)
	}
	checkError(t, send(t, h, "POST", "/admin/v1/users/nobody/revoke-sessions", ""), 404, CodeNotFound)

	rec = send(t, h, "GET", "/admin/v1/audit?after=3", "")
	if rec.Code != 200 || !strings.HasPrefix(rec.Body.String(), `{"entries":[{"seq":4,`) || fa.auditLimit != 100 {
		t.Errorf("audit = %d %s (limit %d)", rec.Code, rec.Body, fa.auditLimit)
	}
	checkError(t, send(t, h, "GET", "/admin/v1/audit?limit=-5", ""), 400, CodeInvalidRequest)

	fa.verifyCount = 5
	rec = send(t, h, "GET", "/admin/v1/audit/verify", "")
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"entries":5,"ok":true}` {
		t.Errorf("verify = %d %s", rec.Code, rec.Body)
	}
	fa.verifyCount, fa.verifyErr = 6, fmt.Errorf("view: %w", &authcore.AuditChainError{Seq: 7, Reason: "hash does not match the entry's contents"})
	eb := checkError(t, send(t, h, "GET", "/admin/v1/audit/verify", ""), 409, CodeAuditChainBroken)
	if !strings.Contains(eb.Description, "seq 7") || !strings.Contains(eb.Description, "hash does not match") ||
		!strings.Contains(eb.Description, "6 entries") {
		t.Errorf("broken chain: %q", eb.Description)
	}
	fa.verifyErr = errDiskOnFire
	checkError(t, send(t, h, "GET", "/admin/v1/audit/verify", ""), 500, CodeInternal)
}

// The second-factor routes are driven end to end by authcore's and the
// black-box tests; the fake has no factors.
func (f *fakeAuth) VerifyMFA(ctx context.Context, mfaToken, method, code string) (authcore.Tokens, error) {
	return authcore.Tokens{}, authcore.ErrInvalidMFAToken
}

func (f *fakeAuth) MFAStatus(ctx context.Context, p *authcore.Principal) (authcore.MFAInfo, error) {
	return authcore.MFAInfo{WebAuthn: []authcore.WebAuthnInfo{}}, nil
}

func (f *fakeAuth) EnrollTOTP(ctx context.Context, p *authcore.Principal) (authcore.TOTPEnrolment, error) {
	return authcore.TOTPEnrolment{}, authcore.ErrMFAUnavailable
}

func (f *fakeAuth) ConfirmTOTP(ctx context.Context, p *authcore.Principal, code string) ([]string, error) {
	return nil, authcore.ErrMFAUnavailable
}

func (f *fakeAuth) RemoveTOTP(ctx context.Context, p *authcore.Principal) error {
	return authcore.ErrNotFound
}

func (f *fakeAuth) RegenerateRecoveryCodes(ctx context.Context, p *authcore.Principal) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(ctx, "RegenerateRecoveryCodes"); err != nil {
		return nil, err
	}
	return nil, authcore.ErrMFAUnavailable
}

func (f *fakeAuth) ResetMFA(ctx context.Context, nameOrID string) (int, error) { return 0, nil }

func (f *fakeAuth) StepUp(p *authcore.Principal) error { return nil }

func (f *fakeAuth) StepUpToEnrol(p *authcore.Principal) error { return nil }

func (f *fakeAuth) Lockdown(ctx context.Context, reason string) (authcore.LockdownState, error) {
	return authcore.LockdownState{Active: true, Reason: reason}, nil
}

func (f *fakeAuth) ReleaseLockdown(ctx context.Context) (authcore.LockdownState, error) {
	return authcore.LockdownState{}, nil
}

func (f *fakeAuth) LockdownStatus() authcore.LockdownState { return authcore.LockdownState{} }

func (f *fakeAuth) LoginWith(ctx context.Context, req authcore.LoginRequest) (authcore.Tokens, error) {
	return f.Login(ctx, req.Username, req.Password)
}

func (f *fakeAuth) NewChallenge() (altcha.Challenge, error) {
	return altcha.Challenge{Algorithm: altcha.Algorithm, MaxNumber: 1}, nil
}

func (f *fakeAuth) AdminForbidden(ctx context.Context, p *authcore.Principal, route string) bool {
	return false
}
