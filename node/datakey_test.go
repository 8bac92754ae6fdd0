package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/fsm/fsmtest"
	"github.com/bulwark-auth/bulwark/node/escrow"
	"github.com/bulwark-auth/bulwark/tpm"
)

type memVault map[string][]byte

func (v memVault) Secret(name string) ([]byte, bool) {
	b, ok := v[name]
	return bytes.Clone(b), ok
}

func (v memVault) PutSecret(name string, b []byte) error {
	v[name] = bytes.Clone(b)
	return nil
}

// newTestDataKeys is a service over a fresh state, its key registered.
func newTestDataKeys(t *testing.T) (*DataKeys, *fsmtest.Store, []byte) {
	t.Helper()
	key := tpm.NewDataKey()
	ms := fsmtest.New(t)
	d := NewDataKeys(memVault{tpm.DataKeyName: key}, ms, slog.New(slog.DiscardHandler))
	if _, err := d.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	return d, ms, key
}

func dataKeyOf(t *testing.T, ms *fsmtest.Store) *fsm.DataKeyState {
	t.Helper()
	var st *fsm.DataKeyState
	if err := ms.View(func(r fsm.Reader) error {
		var err error
		st, err = r.DataKey()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return st
}

// wantRefusal: err is a DataKeyError, invalid or a conflict, saying substr.
func wantRefusal(t *testing.T, err error, invalid bool, substr string) {
	t.Helper()
	var e *DataKeyError
	if !errors.As(err, &e) || e.Invalid != invalid || !strings.Contains(e.Msg, substr) {
		t.Fatalf("err = %v, want a refusal (invalid %v) mentioning %q", err, invalid, substr)
	}
}

func TestEnsureDataKey(t *testing.T) {
	v := memVault{}
	if err := EnsureDataKey(v); err != nil {
		t.Fatal(err)
	}
	key, ok := v.Secret(tpm.DataKeyName)
	if !ok || len(key) != tpm.DataKeySize {
		t.Fatalf("data key %x", key)
	}
	if err := EnsureDataKey(v); err != nil {
		t.Fatal(err)
	}
	if again, _ := v.Secret(tpm.DataKeyName); !bytes.Equal(again, key) {
		t.Fatal("a later start replaced the data key")
	}
	v[tpm.DataKeyName] = key[:5]
	if err := EnsureDataKey(v); err == nil {
		t.Fatal("a short data key is accepted")
	}
}

func TestRecoverySharesIssuedAndRecovered(t *testing.T) {
	d, ms, key := newTestDataKeys(t)
	out, err := d.IssueShares(context.Background(), 3, 5, "local-admin")
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Texts) != 5 || out.Threshold != 3 || out.Shares != 5 || out.DataKey != tpm.DataKeyFingerprint(key) {
		t.Fatalf("issued %+v", out)
	}
	st := dataKeyOf(t, ms)
	// The state holds neither the key nor a share.
	raw, _ := json.Marshal(st)
	if bytes.Contains(raw, key) || strings.Contains(string(raw), out.Texts[0][10:30]) {
		t.Fatal("the state record holds the key or a share")
	}
	got, _, err := escrow.FromShares(st, []string{out.Texts[4], out.Texts[1], out.Texts[2]})
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("recover: %v", err)
	}
}

func TestRecoverySharesRefusals(t *testing.T) {
	d, ms, _ := newTestDataKeys(t)
	ctx := context.Background()
	for _, kn := range [][2]int{{1, 1}, {1, 3}, {0, 0}, {4, 3}, {2, 33}} {
		_, err := d.IssueShares(ctx, kn[0], kn[1], "local-admin")
		wantRefusal(t, err, true, "")
	}
	if _, err := d.IssueShares(ctx, 2, 3, "local-admin"); err != nil {
		t.Fatal(err)
	}
	// Issued once: a second call is refused and says when.
	_, err := d.IssueShares(ctx, 2, 3, "local-admin")
	wantRefusal(t, err, false, "recovery shares were already issued at "+dataKeyOf(t, ms).Shares.IssuedAt.Format(time.RFC3339))
	if !errors.Is(err, fsm.ErrSharesIssued) {
		t.Errorf("second issue: %v, want fsm.ErrSharesIssued", err)
	}
}

