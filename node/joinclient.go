package node

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/cloudflare/circl/kem/hybrid"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/clock"
	"github.com/bulwark-auth/bulwark/node/pki"
	"github.com/bulwark-auth/bulwark/tpm"
)

// The joining node's side of protocol 'J' (join.go serves it).

// JoinRequest describes the node that joins.
type JoinRequest struct {
	NodeID    string   // node_name
	Advertise string   // cluster.advertise: host:port the members dial
	Hosts     []string // more names for the certificate (the API host)
	// CRLURL is the CRL distribution point the certificate names
	// (pki.CRLURL: this node's API address); empty for none.
	CRLURL string
	// Clock is what the token's expiry is checked against; nil is the
	// system clock.
	Clock clock.Clock
}

// Joined is what a successful join hands the new node. Nothing is written
// anywhere: the caller stores Key, Cert, CA and DataKey, then opens the
// node with Config.Join.
type Joined struct {
	Key     *ecdsa.PrivateKey // the node's TLS key ("tls" in its keystore)
	Cert    *x509.Certificate // issued by the cluster CA for Key
	CA      *x509.Certificate // the cluster CA, whose pin the token holds
	DataKey []byte            // the cluster data key; nil if the cluster has none
	Members []Peer            // the configuration when it was admitted
	Via     string            // the address that admitted it
}

// Join asks the cluster named by token to admit a new node. It verifies
// every node it talks to by the token's CA pin before sending the secret,
// and the answer's certificate against that CA. It writes nothing; a
// failure leaves no trace on this machine.
func Join(ctx context.Context, token string, req JoinRequest) (*Joined, error) {
	tok, err := ParseJoinToken(token)
	if err != nil {
		return nil, err
	}
	var clk clock.Clock = clock.Real{}
	if req.Clock != nil {
		clk = req.Clock
	}
	if !clk.Now().Before(tok.Expires) {
		return nil, &JoinError{Err: fsm.ErrJoinTokenExpired,
			Msg: fmt.Sprintf("the join token expired at %s%s", tok.Expires.UTC().Format(time.RFC3339), newTokenHint)}
	}
	if !validNodeName(req.NodeID) {
		return nil, fmt.Errorf("node name %q: want 1 to %d of letters, digits, '.', '_' and '-'", req.NodeID, maxNodeNameLen)
	}
	if _, _, err := splitHostPort(req.Advertise); err != nil {
		return nil, fmt.Errorf("cluster.advertise %q: %v", req.Advertise, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tlsPub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, err
	}
	kemPK, kemSK, err := hybrid.X25519MLKEM768().GenerateKeyPair()
	if err != nil {
		return nil, err
	}
	kemPub, err := kemPK.MarshalBinary()
	if err != nil {
		return nil, err
	}
	kemPriv, err := kemSK.MarshalBinary()
	if err != nil {
		return nil, err
	}
	defer clear(kemPriv)
	jr := joinRequest{Secret: tok.Secret, NodeID: req.NodeID, Advertise: req.Advertise,
		Hosts: req.Hosts, TLSPub: tlsPub, KEMPub: kemPub}
	// An admitting node of an earlier release refuses the crl field it
	// does not know, before it looks at the token: the request goes
	// again without it, and the certificate is renewed with its CRL
	// distribution point once the cluster publishes CRLs (certrenew.go).
	bodyWithout, err := json.Marshal(jr)
	if err != nil {
		return nil, err
	}
	jr.CRL = req.CRLURL
	body, err := json.Marshal(jr)
	if err != nil {
		return nil, err
	}

	var pinErrs, netErrs []string
	var refused error
	for _, addr := range tok.Addrs {
		ans, err := joinExchange(ctx, addr, tok.Pin, body)
		if err == nil && ans.Code == "bad_request" && ans.Error == errJoinNotJSON && jr.CRL != "" {
			ans, err = joinExchange(ctx, addr, tok.Pin, bodyWithout)
		}
		switch {
		case errors.Is(err, ErrJoinPin):
			pinErrs = append(pinErrs, err.Error())
			continue
		case err != nil:
			netErrs = append(netErrs, fmt.Sprintf("%s: %v", addr, err))
			continue
		case ans.Code == "busy" || ans.Code == "no_leader" || ans.Code == "no_ca":
			// Another address may do better; the token is not spent.
			refused = refusedBy(addr, ans)
			continue
		case ans.Code != "":
			return nil, refusedBy(addr, ans)
		}
		j, err := acceptAnswer(ans, tok.Pin, req.NodeID, key, kemPriv, tlsPub, kemPub)
		if err != nil {
			return nil, fmt.Errorf("the answer of %s does not hold: %w", addr, err)
		}
		j.Via = addr
		return j, nil
	}
	if refused != nil {
		return nil, refused
	}
	if len(pinErrs) > 0 {
		return nil, &JoinError{Err: ErrJoinPin, Msg: fmt.Sprintf(
			"refusing to join: %s; the secret was not sent (a forged token, another cluster's, or a wrong address)",
			strings.Join(append(pinErrs, netErrs...), "; "))}
	}
	return nil, &JoinError{Err: ErrJoinUnreachable, Msg: fmt.Sprintf(
		"cannot reach the cluster at any address of the join token: %s", strings.Join(netErrs, "; "))}
}

func refusedBy(addr string, ans joinAnswer) error {
	err := ErrJoinRefused
	switch ans.Code {
	case "token_unknown":
		err = fsm.ErrJoinTokenUnknown
	case "token_used":
		err = fsm.ErrJoinTokenUsed
	case "token_expired":
		err = fsm.ErrJoinTokenExpired
	case "no_ca":
		err = ErrNotCAHolder
	}
	return &JoinError{Err: err, Msg: fmt.Sprintf("join refused by %s: %s", addr, ans.Error)}
}

// joinExchange sends the request to addr over protocol 'J' and reads the
// answer. The server is trusted by the pin alone.
func joinExchange(ctx context.Context, addr, pin string, body []byte) (joinAnswer, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return joinAnswer{}, err
	}
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: &tls.Config{
		MinVersion: tls.VersionTLS13,
		ServerName: host,
		// The certificate is checked below against the pinned CA, not
		// against a system root or a name.
		InsecureSkipVerify:    true,
		VerifyPeerCertificate: verifyPinned(addr, pin),
	}}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return joinAnswer{}, err
	}
	defer c.Close()
	deadline := time.Now().Add(joinServeTimeout + 10*time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.SetDeadline(deadline)
	w := bufio.NewWriter(c)
	if err := w.WriteByte(protoJoin); err != nil {
		return joinAnswer{}, err
	}
	if err := writeFrame(w, body); err != nil {
		return joinAnswer{}, err
	}
	b, err := readFrameMax(bufio.NewReader(c), maxJoinFrame)
	if err != nil {
		return joinAnswer{}, fmt.Errorf("no answer: %w", err)
	}
	var ans joinAnswer
	if err := json.Unmarshal(b, &ans); err != nil {
		return joinAnswer{}, fmt.Errorf("the answer is not the expected JSON: %w", err)
	}
	return ans, nil
}

