package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The erased user's identifiers, as the tests write them.
const (
	eraseName  = "zebulon"
	eraseEmail = "zeb.erasee@example.test"
	eraseID    = "u-7f3a9c"
)

// erasable builds a store with user eraseID (zebulon) named in every place the
// state can name a user, user u2 (bob) beside them, and a signed
// checkpoint over the trail so far. It returns the applier.
func erasable(t *testing.T) *applier {
	t.Helper()
	a := newApplier(t)
	signer := newAuditSigner(t, "node1")
	at := t0
	step := func(typ Type, v uint16, p any, audit ...AuditAppend) Result {
		t.Helper()
		at = at.Add(time.Second)
		c, err := NewCommand(typ, v, at.UnixNano(), p)
		if err != nil {
			t.Fatal(err)
		}
		c = c.WithAudit(audit...)
		b, err := c.Encode()
		if err != nil {
			t.Fatal(err)
		}
		a.index++
		r := a.s.ApplyBatch([]Entry{{Index: a.index, Term: 1, Command: true, Data: b}})[0]
		if r.Err != nil {
			t.Fatalf("%s v%d: %v", typ, v, r.Err)
		}
		return r
	}
	step(TypeClusterLevel, 1, ClusterLevel{Level: MaxLevel})
	for _, k := range signer.keys(t) {
		step(TypeAuditKey, 1, k)
	}
	// A failed login for the name before the account existed, typed
	// with another case.
	attempt := LoginAttemptV2{Username: eraseName, MaxAttempts: 5, Window: window, PendingTTL: ttl, MaxNamesPerAddress: 4, IP: "192.0.2.7"}
	slot := step(TypeLoginAttempt, 2, attempt).Value.(AttemptResult).Slot
	step(TypeLoginFailure, 2, LoginFailureV2{Username: eraseName, Slot: slot, MaxAttempts: 5, Window: window, PendingTTL: ttl,
		MaxNamesPerAddress: 4, IP: "192.0.2.7"},
		AuditAppend{Type: "login.failure", Severity: AuditWarning, IP: "192.0.2.7",
			Details: map[string]string{"username": "Zebulon", "reason": "unknown_user"}})
	step(TypeUserCreate, 1, UserCreate{ID: eraseID, Username: eraseName, Email: eraseEmail, PasswordHash: seedHash},
		AuditAppend{Type: "user.create", Severity: AuditInfo, Actor: "local-admin", Subject: eraseID,
			Details: map[string]string{"username": eraseName, "email": eraseEmail}})
	step(TypeUserCreate, 1, UserCreate{ID: "u2", Username: "bob", Email: "bob@example.test", PasswordHash: seedHash},
		AuditAppend{Type: "user.create", Severity: AuditInfo, Actor: "local-admin", Subject: "u2",
			Details: map[string]string{"username": "bob"}})
	// Entries that merely contain the name inside a longer word are not
	// about them, and stay as they were.
	step(TypeAuditAppend, 1, AuditAppend{Type: "note", Severity: AuditInfo, Subject: "zebulons-cafe"})
	// Sessions with refresh tokens, second factors, a pending slot held
	// under the name, a failed second factor, admin-route refusals.
	step(TypeSessionCreate, 2, SessionCreateV2{SessionCreate: SessionCreate{ID: "s1", UserID: eraseID, RefreshHash: hashOf("r1"),
		Lifetime: int64(24 * time.Hour), IdleTimeout: int64(time.Hour), MaxPerUser: 5, OnLimit: "evict_oldest"}})
	step(TypeSessionRefresh, 2, SessionRefresh{OldHash: hashOf("r1"), NewHash: hashOf("r1b")})
	// A session whose refresh tokens name it (level 5): no record per token.
	step(TypeSessionCreate, 4, SessionCreateV4{SessionCreateV3: SessionCreateV3{SessionCreateV2: SessionCreateV2{SessionCreate: SessionCreate{
		ID: "s3", UserID: eraseID, RefreshHash: hashOf("m0"), Lifetime: int64(24 * time.Hour), IdleTimeout: int64(time.Hour),
		MaxPerUser: 5, OnLimit: "evict_oldest"}}}, RefreshMAC: true})
	step(TypeSessionRefresh, 3, SessionRefreshV3{SessionID: "s3", SessionRefresh: SessionRefresh{OldHash: hashOf("m0"), NewHash: hashOf("m1")}})
	step(TypeSessionCreate, 2, SessionCreateV2{SessionCreate: SessionCreate{ID: "s2", UserID: "u2", RefreshHash: hashOf("r2"),
		Lifetime: int64(24 * time.Hour), IdleTimeout: int64(time.Hour), MaxPerUser: 5, OnLimit: "evict_oldest"}})
	step(TypeMFATOTPEnroll, 1, MFATOTPEnroll{UserID: eraseID, Sealed: []byte("sealed totp of zebulon")})
	step(TypeMFATOTPConfirm, 1, MFATOTPConfirm{UserID: eraseID, Step: 3, Recovery: []string{hashOf("rc0"), hashOf("rc1")}})
	step(TypeWebAuthnAdd, 1, WebAuthnAdd{UserID: eraseID, Credential: WebAuthnCredential{ID: "cred-zeb", Name: "zebulon's key", Sealed: []byte("sealed cred")}})
	step(TypeLoginAttempt, 2, attempt)
	step(TypeLoginAttempt, 2, LoginAttemptV2{Username: "mfa " + eraseID, MaxAttempts: 5, Window: window, PendingTTL: ttl, MaxNamesPerAddress: 4, IP: "192.0.2.7"})
	step(TypeForbidden, 1, Forbidden{UserID: eraseID, Max: 5, Window: int64(time.Minute), Route: "GET /v1/admin/users", IP: "192.0.2.7"})
	step(TypeOIDCClientPut, 1, OIDCClientPut{Client: OIDCClient{ID: "app", SecretHash: hashOf("secret"), RedirectURIs: []string{"https://app.example/cb"}}})
	step(TypeOIDCAuthRequest, 1, OIDCAuthRequestPut{Request: OIDCAuthRequest{ID: "req1", ClientID: "app", RedirectURI: "https://app.example/cb",
		Scopes: []string{"openid"}, ExpiresAt: at.Add(time.Hour), KeepUntil: at.Add(2 * time.Hour)}})
	step(TypeOIDCAuthorize, 1, OIDCAuthorize{RequestID: "req1", CodeHash: hashOf("code"), UserID: eraseID, LoginSession: "s1", AuthTime: at,
		AMR: []string{"pwd"}, CodeExpiresAt: at.Add(time.Hour), CodeKeepUntil: at.Add(2 * time.Hour)})
	step(TypeOIDCConsentGrant, 1, OIDCConsentGrant{UserID: eraseID, ClientID: "app", Scopes: []string{"openid", "profile"}})
	step(TypeAuditAppend, 1, AuditAppend{Type: "login.success", Severity: AuditInfo, Actor: eraseID, Subject: eraseID, IP: "192.0.2.7"})
	last := lastAuditOf(t, a.s)
	step(TypeAuditCheckpoint, 1, signer.sign(t, last.Seq, last.Hash, at))
	step(TypeAuditAppend, 1, AuditAppend{Type: "account.flagged", Severity: AuditCritical, Subject: eraseID,
		Details: map[string]string{"username": eraseName}})
	return a
}

