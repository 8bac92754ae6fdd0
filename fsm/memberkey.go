package fsm

import (
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// TypeMemberKey records the key a member's certificates certify: the
// SHA-256 of its TLS SubjectPublicKeyInfo. The cluster port accepts a
// member's name only with that key (node/transport.go), so a certificate
// minted for the name by anyone holding the CA key, a removed member
// included, does not pass for it. Renewals keep the key; a member with a
// new key records it again. Level 2.
const TypeMemberKey Type = "member.key"

// MemberKey is the payload of member.key v1.
type MemberKey struct {
	Node string `json:"node"`
	SPKI string `json:"spki"` // 64 lowercase hex digits
}

const memberKeyPrefix = "member_key/"

// levelOneNamePerKey is the feature level from which a key is recorded
// for one name only.
const levelOneNamePerKey = 3

var memberKeyCommands = []CommandSpec{
	{Type: TypeMemberKey, Version: 1, Level: 2, Apply: applyMemberKey, Result: nil},
}

func applyMemberKey(t txn, c Command) (any, error) {
	var p MemberKey
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if p.Node == "" || len(p.Node) > 64 || strings.ContainsFunc(p.Node, func(r rune) bool { return r <= ' ' || r > '~' }) || !isHex(p.SPKI, 64) {
		return nil, fmt.Errorf("%w: member.key: a node name and 64 lowercase hex digits", ErrInvalidCommand)
	}
	// From level 3 on, a key certifies one name: a member that recorded
	// its own key under another's name could pass for it on the cluster
	// port (node checks who proposes; this holds whoever did).
	meta := t.tx.Bucket(bucketMeta)
	if levelOf(meta.Get(keyLevel)) >= levelOneNamePerKey {
		prefix := []byte(memberKeyPrefix)
		cur := meta.Cursor()
		for k, v := cur.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = cur.Next() {
			if string(v) == p.SPKI && string(k[len(prefix):]) != p.Node {
				return nil, fmt.Errorf("%w: member.key: that key is recorded for %s", ErrInvalidCommand, k[len(prefix):])
			}
		}
	}
	return nil, meta.Put([]byte(memberKeyPrefix+p.Node), []byte(p.SPKI))
}

// MemberKey returns the key hash recorded for node, if any.
func (r Reader) MemberKey(node string) (string, bool) {
	v := r.tx.Bucket(bucketMeta).Get([]byte(memberKeyPrefix + node))
	return string(v), v != nil
}

// DropMemberKeys deletes every recorded member key and returns how many
// there were. Like DropCAKey it is for an offline restore only, the one
// other write outside the log: a restored cluster runs on new machines
// with new keys, and its members would refuse the restored node's
// certificate, while their state still held its old key, before the entry
// that records the new one could reach them. Each member records its key
// again at its start.
func (s *Store) DropMemberKeys() (int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return 0, ErrClosed
	}
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		prefix := []byte(memberKeyPrefix)
		var keys [][]byte
		cur := meta.Cursor()
		for k, _ := cur.Seek(prefix); k != nil && hasPrefix(k, prefix); k, _ = cur.Next() {
			keys = append(keys, append([]byte(nil), k...))
		}
		for _, k := range keys {
			if err := meta.Delete(k); err != nil {
				return err
			}
		}
		n = len(keys)
		return nil
	})
	return n, err
}
