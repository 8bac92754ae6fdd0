package api

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// rlClock is a fake clock for the rate limiter: it moves only when told.
type rlClock struct {
	mu sync.Mutex
	t  time.Time
}

func newRLClock() *rlClock { return &rlClock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *rlClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *rlClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// rlReq is a request from remote (host:port) carrying the given
// X-Forwarded-For lines.
func rlReq(remote string, xff ...string) *http.Request {
	r := httptest.NewRequest("POST", "/v1/auth/login", nil)
	r.RemoteAddr = remote
	for _, v := range xff {
		r.Header.Add("X-Forwarded-For", v)
	}
	return r
}

// allowN calls AllowIP n times and fails unless every call is served.
func allowN(t *testing.T, l *RateLimiter, r *http.Request, n int) {
	t.Helper()
	for i := range n {
		if ok, d := l.AllowIP(r); !ok {
			t.Fatalf("request %d of %d from %s refused (retry after %v)", i+1, n, r.RemoteAddr, d)
		}
	}
}

// refused fails unless AllowIP refuses r with a Retry-After of at least a
// second, and returns it.
func refused(t *testing.T, l *RateLimiter, r *http.Request) time.Duration {
	t.Helper()
	ok, d := l.AllowIP(r)
	if ok {
		t.Fatalf("request from %s (X-Forwarded-For %q) served, want refused", r.RemoteAddr, r.Header.Values("X-Forwarded-For"))
	}
	if d < time.Second || d%time.Second != 0 {
		t.Fatalf("retry after %v, want whole seconds, at least one", d)
	}
	return d
}

func TestRateLimitBurstThenRefuse(t *testing.T) {
	clk := newRLClock()
	l := NewRateLimiter(RateLimitConfig{PerIP: 1, PerIPBurst: 5, Now: clk.Now})
	r := rlReq("198.51.100.1:1234")
	allowN(t, l, r, 5)
	if d := refused(t, l, r); d != time.Second {
		t.Errorf("retry after %v, want 1s", d)
	}
	clk.Advance(time.Second)
	allowN(t, l, r, 1)
	refused(t, l, r)
}

func TestRateLimitRefill(t *testing.T) {
	clk := newRLClock()
	l := NewRateLimiter(RateLimitConfig{PerIP: 2, PerIPBurst: 3, Now: clk.Now})
	r := rlReq("198.51.100.1:1234")
	allowN(t, l, r, 3)
	refused(t, l, r)
	clk.Advance(500 * time.Millisecond) // one token at 2/s
	allowN(t, l, r, 1)
	refused(t, l, r)
	clk.Advance(time.Hour) // refills to the burst, no further
	allowN(t, l, r, 3)
	refused(t, l, r)
}

// TestRateLimitRefusedCostsNothing: a client hammering while refused does
// not push its own wait further out (the reservation is cancelled).
func TestRateLimitRefusedCostsNothing(t *testing.T) {
	clk := newRLClock()
	l := NewRateLimiter(RateLimitConfig{PerIP: 1, PerIPBurst: 1, Now: clk.Now})
	r := rlReq("198.51.100.1:1234")
	allowN(t, l, r, 1)
	for range 100 {
		if d := refused(t, l, r); d != time.Second {
			t.Fatalf("retry after %v, want 1s", d)
		}
	}
	clk.Advance(time.Second)
	allowN(t, l, r, 1)
}

// TestRateLimitRetryAfter: the wait is rounded up to whole seconds and a
// client that waits that long is served.
func TestRateLimitRetryAfter(t *testing.T) {
	tests := []struct {
		perSecond float64
		want      time.Duration
	}{
		{10, time.Second},      // 100ms
		{1, time.Second},       // exactly 1s
		{0.3, 4 * time.Second}, // 3.33s
		{0.1, 10 * time.Second},
		{1.0 / 3600, time.Hour},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.perSecond), func(t *testing.T) {
			clk := newRLClock()
			l := NewRateLimiter(RateLimitConfig{PerIP: tt.perSecond, PerIPBurst: 1, Now: clk.Now})
			r := rlReq("198.51.100.1:1234")
			allowN(t, l, r, 1)
			d := refused(t, l, r)
			if d != tt.want {
				t.Fatalf("retry after %v, want %v", d, tt.want)
			}
			clk.Advance(d - time.Millisecond)
			if tt.want == time.Duration(float64(time.Second)/tt.perSecond) {
				refused(t, l, r) // exact: a moment earlier is too early
			}
			clk.Advance(time.Millisecond)
			allowN(t, l, r, 1)
		})
	}
}

