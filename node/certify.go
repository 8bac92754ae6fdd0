package node

// Certificate renewal.
//
// A node certificate lives pki.NodeCertTTL. Only a node that holds the
// cluster CA key (the one that created the cluster) can issue one, so a
// node that joined renews its own, while the old one is still valid, by
// asking a CA holder over the cluster port: protocol 'M', op "certify",
// with the public key and the extra hosts it wants certified.
//
// The mutual-TLS handshake says who asks; the holder issues only for that
// name, only to a member of the current configuration (a removed node
// gets nothing), only for the key the cluster recorded for it (a member
// cannot have its name certified for a key someone else holds), for the
// host of its address in the configuration plus the hosts it asks for,
// none of which may be another member's name or address (foreignHost).
// Every certificate issued is an audit entry, committed before the
// certificate is handed out.

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/node/pki"
)

const opCertify = "certify"

// RenewCertificate asks for a new certificate of this node for pub (its
// key; keeping the key makes the renewal safe to interrupt) naming the
// host of its advertised address and hosts. A node holding the CA key
// issues it itself; any other asks the members that say they hold it, in
// turn. The certificate returned verifies against the cluster CA, names
// this node and certifies pub; writing it down and presenting it
// (ClusterTLS.SetCertificate) is the caller's part.
//
// crlURL, when not empty, is the CRL distribution point the certificate
// names (pki.CRLURL); a holder of an earlier release leaves it out.
func (n *Node) RenewCertificate(ctx context.Context, pub crypto.PublicKey, hosts []string, crlURL string) (*x509.Certificate, error) {
	if n.fwd.tls == nil {
		return nil, errors.New("node: no cluster transport")
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("node: renew certificate: %w", err)
	}
	req := memberRequest{Op: opCertify, ID: n.cfg.ID, Pub: der, Hosts: hosts, CRL: crlURL}
	var ans memberAnswer
	if n.HoldsCA() {
		ans = n.certifyLocal(ctx, req, n.cfg.ID)
	} else {
		var tried []string
		for _, m := range n.memberInfos(ctx, n.servers()) {
			if m.err != nil || !m.info.CA || m.id == n.cfg.ID {
				continue
			}
			a, err := n.memberCall(ctx, m.id, m.address, req, memberTimeout)
			if err == nil && a.Code == "" && a.Cert != nil {
				ans = a
				break
			}
			if err == nil && a.Code == "" {
				err = errors.New("answered without a certificate")
			} else if err == nil {
				err = errors.New(a.Error)
			}
			tried = append(tried, fmt.Sprintf("%s: %v", m.id, err))
		}
		if ans.Cert == nil {
			if len(tried) == 0 {
				return nil, fmt.Errorf("%w (asked by %s)", ErrNoCAHolder, n.cfg.ID)
			}
			return nil, fmt.Errorf("node: certificate renewal refused: %s", strings.Join(tried, "; "))
		}
	}
	if ans.Code != "" {
		return nil, fmt.Errorf("node: certificate renewal refused: %s", ans.Error)
	}
	cert, err := x509.ParseCertificate(ans.Cert)
	if err != nil {
		return nil, fmt.Errorf("node: renewed certificate: %w", err)
	}
	// Valid by this node's clock, the one that found it due (certrenew.go).
	_, err = cert.Verify(x509.VerifyOptions{Roots: n.fwd.tls.CA, CurrentTime: n.cfg.Clock.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}})
	switch {
	case err != nil:
		return nil, fmt.Errorf("node: renewed certificate does not verify: %w", err)
	case cert.Subject.CommonName != n.cfg.ID:
		return nil, fmt.Errorf("node: renewed certificate names %q, not %q", cert.Subject.CommonName, n.cfg.ID)
	case !pki.SamePublicKey(pub, cert.PublicKey):
		return nil, errors.New("node: renewed certificate is for another key")
	}
	return cert, nil
}

