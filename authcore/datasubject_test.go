package authcore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/bulwark-auth/bulwark/fsm"
)

// The export holds every record a raw walk of state.db finds naming the
// user (by id, name or email), and none of their secrets.
func TestExportMatchesRawScan(t *testing.T) {
	s, clk := newAuthService(t, Config{})
	ctx := fromAddr
	const name, email = "zebedee", "zebedee.export@example.test"
	if _, err := s.Login(ctx, name, pw); !errors.Is(err, ErrInvalidCredentials) { // before the account exists
		t.Fatal(err)
	}
	u, err := s.CreateUser(ctx, NewUser{Username: name, Password: pw, Email: email})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Login(ctx, name, pw)
	if err != nil {
		t.Fatal(err)
	}
	if tok, err = s.Refresh(ctx, tok.RefreshToken); err != nil {
		t.Fatal(err)
	}
	p := principalOf(t, s, tok)
	if _, err := s.Login(ctx, name, "wrong password here"); !errors.Is(err, ErrInvalidCredentials) { // leaves a lockout record
		t.Fatal(err)
	}
	e, err := s.EnrollTOTP(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConfirmTOTP(ctx, p, code(t, e.Secret, clk.Now())); err != nil {
		t.Fatal(err)
	}

	exp, err := s.ExportUser(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(exp)
	if err != nil {
		t.Fatal(err)
	}
	me, err := s.ExportMe(context.Background(), p)
	if err != nil || me.User.ID != u.ID || len(me.Audit) != len(exp.Audit) {
		t.Fatalf("ExportMe: %+v %v", me, err)
	}

	type record struct {
		bucket string
		k, v   []byte
	}
	var raw []record
	stored := map[string]bool{}
	if err := s.store.View(func(r fsm.Reader) error {
		return r.ForEachRaw(func(bucket string, k, v []byte) error {
			raw = append(raw, record{bucket, bytes.Clone(k), bytes.Clone(v)})
			stored[bucket+"\x00"+string(k)] = true
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	has := func(list []string, v string) bool {
		for _, x := range list {
			if x == v {
				return true
			}
		}
		return false
	}
	var sessions, lockouts, seqs, passkeys, secrets []string
	for _, x := range exp.Sessions {
		sessions = append(sessions, x.ID)
	}
	for _, x := range exp.Lockouts {
		lockouts = append(lockouts, x.Name)
	}
	for _, x := range exp.Audit {
		seqs = append(seqs, string(binary.BigEndian.AppendUint64(nil, x.Seq)))
	}
	for _, x := range exp.MFA.Passkeys {
		passkeys = append(passkeys, x.ID)
	}
	// inExport says whether the record at bucket/key appears in the
	// export; every bucket that can name a user has its rule here, so a
	// new one that does fails until it is exported.
	inExport := func(bucket string, k, v []byte) bool {
		key := string(k)
		switch bucket {
		case "users":
			return key == u.ID && exp.User.Username == name && exp.User.Email == email
		case "usernames":
			return key == name && exp.User.Username == name
		case "sessions":
			return has(sessions, key)
		case "user_sessions":
			return has(sessions, strings.TrimPrefix(key, u.ID+"\x00"))
		case "lockout":
			return has(lockouts, key)
		case "lockout_addresses": // a held slot: the name's pending check
			i := strings.IndexByte(key, 0)
			return i >= 0 && len(key) > i+10 && has(lockouts, key[i+10:])
		case "expiry":
			switch ref := key[9:]; key[8] {
			case 's':
				return has(sessions, ref)
			case 'l': // or a dangling entry, whose record is gone: it holds nothing but an instant
				return has(lockouts, ref) || !stored["lockout\x00"+ref]
			case 'f':
				return exp.AdminRefusals != nil
			}
		case "audit":
			return has(seqs, key)
		case "mfa":
			return key == u.ID && exp.MFA.TOTP != nil && exp.MFA.TOTP.Enrolled && exp.MFA.RecoveryCodesLeft > 0
		case "webauthn_credentials":
			return has(passkeys, key)
		case "incident_accounts":
			return exp.AdminRefusals != nil
		}
		return false
	}
	found := 0
	for _, rec := range raw {
		func(bucket string, k, v []byte) {
			// The secrets a record holds, whoever it names.
			switch bucket {
			case "users":
				var fu fsm.User
				if json.Unmarshal(v, &fu) == nil && fu.ID == u.ID {
					secrets = append(secrets, fu.PasswordHash)
				}
			case "refresh":
				secrets = append(secrets, string(k))
			case "sessions":
				var fs fsm.Session
				if json.Unmarshal(v, &fs) == nil && fs.UserID == u.ID {
					secrets = append(secrets, fs.RefreshHash)
				}
			case "mfa":
				var m fsm.MFA
				if json.Unmarshal(v, &m) == nil && string(k) == u.ID {
					secrets = append(secrets, m.Recovery...)
					for _, f := range []*fsm.TOTPFactor{m.TOTP, m.PendingTOTP} {
						if f != nil {
							b, _ := json.Marshal(f.Sealed)
							secrets = append(secrets, strings.Trim(string(b), `"`), hex.EncodeToString(f.Sealed))
						}
					}
				}
			}
			low := bytes.ToLower(append(append([]byte(nil), k...), v...))
			if !bytes.Contains(low, []byte(u.ID)) && !bytes.Contains(low, []byte(name)) && !bytes.Contains(low, []byte(email)) {
				return
			}
			found++
			if !inExport(bucket, k, v) {
				t.Errorf("%s %q names the user and is not in the export", bucket, k)
			}
		}(rec.bucket, rec.k, rec.v)
	}
	if found < 10 || len(exp.Audit) < 4 || len(exp.Sessions) != 1 || len(exp.Lockouts) != 1 ||
		// One token rotated once: no record per token, the live one of generation 1.
		len(exp.RefreshTokens) != 1 || !exp.RefreshTokens[0].Live || exp.RefreshTokens[0].Generation != 1 {
		t.Fatalf("the scan found %d records; the export: %s", found, js)
	}
	if len(secrets) < 5 {
		t.Fatalf("only %d secrets collected", len(secrets))
	}
	for _, sec := range secrets {
		if sec != "" && bytes.Contains(js, []byte(sec)) {
			t.Errorf("the export holds a secret: %.20s…", sec)
		}
	}
	for _, f := range []string{"password_hash", "refresh_hash", "sealed", "recovery\"", "code_challenge"} {
		if bytes.Contains(js, []byte(f)) {
			t.Errorf("the export has a %s field", f)
		}
	}
}

// EraseUser: below level 5 it is refused and changes nothing; at level
// 5 the user is gone, the trail still verifies, and a second erase finds
// no one.
func TestEraseUser(t *testing.T) {
	s4, _ := newAuthServiceAt(t, Config{}, 4)
	if _, err := s4.EraseUser(context.Background(), "alice"); !errors.Is(err, ErrErasureUnavailable) || !errors.Is(err, ErrConflict) {
		t.Fatalf("erase at level 4: %v", err)
	}
	if _, err := s4.User(context.Background(), "alice"); err != nil {
		t.Fatalf("a refused erase removed the user: %v", err)
	}

	s, _ := newAuthService(t, Config{})
	ctx := WithRequestInfo(context.Background(), RequestInfo{Actor: "local-admin"})
	if _, err := s.CreateUser(ctx, NewUser{Username: "yolanda", Password: pw, Email: "yo@example.test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Login(fromAddr, "yolanda", pw); err != nil {
		t.Fatal(err)
	}
	er, err := s.EraseUser(ctx, "yolanda")
	if err != nil || er.Sessions != 1 || er.AuditEntries < 1 || !strings.HasPrefix(er.Pseudonym, fsm.ErasedPrefix) {
		t.Fatalf("erase: %+v %v", er, err)
	}
	if _, err := s.User(ctx, "yolanda"); !errors.Is(err, ErrUserNotFound) {
		t.Fatalf("the user is still there: %v", err)
	}
	if _, err := s.VerifyAudit(ctx); err != nil {
		t.Fatalf("the trail does not verify after the erase: %v", err)
	}
	entries, err := s.Audit(ctx, er.AuditSeq-1, 1)
	if err != nil || len(entries) != 1 || entries[0].Type != "user.erase" || entries[0].Actor != "local-admin" ||
		strings.Contains(entries[0].Subject, "yolanda") {
		t.Fatalf("the erase's own entry: %+v %v", entries, err)
	}
	if _, err := s.EraseUser(ctx, "yolanda"); !errors.Is(err, ErrUserNotFound) {
		t.Fatalf("a second erase: %v", err)
	}
}