// TestRateLimitDefaults: API.md promises that the default limits (per_ip
// 10/s burst 30, per_username 5/s burst 10) serve an operator's scripts: a
// burst of 30 from one address, and 60 logins spread over a minute.
func TestRateLimitDefaults(t *testing.T) {
	defaults := func(now func() time.Time) RateLimitConfig {
		return RateLimitConfig{PerIP: 10, PerIPBurst: 30, PerUsername: 5, PerUsernameBurst: 10, Now: now}
	}
	t.Run("burst of 30", func(t *testing.T) {
		clk := newRLClock()
		l := NewRateLimiter(defaults(clk.Now))
		h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
		for i := range 30 {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, rlReq("198.51.100.1:1234"))
			if rec.Code != http.StatusNoContent {
				t.Fatalf("request %d: status %d, want 204", i+1, rec.Code)
			}
			// Thirty scripts' names, each within its own burst.
			if ok, _ := l.AllowUsername(fmt.Sprintf("svc%d", i%3)); !ok {
				t.Fatalf("login %d refused by the per-name limit", i+1)
			}
		}
	})
	t.Run("60 a minute", func(t *testing.T) {
		clk := newRLClock()
		l := NewRateLimiter(defaults(clk.Now))
		r := rlReq("198.51.100.1:1234")
		for i := range 60 {
			allowN(t, l, r, 1)
			if ok, _ := l.AllowUsername("svc"); !ok {
				t.Fatalf("login %d refused by the per-name limit", i+1)
			}
			clk.Advance(time.Second)
		}
	})
	t.Run("60 at once after a pause", func(t *testing.T) {
		// The script's 60 a minute in two bursts of 30, 30s apart.
		clk := newRLClock()
		l := NewRateLimiter(defaults(clk.Now))
		r := rlReq("198.51.100.1:1234")
		allowN(t, l, r, 30)
		clk.Advance(30 * time.Second)
		allowN(t, l, r, 30)
	})
}

func TestRateLimitExempt(t *testing.T) {
	clk := newRLClock()
	l := NewRateLimiter(RateLimitConfig{
		PerIP: 1, PerIPBurst: 1, Now: clk.Now,
		Exempt:         []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8:1::/48")},
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	})
	for _, r := range []*http.Request{
		rlReq("192.0.2.7:1234"),
		rlReq("[2001:db8:1:ff::9]:1234"),
		rlReq("[::ffff:192.0.2.8]:1234"),                 // mapped IPv4
		rlReq("10.0.0.1:1234", "192.0.2.9"),              // behind a trusted proxy
		rlReq("10.0.0.1:1234", "203.0.113.1, 192.0.2.9"), // spoofed entry to the left
	} {
		allowN(t, l, r, 100)
	}
	if ip, _ := l.size(); ip != 0 {
		t.Errorf("exempt clients left %d buckets, want 0", ip)
	}
	// The exemption is not the proxy's or the claimed address's to grant.
	allowN(t, l, rlReq("198.51.100.1:1234"), 1)
	refused(t, l, rlReq("198.51.100.1:1234"))
	allowN(t, l, rlReq("198.51.100.2:1234", "192.0.2.9"), 1) // untrusted peer's claim is ignored
	refused(t, l, rlReq("198.51.100.2:1234", "192.0.2.9"))
}