// mentions walks every key and value of every bucket, as a raw scan would,
// and returns "bucket: key" for each that holds one of needles (ASCII
// letters compared without case).
func mentions(t *testing.T, s *Store, needles ...string) []string {
	t.Helper()
	var out []string
	if err := s.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				for _, n := range needles {
					if bytes.Contains(bytes.ToLower(k), []byte(n)) || bytes.Contains(bytes.ToLower(v), []byte(n)) {
						out = append(out, string(name)+": "+strings.ToValidUTF8(string(k), "?"))
					}
				}
				return nil
			})
		})
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func erase(t *testing.T, a *applier, id string) EraseResult {
	t.Helper()
	r := a.applyVersion(TypeUserErase, 1, t0.Add(time.Hour), UserErase{ID: id, Actor: "local-admin", IP: "192.0.2.1"})
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	return r.Value.(EraseResult)
}

// user.erase leaves no record that names the user, by id, name or email,
// in any bucket but the pseudonymised trail (which keeps the id), keeps
// the other user's records, and the trail and its signed checkpoint still
// verify.
func TestUserEraseLeavesNothing(t *testing.T) {
	a := erasable(t)
	before := viewValue(t, a.s, func(r Reader) (*SubjectRecords, error) { return r.SubjectRecords(eraseID) })
	if len(before.Sessions) != 2 || len(before.Refresh) != 3 || before.MFA == nil || len(before.Lockouts) != 2 ||
		before.Forbidden == nil || len(before.Requests) != 1 || len(before.Codes) != 1 {
		t.Fatalf("records before the erase: %+v", before)
	}
	if !slices.Contains(before.Refresh, RefreshMeta{SessionID: "s3", Live: true, Generation: 1}) {
		t.Fatalf("the live token of s3, which has no record, is not listed: %+v", before.Refresh)
	}
	var seqs []uint64
	for _, e := range before.Audit {
		seqs = append(seqs, e.Seq)
	}
	if !slices.Equal(seqs, []uint64{1, 2, 5, 7}) {
		t.Fatalf("audit entries about zebulon: %v", seqs)
	}
	if got := mentions(t, a.s, eraseName, eraseEmail); len(got) == 0 {
		t.Fatal("the raw scan finds nothing before the erase: it cannot fail")
	}
	gen := a.s.ErasedGeneration()

	res := erase(t, a, eraseID)
	if res.Pseudonym != "erased:"+eraseID || res.Sessions != 2 || res.AuditEntries != 3 || res.Records < 5 {
		t.Fatalf("erase result %+v", res)
	}
	if got := mentions(t, a.s, eraseName, eraseEmail); len(got) != 1 || got[0] != "audit: "+string(auditKey(4)) {
		// The one left: the note about "zebulons-cafe", not about them.
		t.Fatalf("records still naming the user after the erase: %q", got)
	}
	// Keyed by their id: nothing outside the trail.
	for _, m := range mentions(t, a.s, eraseID) {
		if !strings.HasPrefix(m, "audit: ") && !strings.HasPrefix(m, "audit_checkpoints: ") {
			t.Errorf("a record keyed by the user's id is left: %s", m)
		}
	}
	if a.s.ErasedGeneration() == gen || viewValue(t, a.s, func(r Reader) (uint64, error) { return r.Erasures(), nil }) != 1 {
		t.Fatal("the erase is not counted")
	}
	viewValue(t, a.s, func(r Reader) (*User, error) { return r.UserByName("bob") }) // fails the test if bob went too
	if _, err := viewSession(a, "s2"); err != nil {
		t.Fatalf("bob's session went too: %v", err)
	}
	if n, err := verifyStored(t, a.s); err != nil {
		t.Fatalf("the trail no longer verifies (%d entries): %v", n, err)
	}
	rep, err := verifyTrail(t, a.s)
	if err != nil || rep.Checkpoints != 1 {
		t.Fatalf("the signed trail no longer verifies: %+v %v", rep, err)
	}
	erased := 0
	for _, e := range allAudit(t, a.s) {
		if len(e.Erased) > 0 {
			erased++
			if !slices.Equal(e.Erased, []uint64{res.Seq}) || e.ComputeHash() == e.Hash {
				t.Errorf("entry %d: erased %v, hash recomputed %v", e.Seq, e.Erased, e.ComputeHash() == e.Hash)
			}
		}
	}
	if erased != res.AuditEntries {
		t.Fatalf("%d entries marked erased, the result says %d", erased, res.AuditEntries)
	}
	if r := a.applyVersion(TypeUserErase, 1, t0.Add(2*time.Hour), UserErase{ID: eraseID}); !errors.Is(r.Err, ErrUserNotFound) {
		t.Fatalf("erasing again: %v", r.Err)
	}
}

