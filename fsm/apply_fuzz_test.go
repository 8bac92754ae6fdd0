package fsm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	bolt "go.etcd.io/bbolt"
)

// FuzzApply drives every row of the command table with fuzzed payloads
// (and times) against a scratch store that holds one of everything: users,
// a session, a signing key, a data key, a join token, lockout records, an
// audit trail, at the highest feature level. Each input is applied inside a
// transaction that is rolled back, so every input meets the same state.
// It asserts:
//   - Apply never panics;
//   - a refused command leaves the state as it was (a digest of every
//     bucket, but the applied clock, which every entry moves, clock.go);
//   - the same entry applied twice to the same state gives the same result
//     and the same state (determinism);
//   - a non-nil result is of the row's declared Result type, which a
//     forwarded result is decoded into (results.go);
//   - the sessions the command counts in memory (counts.go) are the
//     sessions it added to or removed from the sessions bucket, none when
//     refused.
func FuzzApply(f *testing.F) {
	rows := commandRows()
	seedAt := seedTime.Add(time.Minute).UnixNano()
	seeds := applySeeds(f)
	for i, r := range rows {
		for _, p := range seeds[r.Type] {
			b, err := json.Marshal(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(uint16(i), seedAt, b)
		}
		f.Add(uint16(i), seedAt, []byte(`{}`))
		f.Add(uint16(i), int64(1), []byte(`null`))
	}
	s := seededStore(f)
	base := stateDigest(f, s)
	// A checkpoint that verifies: the seeded trail's last entry, signed.
	var last *AuditEntry
	if err := s.View(func(r Reader) error {
		return r.AuditAfter(0, 1000, func(e *AuditEntry) bool { last = e; return true })
	}); err != nil || last == nil {
		f.Fatalf("the seeded trail: %v", err)
	}
	for i, r := range rows {
		if r.Type == TypeAuditCheckpoint {
			b, err := json.Marshal(fixedAuditSigner(f).sign(f, last.Seq, last.Hash, seedTime.Add(time.Minute)))
			if err != nil {
				f.Fatal(err)
			}
			f.Add(uint16(i), seedAt, b)
		}
	}
	f.Fuzz(func(t *testing.T, sel uint16, at int64, payload []byte) {
		row := rows[int(sel)%len(rows)]
		if !json.Valid(payload) {
			return // the envelope's decoder refuses it (FuzzDecodeCommand)
		}
		data, err := json.Marshal(Command{Type: row.Type, Version: row.Version, Time: at, Payload: payload})
		if err != nil || len(data) > MaxCommandBytes {
			return
		}
		r1, d1, c1 := applyRolledBack(t, s, data)
		r2, d2, c2 := applyRolledBack(t, s, data)
		if (r1.Err == nil) != (r2.Err == nil) || !bytes.Equal(d1, d2) || c1 != c2 {
			t.Fatalf("%s v%d: nondeterministic: %v then %v", row.Type, row.Version, r1.Err, r2.Err)
		}
		if c1.counted != c1.stored {
			t.Fatalf("%s v%d (%v) counted %d sessions, the bucket changed by %d", row.Type, row.Version, r1.Err, c1.counted, c1.stored)
		}
		if r1.Err != nil {
			// session.create v3 shipped spending a ticket or factor before
			// a later check refused (mfa.go); replay keeps it, v4 does not.
			if !bytes.Equal(d1, base) && !(row.Type == TypeSessionCreate && row.Version == 3) {
				t.Fatalf("%s v%d refused (%v) but changed the state", row.Type, row.Version, r1.Err)
			}
			return
		}
		if r1.Value != nil && (row.Result == nil || reflect.TypeOf(r1.Value) != row.Result) {
			t.Fatalf("%s v%d answered %T, its row declares %v", row.Type, row.Version, r1.Value, row.Result)
		}
	})
}

// commandRows is the command table in a fixed order.
func commandRows() []CommandSpec {
	var rows []CommandSpec
	for _, r := range commands {
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b CommandSpec) int {
		return cmpRow(a.Type, a.Version, b.Type, b.Version)
	})
	return rows
}

