package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"time"
)

// Consent grants (level 5): what a user allowed a client that requires
// consent (OIDCClient.ConsentRequired) to receive, by scope. A grant
// counts only for the client it was given to: it records the client's
// CreatedAt, so a client removed and registered again under the same name
// asks again. oidc.authorize v2 re-checks it on the committed state.
// Revoking a grant also ends the sessions the client holds for the user,
// so its refresh tokens stop working with the consent.
const (
	TypeOIDCConsentGrant  Type = "oidc.consent_grant"
	TypeOIDCConsentRevoke Type = "oidc.consent_revoke"
	// TypeOIDCConsentRevokeAll withdraws every grant of a user in one
	// entry (DELETE /v1/me/grants): a failure or a disconnect halfway
	// cannot leave some of them.
	TypeOIDCConsentRevokeAll Type = "oidc.consent_revoke_all"
)

// bucketGrants: user id 0x00 client id → OIDCGrant.
var bucketGrants = []byte("oidc_grants")

// OIDCGrant is a user's consent to a client.
type OIDCGrant struct {
	UserID   string   `json:"user_id"`
	ClientID string   `json:"client_id"`
	Scopes   []string `json:"scopes"` // sorted, each once
	// ClientCreatedAt is the client's CreatedAt when consent was given.
	ClientCreatedAt time.Time `json:"client_created_at"`
	GrantedAt       time.Time `json:"granted_at"` // first given
	UpdatedAt       time.Time `json:"updated_at"` // last given (scopes added)
}

// OIDCConsentGrant records that the user allows the client the scopes,
// added to what the user allowed it before.
type OIDCConsentGrant struct {
	UserID   string   `json:"user_id"`
	ClientID string   `json:"client_id"`
	Scopes   []string `json:"scopes"`
}

// OIDCConsentRevoke withdraws a user's grant to a client and ends the
// sessions that client holds for the user. Its result is how many.
type OIDCConsentRevoke struct {
	UserID   string `json:"user_id"`
	ClientID string `json:"client_id"`
}

// OIDCConsentRevokeAll withdraws every grant of a user (to clients since
// removed too) and ends the sessions those clients hold for the user.
type OIDCConsentRevokeAll struct {
	UserID string `json:"user_id"`
}

// OIDCRevokedGrants is what oidc.consent_revoke_all did.
type OIDCRevokedGrants struct {
	ClientIDs []string `json:"client_ids"` // the grants withdrawn, in client id order
	Sessions  int      `json:"sessions"`   // sessions ended
}

var oidcGrantCommands = []CommandSpec{
	{Type: TypeOIDCConsentGrant, Version: 1, Level: 5, Apply: applyOIDCConsentGrant, Result: reflect.TypeFor[*OIDCGrant]()},
	{Type: TypeOIDCConsentRevoke, Version: 1, Level: 5, Apply: applyOIDCConsentRevoke, Result: reflect.TypeFor[int]()},
	{Type: TypeOIDCConsentRevokeAll, Version: 1, Level: 5, Apply: applyOIDCConsentRevokeAll, Result: reflect.TypeFor[OIDCRevokedGrants]()},
}

func grantKey(userID, clientID string) []byte {
	return append(append([]byte(userID), 0), clientID...)
}

func applyOIDCConsentGrant(t txn, c Command) (any, error) {
	var p OIDCConsentGrant
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if !validID(p.UserID) || !validID(p.ClientID) || len(p.Scopes) == 0 || len(p.Scopes) > maxOIDCScopes {
		return nil, fmt.Errorf("%w: oidc.consent_grant payload", ErrInvalidCommand)
	}
	for _, s := range p.Scopes {
		if s == "" || len(s) > maxOIDCParam {
			return nil, fmt.Errorf("%w: oidc.consent_grant scope", ErrInvalidCommand)
		}
	}
	if _, err := getUser(t.tx, p.UserID); err != nil {
		return nil, err
	}
	cl, err := Reader{tx: t.tx}.OIDCClient(p.ClientID)
	if err != nil {
		return nil, err
	}
	at := time.Unix(0, c.Time).UTC()
	g := &OIDCGrant{UserID: p.UserID, ClientID: p.ClientID, ClientCreatedAt: cl.CreatedAt, GrantedAt: at}
	if old, err := (Reader{tx: t.tx}).OIDCGrant(p.UserID, p.ClientID); err == nil && old.ClientCreatedAt.Equal(cl.CreatedAt) {
		g.Scopes, g.GrantedAt = old.Scopes, old.GrantedAt
	}
	g.Scopes = append(g.Scopes, p.Scopes...)
	slices.Sort(g.Scopes)
	g.Scopes = slices.Compact(g.Scopes)
	if len(g.Scopes) > maxOIDCScopes {
		return nil, fmt.Errorf("%w: oidc.consent_grant: more than %d scopes", ErrInvalidCommand, maxOIDCScopes)
	}
	g.UpdatedAt = at
	b, err := json.Marshal(g)
	if err != nil {
		return nil, err
	}
	return g, t.tx.Bucket(bucketGrants).Put(grantKey(p.UserID, p.ClientID), b)
}

