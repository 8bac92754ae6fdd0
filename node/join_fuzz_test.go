package node

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cloudflare/circl/kem/hybrid"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/waitfor"
	"github.com/bulwark-auth/bulwark/node/loopback"
	"github.com/bulwark-auth/bulwark/node/pki"
	"github.com/bulwark-auth/bulwark/tpm"
)

// FuzzParseJoinToken: no text panics the parser; a refusal is a
// *JoinError matching ErrJoinTokenMalformed; what it accepts has the shape
// join.go describes and encodes back to a token that parses to the same.
func FuzzParseJoinToken(f *testing.F) {
	good := JoinToken{Addrs: []string{"10.0.0.1:8444", "[2001:db8::1]:8444", "node2.example:8444"},
		Pin: "sha256:" + strings.Repeat("ab", 32), Secret: bytes.Repeat([]byte{7}, joinSecretSize),
		Expires: time.Unix(1_800_000_000, 0)}
	wire := func(s string) string { return joinTokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, s := range []string{
		good.String(), " " + good.String() + "\n", joinTokenPrefix, "bwj1", "",
		wire(`{"a":["h:1"],"p":"sha256:` + strings.Repeat("0", 64) + `","s":"` + strings.Repeat("A", 43) + `","e":1}`),
		wire(`{"a":["0.0.0.0:1"],"p":"sha256:` + strings.Repeat("0", 64) + `","s":"` + strings.Repeat("A", 43) + `","e":1}`),
		wire(`{"a":[],"p":"","s":"","e":0,"x":1}`), wire(`{"a":["h:1"]} {}`), wire(`[]`),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseJoinToken(s)
		if err != nil {
			if je, ok := errors.AsType[*JoinError](err); !ok || !errors.Is(err, ErrJoinTokenMalformed) || je.Msg == "" {
				t.Fatalf("refusal %T %v, want a *JoinError matching ErrJoinTokenMalformed", err, err)
			}
			return
		}
		switch {
		case len(tok.Secret) != joinSecretSize:
			t.Fatalf("accepted a secret of %d bytes", len(tok.Secret))
		case len(tok.Addrs) == 0 || len(tok.Addrs) > maxJoinAddrs:
			t.Fatalf("accepted %d addresses", len(tok.Addrs))
		case !strings.HasPrefix(tok.Pin, "sha256:") || len(tok.Pin) != len("sha256:")+64:
			t.Fatalf("accepted pin %q", tok.Pin)
		case tok.Expires.Unix() <= 0:
			t.Fatalf("accepted expiry %v", tok.Expires)
		}
		for _, a := range tok.Addrs {
			if _, _, err := splitHostPort(a); err != nil {
				t.Fatalf("accepted address %q: %v", a, err)
			}
		}
		again, err := ParseJoinToken(tok.String())
		if err != nil || !reflect.DeepEqual(again, tok) {
			t.Fatalf("%+v re-encoded parses to %+v, %v", tok, again, err)
		}
	})
}

// joinRefusals are the codes join.go documents for a refused join.
var joinRefusals = map[string]bool{"token_unknown": true, "token_used": true, "token_expired": true,
	"token_revoked": true, "name_taken": true, "address_taken": true, "no_ca": true, "bad_request": true,
	"busy": true, "no_leader": true, "failed": true}

// Secrets of the join tokens fuzzNode's state holds, none of which admits
// a node: one made by a node that is not a member, one already used.
var (
	fuzzSecretRevoked = bytes.Repeat([]byte{1}, joinSecretSize)
	fuzzSecretUsed    = bytes.Repeat([]byte{2}, joinSecretSize)
)

