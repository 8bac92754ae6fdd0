package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/api"
	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/node/escrow"
	"github.com/bulwark-auth/bulwark/tpm"
)

// testState is a replicated state without Raft: commands are applied to a
// real fsm.Store in order, and kept as log entries for replay tests.
type testState struct {
	mu      sync.Mutex
	s       *fsm.Store
	entries []fsm.Entry
}

func newTestState(t *testing.T, dir string) *testState {
	t.Helper()
	s, err := fsm.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &testState{s: s}
}

func (ts *testState) Apply(_ context.Context, cmd fsm.Command) (any, error) {
	b, err := cmd.Encode()
	if err != nil {
		return nil, err
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	e := fsm.Entry{Index: uint64(len(ts.entries) + 1), Term: 1, Command: true, Data: b}
	ts.entries = append(ts.entries, e)
	r := ts.s.ApplyBatch([]fsm.Entry{e})[0]
	return r.Value, r.Err
}

func (ts *testState) View(fn func(fsm.Reader) error) error { return ts.s.View(fn) }

type testVault map[string][]byte

func (v testVault) Secret(name string) ([]byte, bool) {
	b, ok := v[name]
	return bytes.Clone(b), ok
}

// newTestDataKeyService is a service over a fresh state, its key registered.
func newTestDataKeyService(t *testing.T) (*dataKeyService, *testState, []byte) {
	t.Helper()
	key := tpm.NewDataKey()
	ts := newTestState(t, t.TempDir())
	s := &dataKeyService{vault: testVault{tpm.DataKeyName: key}, store: ts,
		log: slog.New(slog.DiscardHandler), now: time.Now, retry: time.Millisecond}
	if _, err := s.register(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s, ts, key
}

func stateOf(t *testing.T, ts *testState) *fsm.DataKeyState {
	t.Helper()
	var st *fsm.DataKeyState
	if err := ts.View(func(r fsm.Reader) error {
		var err error
		st, err = r.DataKey()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return st
}

func wantAPIError(t *testing.T, err error, status int, substr string) {
	t.Helper()
	var e *api.Error
	if !errors.As(err, &e) || e.Status != status || !strings.Contains(e.Description, substr) {
		t.Fatalf("err = %v, want a %d mentioning %q", err, status, substr)
	}
}

func TestRecoverySharesAnyKOfN(t *testing.T) {
	s, ts, key := newTestDataKeyService(t)
	out, err := s.IssueRecoveryShares(context.Background(), 3, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Shares) != 5 || out.Threshold != 3 || out.Total != 5 || out.DataKeyFingerprint != tpm.DataKeyFingerprint(key) {
		t.Fatalf("issued %+v", out)
	}
	st := stateOf(t, ts)
	// The state holds neither the key nor a share.
	raw := stateRecord(t, st)
	if bytes.Contains(raw, key) || strings.Contains(string(raw), out.Shares[0][10:30]) {
		t.Fatal("the state record holds the key or a share")
	}
	for mask := 1; mask < 1<<5; mask++ {
		var sub []string
		for i := range 5 {
			if mask&(1<<i) != 0 {
				sub = append(sub, out.Shares[i])
			}
		}
		got, how, err := escrow.FromShares(st, sub)
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
	if _, _, err := escrow.FromShares(st, []string{out.Shares[0], out.Shares[0], out.Shares[1]}); err == nil ||
		!strings.Contains(err.Error(), "2 different valid shares") {
		t.Errorf("a repeated share: %v", err)
	}
}

func TestRecoverySharesRefusals(t *testing.T) {
	s, ts, _ := newTestDataKeyService(t)
	ctx := context.Background()
	for _, kn := range [][2]int{{1, 1}, {1, 3}, {0, 0}, {4, 3}, {2, 33}} {
		_, err := s.IssueRecoveryShares(ctx, kn[0], kn[1])
		wantAPIError(t, err, 400, "")
	}
	if _, err := s.IssueRecoveryShares(ctx, 2, 3); err != nil {
		t.Fatal(err)
	}
	// Issued once: a second call is refused and says when.
	_, err := s.IssueRecoveryShares(ctx, 2, 3)
	wantAPIError(t, err, 409, "recovery shares were already issued at "+stateOf(t, ts).Shares.IssuedAt.Format(time.RFC3339))
}

func TestEscrowServiceAndRecovery(t *testing.T) {
	s, ts, key := newTestDataKeyService(t)
	ctx := context.Background()
	pubPEM, privPEM, err := tpm.GenerateEscrowKey()
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.EscrowDataKey(ctx, "not a key")
	wantAPIError(t, err, 400, "public_key")
	out, err := s.EscrowDataKey(ctx, string(pubPEM))
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := tpm.ParseEscrowPublicKey(pubPEM)
	if out.EscrowKeyFingerprint != tpm.EscrowKeyFingerprint(pub) || out.KEM != "X25519MLKEM768" || out.DataKeyFingerprint != tpm.DataKeyFingerprint(key) {
		t.Errorf("escrowed %+v", out)
	}
	_, err = s.EscrowDataKey(ctx, string(pubPEM))
	wantAPIError(t, err, 409, "already escrowed to "+out.EscrowKeyFingerprint)

	st := stateOf(t, ts)
	if bytes.Contains(stateRecord(t, st), key) {
		t.Fatal("the state holds the data key")
	}
	got, how, err := escrow.FromEscrow(st, privPEM)
	if err != nil || !bytes.Equal(got, key) || !strings.Contains(how, out.EscrowKeyFingerprint) {
		t.Fatalf("recover: %v %q", err, how)
	}
	_, otherPriv, _ := tpm.GenerateEscrowKey()
	if _, _, err := escrow.FromEscrow(st, otherPriv); err == nil || !strings.Contains(err.Error(), "not escrowed to this private key") {
		t.Errorf("another private key: %v", err)
	}
	// A tampered escrow record does not open.
	tampered := *st
	tampered.Escrows = append([]fsm.Escrow(nil), st.Escrows...)
	tampered.Escrows[0].Ciphertext = bytes.Clone(st.Escrows[0].Ciphertext)
	tampered.Escrows[0].Ciphertext[10] ^= 1
	if _, _, err := escrow.FromEscrow(&tampered, privPEM); !errors.Is(err, tpm.ErrUnseal) {
		t.Errorf("tampered escrow: %v", err)
	}
	// Audit: one entry each for the registration and the escrow.
	var types []string
	ts.View(func(r fsm.Reader) error {
		return r.AuditAfter(0, 100, func(e *fsm.AuditEntry) bool { types = append(types, e.Type+"/"+e.Actor); return true })
	})
	if strings.Join(types, ",") != "datakey.register/system,datakey.escrow/local-admin" {
		t.Errorf("audit: %v", types)
	}
}

func TestEscrowRefusedOnKeyMismatch(t *testing.T) {
	s, ts, _ := newTestDataKeyService(t)
	// This node's keystore holds another key than the one registered (a
	// restored node started before `keys recover`).
	other := &dataKeyService{vault: testVault{tpm.DataKeyName: tpm.NewDataKey()}, store: ts,
		log: s.log, now: time.Now, retry: time.Millisecond}
	pubPEM, _, _ := tpm.GenerateEscrowKey()
	_, err := other.EscrowDataKey(context.Background(), string(pubPEM))
	wantAPIError(t, err, 409, "not the cluster's")
	_, err = other.IssueRecoveryShares(context.Background(), 2, 3)
	wantAPIError(t, err, 409, "not the cluster's")
	if _, err := other.register(context.Background()); !errors.Is(err, errDataKeyMismatch) {
		t.Errorf("register: %v", err)
	}
	if st := stateOf(t, ts); len(st.Escrows) != 0 || st.Shares != nil {
		t.Errorf("a refused node changed the state: %+v", st)
	}
	// No key at all.
	none := &dataKeyService{vault: testVault{}, store: ts, log: s.log, now: time.Now}
	_, err = none.IssueRecoveryShares(context.Background(), 2, 3)
	wantAPIError(t, err, 409, "holds no cluster data key")
}

func stateRecord(t *testing.T, st *fsm.DataKeyState) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := writeJSON(&b, st); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