// verifyPinned accepts a server chain that holds a CA certificate with the
// pinned key which signed the leaf.
func verifyPinned(addr, pin string) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return fmt.Errorf("%w: %s presented no certificate", ErrJoinPin, addr)
		}
		certs := make([]*x509.Certificate, 0, len(raw))
		for _, b := range raw {
			c, err := x509.ParseCertificate(b)
			if err != nil {
				return fmt.Errorf("%w: %s presented a bad certificate: %v", ErrJoinPin, addr, err)
			}
			certs = append(certs, c)
		}
		for _, ca := range certs[1:] {
			if !ca.IsCA || pki.Pin(ca) != pin {
				continue
			}
			roots := x509.NewCertPool()
			roots.AddCert(ca)
			if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return fmt.Errorf("%w: %s: its certificate does not verify against the pinned CA: %v", ErrJoinPin, addr, err)
			}
			return nil
		}
		return fmt.Errorf("%w: the node at %s does not present the cluster CA pinned by the token (%s)", ErrJoinPin, addr, pin)
	}
}

// acceptAnswer checks what the cluster sent and unwraps the data key.
func acceptAnswer(ans joinAnswer, pin, nodeID string, key *ecdsa.PrivateKey, kemPriv, tlsPub, kemPub []byte) (*Joined, error) {
	ca, err := x509.ParseCertificate(ans.CADER)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	if !ca.IsCA || pki.Pin(ca) != pin {
		return nil, fmt.Errorf("%w: the CA certificate sent is not the pinned one", ErrJoinPin)
	}
	cert, err := x509.ParseCertificate(ans.CertDER)
	if err != nil {
		return nil, fmt.Errorf("node certificate: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("node certificate: %w", err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, errors.New("the node certificate is for another key")
	}
	if cert.Subject.CommonName != nodeID {
		return nil, fmt.Errorf("the node certificate names %q, not %q", cert.Subject.CommonName, nodeID)
	}
	j := &Joined{Key: key, Cert: cert, CA: ca}
	if w := ans.WrappedDataKey; w != nil {
		dk, err := tpm.UnwrapKey(kemPriv, tpm.WrappedKey{KEMCiphertext: w.KEMCiphertext, Ciphertext: w.Ciphertext},
			joinWrapLabel, joinAAD(nodeID, tlsPub, kemPub))
		if err != nil {
			return nil, fmt.Errorf("the cluster data key does not unwrap: %w", err)
		}
		if len(dk) != tpm.DataKeySize {
			clear(dk)
			return nil, fmt.Errorf("the cluster data key is %d bytes, want %d", len(dk), tpm.DataKeySize)
		}
		j.DataKey = dk
	}
	for _, m := range ans.Members {
		j.Members = append(j.Members, Peer{ID: m.ID, Address: m.Address})
	}
	return j, nil
}
