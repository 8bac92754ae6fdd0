package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/authcore"
)

// fakeBlocklist blocks the ranges added to it, for an hour from a fixed
// clock, and records who asked.
type fakeBlocklist struct {
	mu     sync.Mutex
	blocks map[netip.Prefix]authcore.Block
	infos  []authcore.RequestInfo
}

func newFakeBlocklist(cidrs ...string) *fakeBlocklist {
	f := &fakeBlocklist{blocks: map[netip.Prefix]authcore.Block{}}
	for _, c := range cidrs {
		f.AddBlock(context.Background(), c, 90*time.Second, "")
	}
	f.infos = nil
	return f
}

func (f *fakeBlocklist) Blocked(a netip.Addr) (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for p := range f.blocks {
		if p.Contains(a) {
			return 90 * time.Second, true
		}
	}
	return 0, false
}

func (f *fakeBlocklist) Blocks(ctx context.Context) ([]authcore.Block, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []authcore.Block{}
	for _, b := range f.blocks {
		out = append(out, b)
	}
	return out, nil
}

func (f *fakeBlocklist) AddBlock(ctx context.Context, cidr string, d time.Duration, reason string) (authcore.Block, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return authcore.Block{}, authcore.ErrInvalidInput
	}
	ri := authcore.RequestInfoFrom(ctx)
	f.infos = append(f.infos, ri)
	b := authcore.Block{CIDR: p.String(), Until: time.Unix(0, 0).Add(d), Reason: reason, Actor: ri.Actor}
	f.blocks[p] = b
	return b, nil
}

func (f *fakeBlocklist) RemoveBlock(ctx context.Context, cidr string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return authcore.ErrInvalidInput
	}
	if _, ok := f.blocks[p]; !ok {
		return authcore.ErrBlockNotFound
	}
	ri := authcore.RequestInfoFrom(ctx)
	f.infos = append(f.infos, ri)
	delete(f.blocks, p)
	return nil
}

