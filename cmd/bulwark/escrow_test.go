package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/bulwark-auth/bulwark/api"
	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/fsm/fsmtest"
	"github.com/bulwark-auth/bulwark/node"
	"github.com/bulwark-auth/bulwark/tpm"
)

type testVault map[string][]byte

func (v testVault) Secret(name string) ([]byte, bool) {
	b, ok := v[name]
	return bytes.Clone(b), ok
}

func wantAPIError(t *testing.T, err error, status int, substr string) {
	t.Helper()
	var e *api.Error
	if !errors.As(err, &e) || e.Status != status || !strings.Contains(e.Description, substr) {
		t.Fatalf("err = %v, want a %d mentioning %q", err, status, substr)
	}
}

// TestDataKeyAdminAnswers: the admin socket's data-key routes answer a bad
// request 400 and a refusal by the state 409, with node's words.
func TestDataKeyAdminAnswers(t *testing.T) {
	ctx := context.Background()
	key, ts := tpm.NewDataKey(), fsmtest.New(t)
	a := dataKeyAdmin{node.NewDataKeys(testVault{tpm.DataKeyName: key}, ts, slog.New(slog.DiscardHandler))}

	_, err := a.EscrowDataKey(ctx, "not a key")
	wantAPIError(t, err, 400, "public_key: ")
	pubPEM, _, _ := tpm.GenerateEscrowKey()
	out, err := a.EscrowDataKey(ctx, string(pubPEM))
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := tpm.ParseEscrowPublicKey(pubPEM)
	if out.EscrowKeyFingerprint != tpm.EscrowKeyFingerprint(pub) || out.KEM != "X25519MLKEM768" ||
		out.DataKeyFingerprint != tpm.DataKeyFingerprint(key) || out.CreatedAt.IsZero() {
		t.Errorf("escrowed %+v", out)
	}
	_, err = a.EscrowDataKey(ctx, string(pubPEM))
	wantAPIError(t, err, 409, "the data key is already escrowed to "+out.EscrowKeyFingerprint)

	_, err = a.IssueRecoveryShares(ctx, 1, 3)
	wantAPIError(t, err, 400, "--threshold 1")
	shares, err := a.IssueRecoveryShares(ctx, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(shares.Shares) != 3 || shares.Threshold != 2 || shares.Total != 3 ||
		shares.DataKeyFingerprint != tpm.DataKeyFingerprint(key) || shares.IssuedAt.IsZero() {
		t.Errorf("issued %+v", shares)
	}
	_, err = a.IssueRecoveryShares(ctx, 2, 3)
	wantAPIError(t, err, 409, "recovery shares were already issued at")

	// Another node's key than the registered one; no key at all.
	other := dataKeyAdmin{node.NewDataKeys(testVault{tpm.DataKeyName: tpm.NewDataKey()}, ts, slog.New(slog.DiscardHandler))}
	_, err = other.EscrowDataKey(ctx, string(pubPEM))
	wantAPIError(t, err, 409, "; nothing was escrowed or issued")
	none := dataKeyAdmin{node.NewDataKeys(testVault{}, ts, slog.New(slog.DiscardHandler))}
	_, err = none.IssueRecoveryShares(ctx, 2, 3)
	wantAPIError(t, err, 409, "this node's keystore holds no cluster data key")

	// The admin is the actor of what it asked for.
	var actors []string
	ts.View(func(r fsm.Reader) error {
		return r.AuditAfter(0, 100, func(e *fsm.AuditEntry) bool { actors = append(actors, e.Type+"/"+e.Actor); return true })
	})
	if strings.Join(actors, ",") != "datakey.register/system,datakey.escrow/local-admin,datakey.shares/local-admin" {
		t.Errorf("audit: %v", actors)
	}
}