// FuzzServeJoin feeds raw bytes to the handler of protocol 'J', the one
// the cluster port serves without a client certificate, over an in-memory
// connection to a real one-node cluster that holds the CA key and the data
// key. It asserts that nothing panics; that the node answers exactly when
// the bytes start with a whole frame within the size limit, with one frame
// holding a refusal of join.go's codes and no certificate or key; and that
// no refused join writes to the log or changes the membership.
func FuzzServeJoin(f *testing.F) {
	frame := func(b []byte) []byte { return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...) }
	req := func(secret []byte, id, advertise string, mut func(*joinRequest)) []byte {
		r := fuzzJoinRequest(f, secret, id, advertise)
		if mut != nil {
			mut(&r)
		}
		b, err := json.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		return frame(b)
	}
	for _, b := range [][]byte{
		req(fuzzSecretRevoked, "n9", "192.0.2.9:8444", nil),
		req(fuzzSecretUsed, "n9", "192.0.2.9:8444", nil),
		req(bytes.Repeat([]byte{3}, joinSecretSize), "n9", "192.0.2.9:8444", nil),
		req(fuzzSecretRevoked, "bad name", "192.0.2.9:8444", nil),
		req(fuzzSecretRevoked, "n9", "0.0.0.0:8444", nil),
		req(fuzzSecretRevoked, "n9", "192.0.2.9:8444", func(r *joinRequest) { r.Hosts = []string{"a.example", "192.0.2.10"} }),
		req(fuzzSecretRevoked, "n9", "192.0.2.9:8444", func(r *joinRequest) { r.TLSPub = r.TLSPub[:20] }),
		req(fuzzSecretRevoked, "n9", "192.0.2.9:8444", func(r *joinRequest) { r.KEMPub = r.KEMPub[1:] }),
		frame([]byte(`{"secret":"AAAA","x":1}`)), frame([]byte(`{} {}`)), frame(nil),
		{0, 1, 0, 1}, {0, 0, 0, 5, '{'}, {0xff, 0xff, 0xff, 0xff}, {0},
	} {
		f.Add(b)
	}
	n := fuzzNode(f)
	members := n.servers()
	f.Fuzz(func(t *testing.T, raw []byte) {
		c := &memConn{r: bytes.NewReader(raw)}
		lastIndex := n.raft.LastIndex()
		n.serveJoin(c)
		whole := len(raw) >= 4 && binary.BigEndian.Uint32(raw) <= maxJoinFrame &&
			uint64(len(raw)-4) >= uint64(binary.BigEndian.Uint32(raw))
		out := c.w.Bytes()
		if !whole {
			if len(out) != 0 {
				t.Fatalf("answered %q to a partial or oversized frame", out)
			}
			return
		}
		ans, err := readFrameMax(bytes.NewReader(out), maxJoinFrame)
		if err != nil {
			t.Fatalf("answer %q: %v", out, err)
		}
		if rest := len(out) - 4 - len(ans); rest != 0 {
			t.Fatalf("%d bytes after the answer", rest)
		}
		var a joinAnswer
		dec := json.NewDecoder(bytes.NewReader(ans))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&a); err != nil {
			t.Fatalf("answer %q: %v", ans, err)
		}
		if !joinRefusals[a.Code] || a.Error == "" || a.CertDER != nil || a.CADER != nil || a.WrappedDataKey != nil || a.Members != nil {
			t.Fatalf("answer %s, want a refusal with one of join.go's codes and nothing else", ans)
		}
		if li := n.raft.LastIndex(); li != lastIndex {
			t.Fatalf("a refused join (%s) wrote to the log: index %d, was %d", a.Code, li, lastIndex)
		}
		if m := n.servers(); !reflect.DeepEqual(m, members) {
			t.Fatalf("a refused join (%s) changed the membership to %v", a.Code, m)
		}
	})
}

// fuzzJoinRequest is a well-formed join request for secret.
func fuzzJoinRequest(t testing.TB, secret []byte, id, advertise string) joinRequest {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tlsPub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	kemPub, _, err := hybrid.X25519MLKEM768().GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	kp, err := kemPub.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return joinRequest{Secret: secret, NodeID: id, Advertise: advertise, TLSPub: tlsPub, KEMPub: kp}
}

// fuzzNode is a one-node cluster that admits joins, holding the tokens of
// fuzzSecretRevoked and fuzzSecretUsed. It logs nowhere: a fuzzer's
// millions of refusals would otherwise pile up in the test's log.
func fuzzNode(t testing.TB) *Node {
	t.Helper()
	ca := newTestCA(t)
	addr := loopback.Addr(t)
	ct := ca.clusterTLS(t, "a")
	n, err := Open(Config{ID: "a", DataDir: t.TempDir(), Advertise: addr, Listen: addr, TLS: ct,
		Logger: slog.New(slog.DiscardHandler), HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	waitLeader(t, []*Node{n})
	n.EnableJoin(ca.cert, fakeKeys{keys: map[string]crypto.Signer{pki.CAKeyName: ca.key},
		secrets: map[string][]byte{tpm.DataKeyName: tpm.NewDataKey()}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	now := time.Now()
	for _, tc := range []struct {
		secret []byte
		issuer string
	}{{fuzzSecretRevoked, "gone"}, {fuzzSecretUsed, "a"}} {
		sum := sha256.Sum256(tc.secret)
		cmd, err := fsm.NewCommand(fsm.TypeJoinToken, 1, now.UnixNano(), fsm.JoinTokenCreate{
			Hash: hex.EncodeToString(sum[:]), ExpiresAt: now.Add(fsm.MaxJoinTokenTTL).UnixNano(), Issuer: tc.issuer})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.Apply(ctx, cmd); err != nil {
			t.Fatal(err)
		}
	}
	sum := sha256.Sum256(fuzzSecretUsed)
	cmd, err := fsm.NewCommand(fsm.TypeJoinConsume, 1, now.UnixNano(), fsm.JoinConsume{Hash: hex.EncodeToString(sum[:]), NodeID: "old"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Apply(ctx, cmd); err != nil {
		t.Fatal(err)
	}
	// The node's own first writes (its feature level, its key) are done
	// before the fuzzer watches its log for writes.
	waitfor.True(t, "the node's first writes", 30*time.Second, 10*time.Millisecond, func() bool {
		var level int
		var keyed bool
		n.View(func(r fsm.Reader) error {
			level = r.ClusterLevel()
			_, keyed = r.MemberKey("a")
			return nil
		})
		return level == fsm.MaxLevel && keyed && n.raft.AppliedIndex() == n.raft.LastIndex()
	})
	return n
}

// memConn is a connection whose peer sent r and reads what is written.
type memConn struct {
	r *bytes.Reader
	w bytes.Buffer
}

func (c *memConn) Read(b []byte) (int, error) {
	if c.r.Len() == 0 {
		return 0, io.EOF
	}
	return c.r.Read(b)
}
func (c *memConn) Write(b []byte) (int, error)      { return c.w.Write(b) }
func (c *memConn) Close() error                     { return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8444} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 40000} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }
