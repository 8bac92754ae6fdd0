package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// apiCall sends a JSON request to the node and decodes the answer.
func (n *testNode) apiCall(method, path, bearer string, body any) (int, map[string]any, http.Header) {
	n.t.Helper()
	h := http.Header{}
	if bearer != "" {
		h.Set("Authorization", "Bearer "+bearer)
	}
	code, out, resp := n.apiCallWith(method, path, h, body)
	return code, out, resp
}

// apiCallHeaders is apiCall with request headers of the caller's.
func (n *testNode) apiCallHeaders(method, path string, h http.Header, body any) (int, map[string]any) {
	n.t.Helper()
	code, out, _ := n.apiCallWith(method, path, h, body)
	return code, out
}

func (n *testNode) apiCallWith(method, path string, h http.Header, body any) (int, map[string]any, http.Header) {
	n.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, n.url(path), rd)
	if err != nil {
		n.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	resp, err := n.client().Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]any{}
	raw, _ := io.ReadAll(resp.Body)
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			n.t.Fatalf("%s %s: answer is not JSON: %q", method, path, raw)
		}
	}
	if resp.StatusCode >= 400 && !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		n.t.Errorf("%s %s: error with content type %q", method, path, resp.Header.Get("Content-Type"))
	}
	return resp.StatusCode, out, resp.Header
}

func (n *testNode) login(user, password string) (int, map[string]any) {
	n.t.Helper()
	code, out, _ := n.apiCall("POST", "/v1/auth/login", "", map[string]string{"username": user, "password": password})
	return code, out
}

func (n *testNode) addUser(name, password string, admin bool) {
	n.t.Helper()
	args := []string{"user", "add", name, "--password-stdin"}
	if admin {
		args = append(args, "--admin")
	}
	if _, errOut, code := n.cli(password+"\n", args...); code != 0 {
		n.t.Fatalf("user add %s: %s", name, errOut)
	}
}

// passwordChecks reads bulwark_password_checks_total from /metrics.
func (n *testNode) passwordChecks(metricsPort int) int {
	n.t.Helper()
	v, ok := n.scrape(metricsPort).values["bulwark_password_checks_total"]
	if !ok {
		n.t.Fatal("no bulwark_password_checks_total in /metrics")
	}
	return int(v)
}

// scraped is one read of /metrics: the value of each series without
// labels, and the name of every metric family.
type scraped struct {
	values   map[string]float64
	families map[string]bool
}

func (n *testNode) scrape(metricsPort int) scraped {
	n.t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	s := scraped{values: map[string]float64{}, families: map[string]bool{}}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 3 && f[0] == "#" && f[1] == "TYPE":
			s.families[f[2]] = true
		case len(f) == 2 && !strings.Contains(f[0], "{"):
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				n.t.Fatalf("/metrics: %q: %v", sc.Text(), err)
			}
			s.values[f[0]] = v
		}
	}
	if err := sc.Err(); err != nil {
		n.t.Fatal(err)
	}
	return s
}

// passwordAdmins lets administrators act on a password-only session; the
// tests that drive the admin API over HTTP use it.
const passwordAdmins = "[auth.security]\nrequire_mfa_for_admin = false\n"

// TestBlackBoxAdminNeedsMFAByDefault: with the default
// require_mfa_for_admin, an administrator's password-only session gets
// tokens for its own routes but no admin powers over HTTP.
func TestBlackBoxAdminNeedsMFAByDefault(t *testing.T) {
	n := newTestNode(t)
	n.start()
	n.addUser("root", "correct horse battery staple", true)
	code, tok := n.login("root", "correct horse battery staple")
	if code != 200 {
		t.Fatalf("login: %d %v", code, tok)
	}
	access := tok["access_token"].(string)
	if code, _, _ := n.apiCall("GET", "/v1/me", access, nil); code != 200 {
		t.Fatalf("/v1/me: %d", code)
	}
	code, out, _ := n.apiCall("GET", "/v1/admin/users", access, nil)
	if desc, _ := out["error_description"].(string); code != 403 || out["error"] != "forbidden" || !strings.Contains(desc, "require_mfa_for_admin") {
		t.Fatalf("admin route on a password-only session: %d %v", code, out)
	}
}

