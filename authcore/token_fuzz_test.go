package authcore

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/golang-jwt/jwt/v5"

	"github.com/bulwark-auth/bulwark/fsm"
)

// Fuzzing needs keys every worker process derives alike: a token signed
// while seeding must verify in the process that mutates it.
func fixedKeys(t testing.TB) map[string]crypto.Signer {
	t.Helper()
	ec, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), []byte(strings.Repeat("fuzz-ec-", 4)))
	if err != nil {
		t.Fatal(err)
	}
	var seed [mldsa65.SeedSize]byte
	copy(seed[:], "fuzz-mldsa")
	_, ml := mldsa65.NewKeyFromSeed(&seed)
	return map[string]crypto.Signer{AlgES256: ec, AlgEdDSA: ed25519.NewKeyFromSeed([]byte(strings.Repeat("fuzz-ed-", 4))),
		AlgMLDSA65: ml}
}

func fixedSigner(t testing.TB, alg string) *Signer {
	t.Helper()
	s, err := NewSigner(fixedKeys(t)[alg], alg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// signingInput is a compact JWS without its signature.
func signingInput(tok string) string {
	i := strings.LastIndexByte(tok, '.')
	if i < 0 {
		return ""
	}
	return tok[:i]
}

// FuzzVerifyAccessToken: no text panics VerifyAccessToken; every refusal
// wraps ErrInvalidToken (what the API answers 401 invalid_token for); and
// whatever it accepts is a header and payload one of the keys signed, with
// the issuer, audience and times it was asked to hold them to.
func FuzzVerifyAccessToken(f *testing.F) {
	lookup := jwksLookup{}
	signed := map[string]bool{}
	var seeds []string
	for _, alg := range []string{AlgES256, AlgEdDSA, AlgMLDSA65} {
		s := fixedSigner(f, alg)
		jwk, err := s.PublicJWK()
		if err != nil {
			f.Fatal(err)
		}
		lookup[s.Kid()] = jwk
		for _, c := range []*AccessClaims{testClaims(), func() *AccessClaims {
			c := testClaims()
			c.ExpiresAt = jwt.NewNumericDate(tokNow.Add(-time.Hour)) // expired
			return c
		}()} {
			tok, err := s.Sign(c)
			if err != nil {
				f.Fatal(err)
			}
			signed[signingInput(tok)] = true
			seeds = append(seeds, tok)
		}
	}
	b64 := base64.RawURLEncoding.EncodeToString
	es := fixedSigner(f, AlgES256)
	payload := b64([]byte(mustJSON(f, testClaims())))
	seeds = append(seeds,
		b64([]byte(`{"alg":"none","kid":"`+es.Kid()+`"}`))+"."+payload+".",
		b64([]byte(`{"alg":"HS256","kid":"`+es.Kid()+`"}`))+"."+payload+".c2ln",
		b64([]byte(`{"alg":"ES256","kid":"`+es.Kid()+`","crit":["x"]}`))+"."+payload+".c2ln",
		"", ".", "..", "a.b.c", "a.b.c.d", strings.Repeat("A", 100))
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := VerifyAccessToken(tok, lookup, testIssuer, testAudience, tokNow, time.Minute)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("refusal %v does not wrap ErrInvalidToken", err)
			}
			return
		}
		if !signed[signingInput(tok)] {
			t.Fatalf("accepted a header and payload no key signed: %q", tok)
		}
		if c.Issuer != testIssuer || !slices.Contains(c.Audience, testAudience) || c.ExpiresAt == nil ||
			!c.ExpiresAt.Add(time.Minute).After(tokNow) || c.Subject == "" || c.Sid == "" || c.ID == "" {
			t.Fatalf("accepted claims %+v", c)
		}
	})
}

const fuzzIssuer = "https://bulwark.test:8443"

