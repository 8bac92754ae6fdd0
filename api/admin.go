package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/bulwark-auth/bulwark/authcore"
)

// The admin socket is the local operator's door: `bulwark user add` and the
// other admin commands speak JSON over HTTP to it. No TLS and no
// credentials: access is the socket file's mode (0600, in a directory the
// daemon owns) and, behind it, the peer's uid read from the kernel with
// SO_PEERCRED, which must be root or the daemon's own.

// ListenOption adjusts ListenAdmin.
type ListenOption func(*adminListener)

// ListenLogger sets where refused peers are reported; without it they go
// to slog.Default(), since a refused local peer is worth a warning.
func ListenLogger(l *slog.Logger) ListenOption {
	return func(al *adminListener) {
		if l != nil {
			al.log = l
		}
	}
}

// withAllowedUIDs replaces the uids allowed to connect (tests).
func withAllowedUIDs(uids ...uint32) ListenOption {
	return func(al *adminListener) { al.allowed = uids }
}

// ListenAdmin listens on the admin Unix socket at path. It creates a
// missing parent directory with mode 0700, replaces a stale socket left by
// a dead daemon (a socket file nobody answers on) and refuses to touch
// anything else at path: a live socket ("another bulwark is using path")
// or a file that is not a socket. The socket appears at path already with
// mode 0600, whatever the umask. Accepted connections from a peer whose uid
// is neither 0 nor the daemon's effective uid are closed at once and
// logged. Closing the listener removes the socket file if it is still
// this listener's.
func ListenAdmin(path string, opts ...ListenOption) (net.Listener, error) {
	al := &adminListener{path: path, log: slog.Default(), allowed: []uint32{0, uint32(os.Geteuid())}}
	for _, o := range opts {
		o(al)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("admin socket directory: %w", err)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	ul, err := listenPrivate(path)
	if err != nil {
		return nil, err
	}
	fi, err := os.Lstat(path)
	if err != nil {
		ul.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	al.UnixListener, al.file = ul, fi
	return al, nil
}

// removeStaleSocket clears path for a new socket if what is there is a
// socket no process is listening on.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("admin socket: %s exists and is not a socket; refusing to replace it", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("another bulwark is using %s", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("admin socket: cannot tell whether %s is in use: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("admin socket: removing stale %s: %w", path, err)
	}
	return nil
}

// maxSocketPath is the room in sockaddr_un.sun_path, less its NUL.
const maxSocketPath = 107

// listenPrivate binds path so that it is never reachable with a looser
// mode than 0600: the socket is made in a fresh 0700 directory next to
// path, chmodded there, then hard-linked into place (which, unlike rename,
// fails if someone else took path meanwhile). Changing the umask instead
// would race with every other goroutine creating files. If the temporary
// name would not fit in a socket address, it binds path directly and
// chmods at once; connecting needs write permission, which no sane umask
// grants to others, and the peer check stands behind the mode anyway.
func listenPrivate(path string) (*net.UnixListener, error) {
	dir, err := os.MkdirTemp(filepath.Dir(path), ".admin-sock-")
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	if len(tmp) > maxSocketPath {
		return listenAndChmod(path)
	}
	ul, err := listenAndChmod(tmp)
	if err != nil {
		return nil, err
	}
	ul.SetUnlinkOnClose(false) // the listener's own name is tmp; Close handles path
	if err := os.Link(tmp, path); err != nil {
		ul.Close()
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("another bulwark is using %s", path)
		}
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	return ul, nil
}

func listenAndChmod(path string) (*net.UnixListener, error) {
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ul.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	return ul, nil
}

// adminListener accepts only peers whose uid is allowed.
type adminListener struct {
	*net.UnixListener
	path    string
	file    fs.FileInfo // the socket file, to recognise it at Close
	log     *slog.Logger
	allowed []uint32
	once    sync.Once
}

