package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The cluster data key never enters the replicated state; what does is
// what every node and every backup must know about it: its fingerprint
// (registered once, at the first start), its escrows (the key wrapped to
// an operator's KEM public key) and the record of its recovery shares (the
// key sealed under a pad whose shares were printed once). All of it lives
// in one JSON document under meta/"datakey", so no bucket is added.
//
// Apply only checks shapes and the rules below; the cryptography is the
// proposer's, and recovery re-checks everything against the fingerprint.
const (
	// TypeDataKeyRegister records the data key's fingerprint (v1:
	// DataKeyRegister). The same fingerprint again is a no-op; another one
	// is ErrInvalidCommand: the data key never changes in place.
	TypeDataKeyRegister Type = "datakey.register"
	// TypeDataKeyEscrow adds an escrow of the registered key (v1:
	// DataKeyEscrow). A second escrow to the same public key is
	// ErrEscrowExists.
	TypeDataKeyEscrow Type = "datakey.escrow"
	// TypeDataKeyShares records that recovery shares were issued (v1:
	// DataKeyShares). Shares are issued once: a second time is
	// ErrSharesIssued.
	TypeDataKeyShares Type = "datakey.shares"
)

// Limits of the data key records.
const (
	MaxEscrows        = 8
	MaxRecoveryShares = 32
	// MinShareThreshold: a single share that recovers the key alone would
	// be the key itself by another name; an escrow key is the tool for one
	// holder.
	MinShareThreshold  = 2
	maxEscrowPublicKey = 4 << 10
	maxKEMCiphertext   = 4 << 10
	maxWrappedDataKey  = 256
	shareSetIDLen      = 8 // hex of 4 bytes
)

// escrowKEMs are the KEMs an escrow may name.
var escrowKEMs = map[string]bool{"X25519MLKEM768": true}

var keyDataKey = []byte("datakey")

// DataKeyRegister is the payload of datakey.register v1.
type DataKeyRegister struct {
	Fingerprint string `json:"fingerprint"` // 64 lowercase hex digits
}

// DataKeyEscrow is the payload of datakey.escrow v1: the data key
// encapsulated to an escrow public key.
type DataKeyEscrow struct {
	// DataKey is the escrowed key's fingerprint; it must be the registered one.
	DataKey string `json:"data_key"`
	// KeyFingerprint names the escrow public key (64 lowercase hex).
	KeyFingerprint string `json:"key_fingerprint"`
	KEM            string `json:"kem"` // "X25519MLKEM768"
	// PublicKey is kept so that a future data key can be escrowed again
	// to the same holder without asking for the file.
	PublicKey     []byte `json:"public_key"`
	KEMCiphertext []byte `json:"kem_ciphertext"`
	Ciphertext    []byte `json:"ciphertext"` // AEAD of the data key
}

// DataKeyShares is the payload of datakey.shares v1. The shares themselves
// are never in the state: only the data key sealed under the secret they
// split, and a hash of each share so that recovery can name a wrong one.
type DataKeyShares struct {
	DataKey     string   `json:"data_key"`     // fingerprint, the registered one
	Threshold   int      `json:"threshold"`    // K: shares needed
	Shares      int      `json:"shares"`       // N: shares issued
	SetID       string   `json:"set_id"`       // 8 lowercase hex digits, in every share
	Ciphertext  []byte   `json:"ciphertext"`   // the data key sealed under the split secret
	ShareHashes []string `json:"share_hashes"` // N × 64 lowercase hex, share i at i-1
}

// DataKeyState is what the replicated state knows of the data key.
type DataKeyState struct {
	Fingerprint  string          `json:"fingerprint"`
	RegisteredAt time.Time       `json:"registered_at"`
	Escrows      []Escrow        `json:"escrows,omitempty"`
	Shares       *RecoveryShares `json:"shares,omitempty"`
}

