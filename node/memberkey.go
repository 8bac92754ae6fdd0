package node

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"

	"github.com/bulwark-auth/bulwark/fsm"
)

// Who may use the cluster port.
//
// A node removed from the cluster keeps a certificate the CA signed, and
// every member holds the CA key, so a certificate alone proves little.
// checkPeer also requires, once this node knows its cluster's
// configuration, that the peer's name be in it, and, once the name's key is
// recorded (fsm member.key), that the certificate be for that key: nobody
// holding only the CA key can pass for a member.

// spkiHash is the hex SHA-256 of a certificate's SubjectPublicKeyInfo.
func spkiHash(leaf *x509.Certificate) string { return hexSHA256(leaf.RawSubjectPublicKeyInfo) }

func hexSHA256(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// checkPeer decides whether a peer presenting leaf under name may use the
// cluster port.
func (n *Node) checkPeer(name string, leaf *x509.Certificate) error {
	if servers := n.servers(); len(servers) > 0 && name != n.cfg.ID && !n.isMember(name) {
		return fmt.Errorf("%s is not a member of the cluster", name)
	}
	var want string
	var ok bool
	n.View(func(r fsm.Reader) error { want, ok = r.MemberKey(name); return nil })
	if ok && want != spkiHash(leaf) {
		return fmt.Errorf("the certificate for %s is not for the key the cluster recorded for it", name)
	}
	return nil
}

// checkServer decides whether a peer dialled as the member id, presenting
// leaf, is that member: the certificate names id and, once id's key is
// recorded, is for that key. Both ends of a cluster connection check: a
// removed node, or anyone holding the CA key, that answers at a member's
// address is not taken for it.
func (n *Node) checkServer(id string, leaf *x509.Certificate) error {
	if leaf.Subject.CommonName != id {
		return fmt.Errorf("the node dialled as %s presents a certificate for %q", id, leaf.Subject.CommonName)
	}
	if want, ok := memberKeyOf(n, id); ok && want != spkiHash(leaf) {
		return fmt.Errorf("%s presents a certificate for a key other than the one the cluster recorded for it", id)
	}
	return nil
}

// checkServerAt is checkServer for the member the configuration has at
// addr: where Raft dials.
func (n *Node) checkServerAt(addr string, leaf *x509.Certificate) error {
	for _, s := range n.servers() {
		if string(s.Address) == addr {
			return n.checkServer(string(s.ID), leaf)
		}
	}
	return fmt.Errorf("no member of the cluster's configuration is at %s", addr)
}

// serverIs is checkServer for id as a serverCheck.
func (n *Node) serverIs(id string) serverCheck {
	return func(leaf *x509.Certificate) error { return n.checkServer(id, leaf) }
}

// recordMemberKey records node's key, when the cluster's level has it.
func (n *Node) recordMemberKey(ctx context.Context, node, spki string) error {
	if !n.proposable(fsm.TypeMemberKey, 1) {
		return fmt.Errorf("%w: the cluster is below member.key's feature level", fsm.ErrAboveLevel)
	}
	cmd, err := fsm.NewCommand(fsm.TypeMemberKey, 1, n.cfg.Clock.Now().UnixNano(), fsm.MemberKey{Node: node, SPKI: spki})
	if err != nil {
		return err
	}
	_, err = n.Apply(ctx, cmd)
	return err
}

// recordOwnKey records this node's own key once the cluster's level has
// member keys and its record is missing or another (a member of an
// earlier release, or one whose key changed), then returns.
func (n *Node) recordOwnKey() {
	n.every(0, levelEvery, func() bool {
		leaf := n.fwd.tls.Certificate().Leaf
		if leaf == nil {
			return true
		}
		own := spkiHash(leaf)
		var have string
		n.View(func(r fsm.Reader) error { have, _ = r.MemberKey(n.cfg.ID); return nil })
		if have == own {
			return true
		}
		ctx, cancel := context.WithTimeout(context.Background(), memberTimeout)
		err := n.recordMemberKey(ctx, n.cfg.ID, own)
		cancel()
		if err == nil {
			n.log.Info("recorded this node's key with the cluster", "spki_sha256", own)
			return true
		}
		n.log.Debug("this node's key not recorded yet", "error", err)
		return false
	})
}
