package escrow

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/tpm"
)

// issued is the state's record after a data key's registration and the
// issue of a k-of-n share set, and the printed shares.
func issued(t *testing.T, key []byte, k, n int) (*fsm.DataKeyState, []string) {
	t.Helper()
	fp := tpm.DataKeyFingerprint(key)
	set, err := NewShareSet(key, fp, k, n)
	if err != nil {
		t.Fatal(err)
	}
	return &fsm.DataKeyState{Fingerprint: fp, Shares: &fsm.RecoveryShares{DataKeyShares: set.Record}}, set.Texts
}

func TestShareEncodeDecode(t *testing.T) {
	s := recoveryShare{k: 2, n: 3, index: 2, setID: [4]byte{1, 2, 3, 4}, value: tpm.NewDataKey()}
	text := s.encode()
	if !strings.HasPrefix(text, "bwshare1-") || len(text) != len("bwshare1-")+72+11 {
		t.Fatalf("encoded share %q", text)
	}
	for _, variant := range []string{text, strings.ToLower(text), "  " + strings.ReplaceAll(text, "-", " - ") + "\n",
		"BWSHARE1-" + strings.ReplaceAll(text[len("bwshare1-"):], "-", "")} {
		got, err := decodeShare(variant)
		if err != nil {
			t.Fatalf("decode %q: %v", variant, err)
		}
		if got.k != 2 || got.n != 3 || got.index != 2 || got.setID != s.setID || !bytes.Equal(got.value, s.value) {
			t.Fatalf("decoded %+v", got)
		}
	}
	// Every single-character change is caught by the checksum (or the
	// framing); so is a dropped character.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	body := []byte(text)
	for i := len("bwshare1-"); i < len(body); i++ {
		if body[i] == '-' {
			continue
		}
		c := bytes.Clone(body)
		c[i] = alphabet[(strings.IndexByte(alphabet, c[i])+1)%32]
		if _, err := decodeShare(string(c)); err == nil {
			t.Fatalf("a typo at %d is not caught: %s", i, c)
		}
	}
	if _, err := decodeShare(text[:len(text)-1]); err == nil {
		t.Error("a truncated share decodes")
	}
	if _, err := decodeShare("bwshare2-" + text[len("bwshare1-"):]); err == nil {
		t.Error("another prefix decodes")
	}
	// Impossible numbers are refused even with a good checksum.
	for _, bad := range []recoveryShare{{k: 1, n: 3, index: 1}, {k: 2, n: 3, index: 4}, {k: 2, n: 3, index: 0}, {k: 2, n: 40, index: 1}} {
		bad.value = s.value
		if _, err := decodeShare(bad.encode()); err == nil {
			t.Errorf("share %d of %d (k %d) decodes", bad.index, bad.n, bad.k)
		}
	}
}

// FuzzDecodeShare: whatever an operator types, decodeShare refuses it or
// returns a share within the format's bounds that encodes back to the
// canonical form of what was typed.
func FuzzDecodeShare(f *testing.F) {
	s := recoveryShare{k: 2, n: 3, index: 2, setID: [4]byte{1, 2, 3, 4}, value: bytes.Repeat([]byte{7}, shareValueLen)}
	good := s.encode()
	for _, seed := range []string{good, strings.ToLower(good), " " + strings.ReplaceAll(good, "-", " ") + "\n",
		good[:len(good)-1], "bwshare1-", "", "bwshare2-" + good[len(sharePrefix):]} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		d, err := decodeShare(text)
		if err != nil {
			return
		}
		if CheckShareCounts(int(d.k), int(d.n)) != nil || d.index < 1 || d.index > d.n || len(d.value) != shareValueLen {
			t.Fatalf("decoded an impossible share: %+v", d)
		}
		again, err := decodeShare(d.encode())
		if err != nil || again.k != d.k || again.n != d.n || again.index != d.index || again.setID != d.setID ||
			!bytes.Equal(again.value, d.value) {
			t.Fatalf("a decoded share does not survive encoding: %+v, %+v, %v", d, again, err)
		}
	})
}

func TestCheckShareCounts(t *testing.T) {
	for _, kn := range [][2]int{{1, 1}, {1, 3}, {0, 0}, {4, 3}, {2, 33}} {
		if CheckShareCounts(kn[0], kn[1]) == nil {
			t.Errorf("%d of %d accepted", kn[0], kn[1])
		}
		if _, err := NewShareSet(tpm.NewDataKey(), "fp", kn[0], kn[1]); err == nil {
			t.Errorf("a set of %d of %d was made", kn[0], kn[1])
		}
	}
	for _, kn := range [][2]int{{2, 2}, {2, 3}, {32, 32}} {
		if err := CheckShareCounts(kn[0], kn[1]); err != nil {
			t.Errorf("%d of %d: %v", kn[0], kn[1], err)
		}
	}
}

