package api

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strings"
	"time"
)

// securityHeaders go on every response, errors and 404s included. An API
// answer is never framed, sniffed, cached or allowed to load anything.
// Handlers that serve something else (the JWKS may be cached, login pages
// need styles) override the header they must.
var securityHeaders = [][2]string{
	{"Strict-Transport-Security", "max-age=63072000; includeSubDomains"},
	{"X-Content-Type-Options", "nosniff"},
	{"X-Frame-Options", "DENY"},
	{"Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"},
	{"Referrer-Policy", "no-referrer"},
	{"Cache-Control", "no-store"},
	{"Cross-Origin-Opener-Policy", "same-origin"},
	{"Cross-Origin-Resource-Policy", "same-origin"},
	{"Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()"},
}

// defaultMaxBodyBytes bounds a request body when Options leaves it zero
// (API.md's api.max_body_bytes default).
const defaultMaxBodyBytes = 64 << 10

// scope is what the middleware knows about one request and the functions
// below it need: the request id, a logger carrying it, and the limits and
// error mapping of the surface the request arrived on.
type scope struct {
	id         string
	log        *slog.Logger // &logger
	maxBody    int64
	isNoLeader func(error) bool
	// route is the pattern the request matched, for the metrics; ""
	// until the router finds one (none: a 404 or 405).
	route string

	// logger and withID are log's storage, in the one allocation of the
	// scope: Logger.With would cost six more per request, most of which
	// log nothing (reads log at debug).
	logger slog.Logger
	withID idHandler
}

// idHandler adds the request id to every record, first, as
// Logger.With("request_id", id) would, but only when a record is logged.
type idHandler struct {
	h  slog.Handler
	id string
}

func (h *idHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.h.Enabled(ctx, l) }

func (h *idHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	out.AddAttrs(slog.String("request_id", h.id))
	r.Attrs(func(a slog.Attr) bool { out.AddAttrs(a); return true })
	return h.h.Handle(ctx, out)
}

func (h *idHandler) WithAttrs(as []slog.Attr) slog.Handler { return h.with().WithAttrs(as) }

func (h *idHandler) WithGroup(name string) slog.Handler { return h.with().WithGroup(name) }

// with is the handler with the id as a preformatted attribute, for a
// logger derived from the request's.
func (h *idHandler) with() slog.Handler {
	return h.h.WithAttrs([]slog.Attr{slog.String("request_id", h.id)})
}

// newScope returns the scope of a request with id.
func (m *middleware) newScope(id string) *scope {
	sc := &scope{id: id, maxBody: m.maxBody, isNoLeader: m.isNoLeader}
	sc.withID = idHandler{h: m.log.Handler(), id: id}
	sc.logger = *slog.New(&sc.withID)
	sc.log = &sc.logger
	return sc
}

type scopeKey struct{}