func applyOIDCConsentRevoke(t txn, c Command) (any, error) {
	var p OIDCConsentRevoke
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if !validID(p.UserID) || !validID(p.ClientID) {
		return nil, fmt.Errorf("%w: oidc.consent_revoke payload", ErrInvalidCommand)
	}
	k := grantKey(p.UserID, p.ClientID)
	if t.tx.Bucket(bucketGrants).Get(k) == nil {
		return nil, ErrGrantNotFound
	}
	if err := t.tx.Bucket(bucketGrants).Delete(k); err != nil {
		return nil, err
	}
	ss, err := t.userSessions(p.UserID)
	if err != nil {
		return nil, err
	}
	n := 0
	for _, s := range ss {
		if s.ClientID != p.ClientID {
			continue
		}
		if err := t.deleteSession(s); err != nil {
			return nil, err
		}
		n++
	}
	return n, nil
}

func applyOIDCConsentRevokeAll(t txn, c Command) (any, error) {
	var p OIDCConsentRevokeAll
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if !validID(p.UserID) {
		return nil, fmt.Errorf("%w: oidc.consent_revoke_all payload", ErrInvalidCommand)
	}
	res := OIDCRevokedGrants{ClientIDs: []string{}}
	prefix := append([]byte(p.UserID), 0)
	if err := t.deleteKeysWhere(bucketGrants, func(k []byte) bool {
		if !bytes.HasPrefix(k, prefix) {
			return false
		}
		res.ClientIDs = append(res.ClientIDs, string(k[len(prefix):]))
		return true
	}); err != nil {
		return nil, err
	}
	if len(res.ClientIDs) == 0 {
		return res, nil
	}
	ss, err := t.userSessions(p.UserID)
	if err != nil {
		return nil, err
	}
	for _, s := range ss {
		if s.ClientID == "" || !slices.Contains(res.ClientIDs, s.ClientID) {
			continue
		}
		if err := t.deleteSession(s); err != nil {
			return nil, err
		}
		res.Sessions++
	}
	return res, nil
}

// checkConsent returns ErrConsentRequired unless r's client needs no
// consent, or userID's grant to it covers r's scopes and was given at or
// after after.
func (t txn) checkConsent(userID string, r *OIDCAuthRequest, after time.Time) error {
	rd := Reader{tx: t.tx}
	cl, err := rd.OIDCClient(r.ClientID)
	if err != nil {
		return err
	}
	if !cl.ConsentRequired {
		return nil
	}
	g, err := rd.OIDCGrant(userID, r.ClientID)
	if err != nil || !g.Covers(cl, r.Scopes) || g.UpdatedAt.Before(after) {
		return ErrConsentRequired
	}
	return nil
}

// Covers reports whether g, a grant to client cl as registered now,
// allows every one of scopes.
func (g *OIDCGrant) Covers(cl *OIDCClient, scopes []string) bool {
	if g.ClientID != cl.ID || !g.ClientCreatedAt.Equal(cl.CreatedAt) {
		return false
	}
	for _, s := range scopes {
		if _, ok := slices.BinarySearch(g.Scopes, s); !ok {
			return false
		}
	}
	return true
}

// OIDCGrant returns userID's grant to clientID, or ErrGrantNotFound.
func (r Reader) OIDCGrant(userID, clientID string) (*OIDCGrant, error) {
	return getJSON[OIDCGrant](r.tx, bucketGrants, string(grantKey(userID, clientID)), ErrGrantNotFound)
}

// OIDCGrants calls fn for each of userID's grants in client id order
// (some may be for a client since removed: see Covers).
func (r Reader) OIDCGrants(userID string, fn func(*OIDCGrant)) error {
	prefix := append([]byte(userID), 0)
	c := r.tx.Bucket(bucketGrants).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var g OIDCGrant
		if err := json.Unmarshal(v, &g); err != nil {
			return err
		}
		fn(&g)
	}
	return nil
}