// fuzzService is an auth service whose state every fuzzing process builds
// alike: a fixed signing key and data key, user u1 (alice), its session
// s1 (whose refresh token is random, stored per token) and session s2
// (whose tokens name it: fuzzRefreshS2 is its dead token of generation
// 0, and its live one, of generation 1, is random), and an access token
// of s1.
func fuzzService(t testing.TB) (*Service, *localStore, string) {
	t.Helper()
	clk := newClock()
	sig := fixedSigner(t, AlgES256)
	st := newLocalStore(t)
	ctx := context.Background()
	apply := func(typ fsm.Type, v uint16, p any) {
		t.Helper()
		cmd, err := fsm.NewCommand(typ, v, clk.Now().UnixNano(), p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Apply(ctx, cmd); err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
	}
	apply(fsm.TypeClusterLevel, 1, fsm.ClusterLevel{Level: fsm.MaxLevel})
	s, err := New(st, Config{Hash: testHash, Policy: PasswordPolicy{MinLength: 12, MaxLength: 128},
		Issuer: fuzzIssuer, NodeID: "n1"}, WithClock(clk), WithSigner(sig), WithSecretBox(testBox(t)))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PublishSigningKey(ctx); err != nil && !errors.Is(err, ErrIssuerNotRecorded) {
		t.Fatal(err)
	}
	// The refresh token is random: a fuzzer that found it would rotate it.
	live, err := randomToken(refreshPrefix)
	if err != nil {
		t.Fatal(err)
	}
	hash, err := HashPassword(pw, testHash, []byte("fuzz-salt-16byte"))
	if err != nil {
		t.Fatal(err)
	}
	apply(fsm.TypeUserCreate, 1, fsm.UserCreate{ID: "u1", Username: "alice", Roles: []string{RoleAdmin}, PasswordHash: hash})
	apply(fsm.TypeSessionCreate, 2, fsm.SessionCreateV2{SessionCreate: fsm.SessionCreate{ID: "s1", UserID: "u1",
		RefreshHash: hashToken(live), Lifetime: int64(24 * time.Hour),
		IdleTimeout: int64(time.Hour), MaxPerUser: 10, OnLimit: "evict_oldest", AMR: []string{"pwd"}}})
	live2, err := s.box.mintRefresh("s2", 1)
	if err != nil {
		t.Fatal(err)
	}
	apply(fsm.TypeSessionCreate, 4, fsm.SessionCreateV4{SessionCreateV3: fsm.SessionCreateV3{SessionCreateV2: fsm.SessionCreateV2{
		SessionCreate: fsm.SessionCreate{ID: "s2", UserID: "u1", RefreshHash: hashToken(fuzzRefreshS2), Lifetime: int64(24 * time.Hour),
			IdleTimeout: int64(time.Hour), MaxPerUser: 10, OnLimit: "evict_oldest", AMR: []string{"pwd"}}}}, RefreshMAC: true})
	apply(fsm.TypeSessionRefresh, 3, fsm.SessionRefreshV3{SessionID: "s2", Generation: 0,
		SessionRefresh: fsm.SessionRefresh{OldHash: hashToken(fuzzRefreshS2), NewHash: hashToken(live2)}})
	now := clk.Now()
	tok, err := sig.Sign(&AccessClaims{RegisteredClaims: jwt.RegisteredClaims{Issuer: fuzzIssuer, Subject: "u1",
		Audience: jwt.ClaimStrings{fuzzIssuer}, ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), ID: "fuzz-jti"},
		Sid: "s1", Amr: []string{"pwd"}, AuthTime: now.Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return s, st, tok
}

// FuzzAuthenticate drives Service.Authenticate, what every Bearer route
// calls first, with fuzzed tokens against a real state: no panic; every
// refusal wraps ErrInvalidToken (anything else would be a 500); and only
// the header and payload the service's key signed for session s1 is
// accepted, as that session's caller.
func FuzzAuthenticate(f *testing.F) {
	s, _, live := fuzzService(f)
	es := fixedSigner(f, AlgES256)
	b64 := base64.RawURLEncoding.EncodeToString
	parts := strings.Split(live, ".")
	for _, tok := range []string{live,
		parts[0] + "." + parts[1] + ".",
		b64([]byte(`{"alg":"none","typ":"JWT","kid":"`+es.Kid()+`"}`)) + "." + parts[1] + ".",
		b64([]byte(`{"alg":"EdDSA","typ":"JWT","kid":"`+es.Kid()+`"}`)) + "." + parts[1] + "." + parts[2],
		"", "bearer", strings.Repeat(".", 3)} {
		f.Add(tok)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		p, err := s.Authenticate(context.Background(), tok)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("refusal %v does not wrap ErrInvalidToken", err)
			}
			return
		}
		if signingInput(tok) != signingInput(live) {
			t.Fatalf("accepted a token the service did not sign: %q", tok)
		}
		if p.UserID != "u1" || p.SessionID != "s1" || p.Username != "alice" {
			t.Fatalf("accepted as %+v", p)
		}
	})
}