func cmpRow(ta Type, va uint16, tb Type, vb uint16) int {
	if c := strings.Compare(string(ta), string(tb)); c != 0 {
		return c
	}
	return int(va) - int(vb)
}

var errRollback = errors.New("rolled back")

// sessionDelta is how an entry changed the session count: in memory
// (counted) and in the sessions bucket (stored).
type sessionDelta struct{ counted, stored int64 }

// applyRolledBack applies one entry the way ApplyBatch does, takes the
// state's digest and the session counts, and rolls the transaction back.
func applyRolledBack(t testing.TB, s *Store, data []byte) (Result, []byte, sessionDelta) {
	t.Helper()
	var (
		res    Result
		digest []byte
		delta  sessionDelta
	)
	err := s.db.Update(func(tx *bolt.Tx) error {
		before := bucketLen(tx.Bucket(bucketSessions))
		var counts batchCounts
		res, _ = applyOne(txn{tx: tx, counts: &counts}, data)
		digest = digestTx(tx)
		delta = sessionDelta{counts.sessions, int64(bucketLen(tx.Bucket(bucketSessions)) - before)}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Fatalf("apply: %v", err)
	}
	return res, digest, delta
}

func stateDigest(t testing.TB, s *Store) []byte {
	t.Helper()
	var d []byte
	if err := s.db.View(func(tx *bolt.Tx) error { d = digestTx(tx); return nil }); err != nil {
		t.Fatal(err)
	}
	return d
}

// digestTx hashes every bucket, nested ones included, key by key, leaving
// out meta's applied clock: every entry applied at level 3 moves it,
// refused or not, as every entry moves the applied index (clock.go).
func digestTx(tx *bolt.Tx) []byte {
	h := sha256.New()
	var walk func(path string, b *bolt.Bucket)
	walk = func(path string, b *bolt.Bucket) {
		b.ForEach(func(k, v []byte) error {
			if path == string(bucketMeta) && bytes.Equal(k, keyTime) {
				return nil
			}
			fmt.Fprintf(h, "%s/%x=", path, k)
			if nb := b.Bucket(k); nb != nil {
				h.Write([]byte("{"))
				walk(path+"/"+hex.EncodeToString(k), nb)
				h.Write([]byte("}"))
				return nil
			}
			fmt.Fprintf(h, "%x;", v)
			return nil
		})
	}
	tx.ForEach(func(name []byte, b *bolt.Bucket) error {
		walk(string(name), b)
		return nil
	})
	return h.Sum(nil)
}

// fixedAuditSigner is node1's audit keys, the same in every fuzzing
// process, so that a checkpoint signed while seeding verifies in each.
func fixedAuditSigner(t testing.TB) *auditSigner {
	t.Helper()
	ec, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), []byte(strings.Repeat("fuzz-au-", 4)))
	if err != nil {
		t.Fatal(err)
	}
	var seed [mldsa65.SeedSize]byte
	copy(seed[:], "fuzz-audit")
	_, ml := mldsa65.NewKeyFromSeed(&seed)
	return &auditSigner{node: "node1", ec: ec, ml: ml}
}

var seedTime = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

const seedHash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA"

var (
	seedCAKey   *ecdsa.PrivateKey
	seedCAShare CAKey
)

