package fsm

import (
	"fmt"
)

// One cluster, one issuer. tokens.issuer, when an operator sets it, is the
// cluster's public URL and the same on every member. The first member that
// proposes it records it (tokens.issuer v1); the same value again changes
// nothing, and another value is refused with ErrIssuerConflict, the same
// way on every node, so a member configured with another issuer learns it
// from the log and refuses to start. Members left without tokens.issuer
// sign with their own URL, recorded with their key (key.publish v2); every
// member accepts the recorded issuer and those of the keys still signing.
// Level 3.
const TypeTokensIssuer Type = "tokens.issuer"

// TokensIssuer is the payload of tokens.issuer v1.
type TokensIssuer struct {
	Issuer string `json:"issuer"` // an https URL of at most MaxIssuerBytes
}

var keyTokensIssuer = []byte("tokens_issuer")

var issuerCommands = []CommandSpec{
	{Type: TypeTokensIssuer, Version: 1, Level: 3, Apply: applyTokensIssuer, Result: nil},
}

func applyTokensIssuer(t txn, c Command) (any, error) {
	var p TokensIssuer
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if !validIssuer(p.Issuer) {
		return nil, fmt.Errorf("%w: tokens.issuer: an https URL of 1 to %d printable ASCII bytes", ErrInvalidCommand, MaxIssuerBytes)
	}
	meta := t.tx.Bucket(bucketMeta)
	switch cur := meta.Get(keyTokensIssuer); {
	case cur == nil:
		return nil, meta.Put(keyTokensIssuer, []byte(p.Issuer))
	case string(cur) != p.Issuer:
		return nil, fmt.Errorf("%w: it is %q, not %q", ErrIssuerConflict, cur, p.Issuer)
	}
	return nil, nil
}

// TokensIssuer is the cluster's recorded tokens.issuer, if any.
func (r Reader) TokensIssuer() (string, bool) {
	v := r.tx.Bucket(bucketMeta).Get(keyTokensIssuer)
	return string(v), v != nil
}

// KeysGeneration changes (on this node) whenever a command that changes
// PublicKeys or TokensIssuer has been applied, or the state was restored
// from a snapshot, and only then: something derived from those two is
// still valid while it is unchanged, without reading them again. It is
// read when the view begins, so a view never shows a generation newer
// than its contents. It is local, not replicated: compare it only with
// values read from the same node.
func (r Reader) KeysGeneration() uint64 { return r.keysGen }

// changesKeys are the command types whose success changes what
// KeysGeneration stands for.
var changesKeys = map[Type]bool{TypeKeyPublish: true, TypeTokensIssuer: true}
