package node

// Joining a cluster.
//
// A node holding the cluster CA key makes a join token (CreateJoinToken):
//
//	"bwj1." base64url(JSON {"a": [cluster addresses of the nodes holding
//	the CA key], "p": pki.Pin(CA), "s": base64url(32 random bytes),
//	"e": expiry, Unix seconds})
//
// The state keeps only SHA-256(s) and the exact expiry (fsm join.token).
// A new node (Join) dials an address of the token on the cluster port and
// speaks protocol 'J' without a client certificate, which it does not have
// yet. It trusts the server by the pin alone: the server's chain must hold
// a CA certificate whose pin is the token's and that signed the leaf, so
// the secret goes to no one else. One JSON frame each way (forward.go's
// framing):
//
//	request {"secret", "node_id", "advertise", "hosts", "tls_pub" (PKIX DER
//	        of the new node's TLS key), "kem_pub" (an ephemeral
//	        X25519MLKEM768 public key)}
//	answer  {"cert_der", "ca_der", "wrapped_data_key": {"kem_ct", "ct"},
//	        "members": [{"id", "address"}]} or {"code", "error"}
//
// The server checks the token against its state (no log write for a token
// it already knows to be bad), issues the node certificate, wraps the
// cluster data key to kem_pub (tpm.WrapKey, label "join", bound to the node
// id and both public keys), consumes the token through the log (fsm
// join.consume: once, before its expiry at the command's time), and has
// the leader add the node as a nonvoter (protocol 'M' when this node does
// not lead). A nonvoter does not count towards a quorum, so a joiner that
// never shows up cannot stall the cluster; once the new node has received
// the log it asks the leader to promote it to voter (EnsureVoter,
// membership.go). Only then is it a voter.

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/cloudflare/circl/kem/hybrid"
	"github.com/hashicorp/raft"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/node/pki"
	"github.com/bulwark-auth/bulwark/tpm"
)

// protoJoin is the cluster-port protocol of a joining node: the only one
// served without a client certificate.
const protoJoin byte = 'J'

const (
	joinTokenPrefix  = "bwj1."
	joinSecretSize   = 32
	maxJoinTokenLen  = 4096
	maxJoinAddrs     = 16
	maxJoinHosts     = 8
	maxJoinFrame     = 64 << 10
	maxNodeNameLen   = 64
	joinServeTimeout = 30 * time.Second
	maxJoinsInFlight = 4
	joinWrapLabel    = "join"
	// DefaultJoinTokenTTL is a join token's lifetime unless asked otherwise.
	DefaultJoinTokenTTL = time.Hour
)

// joinRequestTimeout bounds the wait for a join request: a joiner sends it
// right after its handshake, so a connection that stalls gives its join
// slot back this soon.
const joinRequestTimeout = 10 * time.Second

// JoinError is a join failure with a message for people; it matches the
// sentinel it wraps.
type JoinError struct {
	Msg string
	Err error
}

func (e *JoinError) Error() string { return e.Msg }

func (e *JoinError) Unwrap() error { return e.Err }

// JoinKeys is what admitting a node needs from this node's keystore
// (*tpm.Keystore): the CA key ("ca") and the cluster data key.
type JoinKeys interface {
	PrivateKey(name string) (crypto.Signer, bool)
	Secret(name string) ([]byte, bool)
}

type joinAuthority struct {
	ca   *x509.Certificate
	keys JoinKeys
	sem  chan struct{}
}

// caKey returns the CA key if this node holds the one of its CA.
func (a *joinAuthority) caKey() (crypto.Signer, bool) {
	if a == nil || a.ca == nil || a.keys == nil {
		return nil, false
	}
	k, ok := a.keys.PrivateKey(pki.CAKeyName)
	if !ok {
		return nil, false
	}
	return k, pki.SamePublicKey(k.Public(), a.ca.PublicKey)
}

// EnableJoin lets this node make join tokens and admit joining nodes when
// keys holds the key of the cluster CA ca; without it, both answer that
// this node cannot and name the node that can. Call it once after Open.
func (n *Node) EnableJoin(ca *x509.Certificate, keys JoinKeys) {
	n.joinAuth.Store(&joinAuthority{ca: ca, keys: keys, sem: make(chan struct{}, maxJoinsInFlight)})
}

// HoldsCA reports whether this node can make join tokens.
func (n *Node) HoldsCA() bool {
	_, ok := n.joinAuth.Load().caKey()
	return ok
}