// Escrow is a stored escrow.
type Escrow struct {
	DataKeyEscrow
	CreatedAt time.Time `json:"created_at"`
}

// RecoveryShares is the stored record of issued shares.
type RecoveryShares struct {
	DataKeyShares
	IssuedAt time.Time `json:"issued_at"`
}

// Escrow returns the escrow to the public key named keyFingerprint.
func (s *DataKeyState) Escrow(keyFingerprint string) (*Escrow, bool) {
	for i := range s.Escrows {
		if s.Escrows[i].KeyFingerprint == keyFingerprint {
			return &s.Escrows[i], true
		}
	}
	return nil, false
}

// escrowCommands are the data key commands' rows of the dispatch table.
var escrowCommands = []CommandSpec{
	{Type: TypeDataKeyRegister, Version: 1, Level: 1, Apply: applyDataKeyRegister, Result: reflect.TypeFor[*DataKeyState]()},
	{Type: TypeDataKeyEscrow, Version: 1, Level: 1, Apply: applyDataKeyEscrow, Result: reflect.TypeFor[*Escrow]()},
	{Type: TypeDataKeyShares, Version: 1, Level: 1, Apply: applyDataKeyShares, Result: reflect.TypeFor[*RecoveryShares]()},
}

func applyDataKeyRegister(t txn, c Command) (any, error) {
	var p DataKeyRegister
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if !isHex(p.Fingerprint, 64) {
		return nil, fmt.Errorf("%w: datakey.register: fingerprint must be 64 lowercase hex digits", ErrInvalidCommand)
	}
	st, err := getDataKey(t.tx)
	switch {
	case errors.Is(err, ErrNoDataKey):
		st = &DataKeyState{Fingerprint: p.Fingerprint, RegisteredAt: time.Unix(0, c.Time).UTC()}
		return st, putDataKey(t.tx, st)
	case err != nil:
		return nil, err
	case st.Fingerprint != p.Fingerprint:
		return nil, fmt.Errorf("%w: datakey.register: the cluster's data key is %s, registered at %s; it cannot change to %s",
			ErrInvalidCommand, st.Fingerprint, st.RegisteredAt.Format(time.RFC3339), p.Fingerprint)
	}
	return st, nil
}

func applyDataKeyEscrow(t txn, c Command) (any, error) {
	var p DataKeyEscrow
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if err := checkEscrow(&p); err != nil {
		return nil, fmt.Errorf("%w: datakey.escrow: %v", ErrInvalidCommand, err)
	}
	st, err := registered(t.tx, p.DataKey)
	if err != nil {
		return nil, err
	}
	if e, ok := st.Escrow(p.KeyFingerprint); ok {
		return nil, fmt.Errorf("%w (%s, since %s)", ErrEscrowExists, p.KeyFingerprint, e.CreatedAt.Format(time.RFC3339))
	}
	if len(st.Escrows) >= MaxEscrows {
		return nil, fmt.Errorf("%w: datakey.escrow: already %d escrows, the most there may be", ErrInvalidCommand, MaxEscrows)
	}
	e := Escrow{DataKeyEscrow: p, CreatedAt: time.Unix(0, c.Time).UTC()}
	st.Escrows = append(st.Escrows, e)
	return &e, putDataKey(t.tx, st)
}

func checkEscrow(p *DataKeyEscrow) error {
	switch {
	case !isHex(p.DataKey, 64):
		return fmt.Errorf("data_key must be 64 lowercase hex digits")
	case !isHex(p.KeyFingerprint, 64):
		return fmt.Errorf("key_fingerprint must be 64 lowercase hex digits")
	case !escrowKEMs[p.KEM]:
		return fmt.Errorf("kem %q is not X25519MLKEM768", p.KEM)
	case len(p.PublicKey) == 0 || len(p.PublicKey) > maxEscrowPublicKey:
		return fmt.Errorf("public_key must be 1 to %d bytes", maxEscrowPublicKey)
	case len(p.KEMCiphertext) == 0 || len(p.KEMCiphertext) > maxKEMCiphertext:
		return fmt.Errorf("kem_ciphertext must be 1 to %d bytes", maxKEMCiphertext)
	case len(p.Ciphertext) == 0 || len(p.Ciphertext) > maxWrappedDataKey:
		return fmt.Errorf("ciphertext must be 1 to %d bytes", maxWrappedDataKey)
	}
	return nil
}