// Accept returns the next connection from an allowed peer. Refused peers
// are closed and logged here, never returned, so http.Server keeps serving.
func (l *adminListener) Accept() (net.Conn, error) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return nil, err
		}
		uid, pid, err := peerCred(c)
		if err != nil {
			l.log.Warn("admin socket: cannot read the peer's credentials; connection closed", "error", err)
			c.Close()
			continue
		}
		if !l.allows(uid) {
			l.log.Warn("admin socket: refused a peer that is neither root nor the daemon's user",
				"uid", uid, "pid", pid, "socket", l.path)
			c.Close()
			continue
		}
		return c, nil
	}
}

func (l *adminListener) allows(uid uint32) bool {
	for _, a := range l.allowed {
		if uid == a {
			return true
		}
	}
	return false
}

// Close stops listening and removes the socket file if it is still ours.
func (l *adminListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		if fi, e := os.Lstat(l.path); e == nil && os.SameFile(fi, l.file) {
			os.Remove(l.path)
		}
	})
	return err
}

// AdminOption adjusts NewAdminHandler.
type AdminOption func(*Options)

// AdminIsNoLeader teaches the admin handler which errors mean no cluster
// leader is known (503 no_leader), as Options.IsNoLeader does for the API.
func AdminIsNoLeader(fn func(error) bool) AdminOption {
	return func(o *Options) { o.IsNoLeader = fn }
}

// NewAdminHandler returns the admin socket's handler: the same middleware,
// error format and strict decoding as the API, over these routes:
//
//	POST   /admin/v1/users                        {"username","password","email","roles"} → 201 user
//	GET    /admin/v1/users                        → {"users":[…]}
//	GET    /admin/v1/users/{user}                 → user (name or id)
//	POST   /admin/v1/users/{user}/disable         → user
//	POST   /admin/v1/users/{user}/enable          → user
//	POST   /admin/v1/users/{user}/unflag          → user, its flag cleared
//	DELETE /admin/v1/users/{user}                 → 204
//	POST   /admin/v1/users/{user}/unlock          → 204 (any name: unknown names are counted too)
//	POST   /admin/v1/users/{user}/revoke-sessions → {"revoked":N}
//	POST   /admin/v1/users/{user}/reset-mfa       → {"sessions_revoked":N}: every second factor removed
//	GET    /admin/v1/incident                     → the lockdown state
//	POST   /admin/v1/incident/lockdown            → {"reason"} → the state and the forensic backup's path
//	POST   /admin/v1/incident/release             → the state
//	GET    /admin/v1/audit?after=SEQ&limit=N      → {"entries":[…]}
//	GET    /admin/v1/audit/verify                 → {"entries":N,"ok":true}, or 409
//	                                                audit_chain_broken naming the first bad seq
//	GET    /admin/v1/status                       → status() as JSON
//	GET    /admin/v1/backup                       → backup archive (AdminBackup)
//	POST   /admin/v1/datakey/escrow               → escrow the data key (AdminDataKey)
//	POST   /admin/v1/datakey/recovery-shares      → recovery shares, once (AdminDataKey)
//	GET    /admin/v1/cluster                      → members, leader, indexes (AdminCluster)
//	POST   /admin/v1/cluster/join-token           → a join token (AdminCluster)
//	POST   /admin/v1/cluster/remove/{id}          → remove a member (AdminCluster)
//	POST   /admin/v1/cluster/renew-cert           → renew this node's certificate (AdminCluster)
//	GET    /admin/v1/blocklist                    → {"blocks":[…]} (AdminBlocklist)
//	POST   /admin/v1/blocklist                    {"cidr","for","reason"} → 201 block (AdminBlocklist)
//	DELETE /admin/v1/blocklist/{cidr}             → 204 (AdminBlocklist)
//	GET    /admin/v1/scorecard                    → the hardening scorecard (AdminScorecard)
//	GET    /admin/v1/users/{user}/export          → everything held about the user (AdminDataSubject)
//	POST   /admin/v1/users/{user}/erase           → the erasure (AdminDataSubject)
//
// Every call reaches users and auth as the actor "local-admin".
func NewAdminHandler(users UserAdmin, auth Auth, status func() any, logger *slog.Logger, opts ...AdminOption) http.Handler {
	o := Options{Logger: logger}
	for _, fn := range opts {
		fn(&o)
	}
	a := &adminHandlers{users: users, auth: auth, status: status}
	ur := userRoutes{users: users, base: "/admin/v1/users/"}
	blocks := o.Blocklist
	o.Blocklist = nil // the socket's peers have no address to refuse
	return newRouter(o, func(mux *http.ServeMux) {
		mux.Handle("POST /admin/v1/users", local(ur.create))
		mux.Handle("GET /admin/v1/users", local(ur.list))
		mux.Handle("GET /admin/v1/users/{user}", local(ur.get))
		mux.Handle("POST /admin/v1/users/{user}/disable", local(a.setDisabled(true)))
		mux.Handle("POST /admin/v1/users/{user}/enable", local(a.setDisabled(false)))
		mux.Handle("POST /admin/v1/users/{user}/unflag", local(a.unflag))
		mux.Handle("DELETE /admin/v1/users/{user}", local(ur.delete))
		mux.Handle("POST /admin/v1/users/{user}/unlock", local(a.unlock))
		mux.Handle("POST /admin/v1/users/{user}/revoke-sessions", local(a.revokeSessions))
		mux.Handle("POST /admin/v1/users/{user}/reset-mfa", local(resetMFA(auth)))
		ir := incidentRoutes{auth: auth, forensics: o.Forensics}
		mux.Handle("GET /admin/v1/incident", local(ir.status))
		mux.Handle("POST /admin/v1/incident/lockdown", local(ir.lockdown))
		mux.Handle("POST /admin/v1/incident/release", local(ir.release))
		mux.Handle("GET /admin/v1/audit", local(a.audit))
		mux.Handle("GET /admin/v1/audit/verify", local(a.verifyAudit))
		mux.Handle("GET /admin/v1/status", local(a.getStatus))
		mux.Handle("GET /admin/v1/keys", local(a.listKeys))
		mux.Handle("POST /admin/v1/keys/rotate", local(a.rotateKey))
		// Backup: streams the archive; see AdminBackup (admin_backup.go).
		mux.Handle("GET /admin/v1/backup", local(adminBackupRoute(o.Backup)))
		// Data key escrow and recovery shares; see AdminDataKey (admin_escrow.go).
		adminDataKeyRoutes(mux, o.DataKey)
		// Cluster status, join tokens, removal; see AdminCluster (admin_cluster.go).
		adminClusterRoutes(mux, o.Cluster)
		// OpenID Connect clients; see AdminClients (oidc_admin.go).
		adminClientRoutes(mux, o.Clients)
		// The blocklist; see AdminBlocklist (blocklist.go).
		adminBlocklistRoutes(mux, blocks)
		if o.Scorecard != nil {
			mux.Handle("GET /admin/v1/scorecard", local(serveScorecard(o.Scorecard)))
		}
		// Export and erase; see AdminDataSubject (datasubject.go).
		adminDataSubjectRoutes(mux, o.DataSubject)
	})
}

