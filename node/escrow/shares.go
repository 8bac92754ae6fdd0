package escrow

// Recovery shares.
//
// The data key is not split itself: a fresh 32-byte pad is, with Shamir's
// scheme (shamir.go), and the data key sealed under the pad
// (tpm.SealWithSecret) goes into the replicated state with a hash of each
// share. Recovery needs K shares and a copy of the state (a backup); the
// AEAD and the fingerprint check the result.
//
// A share's printed form is "bwshare1-" then the base32 (RFC 4648, no
// padding) of 45 bytes in groups of six:
//
//	0x01 | K | N | index | set id (4) | share value (32) | check (5)
//
// where check is the first 5 bytes of SHA-256("bulwark-share-check-v1" 0x00
// the 40 bytes before it): a mistyped share is refused before use.

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/tpm"
)

const (
	sharePrefix   = "bwshare1-"
	shareVersion  = 1
	shareValueLen = 32
	shareCheckLen = 5
	shareBodyLen  = 4 + 4 + shareValueLen
	shareGroup    = 6
)

var shareB32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// CheckShareCounts: 2 <= K <= N <= 32. K = 1 is refused: one share that
// recovers the key alone is the key by another name (use an escrow key
// for a single holder).
func CheckShareCounts(k, n int) error {
	switch {
	case k < fsm.MinShareThreshold:
		return fmt.Errorf("--threshold %d: at least %d shares must be needed to recover "+
			"(a single share would be the key itself; for one holder use an escrow key)", k, fsm.MinShareThreshold)
	case n < k:
		return fmt.Errorf("--shares %d is fewer than --threshold %d", n, k)
	case n > fsm.MaxRecoveryShares:
		return fmt.Errorf("--shares %d: at most %d shares", n, fsm.MaxRecoveryShares)
	}
	return nil
}

// recoveryShare is one decoded share.
type recoveryShare struct {
	k, n, index byte
	setID       [4]byte
	value       []byte
}

func (s recoveryShare) encode() string {
	b := make([]byte, 0, shareBodyLen+shareCheckLen)
	b = append(b, shareVersion, s.k, s.n, s.index)
	b = append(b, s.setID[:]...)
	b = append(b, s.value...)
	b = append(b, shareCheck(b)...)
	enc := shareB32.EncodeToString(b)
	var out strings.Builder
	out.WriteString(sharePrefix)
	for i := 0; i < len(enc); i += shareGroup {
		if i > 0 {
			out.WriteByte('-')
		}
		out.WriteString(enc[i:min(i+shareGroup, len(enc))])
	}
	return out.String()
}

func shareCheck(b []byte) []byte {
	h := sha256.New()
	h.Write([]byte("bulwark-share-check-v1\x00"))
	h.Write(b)
	return h.Sum(nil)[:shareCheckLen]
}

// decodeShare parses a printed share: case, spaces and dashes do not matter.
func decodeShare(text string) (recoveryShare, error) {
	var s recoveryShare
	t := strings.ToUpper(strings.Join(strings.Fields(text), ""))
	up := strings.ToUpper(sharePrefix)
	if !strings.HasPrefix(t, up) {
		return s, fmt.Errorf("not a recovery share: it must start with %q", sharePrefix)
	}
	t = strings.ReplaceAll(t[len(up):], "-", "")
	b, err := shareB32.DecodeString(t)
	if err != nil || len(b) != shareBodyLen+shareCheckLen {
		return s, fmt.Errorf("not a recovery share: mistyped or truncated (want %d characters after %q)",
			shareB32.EncodedLen(shareBodyLen+shareCheckLen), sharePrefix)
	}
	body, check := b[:shareBodyLen], b[shareBodyLen:]
	if !bytes.Equal(shareCheck(body), check) {
		return s, errors.New("the share's checksum does not match: it is mistyped")
	}
	if body[0] != shareVersion {
		return s, fmt.Errorf("share format version %d is not supported (want %d)", body[0], shareVersion)
	}
	s.k, s.n, s.index = body[1], body[2], body[3]
	if CheckShareCounts(int(s.k), int(s.n)) != nil || s.index < 1 || s.index > s.n {
		return s, fmt.Errorf("share %d of %d (threshold %d) is not a valid share number", s.index, s.n, s.k)
	}
	copy(s.setID[:], body[4:8])
	s.value = bytes.Clone(body[8:])
	return s, nil
}

// shareHash is what the state records of share index: hex of SHA-256(
// "bulwark-recovery-share-v1" 0x00 set id | index | value).
func shareHash(setID [4]byte, index byte, value []byte) string {
	h := sha256.New()
	h.Write([]byte("bulwark-recovery-share-v1\x00"))
	h.Write(setID[:])
	h.Write([]byte{index})
	h.Write(value)
	return hex.EncodeToString(h.Sum(nil))
}