// TestRateLimitForwardedFor: X-Forwarded-For picks the bucket only when a
// trusted proxy sent it; anyone else claiming a new address each time
// still drains their own bucket.
func TestRateLimitForwardedFor(t *testing.T) {
	clk := newRLClock()
	l := NewRateLimiter(RateLimitConfig{PerIP: 1, PerIPBurst: 3, Now: clk.Now,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})

	for i := range 3 {
		allowN(t, l, rlReq("203.0.113.5:1234", fmt.Sprintf("198.51.100.%d", i)), 1)
	}
	refused(t, l, rlReq("203.0.113.5:1234", "198.51.100.99"))
	refused(t, l, rlReq("203.0.113.5:4321")) // same host, other port

	// Behind the trusted proxy each client has its own bucket, and the
	// proxy's own address is not one shared by all of them.
	allowN(t, l, rlReq("10.0.0.1:1234", "198.51.100.1"), 3)
	refused(t, l, rlReq("10.0.0.1:1234", "198.51.100.1"))
	refused(t, l, rlReq("10.0.0.2:1234", "6.6.6.6, 198.51.100.1")) // spoofed left entry, other proxy
	allowN(t, l, rlReq("10.0.0.1:1234", "198.51.100.2"), 3)
	allowN(t, l, rlReq("10.0.0.1:1234"), 3) // the proxy itself, no header
}

func TestRateLimitIPv6Prefix(t *testing.T) {
	clk := newRLClock()
	l := NewRateLimiter(RateLimitConfig{PerIP: 1, PerIPBurst: 2, Now: clk.Now})
	allowN(t, l, rlReq("[2001:db8:1:2::1]:1"), 1)
	allowN(t, l, rlReq("[2001:db8:1:2:ffff:ffff:ffff:ffff]:1"), 1)
	refused(t, l, rlReq("[2001:db8:1:2:abcd::9]:1"))
	allowN(t, l, rlReq("[2001:db8:1:3::1]:1"), 2) // the next /64
}

func TestRateLimitKeys(t *testing.T) {
	tests := []struct {
		a, b string
		same bool
	}{
		{"[2001:db8:1:2::1]:1", "[2001:db8:1:2:ffff::9]:1", true},
		{"[2001:db8:1:2::1]:1", "[2001:db8:1:3::1]:1", false},
		{"198.51.100.1:1", "[::ffff:198.51.100.1]:2", true},
		{"198.51.100.1:1", "198.51.100.2:1", false},
		{"[fe80::1%eth0]:1", "[fe80::2%eth1]:1", true},
		{"@", "", true}, // no IP: one shared bucket
		{"@", "198.51.100.1:1", false},
	}
	for _, tt := range tests {
		t.Run(tt.a+" "+tt.b, func(t *testing.T) {
			clk := newRLClock()
			l := NewRateLimiter(RateLimitConfig{PerIP: 1, PerIPBurst: 1, Now: clk.Now})
			allowN(t, l, rlReq(tt.a), 1)
			ok, _ := l.AllowIP(rlReq(tt.b))
			if ok == tt.same {
				t.Errorf("%s then %s: served %v, want same bucket %v", tt.a, tt.b, ok, tt.same)
			}
		})
	}
}

// TestRateLimitUsername: the per-name limit is its own: a name's bucket
// does not care which address tries it, and an address's does not care
// which names it tries.
func TestRateLimitUsername(t *testing.T) {
	clk := newRLClock()
	l := NewRateLimiter(RateLimitConfig{PerIP: 1, PerIPBurst: 1, PerUsername: 0.5, PerUsernameBurst: 2, Now: clk.Now})
	allowN(t, l, rlReq("198.51.100.1:1"), 1)
	refused(t, l, rlReq("198.51.100.1:1"))
	for i := range 2 {
		if ok, d := l.AllowUsername("alice"); !ok {
			t.Fatalf("alice try %d refused (retry after %v)", i+1, d)
		}
	}
	ok, d := l.AllowUsername("alice")
	if ok || d != 2*time.Second {
		t.Fatalf("alice third try: %v, retry after %v; want refused, 2s", ok, d)
	}
	if ok, _ := l.AllowUsername("bob"); !ok {
		t.Error("bob refused because of alice")
	}
	if ok, _ := l.AllowUsername("Alice"); !ok {
		t.Error(`"Alice" refused: the caller normalises, the limiter must not`)
	}
	allowN(t, l, rlReq("198.51.100.2:1"), 1)
	clk.Advance(2 * time.Second)
	if ok, _ := l.AllowUsername("alice"); !ok {
		t.Error("alice refused after waiting")
	}
}