// Compact leaves the bytes of deleted records behind: before it, the raw
// file still holds the erased name (bbolt does not zero freed pages).
func TestCompactDropsFreedPages(t *testing.T) {
	a := erasable(t)
	erase(t, a, eraseID)
	raw := func() bool {
		t.Helper()
		b, err := os.ReadFile(a.s.Path())
		if err != nil {
			t.Fatal(err)
		}
		return bytes.Contains(b, []byte(eraseEmail))
	}
	if !raw() {
		t.Log("the freed pages happen to hold no copy of the email already")
	}
	if err := a.s.Compact(); err != nil {
		t.Fatal(err)
	}
	if raw() {
		t.Fatal("the compacted state.db still holds the erased email")
	}
	if _, err := verifyStored(t, a.s); err != nil {
		t.Fatal(err)
	}
	a.apply(TypeAuditAppend, t0.Add(2*time.Hour), AuditAppend{Type: "after.compact", Severity: AuditInfo})
	if n, err := verifyStored(t, a.s); err != nil || n == 0 {
		t.Fatalf("after a write to the compacted file: %d %v", n, err)
	}
}

// What the verifiers refuse in an erased trail: an erased entry altered
// after the erase, the erase mark removed, a mark added to an entry the
// erase did not rewrite, a mark naming an entry that is no erase or is
// past the trail's end.
func TestErasedTrailTampering(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(t *testing.T, s *Store, res EraseResult, erased, plain *AuditEntry)
		at     func(res EraseResult, erased, plain *AuditEntry) uint64
	}{
		{"erased entry altered", func(t *testing.T, s *Store, res EraseResult, erased, _ *AuditEntry) {
			tamperAudit(t, s, erased.Seq, func(e *AuditEntry) { e.IP = "203.0.113.9" })
		}, func(res EraseResult, _, _ *AuditEntry) uint64 { return res.Seq }},
		{"erase mark removed", func(t *testing.T, s *Store, _ EraseResult, erased, _ *AuditEntry) {
			tamperAudit(t, s, erased.Seq, func(e *AuditEntry) { e.Erased = nil })
		}, func(_ EraseResult, erased, _ *AuditEntry) uint64 { return erased.Seq }},
		{"mark added", func(t *testing.T, s *Store, res EraseResult, _, plain *AuditEntry) {
			tamperAudit(t, s, plain.Seq, func(e *AuditEntry) { e.Erased = []uint64{res.Seq}; e.Subject = "someone else" })
		}, func(res EraseResult, _, _ *AuditEntry) uint64 { return res.Seq }},
		{"mark names no erase", func(t *testing.T, s *Store, res EraseResult, _, plain *AuditEntry) {
			tamperAudit(t, s, plain.Seq, func(e *AuditEntry) { e.Erased = []uint64{plain.Seq + 1}; e.Subject = "x" })
		}, func(_ EraseResult, _, plain *AuditEntry) uint64 { return plain.Seq }},
		{"mark past the end", func(t *testing.T, s *Store, res EraseResult, _, plain *AuditEntry) {
			tamperAudit(t, s, plain.Seq, func(e *AuditEntry) { e.Erased = []uint64{res.Seq + 100}; e.Subject = "x" })
		}, func(_ EraseResult, _, plain *AuditEntry) uint64 { return plain.Seq }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := erasable(t)
			res := erase(t, a, eraseID)
			var erased, plain *AuditEntry
			for _, e := range allAudit(t, a.s) {
				switch {
				case erased == nil && len(e.Erased) > 0:
					erased = e
				case plain == nil && len(e.Erased) == 0 && e.Type == "user.create" && e.Subject == "u2":
					plain = e
				}
			}
			if erased == nil || plain == nil {
				t.Fatal("no erased or plain entry")
			}
			tc.mutate(t, a.s, res, erased, plain)
			_, err := verifyStored(t, a.s)
			wantBreakAt(t, err, tc.at(res, erased, plain))
			_, err = verifyTrail(t, a.s)
			wantBreakAt(t, err, tc.at(res, erased, plain))
		})
	}
}