// seedCA is a CA key and its ca.key share under fpA, made once.
func seedCA(t testing.TB) CAKey {
	t.Helper()
	if seedCAKey != nil {
		return seedCAShare
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(spki)
	pin := "sha256:" + hex.EncodeToString(sum[:])
	sealed := []byte("sealed ca key")
	sig, err := ecdsa.SignASN1(rand.Reader, k, CAKeyDigest(pin, fpA, sealed))
	if err != nil {
		t.Fatal(err)
	}
	seedCAKey, seedCAShare = k, CAKey{Pin: pin, DataKey: fpA, Sealed: sealed, CAPublicKey: spki, Signature: sig}
	return seedCAShare
}

// seedCRL is an empty CRL numbered number, signed by seedCA's key.
func seedCRL(t testing.TB, number int64) []byte {
	t.Helper()
	seedCA(t)
	issuer := &x509.Certificate{Subject: pkix.Name{CommonName: "bulwark CA"}, SubjectKeyId: []byte{1, 2, 3},
		KeyUsage: x509.KeyUsageCRLSign}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(number),
		ThisUpdate: seedTime, NextUpdate: seedTime.Add(7 * 24 * time.Hour)}, issuer, seedCAKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// applySeeds are payloads by command type that the seeded state accepts,
// or refuses only for a reason deep in the handler: starting points for
// the fuzzer to mutate. A type without seeds still gets "{}" and "null".
func applySeeds(t testing.TB) map[Type][]any {
	gen := uint64(0)
	create := SessionCreate{ID: "s2", UserID: "u1", RefreshHash: hashOf("r2"), Lifetime: int64(24 * time.Hour),
		IdleTimeout: int64(time.Hour), MaxPerUser: 2, OnLimit: "evict_oldest", IP: "192.0.2.1", AMR: []string{"pwd"},
		ResetLockout: "alice"}
	limits := func(name string, slot int64) LoginFailureV2 {
		return LoginFailureV2{Username: name, Slot: slot, MaxAttempts: 3, Window: window, PendingTTL: ttl,
			MaxNamesPerAddress: 2, Subject: "u1", IP: "192.0.2.1"}
	}
	v3 := SessionCreateV3{SessionCreateV2: SessionCreateV2{SessionCreate: create, PasswordGen: &gen},
		Factor: &FactorProof{Method: FactorTOTP, Step: 7, Ticket: hashOf("ticket"), TicketExpires: seedTime.Add(time.Hour).UnixNano()}}
	return map[Type][]any{
		TypeUserCreate: {UserCreate{ID: "u3", Username: "carol", Email: "c@example.com", Roles: []string{"ops"}, PasswordHash: seedHash},
			UserCreate{ID: "u1", Username: "dave", PasswordHash: seedHash}},
		TypeUserSetDisabled: {UserSetDisabled{ID: "u1", Disabled: true}, UserSetDisabled{ID: "nope"}},
		TypeUserDelete:      {UserDelete{ID: "u2"}},
		TypeSessionCreate: {create, SessionCreateV2{SessionCreate: create, PasswordGen: &gen, Rehash: seedHash}, v3,
			SessionCreateV4{SessionCreateV3: SessionCreateV3{SessionCreateV2: SessionCreateV2{SessionCreate: create, PasswordGen: &gen}}, RefreshMAC: true},
			SessionCreate{ID: "s1", UserID: "u2", RefreshHash: hashOf("r3"), Lifetime: 1, IdleTimeout: 1, MaxPerUser: 1, OnLimit: "deny"}},
		TypeSessionRefresh: {SessionRefresh{OldHash: hashOf("r1"), NewHash: hashOf("r4"), IP: "192.0.2.1"},
			SessionRefresh{OldHash: hashOf("dead"), NewHash: hashOf("r5")},
			// v3: s3's live token (generation 2), a dead one, one never handed out.
			SessionRefreshV3{SessionID: "s3", Generation: 2, SessionRefresh: SessionRefresh{OldHash: hashOf("g2"), NewHash: hashOf("g3"), IP: "192.0.2.1"}},
			SessionRefreshV3{SessionID: "s3", Generation: 1, SessionRefresh: SessionRefresh{OldHash: hashOf("g1"), NewHash: hashOf("g3")}},
			SessionRefreshV3{SessionID: "s3", Generation: 3, SessionRefresh: SessionRefresh{OldHash: hashOf("g3"), NewHash: hashOf("g4")}}},
		TypeSessionRevoke: {SessionRevoke{ID: "s1", UserID: "u1", Reason: "logout"}, SessionRevoke{ID: "s1", UserID: "u2"}},
		TypeUserRevoke:    {UserRevokeSessions{UserID: "u1", Except: "s1"}},
		TypeUserPassword: {UserSetPassword{UserID: "u1", PasswordHash: seedHash, SessionID: "s1", NewHash: hashOf("r7")},
			UserSetPasswordV2{UserSetPassword: UserSetPassword{UserID: "u1", PasswordHash: seedHash,
				SessionID: "s1", NewHash: hashOf("r6")}, PasswordGen: 0},
			UserSetPasswordV3{UserSetPasswordV2: UserSetPasswordV2{UserSetPassword: UserSetPassword{UserID: "u1", PasswordHash: seedHash,
				SessionID: "s3", NewHash: hashOf("p2")}, PasswordGen: 0}, Generation: 2}},
		TypeKeyPublish: {KeyPublish{Kid: testKid, Node: "node1", Alg: "ES256", JWK: testJWK(testKid, "ES256"),
			NotAfter: seedTime.Add(time.Hour).UnixNano(), Retire: seedTime.Add(2 * time.Hour).UnixNano(), Issuer: "https://n1.example"},
			KeyPublish{Kid: "k2", Node: "node2", Alg: "ES256", JWK: testJWK("k2", "ES256"), Issuer: "https://n2.example"},
			KeyPublish{Kid: testKid, Node: "node1", Alg: "ES256", JWK: testJWK(testKid, "ES256")}},
		TypeAuditAppend: {AuditAppend{Type: "user.create", Severity: AuditInfo, Actor: "local-admin", Subject: "u1",
			IP: "192.0.2.1", Details: map[string]string{"name": "alice"}}},
		TypeDataKeyRegister: {DataKeyRegister{Fingerprint: fpA}, DataKeyRegister{Fingerprint: fpB}},
		TypeDataKeyEscrow:   {escrowPayload(fpA, fpK)},
		TypeDataKeyShares:   {sharesPayload(fpA, 2, 3)},
		TypeCAKey:           {seedCA(t)},
		TypeJoinToken:       {JoinTokenCreate{Hash: hashOf("join2"), ExpiresAt: seedTime.Add(2 * time.Hour).UnixNano(), Issuer: "node1"}},
		TypeJoinConsume:     {JoinConsume{Hash: hashOf("join"), NodeID: "node3"}, JoinConsume{Hash: hashOf("nope"), NodeID: "node3"}},
		TypeMemberKey:       {MemberKey{Node: "node2", SPKI: strings.Repeat("ab", 32)}},
		TypeClusterLevel:    {ClusterLevel{Level: MaxLevel}, ClusterLevel{Level: 1}},
		TypeTokensIssuer:    {TokensIssuer{Issuer: "https://auth.example"}, TokensIssuer{Issuer: "https://other.example"}},
		TypeLoginAttempt: {LoginAttemptV2{Username: "alice", MaxAttempts: 3, Window: window, PendingTTL: ttl, MaxNamesPerAddress: 2, IP: "192.0.2.1"},
			LoginAttemptV2{Username: "mallory", MaxAttempts: 3, Window: window, PendingTTL: ttl, MaxNamesPerAddress: 2, IP: "192.0.2.9"},
			LoginAttempt{Username: "alice", MaxAttempts: 3, Window: window, PendingTTL: ttl, IP: "192.0.2.1"},
			LoginAttemptV3{LoginAttemptV2: LoginAttemptV2{Username: "alice", MaxAttempts: 3, Window: window, PendingTTL: ttl, MaxNamesPerAddress: 2,
				IP: "192.0.2.1"}, ChallengeAfter: 2, Solution: hashOf("solution"), SolutionExpires: seedTime.Add(time.Hour).UnixNano(),
				Device: hashOf("device")},
			LoginAttemptV4{LoginAttemptV3: LoginAttemptV3{LoginAttemptV2: LoginAttemptV2{Username: "alice", MaxAttempts: 3, Window: window,
				PendingTTL: ttl, MaxNamesPerAddress: 2, IP: "192.0.2.1"}, ChallengeAfter: 1},
				Detect: DetectLimits{Window: int64(time.Minute), BlockAfterFailures: 1, BlockAfterUsernames: 1, BlockFor: int64(time.Hour)}}},
		TypeLoginFailure: {limits("alice", seedTime.Add(9*time.Second).UnixNano()), limits("alice", 1),
			LoginFailure{Username: "alice", Slot: seedTime.Add(9 * time.Second).UnixNano(), MaxAttempts: 3, Window: window, Subject: "u1"},
			LoginFailureV3{LoginFailureV2: limits("alice", seedTime.Add(9*time.Second).UnixNano()),
				Detect: DetectLimits{Window: int64(time.Minute), BlockAfterFailures: 1, BlockAfterUsernames: 1, BlockFor: int64(time.Hour)}},
			LoginFailureV4{LoginFailureV3: LoginFailureV3{LoginFailureV2: limits("alice", seedTime.Add(9*time.Second).UnixNano())},
				Event: AuditAppend{Type: "login.failure", Severity: AuditWarning, IP: "192.0.2.1", Details: map[string]string{"reason": "unknown_user"}},
				Cap:   AuditCap{Entries: 1, Window: int64(time.Hour)}}},
		TypeUserUnflag:   {UserUnflag{ID: "u1"}, UserUnflag{ID: "nobody"}},
		TypeLoginRelease: {LoginRelease{Username: "alice", Slot: seedTime.Add(9 * time.Second).UnixNano()}},
		TypeLockoutReset: {LockoutReset{Username: "alice", Actor: "local-admin"}},
		TypeSweep:        {SweepV2{Limit: 10, Migrate: 10}, Sweep{Limit: 10}},
		TypeReadBarrier:  {ReadBarrier{}},
		// Level 4.
		TypeMFATOTPEnroll:  {MFATOTPEnroll{UserID: "u2", Sealed: []byte("sealed totp 2")}, MFATOTPEnroll{UserID: "u1", Sealed: []byte("x")}},
		TypeMFATOTPConfirm: {MFATOTPConfirm{UserID: "u2", Step: 5, Recovery: []string{hashOf("rc1")}}},
		TypeMFATOTPRemove:  {MFAUser{UserID: "u1"}, MFAUser{UserID: "u2"}},
		TypeMFARecoverySet: {MFARecoverySet{UserID: "u1", Recovery: []string{hashOf("rc2"), hashOf("rc3")}}},
		TypeMFAReset:       {MFAUser{UserID: "u1"}, MFAUser{UserID: "nope"}},
		TypeWebAuthnAdd: {WebAuthnAdd{UserID: "u2", Credential: WebAuthnCredential{ID: "cred2", Name: "key", Sealed: []byte("sealed cred 2")},
			Recovery: []string{hashOf("rc4")}}, WebAuthnAdd{UserID: "u2", Credential: WebAuthnCredential{ID: "cred1", Name: "dup", Sealed: []byte("s")}}},
		TypeWebAuthnRename:  {WebAuthnRename{UserID: "u1", ID: "cred1", Name: "new name"}},
		TypeWebAuthnRemove:  {WebAuthnRename{UserID: "u1", ID: "cred1"}, WebAuthnRename{UserID: "u2", ID: "cred1"}},
		TypeLockdown:        {Lockdown{Reason: "breach", Actor: "local-admin"}},
		TypeLockdownRelease: {Lockdown{Actor: "local-admin"}},
		TypeTicketSpend: {TicketSpend{Ticket: hashOf("ticket"), Expires: seedTime.Add(time.Hour).UnixNano()},
			TicketSpend{Ticket: hashOf("old"), Expires: 1}},
		TypeAuditKey: {fixedAuditSigner(t).keys(t)[0], fixedAuditSigner(t).keys(t)[1],
			AuditKey{Kid: AuditKeyID([]byte("k")), Node: "node2", Alg: AuditAlgES256, Public: []byte("k")}},
		TypeAuditCheckpoint: {fixedAuditSigner(t).sign(t, 1, strings.Repeat("0", 64), seedTime)},
		TypeWebhookCursor:   {WebhookCursor{Target: hashOf("siem"), Seq: 2}, WebhookCursor{Target: hashOf("siem"), Seq: 0}},
		TypeOIDCClientPut: {OIDCClientPut{Client: OIDCClient{ID: "app2", SecretHash: hashOf("secret"), RedirectURIs: []string{"https://app2.example/cb"}}},
			OIDCClientPut{Client: OIDCClient{ID: "spa", Public: true, RedirectURIs: []string{"https://spa.example/cb"}}},
			OIDCClientPut{Client: OIDCClient{ID: "ed", Public: true, RedirectURIs: []string{"https://ed.example/cb"}, IDTokenAlg: "EdDSA", ConsentRequired: true}}},
		TypeOIDCClientDelete: {OIDCClientDelete{ID: "app2"}, OIDCClientDelete{ID: "nope"}},
		TypeOIDCAuthRequest: {OIDCAuthRequestPut{Request: OIDCAuthRequest{ID: "req1", ClientID: "app2", RedirectURI: "https://app2.example/cb",
			Scopes: []string{"openid", "profile"}, State: "st", Nonce: "n", CodeChallenge: strings.Repeat("A", 43), CodeChallengeMethod: "S256",
			ExpiresAt: seedTime.Add(10 * time.Minute), KeepUntil: seedTime.Add(time.Hour)}}},
		TypeOIDCAuthorize: {OIDCAuthorize{RequestID: "req1", CodeHash: hashOf("code"), UserID: "u1", LoginSession: "s1", AuthTime: seedTime,
			AMR: []string{"pwd"}, CodeExpiresAt: seedTime.Add(time.Minute), CodeKeepUntil: seedTime.Add(time.Hour)},
			OIDCAuthorize{RequestID: "req1", CodeHash: hashOf("code"), UserID: "u1", LoginSession: "s1", AuthTime: seedTime,
				AMR: []string{"pwd"}, CodeExpiresAt: seedTime.Add(time.Minute), CodeKeepUntil: seedTime.Add(time.Hour), ConsentAfter: seedTime}},
		TypeOIDCConsentGrant: {OIDCConsentGrant{UserID: "u1", ClientID: "consent", Scopes: []string{"openid", "email"}},
			OIDCConsentGrant{UserID: "u2", ClientID: "consent", Scopes: []string{"openid"}}},
		TypeOIDCConsentRevoke:    {OIDCConsentRevoke{UserID: "u1", ClientID: "consent"}, OIDCConsentRevoke{UserID: "u2", ClientID: "consent"}},
		TypeOIDCConsentRevokeAll: {OIDCConsentRevokeAll{UserID: "u1"}, OIDCConsentRevokeAll{UserID: "u2"}},
		TypeOIDCCodeRedeem: {OIDCCodeRedeem{CodeHash: hashOf("code"), ClientID: "app2", RedirectURI: "https://app2.example/cb",
			PKCE: strings.Repeat("A", 43), Session: create}},
		TypeOIDCTokenRevoke: {OIDCTokenRevoke{JTI: "jti-1", ExpiresAt: seedTime.Add(time.Hour)}},
		TypeForbidden:       {Forbidden{UserID: "u2", Max: 2, Window: int64(time.Minute), Route: "GET /v1/admin/users", IP: "192.0.2.1"}},
		TypeBlockAdd: {BlockAdd{CIDR: "192.0.2.0/24", For: int64(time.Hour), Reason: "scanner", Actor: "local-admin"},
			BlockAdd{CIDR: "2001:db8::/64", For: int64(time.Minute)}},
		TypeBlockRemove: {BlockRemove{CIDR: "192.0.2.0/24", Actor: "local-admin"}, BlockRemove{CIDR: "198.51.100.0/24"}},
		TypeAuditPrune: {AuditPrune{BeforeSeq: 2, KeepFor: int64(MinAuditRetention), Limit: 10},
			AuditPrune{BeforeSeq: 1, KeepFor: int64(MinAuditRetention), Limit: 1}},
		TypeSessionPrune: {SessionPrune{KeepFor: 0, Limit: 10}, SessionPrune{KeepFor: int64(time.Hour), Limit: 1}},
		TypeBackupRecord: {BackupRecord{Node: "node1", AppliedIndex: 12, Bytes: 4096, StateSHA256: hashOf("state")},
			BackupRecord{Node: "node2", Bytes: 1, StateSHA256: strings.Repeat("A", 64)}},
		// Level 5.
		TypeUserErase: {UserErase{ID: "u1", Actor: "local-admin", IP: "192.0.2.1"}, UserErase{ID: "nope"}},
		TypeCertRecord: {CertRecord{Node: "node2", Serial: "1f", NotAfter: seedTime.Add(time.Hour)},
			CertRecord{Node: "node1", Serial: "abc", NotAfter: seedTime.Add(24 * time.Hour)},
			CertRecord{Node: "node9", Serial: "b2", NotAfter: seedTime.Add(24 * time.Hour), Admit: true}},
		TypeCertRevoke: {CertRevoke{Node: "node1"}, CertRevoke{Node: "node9"}},
		TypeCRLPublish: {CRLPublish{DER: seedCRL(t, 1), Generation: 0}, CRLPublish{DER: []byte("not a CRL")}},
	}
}

// seededStore is a store at the highest level with one of everything.
func seededStore(t testing.TB) *Store {
	t.Helper()
	s := openTestStore(t)
	share := seedCA(t)
	steps := []struct {
		typ Type
		v   uint16
		p   any
	}{
		{TypeClusterLevel, 1, ClusterLevel{Level: MaxLevel}},
		{TypeUserCreate, 1, UserCreate{ID: "u1", Username: "alice", Roles: []string{"admin"}, PasswordHash: seedHash}},
		{TypeUserCreate, 1, UserCreate{ID: "u2", Username: "bob", PasswordHash: seedHash}},
		{TypeSessionCreate, 2, SessionCreateV2{SessionCreate: SessionCreate{ID: "s1", UserID: "u1", RefreshHash: hashOf("r1"),
			Lifetime: int64(24 * time.Hour), IdleTimeout: int64(time.Hour), MaxPerUser: 2, OnLimit: "evict_oldest"}}},
		{TypeKeyPublish, 2, KeyPublish{Kid: testKid, Node: "node1", Alg: "ES256", JWK: testJWK(testKid, "ES256"), Issuer: "https://n1.example"}},
		// A session whose tokens name it (level 5), rotated twice: its
		// live token is g2, of generation 2.
		{TypeSessionCreate, 4, SessionCreateV4{SessionCreateV3: SessionCreateV3{SessionCreateV2: SessionCreateV2{SessionCreate: SessionCreate{
			ID: "s3", UserID: "u1", RefreshHash: hashOf("g0"), Lifetime: int64(24 * time.Hour), IdleTimeout: int64(time.Hour),
			MaxPerUser: 3, OnLimit: "evict_oldest"}}}, RefreshMAC: true}},
		{TypeSessionRefresh, 3, SessionRefreshV3{SessionID: "s3", Generation: 0, SessionRefresh: SessionRefresh{OldHash: hashOf("g0"), NewHash: hashOf("g1")}}},
		{TypeSessionRefresh, 3, SessionRefreshV3{SessionID: "s3", Generation: 1, SessionRefresh: SessionRefresh{OldHash: hashOf("g1"), NewHash: hashOf("g2")}}},
		{TypeDataKeyRegister, 1, DataKeyRegister{Fingerprint: fpA}},
		{TypeJoinToken, 1, JoinTokenCreate{Hash: hashOf("join"), ExpiresAt: seedTime.Add(time.Hour).UnixNano(), Issuer: "node1"}},
		{TypeMemberKey, 1, MemberKey{Node: "node1", SPKI: strings.Repeat("cd", 32)}},
		{TypeTokensIssuer, 1, TokensIssuer{Issuer: "https://auth.example"}},
		{TypeLoginAttempt, 2, LoginAttemptV2{Username: "alice", MaxAttempts: 3, Window: window, PendingTTL: ttl, MaxNamesPerAddress: 2, IP: "192.0.2.1"}},
		{TypeLoginAttempt, 2, LoginAttemptV2{Username: "nobody", MaxAttempts: 3, Window: window, PendingTTL: ttl, MaxNamesPerAddress: 2, IP: "192.0.2.1"}},
		{TypeAuditAppend, 1, AuditAppend{Type: "test.seed", Severity: AuditInfo}},
		{TypeCAKey, 1, share},
		// Second factors (level 4): u1 has TOTP, recovery codes and a
		// WebAuthn credential; u2 has a TOTP secret not yet confirmed.
		{TypeMFATOTPEnroll, 1, MFATOTPEnroll{UserID: "u1", Sealed: []byte("sealed totp 1")}},
		{TypeMFATOTPConfirm, 1, MFATOTPConfirm{UserID: "u1", Step: 3, Recovery: []string{hashOf("rc0")}}},
		{TypeWebAuthnAdd, 1, WebAuthnAdd{UserID: "u1", Credential: WebAuthnCredential{ID: "cred1", Name: "key", Sealed: []byte("sealed cred 1")}}},
		{TypeMFATOTPEnroll, 1, MFATOTPEnroll{UserID: "u2", Sealed: []byte("sealed totp 2")}},
		{TypeWebhookCursor, 1, WebhookCursor{Target: hashOf("siem"), Seq: 1}},
		{TypeAuditKey, 1, fixedAuditSigner(t).keys(t)[0]},
		{TypeAuditKey, 1, fixedAuditSigner(t).keys(t)[1]},
		// A client that requires consent, and u1's grant to it (level 5).
		{TypeOIDCClientPut, 2, OIDCClientPut{Client: OIDCClient{ID: "consent", Public: true, RedirectURIs: []string{"https://c.example/cb"},
			IDTokenAlg: "RS256", ConsentRequired: true}}},
		{TypeOIDCConsentGrant, 1, OIDCConsentGrant{UserID: "u1", ClientID: "consent", Scopes: []string{"openid"}}},
		// A certificate of node1 on record (level 5).
		{TypeCertRecord, 1, CertRecord{Node: "node1", Serial: "abc", NotAfter: seedTime.Add(24 * time.Hour)}},
	}
	for i, st := range steps {
		c, err := NewCommand(st.typ, st.v, seedTime.Add(time.Duration(i)*time.Second).UnixNano(), st.p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := c.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if r := s.ApplyBatch([]Entry{{Index: uint64(i + 1), Term: 1, Command: true, Data: b}})[0]; r.Err != nil {
			t.Fatalf("seeding %s v%d: %v", st.typ, st.v, r.Err)
		}
	}
	return s
}

// TestApplySeedsCoverTable: every command the table lists has seeds of its
// own in FuzzApply, so a new command is fuzzed from a real payload.
func TestApplySeedsCoverTable(t *testing.T) {
	seeds := applySeeds(t)
	for _, r := range commandRows() {
		if len(seeds[r.Type]) == 0 {
			t.Errorf("%s v%d has no FuzzApply seed payload (apply_fuzz_test.go applySeeds)", r.Type, r.Version)
		}
	}
}