// scopeOf returns the request's scope; a request that bypassed the
// middleware (a unit test) gets safe defaults.
func scopeOf(r *http.Request) *scope {
	if sc, ok := r.Context().Value(scopeKey{}).(*scope); ok {
		return sc
	}
	return &scope{id: "-", log: discardLogger(), maxBody: defaultMaxBodyBytes}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// middleware wraps a router with what every response gets: security
// headers, a request id, panic recovery and one log line; and refuses
// blocked client addresses (blocklist.go).
type middleware struct {
	next       http.Handler
	log        *slog.Logger
	trusted    []netip.Prefix
	maxBody    int64
	isNoLeader func(error) bool
	metrics    *Metrics  // nil: requests are not counted
	blocks     Blocklist // nil: no address is refused
}

func (m *middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 2 {
		growStack(r.ContentLength)
	}
	start := time.Now()
	id := newRequestID()
	h := w.Header()
	// One allocation for the values of every header set here, each its
	// own one-element slice (Header.Set would allocate each apart).
	vals := make([]string, len(securityHeaders)+1)
	for i, kv := range securityHeaders {
		vals[i] = kv[1]
		h[kv[0]] = vals[i : i+1 : i+1]
	}
	vals[len(securityHeaders)] = id
	h["X-Request-Id"] = vals[len(securityHeaders):]
	sc := m.newScope(id)
	r = r.WithContext(context.WithValue(r.Context(), scopeKey{}, sc))
	rec := &recorder{ResponseWriter: w}

	defer func() {
		v := recover()
		if v != nil && v != http.ErrAbortHandler {
			sc.log.Error("panic serving request", "method", r.Method, "path", r.URL.Path,
				"panic", v, "stack", string(debug.Stack()))
			if !rec.wroteHeader {
				writeError(rec, r, internalError(sc))
				v = nil // answered
			} else {
				v = http.ErrAbortHandler // too late for an answer: cut the connection
			}
		}
		took := time.Since(start)
		m.logRequest(sc, r, rec, took)
		if m.metrics != nil {
			m.metrics.observeRequest(cmp.Or(sc.route, "other"), rec.statusCode(), took)
		}
		if v != nil {
			panic(v)
		}
	}()
	if m.refuseBlocked(rec, r) {
		return
	}
	m.next.ServeHTTP(rec, r)
}

// logRequest writes the access log line. It never logs the query string,
// headers or bodies: they carry passwords, codes and tokens.
func (m *middleware) logRequest(sc *scope, r *http.Request, rec *recorder, d time.Duration) {
	status := rec.statusCode()
	level := requestLogLevel(r.Method, status)
	if !sc.log.Enabled(r.Context(), level) {
		return
	}
	ip := ""
	if a := clientIP(r, m.trusted); a.IsValid() {
		ip = a.String()
	}
	sc.log.Log(r.Context(), level, "request", "method", r.Method, "path", r.URL.Path, "status", status,
		"bytes", rec.bytes, "duration", d, "remote_ip", ip)
}

// requestLogLevel is the level of a request's access log line: debug for
// a read that succeeded (token checks at /v1/me, the JWKS, health and
// readiness probes: most of the traffic, and a write to the journal each,
// 6% of the node's /v1/me throughput), info for every write and every
// failure. Security events go to the audit trail whatever the level.
func requestLogLevel(method string, status int) slog.Level {
	if (method == http.MethodGet || method == http.MethodHead) && status < 400 {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// recorder notes the status and size of a response for the log.
type recorder struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

// statusCode is the status answered: 200 if the handler wrote nothing.
func (rw *recorder) statusCode() int {
	if !rw.wroteHeader {
		return http.StatusOK
	}
	return rw.status
}

func (rw *recorder) WriteHeader(code int) {
	if !rw.wroteHeader && code >= 200 { // 1xx answers are not the final status
		rw.status, rw.wroteHeader = code, true
	}
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *recorder) Write(b []byte) (int, error) {
	if !rw.wroteHeader {
		rw.status, rw.wroteHeader = http.StatusOK, true
	}
	n, err := rw.ResponseWriter.Write(b)
	rw.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the real writer (flush,
// deadlines).
func (rw *recorder) Unwrap() http.ResponseWriter { return rw.ResponseWriter }

// growStackBytes is the stack frame growStack occupies: from the top of
// a request's goroutine, enough that its stack ends up at 8 KiB, which
// /v1/me's handlers fit in.
const growStackBytes = 4 << 10

// growStack grows the calling goroutine's stack, while it is shallow, to
// what a request's handlers need. net/http's HTTP/2 server runs every
// request (stream) on a fresh goroutine, whose stack starts at the
// runtime's average (4 KiB here); /v1/me then outgrew it about 20 frames
// down (in the token check, inside a bbolt read transaction), and the
// runtime copied the stack and adjusted every frame: 9-13% of the node's
// CPU per request over one HTTP/2 connection. Grown here, five frames
// deep, the copy is cheap, and once. A stack already as large is left
// alone; the zeroed frame costs about as much as copying 4 KiB.
//
//go:noinline
func growStack(i int64) byte {
	var buf [growStackBytes]byte
	return buf[uint64(i)%growStackBytes] // read, so the frame is not optimised away
}

// newRequestID returns 128 random bits in hex.
func newRequestID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand crashes the program instead)
	return hex.EncodeToString(b[:])
}

// clientIP returns the address of the client that sent r. X-Forwarded-For
// is believed only when the direct peer is one of the trusted proxies; then
// the answer is the rightmost address in it that is not itself trusted
// (every address to its right was appended by a proxy we trust; anything
// to its left the client could have written). If every listed address is
// trusted, the leftmost is the client. An entry that does not parse ends
// the walk: the last trusted hop is the best we can vouch for. The zero
// Addr means the peer has no IP (a Unix socket).
func clientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer := parseHost(r.RemoteAddr)
	if !peer.IsValid() || !isTrusted(peer, trusted) {
		return peer
	}
	values := r.Header.Values("X-Forwarded-For")
	if len(values) == 0 {
		return peer
	}
	// Several header lines form one list, in order.
	hops := strings.Split(strings.Join(values, ","), ",")
	last := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a := parseHost(strings.TrimSpace(hops[i]))
		if !a.IsValid() {
			return last
		}
		if !isTrusted(a, trusted) {
			return a
		}
		last = a
	}
	return last
}

// parseHost reads an address with or without a port ("192.0.2.1",
// "192.0.2.1:443", "[2001:db8::1]:443", "2001:db8::1"), unmapping IPv4 in
// IPv6 and dropping any zone.
func parseHost(s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return netip.Addr{}
		}
		a = ap.Addr()
	}
	return a.Unmap().WithZone("")
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