// fuzzRefreshS2 is session s2's first refresh token, dead (fuzzService):
// minted under testBox's key, the same in every fuzzing process.
const fuzzRefreshS2 = "bwr_AQJzMgAAAAAAAAAAAAECAwQFBgcICQoLDA0OD6NPn3yt9hteX2AjDfbBTLM"

// FuzzRefresh drives Service.Refresh, which POST /v1/auth/refresh calls
// with the body's refresh_token, with fuzzed tokens of both formats.
// Nothing guesses a live token or a MAC, so every answer is
// ErrInvalidGrant; a token of the wrong form, or one naming its session
// whose MAC does not verify, proposes nothing; and sessions s1 and s2
// keep their refresh tokens. (The seeds hold s2's dead token altered,
// never itself: presenting it would revoke s2, as it should.)
func FuzzRefresh(f *testing.F) {
	s, st, _ := fuzzService(f)
	var proposed atomic.Int64
	st.before = func(context.Context, fsm.Command) { proposed.Add(1) }
	for _, tok := range []string{refreshPrefix + strings.Repeat("A", 43), refreshPrefix + strings.Repeat("L", 42) + "M=",
		refreshPrefix + strings.Repeat("A", 42), refreshPrefix + strings.Repeat("+", 43), "bwr_", "", "Bearer x",
		fuzzRefreshS2[:len(fuzzRefreshS2)-1] + "A", fuzzRefreshS2 + "A", fuzzRefreshS2[:len(fuzzRefreshS2)-2],
		strings.Replace(fuzzRefreshS2, "AQJzMg", "AQJzMQ", 1), strings.Replace(fuzzRefreshS2, "AAAAAAAAAAA", "AAAAAAAAAAE", 1),
		refreshPrefix + strings.Repeat("A", 60),
		// The same bytes spelt otherwise (the decoder skips line breaks).
		fuzzRefreshS2[:20] + "\n" + fuzzRefreshS2[20:], fuzzRefreshS2 + "\r\n"} {
		f.Add(tok)
	}
	if _, err := s.box.openRefresh(fuzzRefreshS2); err != nil {
		f.Fatalf("fuzzRefreshS2 does not verify under testBox: %v", err)
	}
	sessions := func(t testing.TB) [2]*fsm.Session {
		var out [2]*fsm.Session
		if err := st.View(func(r fsm.Reader) (err error) {
			if out[0], err = r.Session("s1"); err != nil {
				return err
			}
			out[1], err = r.Session("s2")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := sessions(f)
	f.Fuzz(func(t *testing.T, tok string) {
		if tok == fuzzRefreshS2 {
			return // s2's dead token: its reuse revokes s2 (TestRefreshReuseByGeneration)
		}
		before := proposed.Load()
		_, err := s.Refresh(context.Background(), tok)
		if !errors.Is(err, ErrInvalidGrant) {
			t.Fatalf("Refresh(%q): %v, want ErrInvalidGrant", tok, err)
		}
		n := proposed.Load() - before
		if !refreshShaped(tok) && n != 0 {
			t.Fatalf("a malformed refresh token proposed %d commands", n)
		}
		if _, err := s.box.openRefresh(tok); namesSession(tok) && err != nil && n != 0 {
			t.Fatalf("a refresh token whose MAC does not verify proposed %d commands", n)
		}
		for i, got := range sessions(t) {
			if got.RefreshHash != want[i].RefreshHash || got.RefreshGen != want[i].RefreshGen || !got.ExpiresAt.Equal(want[i].ExpiresAt) {
				t.Fatalf("session %s changed: %+v", got.ID, got)
			}
		}
	})
}
