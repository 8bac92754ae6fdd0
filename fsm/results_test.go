package fsm

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"
)

// TestResultsCrossTheWire: every result a handler returns decodes, on
// another node, into the same Go value, and domain errors keep matching
// their sentinels. Every row of the command table has a case here: one
// with a value of the row's result type, or, for a row whose value is
// always nil, one without a value.
func TestResultsCrossTheWire(t *testing.T) {
	at := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	sess := &Session{ID: "s1", UserID: "u1", CreatedAt: at, LastSeenAt: at, AuthTime: at, ExpiresAt: at, AMR: []string{"pwd"}}
	key := &PublicKey{Kid: "k", JWK: json.RawMessage(`{"kty":"EC"}`), PublishedAt: at}
	cases := []struct {
		typ Type
		v   uint16
		r   Result
	}{
		{TypeUserCreate, 1, Result{Value: &User{ID: "u1", Username: "alice", Roles: []string{"admin"}, CreatedAt: at, UpdatedAt: at}}},
		{TypeUserSetDisabled, 1, Result{Value: &User{ID: "u1", Username: "alice", Disabled: true, CreatedAt: at, UpdatedAt: at}}},
		{TypeUserDelete, 1, Result{}},
		{TypeUserDelete, 2, Result{}},
		{TypeLoginAttempt, 1, Result{Value: AttemptResult{Granted: true, Slot: 42}}},
		{TypeLoginAttempt, 2, Result{Value: AttemptResult{Locked: true, RetryAfter: time.Minute}}},
		{TypeLoginFailure, 1, Result{Value: FailureResult{Locked: true}}},
		{TypeLoginFailure, 2, Result{Value: FailureResult{Locked: true}}},
		{TypeLoginRelease, 1, Result{}},
		{TypeLockoutReset, 1, Result{}},
		{TypeSessionCreate, 1, Result{Value: sess}},
		{TypeSessionCreate, 2, Result{Value: sess}},
		{TypeSessionRefresh, 1, Result{Value: RefreshResult{Session: &Session{ID: "s1", CreatedAt: at}, User: &User{ID: "u1", CreatedAt: at}}}},
		{TypeSessionRefresh, 2, Result{Value: RefreshResult{Session: &Session{ID: "s1"}, Reused: true}}},
		{TypeSessionRefresh, 3, Result{Value: RefreshResult{Session: &Session{ID: "s1", CreatedAt: at, RefreshGen: 7}, User: &User{ID: "u1", CreatedAt: at}}}},
		{TypeSessionRevoke, 1, Result{Value: sess}},
		{TypeUserRevoke, 1, Result{Value: 3}},
		{TypeUserPassword, 1, Result{Value: sess}},
		{TypeUserPassword, 2, Result{Value: sess}},
		{TypeUserPassword, 3, Result{Value: &Session{ID: "s1", UserID: "u1", CreatedAt: at, LastSeenAt: at, AuthTime: at, ExpiresAt: at, RefreshGen: 3}}},
		{TypeSweep, 1, Result{Value: SweepResult{Sessions: 2, Lockouts: 1}}},
		{TypeSweep, 2, Result{Value: SweepResult{Sessions: 2, Addresses: 1, Migrated: 64, More: true}}},
		{TypeAuditAppend, 1, Result{Value: &AuditEntry{Seq: 7, Time: at, Type: "x", Hash: "h"}}},
		{TypeKeyPublish, 1, Result{Value: key}},
		{TypeKeyPublish, 2, Result{Value: key}},
		{TypeTokensIssuer, 1, Result{}},
		{TypeDataKeyRegister, 1, Result{Value: &DataKeyState{Fingerprint: "f", RegisteredAt: at}}},
		{TypeDataKeyEscrow, 1, Result{Value: &Escrow{CreatedAt: at}}},
		{TypeDataKeyShares, 1, Result{Value: &RecoveryShares{IssuedAt: at}}},
		{TypeJoinToken, 1, Result{}},
		{TypeJoinConsume, 1, Result{}},
		{TypeReadBarrier, 1, Result{}},
		{TypeCAKey, 1, Result{Value: &CAKey{Pin: "sha256:00", DataKey: "f"}}},
		{TypeClusterLevel, 1, Result{Value: 3}},
		{TypeMemberKey, 1, Result{}},
		{TypeSessionCreate, 3, Result{Value: sess}},
		{TypeSessionCreate, 4, Result{Value: sess}},
		{TypeWebhookCursor, 1, Result{Value: uint64(42)}},
		{TypeLoginAttempt, 3, Result{Value: AttemptResult{ChallengeRequired: true, Suspicion: 4}}},
		{TypeLoginAttempt, 4, Result{Value: AttemptResult{ChallengeRequired: true, Suspicion: 4, Blocked: true}}},
		{TypeTicketSpend, 1, Result{}},
		{TypeForbidden, 1, Result{Value: ForbiddenResult{Flagged: true, Revoked: 2}}},
		{TypeUserUnflag, 1, Result{Value: &User{ID: "u1", Username: "alice", CreatedAt: at, UpdatedAt: at}}},
		{TypeLockdown, 1, Result{Value: LockdownState{Active: true, Since: at, Reason: "breach", Actor: "a"}}},
		{TypeLockdownRelease, 1, Result{Value: LockdownState{ReleasedAt: &at}}},
		{TypeCertRecord, 1, Result{}},
		{TypeCertRevoke, 1, Result{Value: 2}},
		{TypeCRLPublish, 1, Result{Value: uint64(7)}},
		{TypeBackupRecord, 1, Result{Value: LastBackup{BackupRecord: BackupRecord{Node: "n1", AppliedIndex: 3, Bytes: 9, StateSHA256: "ab"}, At: at}}},
		{TypeMFATOTPEnroll, 1, Result{Value: &MFA{PendingTOTP: &TOTPFactor{Sealed: []byte("s"), CreatedAt: at}}}},
		{TypeMFATOTPConfirm, 1, Result{Value: &MFA{TOTP: &TOTPFactor{Sealed: []byte("s"), CreatedAt: at, LastStep: 9}, Recovery: []string{"h"}}}},
		{TypeMFATOTPRemove, 1, Result{Value: &MFA{}}},
		{TypeMFARecoverySet, 1, Result{Value: &MFA{Recovery: []string{"h"}}}},
		{TypeMFAReset, 1, Result{Value: 2}},
		{TypeOIDCClientPut, 1, Result{Err: ErrClientExists}},
		{TypeOIDCClientDelete, 1, Result{Err: ErrClientNotFound}},
		{TypeOIDCAuthRequest, 1, Result{}},
		{TypeOIDCAuthorize, 1, Result{Err: ErrAuthRequestNotFound}},
		{TypeOIDCCodeRedeem, 1, Result{Value: OIDCCodeResult{Session: &Session{ID: "s1", ClientID: "app", Scopes: []string{"openid"}, CreatedAt: at},
			User: &User{ID: "u1", CreatedAt: at}, Request: &OIDCAuthRequest{ID: "r1", ClientID: "app", ExpiresAt: at, KeepUntil: at}}}},
		{TypeOIDCCodeRedeem, 1, Result{Value: OIDCCodeResult{Replayed: true}}},
		{TypeOIDCCodeRedeem, 2, Result{Value: OIDCCodeResult{Session: &Session{ID: "s1", ClientID: "app", CreatedAt: at},
			User: &User{ID: "u1", CreatedAt: at}, Request: &OIDCAuthRequest{ID: "r1", ClientID: "app", ExpiresAt: at, KeepUntil: at}}}},
		{TypeOIDCTokenRevoke, 1, Result{}},
		{TypeOIDCClientPut, 2, Result{Err: ErrClientExists}},
		{TypeOIDCAuthorize, 2, Result{Err: ErrConsentRequired}},
		{TypeOIDCConsentGrant, 1, Result{Value: &OIDCGrant{UserID: "u1", ClientID: "app", Scopes: []string{"email", "openid"},
			ClientCreatedAt: at, GrantedAt: at, UpdatedAt: at}}},
		{TypeOIDCConsentRevoke, 1, Result{Value: 2}},
		{TypeOIDCConsentRevokeAll, 1, Result{Value: OIDCRevokedGrants{ClientIDs: []string{"a", "b"}, Sessions: 1}}},
		{TypeWebAuthnAdd, 1, Result{Value: &MFA{WebAuthn: []WebAuthnCredential{{ID: "c", Name: "key", Sealed: []byte("s"), SignCount: 1, CreatedAt: at}}}}},
		{TypeWebAuthnRename, 1, Result{Value: &MFA{WebAuthn: []WebAuthnCredential{{ID: "c", Name: "k2", CreatedAt: at, LastUsedAt: &at}}}}},
		{TypeWebAuthnRemove, 1, Result{Value: &MFA{}}},
		{TypeAuditKey, 1, Result{Value: &AuditPublicKey{AuditKey: AuditKey{Kid: "k", Node: "n1", Alg: AuditAlgES256, Public: []byte{1}}, PublishedAt: at}}},
		{TypeAuditCheckpoint, 1, Result{Value: &AuditCheckpointRecord{AuditCheckpoint: AuditCheckpoint{Seq: 7, Hash: "h", Node: "n1",
			ES256Sig: []byte{1}, MLDSA65Sig: []byte{2}}, EntrySeq: 8}}},
		{TypeLoginFailure, 3, Result{Value: FailureResult{Locked: true, Blocked: true}}},
		{TypeBlockAdd, 1, Result{Value: Block{CIDR: "10.0.0.0/8", Until: 5, Reason: "r", Actor: "a", CreatedAt: 1}}},
		{TypeBlockRemove, 1, Result{}},
		{TypeLoginFailure, 4, Result{Value: FailureResult{Locked: true}}},
		{TypeSessionPrune, 1, Result{Value: SessionPruneResult{Deleted: 2, Done: true}}},
		{TypeAuditPrune, 1, Result{Value: AuditPruneResult{Floor: 9, Deleted: 8, More: true}}},
		{TypeUserErase, 1, Result{Value: EraseResult{Pseudonym: "erased:u1", Seq: 9, Sessions: 2, Records: 3, AuditEntries: 4}}},
	}
	covered := map[handlerKey]bool{}
	for _, c := range cases {
		row, ok := lookup(c.typ, c.v)
		if !ok {
			t.Fatalf("%s v%d: no row in the command table", c.typ, c.v)
		}
		covered[handlerKey{c.typ, c.v}] = true
		if c.r.Value == nil && row.Result != nil || c.r.Value != nil && reflect.TypeOf(c.r.Value) != row.Result {
			t.Errorf("%s v%d: a case of %T for a row of %v", c.typ, c.v, c.r.Value, row.Result)
		}
		b, err := EncodeResult(c.typ, c.v, c.r)
		if err != nil {
			t.Fatalf("%s v%d: %v", c.typ, c.v, err)
		}
		got, err := DecodeResult(c.typ, c.v, b)
		if err != nil {
			t.Fatalf("%s v%d: %v", c.typ, c.v, err)
		}
		if !reflect.DeepEqual(got.Value, c.r.Value) {
			t.Errorf("%s v%d: %#v came back as %#v", c.typ, c.v, c.r.Value, got.Value)
		}
		if row.Result == nil { // nil-valued: a value would not cross
			if _, err := EncodeResult(c.typ, c.v, Result{Value: 1}); err == nil {
				t.Errorf("%s v%d: a value encoded for a row without a result type", c.typ, c.v)
			}
		}
	}
	for k := range commands {
		if !covered[k] {
			t.Errorf("%s v%d: a row of the command table without a case here", k.t, k.v)
		}
	}
	for _, sentinel := range resultErrors {
		b, err := EncodeResult(TypeSessionCreate, 1, Result{Err: errors.Join(sentinel)})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := DecodeResult(TypeSessionCreate, 1, b)
		if !errors.Is(got.Err, sentinel) || got.Err.Error() != sentinel.Error() {
			t.Errorf("%v came back as %v", sentinel, got.Err)
		}
	}
}