func applyDataKeyShares(t txn, c Command) (any, error) {
	var p DataKeyShares
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if err := checkShares(&p); err != nil {
		return nil, fmt.Errorf("%w: datakey.shares: %v", ErrInvalidCommand, err)
	}
	st, err := registered(t.tx, p.DataKey)
	if err != nil {
		return nil, err
	}
	if st.Shares != nil {
		return nil, fmt.Errorf("%w at %s (%d of %d)", ErrSharesIssued,
			st.Shares.IssuedAt.Format(time.RFC3339), st.Shares.Threshold, st.Shares.Shares)
	}
	st.Shares = &RecoveryShares{DataKeyShares: p, IssuedAt: time.Unix(0, c.Time).UTC()}
	return st.Shares, putDataKey(t.tx, st)
}

func checkShares(p *DataKeyShares) error {
	switch {
	case !isHex(p.DataKey, 64):
		return fmt.Errorf("data_key must be 64 lowercase hex digits")
	case p.Threshold < MinShareThreshold || p.Shares < p.Threshold || p.Shares > MaxRecoveryShares:
		return fmt.Errorf("%d of %d shares: want %d <= threshold <= shares <= %d",
			p.Threshold, p.Shares, MinShareThreshold, MaxRecoveryShares)
	case !isHex(p.SetID, shareSetIDLen):
		return fmt.Errorf("set_id must be %d lowercase hex digits", shareSetIDLen)
	case len(p.Ciphertext) == 0 || len(p.Ciphertext) > maxWrappedDataKey:
		return fmt.Errorf("ciphertext must be 1 to %d bytes", maxWrappedDataKey)
	case len(p.ShareHashes) != p.Shares:
		return fmt.Errorf("%d share hashes for %d shares", len(p.ShareHashes), p.Shares)
	}
	seen := map[string]bool{}
	for i, h := range p.ShareHashes {
		if !isHex(h, 64) || seen[h] {
			return fmt.Errorf("share hash %d must be 64 lowercase hex digits, unlike the others", i+1)
		}
		seen[h] = true
	}
	return nil
}

// registered returns the state when fingerprint is the registered key.
func registered(tx *bolt.Tx, fingerprint string) (*DataKeyState, error) {
	st, err := getDataKey(tx)
	if err != nil {
		return nil, err
	}
	if st.Fingerprint != fingerprint {
		return nil, fmt.Errorf("%w: the data key %s is not the cluster's (%s)", ErrInvalidCommand, fingerprint, st.Fingerprint)
	}
	return st, nil
}

func getDataKey(tx *bolt.Tx) (*DataKeyState, error) {
	v := tx.Bucket(bucketMeta).Get(keyDataKey)
	if v == nil {
		return nil, ErrNoDataKey
	}
	var st DataKeyState
	if err := json.Unmarshal(v, &st); err != nil {
		return nil, fmt.Errorf("fsm: stored data key record: %w", err)
	}
	return &st, nil
}

func putDataKey(tx *bolt.Tx, st *DataKeyState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketMeta).Put(keyDataKey, b)
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !('0' <= s[i] && s[i] <= '9' || 'a' <= s[i] && s[i] <= 'f') {
			return false
		}
	}
	return true
}

// DataKey returns what the state knows of the cluster data key, or
// ErrNoDataKey before its registration.
func (r Reader) DataKey() (*DataKeyState, error) { return getDataKey(r.tx) }