// A blocked address gets 403 address_blocked with Retry-After on every
// route, known or not, but the health probes; its address is the one
// clientIP finds (a trusted proxy's X-Forwarded-For); others are served.
func TestBlockedAddressIsRefused(t *testing.T) {
	bl := newFakeBlocklist("192.0.2.0/24", "2001:db8::/64")
	env := newAuthEnv(t, Options{Blocklist: bl, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	for _, c := range []struct {
		method, path string
		opts         []reqOpt
	}{
		{"POST", "/v1/auth/login", []reqOpt{from("192.0.2.7:1")}},
		{"GET", "/v1/me", []reqOpt{from("[2001:db8::5]:1"), bearerOf("alice-token")}},
		{"GET", "/.well-known/jwks.json", []reqOpt{from("192.0.2.7:1")}},
		{"GET", "/no/such/route", []reqOpt{from("192.0.2.7:1")}},
		{"GET", "/v1/me", []reqOpt{from("10.0.0.1:1"), header("X-Forwarded-For", "192.0.2.9"), bearerOf("alice-token")}},
	} {
		rec := send(t, env.h, c.method, c.path, `{"username":"erin","password":"x"}`, c.opts...)
		var body errorBody
		json.Unmarshal(rec.Body.Bytes(), &body)
		if rec.Code != http.StatusForbidden || body.Error != CodeAddressBlocked || rec.Header().Get("Retry-After") != "90" ||
			rec.Header().Get("Strict-Transport-Security") == "" {
			t.Errorf("%s %s: %d %s Retry-After %q", c.method, c.path, rec.Code, rec.Body, rec.Header().Get("Retry-After"))
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if rec := send(t, env.h, "GET", path, "", from("192.0.2.7:1")); rec.Code != http.StatusOK {
			t.Errorf("%s from a blocked address: %d", path, rec.Code)
		}
	}
	// Not blocked: another address, and a blocked one named in the
	// X-Forwarded-For of a peer that is not a trusted proxy.
	for _, opts := range [][]reqOpt{
		{from("198.51.100.1:1")},
		{from("198.51.100.1:1"), header("X-Forwarded-For", "192.0.2.7")},
	} {
		if rec := send(t, env.h, "GET", "/v1/me", "", append(opts, bearerOf("alice-token"))...); rec.Code != http.StatusOK {
			t.Errorf("an address that is not blocked: %d %s", rec.Code, rec.Body)
		}
	}
}

func TestBlocklistRoutes(t *testing.T) {
	logger, _ := newTestLogger(t)
	bl := newFakeBlocklist()
	sock := NewAdminHandler(newFakeUsers(), nil, nil, logger, AdminBlocklist(bl))
	rec := send(t, sock, "POST", "/admin/v1/blocklist", `{"cidr":"192.0.2.0/24","for":"2d","reason":"scan"}`, from("@"))
	if rec.Code != http.StatusCreated {
		t.Fatalf("add: %d %s", rec.Code, rec.Body)
	}
	if b := bl.blocks[netip.MustParsePrefix("192.0.2.0/24")]; b.Until != time.Unix(0, 0).Add(48*time.Hour) || b.Reason != "scan" || b.Actor != ActorLocalAdmin {
		t.Fatalf("block = %+v", b)
	}
	for _, bad := range []string{`{"cidr":"192.0.2.0/24","for":"-1h"}`, `{"cidr":"192.0.2.0/24","for":"soon"}`, `{"cidr":"x"}`, `{"cidr":"192.0.2.0/24","extra":1}`} {
		if rec := send(t, sock, "POST", "/admin/v1/blocklist", bad, from("@")); rec.Code != http.StatusBadRequest {
			t.Errorf("%s: %d %s", bad, rec.Code, rec.Body)
		}
	}
	rec = send(t, sock, "GET", "/admin/v1/blocklist", "", from("@"))
	var list struct{ Blocks []authcore.Block }
	if json.Unmarshal(rec.Body.Bytes(), &list); rec.Code != 200 || len(list.Blocks) != 1 || list.Blocks[0].CIDR != "192.0.2.0/24" {
		t.Fatalf("list: %d %s", rec.Code, rec.Body)
	}
	// The range may be sent with its slash as is or escaped.
	if rec := send(t, sock, "DELETE", "/admin/v1/blocklist/192.0.2.0/24", "", from("@")); rec.Code != http.StatusNoContent {
		t.Fatalf("remove: %d %s", rec.Code, rec.Body)
	}
	if rec := send(t, sock, "DELETE", "/admin/v1/blocklist/192.0.2.0%2F24", "", from("@")); rec.Code != http.StatusNotFound {
		t.Fatalf("second remove: %d %s", rec.Code, rec.Body)
	}

	// The API's routes: admin Bearer; the actor is the admin.
	env := newAuthEnv(t, Options{Blocklist: bl})
	if rec := send(t, env.h, "POST", "/v1/admin/blocklist", `{"cidr":"2001:db8::/48"}`, bearerOf("alice-token")); rec.Code != http.StatusCreated {
		t.Fatalf("API add: %d %s", rec.Code, rec.Body)
	}
	if got := bl.infos[len(bl.infos)-1].Actor; got != "id-alice" {
		t.Fatalf("API add's actor %q", got)
	}
	if rec := send(t, env.h, "GET", "/v1/admin/blocklist", "", bearerOf("alice-token")); rec.Code != 200 {
		t.Fatalf("API list: %d %s", rec.Code, rec.Body)
	}
	if rec := send(t, env.h, "DELETE", "/v1/admin/blocklist/2001:db8::%2F48", "", bearerOf("alice-token")); rec.Code != http.StatusNoContent {
		t.Fatalf("API remove: %d %s", rec.Code, rec.Body)
	}
	if rec := send(t, env.h, "GET", "/v1/admin/blocklist", "", bearerOf("bob-token")); rec.Code != http.StatusForbidden {
		t.Fatalf("a plain user lists blocks: %d", rec.Code)
	}
}