func TestRecoverySharesAnyKOfN(t *testing.T) {
	key := tpm.NewDataKey()
	st, shares := issued(t, key, 3, 5)
	if len(shares) != 5 || st.Shares.Threshold != 3 || st.Shares.Shares != 5 || len(st.Shares.ShareHashes) != 5 {
		t.Fatalf("issued %+v", st.Shares)
	}
	// The record holds neither the key nor a share.
	raw := record(t, st)
	if bytes.Contains(raw, key) || strings.Contains(string(raw), shares[0][10:30]) {
		t.Fatal("the state record holds the key or a share")
	}
	for mask := 1; mask < 1<<5; mask++ {
		var sub []string
		for i := range 5 {
			if mask&(1<<i) != 0 {
				sub = append(sub, shares[i])
			}
		}
		got, how, err := FromShares(st, sub)
		switch {
		case len(sub) >= 3 && (err != nil || !bytes.Equal(got, key)):
			t.Fatalf("shares %05b: %v", mask, err)
		case len(sub) >= 3 && !strings.Contains(how, "of the 5 recovery shares"):
			t.Errorf("how = %q", how)
		case len(sub) < 3 && (err == nil || !strings.Contains(err.Error(), "3 of the 5 are needed")):
			t.Fatalf("shares %05b (%d): err = %v, want too few", mask, len(sub), err)
		}
	}
	// The same share twice counts once.
	if _, _, err := FromShares(st, []string{shares[0], shares[0], shares[1]}); err == nil ||
		!strings.Contains(err.Error(), "2 different valid shares") {
		t.Errorf("a repeated share: %v", err)
	}
}

func TestRecoverySharesRefusals(t *testing.T) {
	st, shares := issued(t, tpm.NewDataKey(), 2, 3)
	// A share with a good checksum but another value is named.
	d, _ := decodeShare(shares[1])
	d.value[0] ^= 1
	if _, _, err := FromShares(st, []string{shares[0], d.encode()}); err == nil ||
		!strings.Contains(err.Error(), "share #2 on the command line (share 2 of 3) is not the share 2 that was issued") {
		t.Errorf("a wrong share: %v", err)
	}
	// A share of another set.
	_, foreign := issued(t, tpm.NewDataKey(), 2, 3)
	if _, _, err := FromShares(st, []string{shares[0], foreign[1]}); err == nil || !strings.Contains(err.Error(), "belongs to set") {
		t.Errorf("a foreign share: %v", err)
	}
	// A mistyped share.
	typo := []byte(shares[2])
	typo[20] = map[bool]byte{true: 'B', false: 'A'}[typo[20] == 'A']
	if _, _, err := FromShares(st, []string{shares[0], string(typo)}); err == nil || !strings.Contains(err.Error(), "mistyped") {
		t.Errorf("a mistyped share: %v", err)
	}
	// A sealed key that does not match the fingerprint is refused.
	bad := *st
	bad.Fingerprint = strings.Repeat("0", 64)
	if _, _, err := FromShares(&bad, shares[:2]); err == nil {
		t.Error("recovery against another fingerprint succeeded")
	}
	// No shares were ever issued.
	if _, _, err := FromShares(&fsm.DataKeyState{Fingerprint: st.Fingerprint}, shares); err == nil ||
		!strings.Contains(err.Error(), "no recovery shares were ever issued") {
		t.Errorf("no record: %v", err)
	}
}

func TestEscrowRecovery(t *testing.T) {
	key := tpm.NewDataKey()
	pubPEM, privPEM, err := tpm.GenerateEscrowKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := tpm.ParseEscrowPublicKey(pubPEM)
	fp, kfp := tpm.DataKeyFingerprint(key), tpm.EscrowKeyFingerprint(pub)
	st := &fsm.DataKeyState{Fingerprint: fp}
	if _, _, err := FromEscrow(st, privPEM); err == nil || !strings.Contains(err.Error(), "never escrowed") {
		t.Errorf("no escrow: %v", err)
	}
	w, err := Wrap(pub, key, fp, kfp)
	if err != nil {
		t.Fatal(err)
	}
	st.Escrows = []fsm.Escrow{{DataKeyEscrow: fsm.DataKeyEscrow{DataKey: fp, KeyFingerprint: kfp, KEM: tpm.EscrowKEM,
		PublicKey: pub, KEMCiphertext: w.KEMCiphertext, Ciphertext: w.Ciphertext}}}
	if bytes.Contains(record(t, st), key) {
		t.Fatal("the state holds the data key")
	}
	got, how, err := FromEscrow(st, privPEM)
	if err != nil || !bytes.Equal(got, key) || !strings.Contains(how, kfp) {
		t.Fatalf("recover: %v %q", err, how)
	}
	_, otherPriv, _ := tpm.GenerateEscrowKey()
	if _, _, err := FromEscrow(st, otherPriv); err == nil || !strings.Contains(err.Error(), "not escrowed to this private key") {
		t.Errorf("another private key: %v", err)
	}
	// A tampered escrow record does not open.
	tampered := *st
	tampered.Escrows = append([]fsm.Escrow(nil), st.Escrows...)
	tampered.Escrows[0].Ciphertext = bytes.Clone(st.Escrows[0].Ciphertext)
	tampered.Escrows[0].Ciphertext[10] ^= 1
	if _, _, err := FromEscrow(&tampered, privPEM); !errors.Is(err, tpm.ErrUnseal) {
		t.Errorf("tampered escrow: %v", err)
	}
	// An escrow of another key than the registered one is refused.
	other := *st
	other.Fingerprint = strings.Repeat("0", 64)
	if _, _, err := FromEscrow(&other, privPEM); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("another fingerprint: %v", err)
	}
}

func record(t *testing.T, st *fsm.DataKeyState) []byte {
	t.Helper()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