// Wire forms of the 'J' protocol.
type joinRequest struct {
	Secret    []byte   `json:"secret"`
	NodeID    string   `json:"node_id"`
	Advertise string   `json:"advertise"`
	Hosts     []string `json:"hosts,omitempty"`
	// CRL: the CRL distribution point the joiner's certificate names;
	// absent from a joiner of an earlier release (its certificate is
	// renewed with one once the cluster publishes CRLs).
	CRL    string `json:"crl,omitempty"`
	TLSPub []byte `json:"tls_pub"`
	KEMPub []byte `json:"kem_pub"`
}

type wrappedDataKey struct {
	KEMCiphertext []byte `json:"kem_ct"`
	Ciphertext    []byte `json:"ct"`
}

type memberWire struct {
	ID      string `json:"id"`
	Address string `json:"address"`
}

type joinAnswer struct {
	CertDER        []byte          `json:"cert_der,omitempty"`
	CADER          []byte          `json:"ca_der,omitempty"`
	WrappedDataKey *wrappedDataKey `json:"wrapped_data_key,omitempty"`
	Members        []memberWire    `json:"members,omitempty"`
	// Code says why a join was refused: token_unknown, token_used,
	// token_expired, token_revoked (its maker is no longer a member),
	// name_taken, address_taken, no_ca, bad_request, busy,
	// no_leader, failed. Error is the message for people.
	Code  string `json:"code,omitempty"`
	Error string `json:"error,omitempty"`
}

// joinAAD binds a wrapped data key to the node it was wrapped for.
func joinAAD(nodeID string, tlsPub, kemPub []byte) []byte {
	h := sha256.New()
	for _, b := range [][]byte{[]byte(nodeID), tlsPub, kemPub} {
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(b))))
		h.Write(b)
	}
	return h.Sum(nil)
}

// readFrameMax reads a frame (forward.go's framing) of at most max
// bytes. Its buffer grows with the bytes that arrive, not with the length
// announced: a peer that announces max bytes and sends none holds no
// buffer of that size.
func readFrameMax(r io.Reader, max uint32) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > max {
		return nil, fmt.Errorf("frame of %d bytes exceeds %d", size, max)
	}
	b, err := io.ReadAll(io.LimitReader(r, int64(size)))
	if err == nil && len(b) < int(size) {
		err = io.ErrUnexpectedEOF
	}
	return b, err
}

// serveJoin answers one joining node. The cluster listener serves at most
// maxJoinConns at once; the request must arrive within joinRequestTimeout.
func (n *Node) serveJoin(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(joinRequestTimeout))
	req, err := readFrameMax(c, maxJoinFrame)
	if err != nil {
		return
	}
	c.SetDeadline(time.Now().Add(joinServeTimeout + 5*time.Second))
	w := bufio.NewWriter(c)
	remote, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	ctx, cancel := context.WithTimeout(context.Background(), joinServeTimeout)
	defer cancel()
	ans := n.admit(ctx, req, remote)
	if ans.Error != "" {
		n.log.Warn("join refused", "remote", remote, "code", ans.Code, "reason", ans.Error)
	}
	b, err := json.Marshal(ans)
	if err == nil {
		writeFrame(w, b)
	}
}

func refuse(code, format string, args ...any) joinAnswer {
	return joinAnswer{Code: code, Error: fmt.Sprintf(format, args...)}
}

const newTokenHint = "; create a new one with `bulwark cluster join-token`"

// tokenRefusal is the answer for a token the state refuses.
func tokenRefusal(err error) joinAnswer {
	if err == nil {
		return joinAnswer{}
	}
	detail := strings.TrimPrefix(err.Error(), "fsm: ")
	switch {
	case errors.Is(err, fsm.ErrJoinTokenUnknown):
		return refuse("token_unknown", "the cluster does not know this join token (a wrong secret, a forged token, or another cluster's)")
	case errors.Is(err, fsm.ErrJoinTokenUsed):
		return refuse("token_used", "%s%s", detail, newTokenHint)
	case errors.Is(err, fsm.ErrJoinTokenExpired):
		return refuse("token_expired", "%s%s", detail, newTokenHint)
	}
	return joinAnswer{}
}

// errJoinNotJSON is the refusal of a join request that does not decode,
// an unknown field included (joinclient.go retries without crl on it).
const errJoinNotJSON = "the join request is not the expected JSON"

