package node

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/bulwark-auth/bulwark/fsm"
)

// What a member may have the leader write.
//
// The state machine cannot tell who proposed a command, so the leader
// decides for the commands followers forward to it. It applies one only
// from a member of the current configuration that presents the key the
// cluster recorded for its name (checkCaller: a removed node, or anyone
// who minted a certificate with the CA key every member holds, gets
// nothing), and a command that speaks for a node only from that node
// (checkSpeaksFor):
//
//	member.key    Node is the caller and SPKI the key it presents; the
//	              leader records a joining node's key itself (membership.go)
//	key.publish   Node is the caller; another member may only retire a
//	              key of a node that is no longer a member, never extend
//	              one (what `cluster remove` has authcore.RetireNodeKeys do
//	              at whichever member the administrator used)
//	join.token    Issuer is the caller
//	join.consume  NodeID is not a member yet, and the token's issuer still
//	              is: a removed node's tokens admit no one. The joiner has
//	              no certificate; the member holding the CA key that
//	              checked its secret proposes it.
//	cluster.level only the leader proposes it (level.go)
//	audit.prune,  only the leader proposes them (authcore's retention):
//	session.prune a member cannot shorten the trail or the sessions' by
//	              its own say
//	audit.key,    Node is the caller: a member records its own audit keys
//	audit.checkpoint and signs checkpoints with them
//
// Everything else (users, sessions, lockout, audit entries, the data key's
// records, ca.key, which the CA key itself signs) is what an administrator
// or a client may have any member write: every member serves the API and
// the admin socket, so any current member may forward it. What the leader
// proposes itself is not checked: it runs this code.

// checkCaller refuses a forwarding peer that is not a current member under
// the key the cluster recorded for it. The cluster port checked both when
// the connection opened (checkPeer); a connection outlives a removal or a
// key recorded since.
func (n *Node) checkCaller(caller string, leaf *x509.Certificate) error {
	switch {
	case caller == "" || leaf == nil:
		return errors.New("no cluster certificate")
	case caller == n.cfg.ID:
		return fmt.Errorf("a peer presents this node's own name, %s", caller)
	case !n.isMember(caller):
		return fmt.Errorf("%s is not a member of the cluster", caller)
	}
	if want, ok := memberKeyOf(n, caller); ok && want != spkiHash(leaf) {
		return fmt.Errorf("the certificate for %s is not for the key the cluster recorded for it", caller)
	}
	return nil
}

func memberKeyOf(n *Node, id string) (spki string, ok bool) {
	n.View(func(r fsm.Reader) error { spki, ok = r.MemberKey(id); return nil })
	return spki, ok
}

// checkSpeaksFor refuses a command from caller (presenting leaf) that
// speaks for another node.
func (n *Node) checkSpeaksFor(caller string, leaf *x509.Certificate, cmd fsm.Command) error {
	switch cmd.Type {
	case fsm.TypeMemberKey:
		var p fsm.MemberKey
		if err := decodeForCheck(cmd, &p); err != nil {
			return err
		}
		if p.Node != caller {
			return fmt.Errorf("%s may not record a key for %s: a member records its own", caller, p.Node)
		}
		if p.SPKI != spkiHash(leaf) {
			return fmt.Errorf("%s may record only the key of the certificate it presents", caller)
		}
	case fsm.TypeKeyPublish:
		var p fsm.KeyPublish
		if err := decodeForCheck(cmd, &p); err != nil {
			return err
		}
		if p.Node == caller {
			return nil
		}
		if n.isMember(p.Node) {
			return fmt.Errorf("%s may not publish or mark a signing key of %s: a member publishes its own", caller, p.Node)
		}
		return n.checkRetirement(p)
	case fsm.TypeJoinToken:
		var p fsm.JoinTokenCreate
		if err := decodeForCheck(cmd, &p); err != nil {
			return err
		}
		if p.Issuer != caller {
			return fmt.Errorf("%s may not make a join token issued by %s", caller, p.Issuer)
		}
	case fsm.TypeJoinConsume:
		var p fsm.JoinConsume
		if err := decodeForCheck(cmd, &p); err != nil {
			return err
		}
		if n.isMember(p.NodeID) {
			return fmt.Errorf("%s is a member already; a join token admits a new node", p.NodeID)
		}
		var issuer string
		n.View(func(r fsm.Reader) error {
			if t, err := r.JoinToken(p.Hash); err == nil {
				issuer = t.Issuer
			}
			return nil
		})
		if issuer != "" && !n.isMember(issuer) {
			return fmt.Errorf("the join token was made by %s, which is no longer a member; make a new one", issuer)
		}
	case fsm.TypeClusterLevel:
		return errors.New("only the leader raises the cluster's feature level")
	case fsm.TypeAuditPrune, fsm.TypeSessionPrune:
		return errors.New("only the leader prunes by retention")
	case fsm.TypeAuditKey:
		var p fsm.AuditKey
		if err := decodeForCheck(cmd, &p); err != nil {
			return err
		}
		if p.Node != caller {
			return fmt.Errorf("%s may not record an audit key of %s: a member records its own", caller, p.Node)
		}
	case fsm.TypeAuditCheckpoint:
		var p fsm.AuditCheckpoint
		if err := decodeForCheck(cmd, &p); err != nil {
			return err
		}
		if p.Node != caller {
			return fmt.Errorf("%s may not write a checkpoint signed by %s: a member signs its own", caller, p.Node)
		}
	}
	return nil
}

// checkRetirement accepts a key.publish only as the retirement of a key
// already published for p.Node: it stops signing and leaves the JWKS, no
// later than it was set to.
func (n *Node) checkRetirement(p fsm.KeyPublish) error {
	var k *fsm.PublicKey
	n.View(func(r fsm.Reader) error { k, _ = r.PublicKey(p.Kid); return nil })
	switch {
	case k == nil || k.Node != p.Node:
		return fmt.Errorf("no signing key %q of %s to retire; only a node publishes its keys", p.Kid, p.Node)
	case p.NotAfter == 0 || p.Retire == 0:
		return fmt.Errorf("key %q of %s may only be retired: not_after and retire set", p.Kid, p.Node)
	case !k.NotAfter.IsZero() && p.NotAfter > k.NotAfter.UnixNano(),
		!k.Retire.IsZero() && p.Retire > k.Retire.UnixNano():
		return fmt.Errorf("key %q of %s may be retired sooner, not later", p.Kid, p.Node)
	}
	return nil
}

// decodeForCheck decodes a payload as Apply will (the same decoder and
// strictness), so what is checked is what is applied.
func decodeForCheck(cmd fsm.Command, v any) error {
	dec := json.NewDecoder(bytes.NewReader(cmd.Payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil || dec.More() {
		return fmt.Errorf("%s payload does not decode", cmd.Type)
	}
	return nil
}