func TestRateLimitOff(t *testing.T) {
	tests := []struct {
		name string
		cfg  RateLimitConfig
		ip   bool // per-IP limit on
		user bool
	}{
		{"both off", RateLimitConfig{PerIPBurst: 1, PerUsernameBurst: 1}, false, false},
		{"ip off", RateLimitConfig{PerIPBurst: 1, PerUsername: 1, PerUsernameBurst: 1}, false, true},
		{"user off", RateLimitConfig{PerIP: 1, PerIPBurst: 1, PerUsernameBurst: 1}, true, false},
		{"negative", RateLimitConfig{PerIP: -1, PerIPBurst: 1, PerUsername: -1, PerUsernameBurst: 1}, false, false},
		{"zero burst is one", RateLimitConfig{PerIP: 1, PerUsername: 1}, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newRLClock()
			tt.cfg.Now = clk.Now
			l := NewRateLimiter(tt.cfg)
			h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
			ipServed, userServed := 0, 0
			for range 50 {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, rlReq("198.51.100.1:1"))
				if rec.Code == http.StatusOK {
					ipServed++
				}
				if ok, _ := l.AllowUsername("alice"); ok {
					userServed++
				}
			}
			if want := map[bool]int{true: 1, false: 50}; ipServed != want[tt.ip] || userServed != want[tt.user] {
				t.Errorf("served %d by address and %d by name, want %d and %d",
					ipServed, userServed, want[tt.ip], want[tt.user])
			}
			if ip, user := l.size(); !tt.ip && ip != 0 || !tt.user && user != 0 {
				t.Errorf("a limit that is off keeps buckets: %d, %d", ip, user)
			}
		})
	}
}

func TestRateLimitMiddleware429(t *testing.T) {
	clk := newRLClock()
	l := NewRateLimiter(RateLimitConfig{PerIP: 0.3, PerIPBurst: 2, Now: clk.Now})
	calls := 0
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.WriteHeader(http.StatusNoContent)
	}))
	for range 2 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, rlReq("198.51.100.1:1"))
		if rec.Code != http.StatusNoContent {
			t.Fatalf("status %d, want 204", rec.Code)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, rlReq("198.51.100.1:1"))
	checkError(t, rec, http.StatusTooManyRequests, CodeTooManyAttempts)
	if got := rec.Header().Get("Retry-After"); got != "4" {
		t.Errorf("Retry-After %q, want 4 (3.33s rounded up)", got)
	}
	if calls != 2 {
		t.Errorf("next called %d times, want 2", calls)
	}

	// Behind the whole middleware chain as well.
	chain := newRouter(Options{}, func(mux *http.ServeMux) {
		mux.Handle("POST /v1/auth/login", l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	})
	rec = httptest.NewRecorder()
	chain.ServeHTTP(rec, rlReq("198.51.100.1:1"))
	checkError(t, rec, http.StatusTooManyRequests, CodeTooManyAttempts)
	if rec.Header().Get("Retry-After") == "" {
		t.Error("no Retry-After through the chain")
	}
}

// TestRateLimitMemoryBound: a flood of distinct addresses (or names) never
// holds more than MaxKeys buckets, even when none of them has refilled.
func TestRateLimitMemoryBound(t *testing.T) {
	const maxKeys = 1000
	clk := newRLClock()
	l := NewRateLimiter(RateLimitConfig{PerIP: 1, PerIPBurst: 5, PerUsername: 1, PerUsernameBurst: 5,
		MaxKeys: maxKeys, Now: clk.Now})
	r := &http.Request{}
	for i := range 100_500 {
		if i%2 == 0 {
			r.RemoteAddr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{100, byte(i >> 16), byte(i >> 8), byte(i)}), 1).String()
		} else {
			a := [16]byte{0x20, 0x01, 0x0d, 0xb8, 0, byte(i >> 16), byte(i >> 8), byte(i), 15: 1}
			r.RemoteAddr = netip.AddrPortFrom(netip.AddrFrom16(a), 1).String()
		}
		if ok, _ := l.AllowIP(r); !ok {
			t.Fatalf("address %d (%s) refused on its first request", i, r.RemoteAddr)
		}
		if i%2 == 0 { // half as many names: the same code, half the time
			l.AllowUsername(fmt.Sprint("user", i))
		}
		if i%97 == 0 {
			if ip, user := l.size(); ip > maxKeys || user > maxKeys {
				t.Fatalf("after %d keys: %d address and %d name buckets, want at most %d", i+1, ip, user, maxKeys)
			}
		}
		if i%1000 == 0 {
			clk.Advance(time.Millisecond) // so "least recently seen" means something
		}
	}
	if ip, user := l.size(); ip > maxKeys || user > maxKeys {
		t.Fatalf("%d address and %d name buckets, want at most %d", ip, user, maxKeys)
	}
}