func TestEscrowAndRecovery(t *testing.T) {
	d, ms, key := newTestDataKeys(t)
	ctx := context.Background()
	pubPEM, privPEM, err := tpm.GenerateEscrowKey()
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Escrow(ctx, "not a key", "local-admin")
	wantRefusal(t, err, true, "")
	out, err := d.Escrow(ctx, string(pubPEM), "local-admin")
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := tpm.ParseEscrowPublicKey(pubPEM)
	if out.KeyFingerprint != tpm.EscrowKeyFingerprint(pub) || out.KEM != "X25519MLKEM768" || out.DataKey != tpm.DataKeyFingerprint(key) {
		t.Errorf("escrowed %+v", out)
	}
	_, err = d.Escrow(ctx, string(pubPEM), "local-admin")
	wantRefusal(t, err, false, "already escrowed to "+out.KeyFingerprint)

	st := dataKeyOf(t, ms)
	if raw, _ := json.Marshal(st); bytes.Contains(raw, key) {
		t.Fatal("the state holds the data key")
	}
	got, how, err := escrow.FromEscrow(st, privPEM)
	if err != nil || !bytes.Equal(got, key) || !strings.Contains(how, out.KeyFingerprint) {
		t.Fatalf("recover: %v %q", err, how)
	}
	// Audit: one entry each for the registration and the escrow.
	var types []string
	ms.View(func(r fsm.Reader) error {
		return r.AuditAfter(0, 100, func(e *fsm.AuditEntry) bool { types = append(types, e.Type+"/"+e.Actor); return true })
	})
	if strings.Join(types, ",") != "datakey.register/system,datakey.escrow/local-admin" {
		t.Errorf("audit: %v", types)
	}
}

func TestEscrowRefusedOnKeyMismatch(t *testing.T) {
	_, ms, _ := newTestDataKeys(t)
	// This node's keystore holds another key than the one registered (a
	// restored node started before `keys recover`).
	other := NewDataKeys(memVault{tpm.DataKeyName: tpm.NewDataKey()}, ms, slog.New(slog.DiscardHandler))
	pubPEM, _, _ := tpm.GenerateEscrowKey()
	_, err := other.Escrow(context.Background(), string(pubPEM), "local-admin")
	wantRefusal(t, err, false, "not the cluster's")
	_, err = other.IssueShares(context.Background(), 2, 3, "local-admin")
	wantRefusal(t, err, false, "not the cluster's")
	if _, err := other.Register(context.Background()); !errors.Is(err, ErrDataKeyMismatch) {
		t.Errorf("register: %v", err)
	}
	if st := dataKeyOf(t, ms); len(st.Escrows) != 0 || st.Shares != nil {
		t.Errorf("a refused node changed the state: %+v", st)
	}
	// No key at all.
	none := NewDataKeys(memVault{}, ms, slog.New(slog.DiscardHandler))
	_, err = none.IssueShares(context.Background(), 2, 3, "local-admin")
	wantRefusal(t, err, false, "holds no cluster data key")
	if !errors.Is(err, ErrNoLocalDataKey) {
		t.Errorf("no key: %v, want ErrNoLocalDataKey", err)
	}
}

// TestDataKeyRegistrationOnNode: a started node registers its data key
// through Raft, and RunRegistration returns once it has.
func TestDataKeyRegistrationOnNode(t *testing.T) {
	n := openTestNode(t, t.TempDir())
	defer n.Close()
	key := tpm.NewDataKey()
	d := NewDataKeys(memVault{tpm.DataKeyName: key}, n, testLogger(t))
	d.retry = 10 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d.RunRegistration(ctx)
	var st *fsm.DataKeyState
	if err := n.View(func(r fsm.Reader) error {
		var err error
		st, err = r.DataKey()
		return err
	}); err != nil || st.Fingerprint != tpm.DataKeyFingerprint(key) {
		t.Fatalf("registered: %+v, %v", st, err)
	}
}