func TestBlackBoxAuthFlows(t *testing.T) {
	n := newTestNode(t, passwordAdmins)
	n.start()
	const pw = "correct horse battery staple"
	n.addUser("alice", pw, false)
	n.addUser("root", pw, true)

	code, tok := n.login("Alice", pw)
	if code != 200 || tok["token_type"] != "Bearer" || tok["session_id"] == nil || tok["refresh_token"] == nil {
		t.Fatalf("login: %d %v", code, tok)
	}
	access := tok["access_token"].(string)
	code, me, _ := n.apiCall("GET", "/v1/me", access, nil)
	if code != 200 || me["username"] != "alice" {
		t.Fatalf("/v1/me: %d %v", code, me)
	}
	// The JWT's kid is in the JWKS every node serves.
	code, jwks, _ := n.apiCall("GET", "/.well-known/jwks.json", "", nil)
	if code != 200 || len(jwks["keys"].([]any)) != 1 {
		t.Fatalf("jwks: %d %v", code, jwks)
	}

	// Refresh rotates; the dead token again revokes the session.
	code, tok2, _ := n.apiCall("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": tok["refresh_token"].(string)})
	if code != 200 || tok2["session_id"] != tok["session_id"] {
		t.Fatalf("refresh: %d %v", code, tok2)
	}
	code, out, _ := n.apiCall("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": tok["refresh_token"].(string)})
	if code != 400 || out["error"] != "invalid_grant" {
		t.Fatalf("reuse: %d %v", code, out)
	}
	if code, out, _ := n.apiCall("GET", "/v1/me", tok2["access_token"].(string), nil); code != 401 || out["error"] != "invalid_token" {
		t.Fatalf("/v1/me after reuse: %d %v", code, out)
	}

	// Logout takes effect at once although the JWT has not expired.
	_, tok3 := n.login("alice", pw)
	a3 := tok3["access_token"].(string)
	if code, _, _ := n.apiCall("POST", "/v1/auth/logout", a3, nil); code != 204 {
		t.Fatalf("logout: %d", code)
	}
	if code, _, _ := n.apiCall("GET", "/v1/me", a3, nil); code != 401 {
		t.Fatalf("/v1/me after logout: %d", code)
	}

	// Plain user on an admin route: 403; admin: 200.
	_, tok4 := n.login("alice", pw)
	if code, out, _ := n.apiCall("GET", "/v1/admin/users", tok4["access_token"].(string), nil); code != 403 || out["error"] != "forbidden" {
		t.Fatalf("plain user on admin route: %d %v", code, out)
	}
	_, rootTok := n.login("root", pw)
	if code, out, _ := n.apiCall("GET", "/v1/admin/users", rootTok["access_token"].(string), nil); code != 200 || len(out["users"].([]any)) != 2 {
		t.Fatalf("admin list: %d %v", code, out)
	}
	// The cluster view, for admins only.
	if code, out, _ := n.apiCall("GET", "/v1/admin/cluster", rootTok["access_token"].(string), nil); code != 200 ||
		out["leader"] != "bb1" || len(out["nodes"].([]any)) != 1 {
		t.Fatalf("admin cluster view: %d %v", code, out)
	}
	if code, _, _ := n.apiCall("GET", "/v1/admin/cluster", tok4["access_token"].(string), nil); code != 403 {
		t.Fatalf("plain user on /v1/admin/cluster: %d", code)
	}
	// Admin disable ends alice's session on the spot.
	if code, _, _ := n.apiCall("PATCH", "/v1/admin/users/alice", rootTok["access_token"].(string), map[string]any{"disabled": true}); code != 200 {
		t.Fatalf("admin disable: %d", code)
	}
	if code, _, _ := n.apiCall("GET", "/v1/me", tok4["access_token"].(string), nil); code != 401 {
		t.Fatalf("/v1/me of a disabled user: %d", code)
	}

	// Rotation: the new key signs at once, the old one stays in the JWKS
	// and its tokens keep working.
	if out, errOut, c := n.cli("", "keys", "rotate"); c != 0 || !strings.Contains(out, "signing with") {
		t.Fatalf("keys rotate: %d %s %s", c, out, errOut)
	}
	if code, jwks, _ := n.apiCall("GET", "/.well-known/jwks.json", "", nil); code != 200 || len(jwks["keys"].([]any)) != 2 {
		t.Fatalf("jwks after rotation: %v", jwks)
	}
	if code, _, _ := n.apiCall("GET", "/v1/admin/users", rootTok["access_token"].(string), nil); code != 200 {
		t.Fatalf("a token of the old key after rotation: %d", code)
	}
	if _, fresh := n.login("root", pw); fresh["access_token"] == nil {
		t.Fatal("login after rotation failed")
	}
	if out, _, _ := n.cli("", "keys", "list"); strings.Count(out, "ES256") != 2 || !strings.Contains(out, "current") {
		t.Errorf("keys list:\n%s", out)
	}

	// The audit trail recorded it all and its chain verifies.
	out2, errOut, c := n.cli("", "audit", "verify", "--json")
	if c != 0 || !strings.Contains(out2, `"ok": true`) {
		t.Fatalf("audit verify: %d %s %s", c, out2, errOut)
	}
	tail, _, _ := n.cli("", "audit", "tail", "-n", "100")
	for _, ev := range []string{"login.success", "refresh.reuse", "logout", "user.disable"} {
		if !strings.Contains(tail, ev) {
			t.Errorf("audit tail lacks %s:\n%s", ev, tail)
		}
	}
}