// TestRateLimitDefaultMaxKeys: MaxKeys zero means the documented default
// (the flood above proves the bound itself with a smaller one).
func TestRateLimitDefaultMaxKeys(t *testing.T) {
	l := NewRateLimiter(RateLimitConfig{PerIP: 1, PerUsername: 1})
	if l.ip.maxKeys != 100_000 || l.user.maxKeys != 100_000 {
		t.Errorf("MaxKeys %d and %d, want 100000", l.ip.maxKeys, l.user.maxKeys)
	}
}

// TestRateLimitSweep: refilled buckets go without pressure on MaxKeys, and
// a bucket that is still draining stays (dropping it would hand the client
// a fresh burst).
func TestRateLimitSweep(t *testing.T) {
	clk := newRLClock()
	l := NewRateLimiter(RateLimitConfig{PerIP: 1, PerIPBurst: 10, Now: clk.Now})
	limited := rlReq("198.51.100.1:1")
	allowN(t, l, limited, 10)
	r := &http.Request{}
	for i := range 5000 {
		r.RemoteAddr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)}), 1).String()
		allowN(t, l, r, 1)
	}
	clk.Advance(2 * time.Second) // the 5000 are full again; the limited one has 2 tokens
	other := rlReq("203.0.113.1:1")
	for range 5001 {
		l.AllowIP(other)
	}
	if ip, _ := l.size(); ip != 2 {
		t.Errorf("%d buckets after the sweep, want 2 (the limited and the busy one)", ip)
	}
	allowN(t, l, limited, 2)
	refused(t, l, limited)
}

// TestRateLimitConcurrent: under -race, many goroutines on shared and
// distinct keys; a shared key serves exactly its burst while the clock
// stands still.
func TestRateLimitConcurrent(t *testing.T) {
	const burst = 7
	clk := newRLClock()
	l := NewRateLimiter(RateLimitConfig{PerIP: 1, PerIPBurst: burst, PerUsername: 1, PerUsernameBurst: burst, Now: clk.Now})
	var (
		wg                   sync.WaitGroup
		mu                   sync.Mutex
		ipServed, nameServed int
	)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			shared := rlReq("198.51.100.1:1")
			own := &http.Request{}
			for i := range 500 {
				ok, _ := l.AllowIP(shared)
				okName, _ := l.AllowUsername("shared")
				mu.Lock()
				if ok {
					ipServed++
				}
				if okName {
					nameServed++
				}
				mu.Unlock()
				own.RemoteAddr = fmt.Sprintf("100.%d.%d.%d:1", g, i>>8, i&0xff)
				l.AllowIP(own)
				l.AllowUsername(fmt.Sprint(g, "-", i))
			}
		}()
	}
	wg.Wait()
	if ipServed != burst || nameServed != burst {
		t.Errorf("shared keys served %d and %d times, want %d", ipServed, nameServed, burst)
	}
}

// TestRateLimitConcurrentEviction: under -race, a flood from several
// goroutines with a small MaxKeys, sweeping and evicting as it goes.
func TestRateLimitConcurrentEviction(t *testing.T) {
	const maxKeys = 64
	clk := newRLClock()
	l := NewRateLimiter(RateLimitConfig{PerIP: 1, PerIPBurst: 2, PerUsername: 1, PerUsernameBurst: 2,
		MaxKeys: maxKeys, Now: clk.Now})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &http.Request{}
			for i := range 1000 {
				r.RemoteAddr = fmt.Sprintf("100.%d.%d.%d:1", g, i>>8, i&0xff)
				l.AllowIP(r)
				l.AllowUsername(fmt.Sprint(g, "-", i%300))
				if i%100 == 0 {
					clk.Advance(100 * time.Millisecond)
				}
				if ip, user := l.size(); ip > maxKeys || user > maxKeys {
					t.Errorf("%d and %d buckets, want at most %d", ip, user, maxKeys)
					return
				}
			}
		}()
	}
	wg.Wait()
}