// certifyLocal issues, on a node holding the CA key, a certificate for
// the member caller, recording it in the audit trail first.
func (n *Node) certifyLocal(ctx context.Context, req memberRequest, caller string) memberAnswer {
	a := n.joinAuth.Load()
	caKey, ok := a.caKey()
	if !ok {
		return memberAnswer{Code: "refused", Error: fmt.Sprintf("%s does not hold the cluster CA key", n.cfg.ID)}
	}
	if req.ID != caller {
		return memberAnswer{Code: "refused", Error: fmt.Sprintf("%s may not ask a certificate for %s: a node renews its own", caller, req.ID)}
	}
	var addr string
	for _, s := range n.servers() {
		if string(s.ID) == caller {
			addr = string(s.Address)
		}
	}
	if addr == "" {
		return memberAnswer{Code: "not_member", Error: fmt.Sprintf("%s is not a member of the cluster; no certificate for it", caller)}
	}
	if len(req.Hosts) > maxJoinHosts {
		return memberAnswer{Code: "refused", Error: fmt.Sprintf("%d hosts, at most %d", len(req.Hosts), maxJoinHosts)}
	}
	pub, err := parseNodePublicKey(req.Pub)
	if err != nil {
		return memberAnswer{Code: "refused", Error: "pub: " + err.Error()}
	}
	if want, ok := memberKeyOf(n, caller); ok {
		if der, err := x509.MarshalPKIXPublicKey(pub); err != nil || hexSHA256(der) != want {
			return memberAnswer{Code: "refused", Error: fmt.Sprintf(
				"%s asks a certificate for a key other than the one the cluster recorded for it", caller)}
		}
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return memberAnswer{Code: "refused", Error: fmt.Sprintf("member address %q: %v", addr, err)}
	}
	if err := n.foreignHost(caller, host, req.Hosts); err != nil {
		return memberAnswer{Code: "refused", Error: err.Error()}
	}
	now := n.cfg.Clock.Now()
	cert, err := pki.IssueNodeCert(a.ca, caKey, pub, caller, append([]string{host}, req.Hosts...), req.CRL, now, pki.NodeCertTTL)
	if err != nil {
		return memberAnswer{Code: "refused", Error: err.Error()}
	}
	audit := fsm.AuditAppend{
		Type: "cluster.cert_issue", Severity: fsm.AuditInfo, Actor: "node:" + caller, Subject: caller,
		Details: map[string]string{"issued_by": n.cfg.ID, "serial": cert.SerialNumber.Text(16),
			"not_after": cert.NotAfter.UTC().Format(time.RFC3339)}}
	// From level 5 the certificate is recorded for the member, so that
	// removing it revokes the certificate (crl.go); the audit entry rides
	// on the record.
	var cmd fsm.Command
	if n.proposable(fsm.TypeCertRecord, 1) {
		cmd, err = fsm.NewCommand(fsm.TypeCertRecord, 1, now.UnixNano(), certRecordOf(caller, cert))
		cmd = cmd.WithAudit(audit)
	} else {
		cmd, err = fsm.NewCommand(fsm.TypeAuditAppend, 1, now.UnixNano(), audit)
	}
	if err == nil {
		actx, cancel := context.WithTimeout(ctx, memberTimeout)
		_, err = n.Apply(actx, cmd)
		cancel()
	}
	if err != nil {
		// No certificate leaves without its record.
		return memberAnswer{Code: "no_leader", Error: fmt.Sprintf("recording the certificate in the audit trail: %v", err)}
	}
	n.log.Info("issued a node certificate", "id", caller, "serial", cert.SerialNumber.Text(16), "not_after", cert.NotAfter.UTC())
	return memberAnswer{Cert: cert.Raw}
}

// foreignHost refuses, in the hosts the node id (at a cluster address
// whose host is own) asks a certificate to name, another member's node
// name or the host of its address: a certificate for them would let the
// node pass for that member to whoever dials it by that name. The
// loopback names every node certificate carries, and own itself, are
// not another member's even where members share a machine.
func (n *Node) foreignHost(id, own string, hosts []string) error {
	for _, s := range n.servers() {
		if string(s.ID) == id {
			continue
		}
		theirs, _, _ := net.SplitHostPort(string(s.Address))
		for _, h := range hosts {
			switch {
			case strings.EqualFold(h, string(s.ID)):
				return fmt.Errorf("%q is the name of member %s; a node certificate names its own node", h, s.ID)
			case sameHost(h, theirs) && !sameHost(h, own) && !isLoopbackName(h):
				return fmt.Errorf("%q is the host of member %s (%s); a node certificate names its own node", h, s.ID, s.Address)
			}
		}
	}
	return nil
}

func sameHost(a, b string) bool {
	if ia, ib := net.ParseIP(a), net.ParseIP(b); ia != nil || ib != nil {
		return ia != nil && ib != nil && ia.Equal(ib)
	}
	return strings.EqualFold(a, b)
}

func isLoopbackName(h string) bool {
	if ip := net.ParseIP(h); ip != nil {
		return ip.IsLoopback()
	}
	return strings.EqualFold(h, "localhost")
}