// local serves h with the RequestInfo of the admin socket: no address,
// the client's User-Agent, the actor "local-admin".
func local(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h(w, withRequestInfo(r, nil, ActorLocalAdmin))
	}
}

type adminHandlers struct {
	users  UserAdmin
	auth   Auth
	status func() any
}

func (a *adminHandlers) setDisabled(disabled bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, err := a.users.SetDisabled(r.Context(), r.PathValue("user"), disabled)
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, r, http.StatusOK, u)
	}
}

func (a *adminHandlers) unflag(w http.ResponseWriter, r *http.Request) {
	u, err := a.users.Unflag(r.Context(), r.PathValue("user"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, u)
}

func (a *adminHandlers) unlock(w http.ResponseWriter, r *http.Request) {
	if err := a.auth.Unlock(r.Context(), r.PathValue("user")); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *adminHandlers) revokeSessions(w http.ResponseWriter, r *http.Request) {
	n, err := a.auth.RevokeUserSessions(r.Context(), r.PathValue("user"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, map[string]int{"revoked": n})
}

func (a *adminHandlers) audit(w http.ResponseWriter, r *http.Request) {
	serveAudit(w, r, a.auth)
}

// verifyAudit checks the whole trail. A broken chain is a 409 naming the
// first bad seq (the trail is in a state that needs a person); failing to
// read it at all is a 500 like any other.
func (a *adminHandlers) verifyAudit(w http.ResponseWriter, r *http.Request) {
	n, err := a.auth.VerifyAudit(r.Context())
	if ce, ok := errors.AsType[*authcore.AuditChainError](err); ok {
		writeError(w, r, &Error{Status: http.StatusConflict, Code: CodeAuditChainBroken,
			Description: fmt.Sprintf("audit chain broken at seq %d: %s (%d entries before it verify)", ce.Seq, ce.Reason, n)})
		return
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, map[string]any{"entries": n, "ok": true})
}

func (a *adminHandlers) getStatus(w http.ResponseWriter, r *http.Request) {
	var v any = struct{}{}
	if a.status != nil {
		v = a.status()
	}
	writeJSON(w, r, http.StatusOK, v)
}

// AdminClient is the admin commands' client for the admin socket.
type AdminClient struct {
	path string
	hc   *http.Client
}

// NewAdminClient returns a client for the admin socket at socketPath. Each
// request has at most 30 s.
func NewAdminClient(socketPath string) *AdminClient {
	return &AdminClient{
		path: socketPath,
		hc: &http.Client{
			Timeout: 30 * time.Second,
			Transport: &http.Transport{
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, "unix", socketPath)
				},
				DisableCompression: true,
				MaxIdleConns:       1,
				IdleConnTimeout:    10 * time.Second,
			},
		},
	}
}

// maxAdminResponse bounds an admin answer the client reads.
const maxAdminResponse = 64 << 20

// Do sends method path with in (when not nil) as its JSON body and decodes
// a 2xx answer's JSON into out (when not nil). A non-2xx answer is returned
// as an *Error holding the daemon's code and description; a socket that is
// missing, refuses, or is not ours to use gives an error saying so.
// path must be escaped already (url.PathEscape for names).
func (c *AdminClient) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("admin request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://bulwark-admin"+path, body)
	if err != nil {
		return fmt.Errorf("admin request: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.unreachable(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminResponse))
	if err != nil {
		return fmt.Errorf("reading bulwark's answer: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return answerError(resp, data)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("bulwark's answer to %s %s is not the JSON expected: %w", method, path, err)
	}
	return nil
}

// answerError builds the *Error of a non-2xx answer.
func answerError(resp *http.Response, data []byte) *Error {
	e := &Error{Status: resp.StatusCode}
	var eb errorBody
	if json.Unmarshal(data, &eb) == nil && eb.Error != "" {
		e.Code, e.Description = eb.Error, eb.Description
	} else {
		e.Code = "unexpected_response"
		e.Description = fmt.Sprintf("bulwark answered %s", resp.Status)
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	return e
}

// unreachable explains a failure to get any answer from the socket.
func (c *AdminClient) unreachable(err error) error {
	var op *net.OpError
	connected := !errors.As(err, &op) || op.Op != "dial"
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("bulwark at %s did not answer in time: %w", c.path, errno0(err))
	case !connected && (errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM)):
		return fmt.Errorf("cannot reach bulwark at %s: %w: run as root or the bulwark user", c.path, errno0(err))
	case !connected && (errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)):
		return fmt.Errorf("cannot reach bulwark at %s: is the daemon running? (%w)", c.path, errno0(err))
	case !connected:
		return fmt.Errorf("cannot reach bulwark at %s: %w", c.path, errno0(err))
	default:
		// Connected, then cut off without an answer: the daemon's peer
		// check, or the daemon stopping.
		return fmt.Errorf("cannot reach bulwark at %s: it closed the connection without answering; "+
			"run as root or the bulwark user (%w)", c.path, errno0(err))
	}
}

// errno0 returns the system error inside err, for a short message.
func errno0(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}

// listKeys answers {"keys":[…]}: every published signing key of every node.
func (a *adminHandlers) listKeys(w http.ResponseWriter, r *http.Request) {
	keys, err := a.auth.SigningKeys(r.Context())
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, map[string]any{"keys": keys})
}

// rotateKey makes a new signing key current on this node at once.
func (a *adminHandlers) rotateKey(w http.ResponseWriter, r *http.Request) {
	rot, err := a.auth.RotateSigningKey(r.Context())
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, rot)
}