// BenchmarkUserErase: one user.erase against a trail of n entries (one in
// 1000 naming the user), beside a user.delete of the same user as the
// floor: the erase's cost is its walk of the trail, during which every
// write on every node waits; and Compact of the same file.
func BenchmarkUserErase(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		s, err := Open(filepath.Join(b.TempDir(), "state.db"))
		if err != nil {
			b.Fatal(err)
		}
		index := uint64(1)
		for done := 0; done < n; done += 10_000 {
			var batch []Entry
			for i := range 10_000 {
				p := sampleAudit(done + i)
				if (done+i)%1000 == 0 {
					p.Details["username"] = "victim"
				}
				batch = append(batch, auditCmd(b, index, t0, p))
				index++
			}
			s.ApplyBatch(batch)
		}
		apply := func(typ Type, p any) {
			c := mustEncode(b, typ, t0.Add(time.Hour), p)
			if r := s.ApplyBatch([]Entry{{Index: index, Term: 1, Command: true, Data: c}})[0]; r.Err != nil {
				b.Fatal(r.Err)
			}
			index++
		}
		for _, typ := range []Type{TypeUserDelete, TypeUserErase} {
			b.Run(fmt.Sprintf("%s/trail=%d", typ, n), func(b *testing.B) {
				for i := 0; b.Loop(); i++ {
					b.StopTimer()
					apply(TypeUserCreate, UserCreate{ID: fmt.Sprintf("v%d", i), Username: "victim", Email: "v@example.test", PasswordHash: "h"})
					b.StartTimer()
					if typ == TypeUserDelete {
						apply(typ, UserDelete{ID: fmt.Sprintf("v%d", i)})
					} else {
						apply(typ, UserErase{ID: fmt.Sprintf("v%d", i)})
					}
				}
			})
		}
		b.Run(fmt.Sprintf("compact/trail=%d", n), func(b *testing.B) {
			for b.Loop() {
				if err := s.Compact(); err != nil {
					b.Fatal(err)
				}
			}
		})
		s.Close()
	}
}

// A walk resumed view by view (authcore's background check) that passed
// the entries an erase later rewrites goes on past the erase without a
// break; a walk from the start checks the erasure whole.
func TestResumedWalkAcrossAnErase(t *testing.T) {
	a := erasable(t)
	var w AuditWalk
	walk := func(limit int) error {
		t.Helper()
		var err error
		if verr := a.s.View(func(r Reader) error { err = r.ContinueAuditWalk(&w, limit, checkAuditSig); return nil }); verr != nil {
			t.Fatal(verr)
		}
		return err
	}
	if err := walk(0); err != nil {
		t.Fatal(err)
	}
	res := erase(t, a, eraseID)
	a.apply(TypeAuditAppend, t0.Add(2*time.Hour), AuditAppend{Type: "after.erase", Severity: AuditInfo})
	if err := walk(1); err != nil {
		t.Fatalf("resumed walk at the erase (seq %d): %v", res.Seq, err)
	}
	if err := walk(0); err != nil {
		t.Fatalf("resumed walk to the end: %v", err)
	}
	if _, err := verifyTrail(t, a.s); err != nil {
		t.Fatal(err)
	}
}
