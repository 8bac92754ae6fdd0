package main

// Cluster membership, daemon side: the promotion of a joined node once its
// key is published, and the admin socket's cluster routes
// (api.ClusterAdmin over the node). The joining node's side of `serve
// --join` is node's (node.BeginJoin).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/bulwark-auth/bulwark/api"
	"github.com/bulwark-auth/bulwark/authcore"
	"github.com/bulwark-auth/bulwark/cmd/bulwark/config"
	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/node"
)

// becomeVoter finishes this node's own join (promotion to voter) once
// published is closed: when its signing key is in the log, after its
// tokens.issuer was held to its cluster's. A joiner configured with
// another issuer exits as a nonvoter, which costs the cluster no quorum.
func becomeVoter(ctx context.Context, n *node.Node, published <-chan struct{}, logger *slog.Logger) {
	select {
	case <-published:
	case <-ctx.Done():
		return
	}
	if err := n.EnsureVoter(ctx); err != nil && ctx.Err() == nil {
		logger.Error("could not become a voter of the cluster", "error", err)
	}
}

// nodeKeys retires a removed node's signing keys (authcore.Service).
type nodeKeys interface {
	RetireNodeKeys(ctx context.Context, id, actor string) (int, error)
}

// clusterService is api.ClusterAdmin over the node.
type clusterService struct {
	n       *node.Node
	renewer *node.CertRenewer // nil: renew-cert is refused
	keys    nodeKeys          // nil: removal leaves signing keys alone
}

func (s clusterService) ClusterStatus(ctx context.Context) (api.ClusterStatus, error) {
	st, err := s.n.ClusterStatus(ctx)
	if err != nil {
		return api.ClusterStatus{}, err
	}
	out := api.ClusterStatus{Leader: st.LeaderID, Nodes: make([]api.ClusterNode, 0, len(st.Nodes))}
	for _, m := range st.Nodes {
		out.Nodes = append(out.Nodes, api.ClusterNode{ID: m.ID, Address: m.Address, Suffrage: m.Suffrage,
			Leader: m.Leader, Self: m.Self, Reachable: m.Reachable, State: m.State, AppliedIndex: m.AppliedIndex,
			Lag: m.Lag, LastContact: m.LastContact, CAHolder: m.CA, Error: m.Error})
		if !m.CertNotAfter.IsZero() {
			out.Nodes[len(out.Nodes)-1].CertNotAfter = &m.CertNotAfter
		}
	}
	return out, nil
}

func (s clusterService) JoinToken(ctx context.Context, ttl string) (api.JoinToken, error) {
	d := node.DefaultJoinTokenTTL
	if ttl != "" {
		var err error
		if d, err = config.ParseDuration(ttl); err != nil || d <= 0 || d > fsm.MaxJoinTokenTTL {
			return api.JoinToken{}, &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidRequest,
				Description: fmt.Sprintf("ttl %q: want a positive duration of at most 7d, such as 30m, 1h or 1d", ttl)}
		}
	}
	tok, exp, err := s.n.CreateJoinToken(ctx, d, clusterActor(ctx))
	switch {
	case errors.Is(err, node.ErrNotCAHolder):
		return api.JoinToken{}, &api.Error{Status: http.StatusConflict, Code: api.CodeConflict, Description: err.Error()}
	case err != nil:
		return api.JoinToken{}, err
	}
	return api.JoinToken{Token: tok, ExpiresAt: exp.UTC()}, nil
}

// RemoveNode removes the member, then retires its signing keys: a removed
// node (or whoever holds its disk) can no longer mint tokens the cluster
// accepts. Those it signed before with the cluster's tokens.issuer stay
// valid until they expire; those it signed with its own URL are refused
// at once, since no member's key signs with that issuer any more.
func (s clusterService) RemoveNode(ctx context.Context, id string) error {
	err := s.n.RemoveMember(ctx, id, clusterActor(ctx))
	switch {
	case errors.Is(err, node.ErrNotMember):
		// Removed before, perhaps with its keys still live: retire them.
		if s.keys != nil {
			if n, rerr := s.keys.RetireNodeKeys(ctx, id, clusterActor(ctx)); rerr == nil && n > 0 {
				return nil
			}
		}
		return &api.Error{Status: http.StatusNotFound, Code: api.CodeNotFound, Description: err.Error()}
	case errors.Is(err, node.ErrMembership):
		return &api.Error{Status: http.StatusConflict, Code: api.CodeConflict, Description: err.Error()}
	case err != nil:
		return err
	}
	if s.keys != nil {
		if _, err := s.keys.RetireNodeKeys(ctx, id, clusterActor(ctx)); err != nil {
			return fmt.Errorf("%s was removed, but retiring its signing keys failed (run `bulwark cluster remove %s` again): %w", id, id, err)
		}
	}
	return nil
}

// RenewCertificate is `bulwark cluster renew-cert`: renew now, due or not.
func (s clusterService) RenewCertificate(ctx context.Context) (api.CertRenewal, error) {
	if s.renewer == nil {
		return api.CertRenewal{}, errors.New("certificate renewal is not available on this listener")
	}
	c, err := s.renewer.Renew(ctx, true)
	if err != nil {
		return api.CertRenewal{}, &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable,
			Description: "node certificate not renewed: " + err.Error()}
	}
	return api.CertRenewal{Serial: c.Serial, NotAfter: c.NotAfter, Renewed: c.Renewed}, nil
}

func clusterActor(ctx context.Context) string {
	if a := authcore.RequestInfoFrom(ctx).Actor; a != "" {
		return a
	}
	return "local-admin"
}