// TestBlackBoxLockoutBound attacks one account with 100 concurrent wrong
// passwords and counts, through the node's own metric, how many passwords
// it checked. A locked name and an unknown name answer alike.
func TestBlackBoxLockoutBound(t *testing.T) {
	// Loopback is exempt from the rate limits here, so what is measured is
	// the lockout alone.
	n := newTestNode(t, "[auth.rate_limit]\nexempt = [\"127.0.0.0/8\"]\n")
	n.start()
	n.addUser("victim", "correct horse battery staple", false)
	metrics := n.metrics
	before := n.passwordChecks(metrics)
	// The profiler is not served unless metrics.pprof asks for it.
	if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/", metrics)); err != nil || resp.StatusCode != 404 {
		t.Fatalf("/debug/pprof/ without metrics.pprof: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _ := n.login("victim", fmt.Sprintf("wrong password %d", i))
			mu.Lock()
			codes[code]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	checked := n.passwordChecks(metrics) - before
	if checked != 5 {
		t.Errorf("%d passwords checked for 100 concurrent wrong attempts, want 5 (max_failed_attempts)", checked)
	}
	// The hash slots' metrics saw the checks, and every bulwark metric the
	// shipped alert rules use is served.
	m := n.scrape(metrics)
	if m.values["bulwark_password_hash_slots"] < 1 || m.values["bulwark_password_hash_in_flight"] != 0 ||
		m.values["bulwark_password_hash_busy_seconds_total"] <= 0 || m.values["bulwark_password_hash_requests_total"] < 5 {
		t.Errorf("hash metrics: %d slots, %v in flight, %v s busy; want ≥ 1, 0, > 0",
			int(m.values["bulwark_password_hash_slots"]), m.values["bulwark_password_hash_in_flight"],
			m.values["bulwark_password_hash_busy_seconds_total"])
	}
	// One hash thread per slot, each pinned to a CPU of its own (the
	// default, and every slot has a CPU: there are as many as cores),
	// unless this sandbox refuses sched_setaffinity to the test too.
	if canPinThreads() && m.values["bulwark_password_hash_threads_pinned"] != m.values["bulwark_password_hash_slots"] {
		t.Errorf("%v hash threads pinned, want one per slot (%v)",
			m.values["bulwark_password_hash_threads_pinned"], m.values["bulwark_password_hash_slots"])
	}
	rules, err := os.ReadFile("../../packaging/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range regexp.MustCompile(`\bbulwark_[a-z_]+`).FindAllString(string(rules), -1) {
		if !m.families[name] {
			t.Errorf("packaging/alerts.yml uses %s, which /metrics does not serve", name)
		}
	}
	if codes[401] != 5 || codes[429] != 95 {
		t.Errorf("answers %v, want 5×401 and 95×429", codes)
	}

	// A locked real name and an unknown name that failed as often answer
	// the same: status, body and Retry-After.
	for i := 0; i < 5; i++ {
		n.login("ghost", "wrong password here")
	}
	c1, b1, h1 := n.apiCall("POST", "/v1/auth/login", "", map[string]string{"username": "victim", "password": "x"})
	c2, b2, h2 := n.apiCall("POST", "/v1/auth/login", "", map[string]string{"username": "ghost", "password": "x"})
	if c1 != 429 || c2 != 429 || fmt.Sprint(b1) != fmt.Sprint(b2) || h1.Get("Retry-After") == "" || h2.Get("Retry-After") == "" {
		t.Errorf("locked vs unknown: %d %v %q / %d %v %q", c1, b1, h1.Get("Retry-After"), c2, b2, h2.Get("Retry-After"))
	}
	// The right password is refused while locked; unlock lets it in.
	if code, _ := n.login("victim", "correct horse battery staple"); code != 429 {
		t.Errorf("right password while locked: %d", code)
	}
	if _, errOut, c := n.cli("", "user", "unlock", "victim"); c != 0 {
		t.Fatalf("unlock: %s", errOut)
	}
	if code, _ := n.login("victim", "correct horse battery staple"); code != 200 {
		t.Errorf("after unlock: %d", code)
	}
}

// TestBlackBoxKill9LosesNothing: state.db is written without fsync, so a
// node killed with SIGKILL must rebuild it from snapshot and log, and lose
// no acknowledged write: every user, and the live session, survive.
func TestBlackBoxKill9LosesNothing(t *testing.T) {
	n := newTestNode(t)
	n.start()
	const pw = "correct horse battery staple"
	for i := 0; i < 5; i++ {
		n.addUser(fmt.Sprintf("user%d", i), pw, false)
	}
	code, tok := n.login("user0", pw)
	if code != 200 {
		t.Fatalf("login: %d", code)
	}
	n.cmd.Process.Kill()
	<-n.exited

	n.start()
	if !strings.Contains(n.logs.String(), "not closed cleanly") {
		t.Error("the restart did not notice the unclean shutdown")
	}
	out, _, _ := n.cli("", "user", "list", "--json")
	for i := 0; i < 5; i++ {
		if !strings.Contains(out, fmt.Sprintf(`"user%d"`, i)) {
			t.Errorf("user%d lost in the crash:\n%s", i, out)
		}
	}
	if code, _, _ := n.apiCall("GET", "/v1/me", tok["access_token"].(string), nil); code != 200 {
		t.Errorf("the session did not survive the crash: /v1/me %d", code)
	}
	code, _, _ = n.apiCall("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": tok["refresh_token"].(string)})
	if code != 200 {
		t.Errorf("refresh after the crash: %d", code)
	}
}
