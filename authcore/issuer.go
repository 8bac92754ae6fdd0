package authcore

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/bulwark-auth/bulwark/fsm"
)

// One cluster, one issuer (API.md). A token any member signed is accepted
// by every member. With tokens.issuer set (Config.ClusterIssuer), every
// member signs with it, and the first to run at feature level 3 records it
// in the log (fsm tokens.issuer), so that a member configured with another
// one learns it and refuses to start. Left empty, each member signs with
// its own URL, published with its key (fsm key.publish v2), and every
// member accepts:
//
//   - the cluster's recorded tokens.issuer, and its own configured one (the
//     same, or not recorded yet), from any member's key;
//   - its own issuer, from its own keys;
//   - the issuer recorded with the token's key, while some key with that
//     issuer still signs: a member removed from the cluster has all its keys
//     retired (RetireNodeKeys), so its issuer stops being accepted, and the
//     key of a removed member cannot vouch for another member's issuer.
//
// aud must name the token's issuer, unless Config.Audience says otherwise.
// The accepted set is derived from the keys when they change
// (fsm.Reader.KeysGeneration), never per request.

// IssuerConflictError is ErrIssuerConflict with both issuers: this node's
// tokens.issuer ("" when it has none) and the one its cluster recorded.
type IssuerConflictError struct {
	Configured, Cluster string
}

func (e *IssuerConflictError) Error() string {
	if e.Configured == "" {
		return fmt.Sprintf("this node has no tokens issuer of its own, but its cluster's is %q", e.Cluster)
	}
	return fmt.Sprintf("this node's tokens issuer is %q, but its cluster's is %q", e.Configured, e.Cluster)
}

func (e *IssuerConflictError) Unwrap() error { return ErrIssuerConflict }

// CheckIssuer compares the configured tokens.issuer with the one the
// local state has recorded for the cluster: an *IssuerConflictError when
// the cluster has one and it is another (a node without tokens.issuer in a
// cluster that has one included). Cheap; call it before serving.
func (s *Service) CheckIssuer() error {
	var rec string
	var ok bool
	if err := s.store.View(func(r fsm.Reader) error { rec, ok = r.TokensIssuer(); return nil }); err != nil {
		return err
	}
	if ok && rec != s.cfg.ClusterIssuer {
		return &IssuerConflictError{Configured: s.cfg.ClusterIssuer, Cluster: rec}
	}
	return nil
}

// RecordIssuer holds this node's tokens.issuer to its cluster's, as of a
// linearizable read, and records it when the cluster has none yet. It
// returns an *IssuerConflictError when they differ, and
// ErrIssuerNotRecorded below feature level 3. PublishSigningKey calls it,
// and the leader before it admits a joining node (node.BeforeAdmit), so
// that the first member's issuer is the cluster's before a second one can
// record another.
func (s *Service) RecordIssuer(ctx context.Context) error {
	if err := s.ReadBarrier(ctx); err != nil {
		return err
	}
	if !s.proposable(fsm.TypeTokensIssuer, 1) {
		return ErrIssuerNotRecorded
	}
	var rec string
	var ok bool
	if err := s.store.View(func(r fsm.Reader) error { rec, ok = r.TokensIssuer(); return nil }); err != nil {
		return err
	}
	switch iss := s.cfg.ClusterIssuer; {
	case ok && rec != iss:
		return &IssuerConflictError{Configured: iss, Cluster: rec}
	case ok || iss == "":
		return nil
	}
	cmd, err := fsm.NewCommand(fsm.TypeTokensIssuer, 1, s.now().UnixNano(), fsm.TokensIssuer{Issuer: s.cfg.ClusterIssuer})
	if err != nil {
		return err
	}
	_, err = s.apply(ctx, cmd, fsm.AuditAppend{Type: "tokens.issuer", Severity: fsm.AuditInfo, Actor: "node:" + s.cfg.NodeID,
		Details: map[string]string{"issuer": s.cfg.ClusterIssuer}})
	if errors.Is(err, fsm.ErrIssuerConflict) {
		// Another member recorded another one first; this node has
		// applied it before the answer came.
		s.store.View(func(r fsm.Reader) error { rec, _ = r.TokensIssuer(); return nil })
		return &IssuerConflictError{Configured: s.cfg.ClusterIssuer, Cluster: rec}
	}
	return err
}

// issuerSet is what the verifier derives from the replicated keys: the
// cluster's issuer, each key's node and issuer, and the issuers of the
// keys that still sign. It is rebuilt when the keys change.
type issuerSet struct {
	gen     uint64 // fsm.Reader.KeysGeneration it was built at
	cluster string // the recorded tokens.issuer; "" if none
	keys    map[string]keyIssuer
	signing map[string]bool
}

type keyIssuer struct{ node, issuer string }

func buildIssuerSet(r fsm.Reader) (*issuerSet, error) {
	set := &issuerSet{gen: r.KeysGeneration(), keys: map[string]keyIssuer{}, signing: map[string]bool{}}
	set.cluster, _ = r.TokensIssuer()
	err := r.PublicKeys(func(k *fsm.PublicKey) bool {
		set.keys[k.Kid] = keyIssuer{k.Node, k.Issuer}
		if k.Issuer != "" && k.NotAfter.IsZero() {
			set.signing[k.Issuer] = true
		}
		return true
	})
	return set, err
}

// issuerSet returns the set for r's keys, derived again only when they
// have changed since, or when r knows a kid the set does not (a key
// committed just before the generation moved).
func (v *verifier) issuerSet(r fsm.Reader, kid string) (*issuerSet, error) {
	set := v.issuers.Load()
	if set != nil && set.gen == r.KeysGeneration() {
		if _, ok := set.keys[kid]; ok {
			return set, nil
		}
	}
	set, err := buildIssuerSet(r)
	if err != nil {
		return nil, err
	}
	v.issuers.Store(set)
	return set, nil
}

// checkIssuer holds the iss and aud of a token verified by kid to what
// this node accepts (see the top of this file). r is the caller's view.
func (v *verifier) checkIssuer(r fsm.Reader, c *AccessClaims, kid string) error {
	set, err := v.issuerSet(r, kid)
	if err != nil {
		return fmt.Errorf("%w: reading the signing keys: %v", ErrInvalidToken, err)
	}
	iss, k := c.Issuer, set.keys[kid]
	ok := iss != "" && (iss == set.cluster ||
		iss == v.issuer && (v.shared || k.node == v.node) ||
		iss == k.issuer && set.signing[iss])
	if !ok {
		return fmt.Errorf("%w: issuer %q is not one this cluster's members sign with (key %q)", ErrInvalidToken, iss, kid)
	}
	aud := v.audience
	if aud == "" {
		aud = iss
	}
	if !slices.Contains(c.Audience, aud) {
		return fmt.Errorf("%w: audience %q does not name %q", ErrInvalidToken, c.Audience, aud)
	}
	return nil
}