// admit checks a join request and, if it holds, consumes its token, issues
// the node certificate, wraps the data key and has the node added as a
// nonvoter.
func (n *Node) admit(ctx context.Context, data []byte, remote string) joinAnswer {
	a := n.joinAuth.Load()
	caKey, ok := a.caKey()
	if !ok {
		// No fan-out to the members here: this door has no client
		// certificate behind it.
		return refuse("no_ca", "this node (%s) does not hold the cluster CA key and cannot admit nodes; "+
			"use a token made by `bulwark cluster join-token` on the node that holds it", n.cfg.ID)
	}
	select {
	case a.sem <- struct{}{}:
		defer func() { <-a.sem }()
	default:
		return refuse("busy", "too many joins in progress on %s; retry", n.cfg.ID)
	}
	var req joinRequest
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || dec.More() {
		return refuse("bad_request", "%s", errJoinNotJSON)
	}
	if len(req.Secret) != joinSecretSize {
		return refuse("token_unknown", "the cluster does not know this join token (a secret of %d bytes)", len(req.Secret))
	}
	if !validNodeName(req.NodeID) {
		return refuse("bad_request", "node name %q: want 1 to %d of letters, digits, '.', '_' and '-'", req.NodeID, maxNodeNameLen)
	}
	host, _, err := splitHostPort(req.Advertise)
	if err != nil {
		return refuse("bad_request", "advertised address %q: %v", req.Advertise, err)
	}
	if len(req.Hosts) > maxJoinHosts {
		return refuse("bad_request", "%d extra hosts, at most %d", len(req.Hosts), maxJoinHosts)
	}
	if err := n.foreignHost(req.NodeID, host, req.Hosts); err != nil {
		return refuse("bad_request", "%v", err)
	}
	pubAny, err := parseNodePublicKey(req.TLSPub)
	if err != nil {
		return refuse("bad_request", "tls_pub: %v", err)
	}
	if _, err := hybrid.X25519MLKEM768().UnmarshalBinaryPublicKey(req.KEMPub); err != nil {
		return refuse("bad_request", "kem_pub is not an X25519MLKEM768 public key: %v", err)
	}

	// The token, as this node's state knows it: a bad one costs no log
	// write. The log decides below, once.
	sum := sha256.Sum256(req.Secret)
	hash := hex.EncodeToString(sum[:])
	now := n.cfg.Clock.Now()
	var issuer string
	err = n.View(func(r fsm.Reader) error {
		rec, err := r.JoinToken(hash)
		if err != nil {
			return err
		}
		issuer = rec.Issuer
		return rec.Usable(now)
	})
	if ans := tokenRefusal(err); ans.Code != "" {
		return ans
	} else if err != nil {
		return refuse("failed", "reading the join tokens: %v", err)
	}
	// A removed node's tokens admit no one: it could otherwise come back
	// under a new name (the leader checks this too, authority.go).
	if !n.isMember(issuer) {
		return refuse("token_revoked", "the join token was made by %s, which is no longer a member of the cluster%s", issuer, newTokenHint)
	}

	servers := n.servers()
	for _, s := range servers {
		switch {
		case string(s.ID) == req.NodeID:
			return refuse("name_taken", "a node named %s is already a member of this cluster (at %s); choose another node_name, or remove that node first with `bulwark cluster remove %s`",
				req.NodeID, s.Address, req.NodeID)
		case string(s.Address) == req.Advertise:
			return refuse("address_taken", "%s is already the address of member %s; set cluster.advertise to this node's own address", req.Advertise, s.ID)
		}
	}

	cert, err := pki.IssueNodeCert(a.ca, caKey, pubAny, req.NodeID, append([]string{host}, req.Hosts...), req.CRL, now, pki.NodeCertTTL)
	if err != nil {
		return refuse("bad_request", "cannot issue a certificate: %v", err)
	}
	var wrapped *wrappedDataKey
	if key, ok := a.keys.Secret(tpm.DataKeyName); ok {
		wk, err := tpm.WrapKey(req.KEMPub, key, joinWrapLabel, joinAAD(req.NodeID, req.TLSPub, req.KEMPub))
		clear(key)
		if err != nil {
			return refuse("failed", "wrapping the cluster data key: %v", err)
		}
		wrapped = &wrappedDataKey{KEMCiphertext: wk.KEMCiphertext, Ciphertext: wk.Ciphertext}
	}

	// The certificate is recorded for the node before it leaves (crl.go):
	// removing the node revokes it. A join refused later leaves a record
	// of a certificate no one holds, which harms nothing. The record
	// admits the name: a node of that name removed earlier stays removed
	// no longer, so this certificate is not revoked as one recorded late.
	if n.proposable(fsm.TypeCertRecord, 1) {
		admit := certRecordOf(req.NodeID, cert)
		admit.Admit = true
		rec, err := fsm.NewCommand(fsm.TypeCertRecord, 1, n.cfg.Clock.Now().UnixNano(), admit)
		if err == nil {
			_, err = n.Apply(ctx, rec)
		}
		if err != nil {
			if errors.Is(err, ErrNoLeader) || errors.Is(err, ErrNotLeader) || errors.Is(err, ErrShutdown) {
				return refuse("no_leader", "the cluster has no leader now; retry with the same token shortly (%v)", err)
			}
			return refuse("failed", "recording the certificate: %v", err)
		}
	}
	cmd, err := fsm.NewCommand(fsm.TypeJoinConsume, 1, n.cfg.Clock.Now().UnixNano(), fsm.JoinConsume{Hash: hash, NodeID: req.NodeID})
	if err != nil {
		return refuse("failed", "%v", err)
	}
	cmd = cmd.WithAudit(fsm.AuditAppend{Type: "cluster.join", Severity: fsm.AuditWarning, Actor: "node:" + req.NodeID,
		Subject: req.NodeID, IP: fsm.CleanAuditText(remote, fsm.MaxAuditIP),
		Details: map[string]string{"address": req.Advertise, "admitted_by": n.cfg.ID, "cert_serial": cert.SerialNumber.Text(16)}})
	if _, err := n.Apply(ctx, cmd); err != nil {
		if ans := tokenRefusal(err); ans.Code != "" {
			return ans
		}
		if errors.Is(err, ErrNoLeader) || errors.Is(err, ErrNotLeader) || errors.Is(err, ErrShutdown) {
			return refuse("no_leader", "the cluster has no leader now; retry with the same token shortly (%v)", err)
		}
		return refuse("failed", "consuming the join token: %v", err)
	}
	// The token is spent; a nonvoter cannot hurt the quorum even if the
	// new node never comes up. The leader records its key first, so that
	// only it can use its name on the cluster port.
	add := memberRequest{Op: opAddNonvoter, ID: req.NodeID, Address: req.Advertise, SPKI: spkiHash(cert)}
	if err := n.onLeader(ctx, add); err != nil {
		return refuse("failed", "the join token was used, but the cluster did not add %s: %v; remove it with `bulwark cluster remove %s` and join with a new token",
			req.NodeID, err, req.NodeID)
	}
	ans := joinAnswer{CertDER: cert.Raw, CADER: a.ca.Raw, WrappedDataKey: wrapped}
	for _, s := range n.servers() {
		ans.Members = append(ans.Members, memberWire{ID: string(s.ID), Address: string(s.Address)})
	}
	n.log.Info("admitted a node; it becomes a voter once it has caught up", "id", req.NodeID, "address", req.Advertise, "remote", remote)
	return ans
}

// parseNodePublicKey reads the PKIX public key a node asks a certificate
// for: ECDSA P-256 or P-384, or Ed25519.
func parseNodePublicKey(der []byte) (crypto.PublicKey, error) {
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("not a PKIX public key: %v", err)
	}
	switch pk := pub.(type) {
	case *ecdsa.PublicKey:
		if pk.Curve != elliptic.P256() && pk.Curve != elliptic.P384() {
			return nil, errors.New("only P-256 and P-384 ECDSA keys")
		}
	case ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("a %T is not accepted (ECDSA P-256/P-384 or Ed25519)", pub)
	}
	return pub, nil
}

// isMember reports whether id is in the latest configuration this node
// knows: a node removed from the cluster keeps a valid certificate, so the
// cluster port's services check the caller's name against it.
func (n *Node) isMember(id string) bool {
	for _, s := range n.servers() {
		if string(s.ID) == id {
			return true
		}
	}
	return false
}

// servers is the latest cluster configuration this node knows.
func (n *Node) servers() []raft.Server {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	return f.Configuration().Servers
}
