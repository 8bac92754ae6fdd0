package node

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/node/pki"
)

// Join tokens: their form, and how a CA holder makes one (join.go says
// what a token proves).

// JoinToken is a decoded join token.
type JoinToken struct {
	Addrs   []string  // cluster addresses of nodes holding the CA key
	Pin     string    // pki.Pin of the cluster CA
	Secret  []byte    // 32 random bytes
	Expires time.Time // whole seconds
}

type joinTokenWire struct {
	A []string `json:"a"`
	P string   `json:"p"`
	S string   `json:"s"`
	E int64    `json:"e"`
}

// String encodes the token.
func (t JoinToken) String() string {
	b, _ := json.Marshal(joinTokenWire{A: t.Addrs, P: t.Pin, S: base64.RawURLEncoding.EncodeToString(t.Secret), E: t.Expires.Unix()})
	return joinTokenPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// ParseJoinToken decodes and checks the shape of a join token. It does
// not check its expiry.
func ParseJoinToken(s string) (JoinToken, error) {
	bad := func(format string, args ...any) (JoinToken, error) {
		return JoinToken{}, &JoinError{Err: ErrJoinTokenMalformed,
			Msg: "the join token is malformed: " + fmt.Sprintf(format, args...) +
				" (copy the whole line `bulwark cluster join-token` printed)"}
	}
	s = strings.TrimSpace(s)
	if len(s) > maxJoinTokenLen {
		return bad("%d characters, at most %d", len(s), maxJoinTokenLen)
	}
	body, ok := strings.CutPrefix(s, joinTokenPrefix)
	if !ok {
		return bad("it does not start with %q", joinTokenPrefix)
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return bad("not base64url")
	}
	var w joinTokenWire
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil || dec.More() {
		return bad("not the expected JSON")
	}
	secret, err := base64.RawURLEncoding.DecodeString(w.S)
	switch {
	case err != nil || len(secret) != joinSecretSize:
		return bad("the secret is not %d bytes of base64url", joinSecretSize)
	case len(w.A) == 0 || len(w.A) > maxJoinAddrs:
		return bad("it names %d addresses, want 1 to %d", len(w.A), maxJoinAddrs)
	case !strings.HasPrefix(w.P, "sha256:") || len(w.P) != len("sha256:")+64:
		return bad("the CA pin is not sha256:<64 hex digits>")
	case w.E <= 0:
		return bad("no expiry")
	}
	if _, err := hex.DecodeString(w.P[len("sha256:"):]); err != nil {
		return bad("the CA pin is not sha256:<64 hex digits>")
	}
	for _, a := range w.A {
		if _, _, err := splitHostPort(a); err != nil {
			return bad("address %q: %v", a, err)
		}
	}
	return JoinToken{Addrs: w.A, Pin: w.P, Secret: secret, Expires: time.Unix(w.E, 0)}, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65535 {
		return "", 0, fmt.Errorf("bad port %q", port)
	}
	if host == "" {
		return "", 0, errors.New("no host")
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return "", 0, errors.New("the unspecified address")
	}
	return host, p, nil
}

// validNodeName is node_name's rule: 1 to 64 of [A-Za-z0-9._-].
func validNodeName(s string) bool {
	if s == "" || len(s) > maxNodeNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// CreateJoinToken makes a join token valid for ttl (at most
// fsm.MaxJoinTokenTTL) and records its secret's hash through the log.
// actor names who asked, for the audit trail. Any member makes them; the
// token names the members holding the CA key, which admit the joiner.
// When none is reachable it fails with an error wrapping ErrNotCAHolder.
func (n *Node) CreateJoinToken(ctx context.Context, ttl time.Duration, actor string) (string, time.Time, error) {
	a := n.joinAuth.Load()
	if a == nil || a.ca == nil {
		return "", time.Time{}, &JoinError{Err: ErrNotCAHolder, Msg: "this node cannot make join tokens (no cluster CA loaded)"}
	}
	// Any member makes tokens (its secret's hash goes through the log);
	// the joiner is sent to the members that hold the CA key, which admit.
	addrs := n.caHolderAddrs(ctx)
	if len(addrs) == 0 {
		return "", time.Time{}, n.notCAHolder(ctx)
	}
	if ttl <= 0 || ttl > fsm.MaxJoinTokenTTL {
		return "", time.Time{}, &JoinError{Err: fsm.ErrInvalidCommand,
			Msg: fmt.Sprintf("a join token's ttl must be positive and at most %v, not %v", fsm.MaxJoinTokenTTL, ttl)}
	}
	if actor == "" {
		actor = "system"
	}
	secret := make([]byte, joinSecretSize)
	rand.Read(secret)
	sum := sha256.Sum256(secret)
	now := n.cfg.Clock.Now()
	exp := now.Add(ttl)
	cmd, err := fsm.NewCommand(fsm.TypeJoinToken, 1, now.UnixNano(),
		fsm.JoinTokenCreate{Hash: hex.EncodeToString(sum[:]), ExpiresAt: exp.UnixNano(), Issuer: n.cfg.ID})
	if err != nil {
		return "", time.Time{}, err
	}
	cmd = cmd.WithAudit(fsm.AuditAppend{Type: "cluster.join_token", Severity: fsm.AuditInfo, Actor: actor,
		Subject: n.cfg.ID, Details: map[string]string{"expires_at": exp.UTC().Format(time.RFC3339)}})
	if _, err := n.Apply(ctx, cmd); err != nil {
		return "", time.Time{}, err
	}
	tok := JoinToken{Addrs: addrs, Pin: pki.Pin(a.ca), Secret: secret, Expires: exp}
	return tok.String(), exp.Truncate(time.Second), nil
}

// caHolderAddrs is this node's address if it holds the CA key, then those
// of other members that say they do.
func (n *Node) caHolderAddrs(ctx context.Context) []string {
	var addrs []string
	if n.HoldsCA() {
		addrs = append(addrs, n.cfg.Advertise)
	}
	for _, m := range n.memberInfos(ctx, n.servers()) {
		if m.err == nil && m.info.CA && m.info.ID != n.cfg.ID && len(addrs) < maxJoinAddrs {
			addrs = append(addrs, m.address)
		}
	}
	return addrs
}

// notCAHolder explains that this node cannot admit nodes, naming the
// members that can.
func (n *Node) notCAHolder(ctx context.Context) error {
	var holders []string
	for _, m := range n.memberInfos(ctx, n.servers()) {
		if m.err == nil && m.info.CA {
			holders = append(holders, fmt.Sprintf("%s (%s)", m.id, m.address))
		}
	}
	if len(holders) > 0 {
		return &JoinError{Err: ErrNotCAHolder, Msg: fmt.Sprintf(
			"this node (%s) does not hold the cluster CA key; the members that do (%s) admit new nodes",
			n.cfg.ID, strings.Join(holders, ", "))}
	}
	return &JoinError{Err: ErrNotCAHolder, Msg: fmt.Sprintf(
		"no reachable member holds the cluster CA key, so no node can be admitted now; start the node that created the cluster (this node, %s, does not hold it)",
		n.cfg.ID)}
}