// sharesAAD binds the sealed data key to the share set.
func sharesAAD(dataKeyFP, setID string, k, n int) []byte {
	return fmt.Appendf(nil, "data-key=%s;set=%s;k=%d;n=%d", dataKeyFP, setID, k, n)
}

// ShareSet is a freshly split set: the state's record and the printed
// shares, which are shown once and stored nowhere.
type ShareSet struct {
	Record fsm.DataKeyShares
	Texts  []string
}

// NewShareSet splits a fresh random pad into n shares of which any k
// recover it, and seals key (the data key, fingerprint dataKeyFP) under
// the pad. The counts are checked with CheckShareCounts first.
func NewShareSet(key []byte, dataKeyFP string, k, n int) (*ShareSet, error) {
	if err := CheckShareCounts(k, n); err != nil {
		return nil, err
	}
	pad := make([]byte, shareValueLen)
	rand.Read(pad)
	defer clear(pad)
	var setID [4]byte
	rand.Read(setID[:])
	sid := hex.EncodeToString(setID[:])
	parts, err := splitSecret(pad, k, n)
	if err != nil {
		return nil, err
	}
	sealed, err := tpm.SealWithSecret(pad, key, sharesLabel, sharesAAD(dataKeyFP, sid, k, n))
	if err != nil {
		return nil, err
	}
	set := &ShareSet{Record: fsm.DataKeyShares{DataKey: dataKeyFP, Threshold: k, Shares: n, SetID: sid, Ciphertext: sealed}}
	for _, p := range parts {
		set.Record.ShareHashes = append(set.Record.ShareHashes, shareHash(setID, p.index, p.value))
		set.Texts = append(set.Texts, recoveryShare{k: byte(k), n: byte(n), index: p.index, setID: setID, value: p.value}.encode())
		clear(p.value)
	}
	return set, nil
}

// FromShares rebuilds the data key from printed shares and the state's
// record, naming any share that is mistyped, foreign or wrong, and says
// how, for the operator.
func FromShares(st *fsm.DataKeyState, texts []string) ([]byte, string, error) {
	rec := st.Shares
	if rec == nil {
		return nil, "", errors.New("no recovery shares were ever issued for this cluster's data key (see `bulwark keys recovery-shares`); use --escrow-private-key")
	}
	setID, err := hex.DecodeString(rec.SetID)
	if err != nil || len(setID) != 4 || len(rec.ShareHashes) != rec.Shares {
		return nil, "", errors.New("the state's recovery share record is damaged")
	}
	byIndex := map[byte]part{}
	for i, text := range texts {
		s, err := decodeShare(text)
		if err != nil {
			return nil, "", fmt.Errorf("share #%d on the command line: %w", i+1, err)
		}
		switch {
		case !bytes.Equal(s.setID[:], setID):
			return nil, "", fmt.Errorf("share #%d on the command line belongs to set %x, not to this cluster's set %s", i+1, s.setID, rec.SetID)
		case int(s.k) != rec.Threshold || int(s.n) != rec.Shares:
			return nil, "", fmt.Errorf("share #%d on the command line says %d of %d, the state says %d of %d", i+1, s.k, s.n, rec.Threshold, rec.Shares)
		case shareHash(s.setID, s.index, s.value) != rec.ShareHashes[s.index-1]:
			return nil, "", fmt.Errorf("share #%d on the command line (share %d of %d) is not the share %d that was issued", i+1, s.index, s.n, s.index)
		}
		byIndex[s.index] = part{index: s.index, value: s.value} // the same share twice counts once
	}
	if len(byIndex) < rec.Threshold {
		return nil, "", fmt.Errorf("%d different valid shares given; %d of the %d are needed", len(byIndex), rec.Threshold, rec.Shares)
	}
	parts := make([]part, 0, len(byIndex))
	for _, p := range byIndex {
		parts = append(parts, p)
	}
	pad, err := combineShares(parts)
	if err != nil {
		return nil, "", err
	}
	defer clear(pad)
	key, err := tpm.OpenWithSecret(pad, rec.Ciphertext, sharesLabel, sharesAAD(rec.DataKey, rec.SetID, rec.Threshold, rec.Shares))
	if err != nil {
		return nil, "", fmt.Errorf("the shares do not open the sealed data key in the state: %w", err)
	}
	if err := checkRecovered(st, key, rec.DataKey); err != nil {
		return nil, "", err
	}
	return key, fmt.Sprintf("%d of the %d recovery shares (set %s)", len(byIndex), rec.Shares, rec.SetID), nil
}
