package authcore

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/clock"
)

// member is one node of a test cluster: its own Service and signing key
// over the state every member shares (replication, perfectly).
type member struct {
	s   *Service
	sig *Signer
}

// newMembers starts a cluster at feature level 3 with a member for each
// name, each signing with https://<name>.test:8443, or with clusterIssuer
// when it is set, and a user alice.
func newMembers(t testing.TB, clusterIssuer string, names ...string) ([]*member, *localStore, *clock.Fake) {
	t.Helper()
	st := newLocalStore(t)
	clk := newClock()
	ctx := context.Background()
	raise, _ := fsm.NewCommand(fsm.TypeClusterLevel, 1, clk.Now().UnixNano(), fsm.ClusterLevel{Level: fsm.LevelIssuers})
	if _, err := st.Apply(ctx, raise); err != nil {
		t.Fatal(err)
	}
	var ms []*member
	for _, name := range names {
		m := addMember(t, st, clk, name, clusterIssuer)
		if err := m.s.PublishSigningKey(ctx); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ms = append(ms, m)
	}
	if _, err := ms[0].s.CreateUser(ctx, NewUser{Username: "alice", Password: pw}); err != nil {
		t.Fatal(err)
	}
	return ms, st, clk
}

func addMember(t testing.TB, st *localStore, clk *clock.Fake, name, clusterIssuer string) *member {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := NewSigner(key, AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	iss := "https://" + name + ".test:8443"
	if clusterIssuer != "" {
		iss = ""
	}
	s, err := New(st, Config{Hash: testHash, Policy: PasswordPolicy{MinLength: 12, MaxLength: 128},
		Issuer: iss, ClusterIssuer: clusterIssuer, NodeID: name}, WithClock(clk), WithSigner(sig))
	if err != nil {
		t.Fatal(err)
	}
	return &member{s, sig}
}

// forge signs claims like m's tokens with m's key, changed by f: what a
// member, or whoever holds its key, could present.
func (m *member) forge(t *testing.T, tok string, f func(*AccessClaims)) string {
	t.Helper()
	c, _, err := verifySigned(tok, m.s.verifier.keys, m.s.now(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	f(c)
	out, err := m.sig.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func accepts(m *member, tok string) error {
	_, err := m.s.Authenticate(context.Background(), tok)
	return err
}

func TestEveryMemberAcceptsEveryMembersIssuer(t *testing.T) {
	ms, _, _ := newMembers(t, "", "n1", "n2", "n3")
	for _, from := range ms {
		tok, err := from.s.Login(context.Background(), "alice", pw)
		if err != nil {
			t.Fatal(err)
		}
		c, _, _ := verifySigned(tok.AccessToken, from.s.verifier.keys, from.s.now(), 0)
		if c.Issuer != from.s.cfg.Issuer || len(c.Audience) != 1 || c.Audience[0] != c.Issuer {
			t.Fatalf("%s signs iss %q aud %q, want its own issuer %q for both", from.s.cfg.NodeID, c.Issuer, c.Audience, from.s.cfg.Issuer)
		}
		for _, to := range ms {
			if err := accepts(to, tok.AccessToken); err != nil {
				t.Errorf("%s refuses %s's token: %v", to.s.cfg.NodeID, from.s.cfg.NodeID, err)
			}
		}
	}
}

func TestMembersRefuseIssuersNoMemberSignsWith(t *testing.T) {
	ms, _, _ := newMembers(t, "", "n1", "n2", "n3")
	tok, err := ms[1].s.Login(context.Background(), "alice", pw)
	if err != nil {
		t.Fatal(err)
	}
	// Each signed with n2's real key, so only the claims can fail.
	cases := map[string]func(*AccessClaims){
		"an unknown issuer": func(c *AccessClaims) {
			c.Issuer, c.Audience = "https://evil.example", jwt.ClaimStrings{"https://evil.example"}
		},
		"no issuer": func(c *AccessClaims) { c.Issuer = "" },
		// A member's key vouches for its own issuer only.
		"another member's issuer": func(c *AccessClaims) {
			c.Issuer, c.Audience = ms[2].s.cfg.Issuer, jwt.ClaimStrings{ms[2].s.cfg.Issuer}
		},
		"its issuer, for another audience": func(c *AccessClaims) { c.Audience = jwt.ClaimStrings{"https://evil.example"} },
		"its issuer, another member's audience": func(c *AccessClaims) {
			c.Audience = jwt.ClaimStrings{ms[0].s.cfg.Issuer}
		},
	}
	for name, f := range cases {
		forged := ms[1].forge(t, tok.AccessToken, f)
		for _, m := range ms {
			if err := accepts(m, forged); !errors.Is(err, ErrInvalidToken) {
				t.Errorf("%s: %s accepts it: %v", name, m.s.cfg.NodeID, err)
			}
		}
	}
	// The unchanged claims, re-signed, pass: the cases above fail on their claims.
	if err := accepts(ms[0], ms[1].forge(t, tok.AccessToken, func(*AccessClaims) {})); err != nil {
		t.Fatalf("the control token is refused: %v", err)
	}
}

func TestRemovedMembersIssuerIsRefused(t *testing.T) {
	ms, _, _ := newMembers(t, "", "n1", "n2", "n3")
	ctx := context.Background()
	toks := make([]string, len(ms))
	for i, m := range ms {
		tok, err := m.s.Login(ctx, "alice", pw)
		if err != nil {
			t.Fatal(err)
		}
		toks[i] = tok.AccessToken
		if err := accepts(ms[0], toks[i]); err != nil { // verified, and so cached
			t.Fatal(err)
		}
	}
	before := ms[0].s.verifier.issuers.Load()
	// The cluster removes n3, whose keys are retired: it signs no more.
	if n, err := ms[0].s.RetireNodeKeys(ctx, "n3", "test"); err != nil || n != 1 {
		t.Fatalf("retire n3's keys: %d, %v", n, err)
	}
	for _, m := range ms[:2] {
		if err := accepts(m, toks[2]); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s accepts removed n3's token: %v", m.s.cfg.NodeID, err)
		}
		// Nor can n3's key, which verifies until it leaves the JWKS, pass
		// its tokens off as another member's.
		forged := ms[2].forge(t, toks[2], func(c *AccessClaims) {
			c.Issuer, c.Audience = m.s.cfg.Issuer, jwt.ClaimStrings{m.s.cfg.Issuer}
		})
		if err := accepts(m, forged); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s accepts its own issuer from removed n3's key: %v", m.s.cfg.NodeID, err)
		}
		for i, tok := range toks[:2] {
			if err := accepts(m, tok); err != nil {
				t.Errorf("%s refuses n%d's token after n3's removal: %v", m.s.cfg.NodeID, i+1, err)
			}
		}
	}
	if ms[0].s.verifier.issuers.Load() == before {
		t.Error("the accepted issuers were not derived again after the keys changed")
	}
}

// The accepted issuers are derived when the keys change, not per request:
// logins, sessions and users write to the state without touching them.
func TestIssuerSetIsDerivedOncePerKeyChange(t *testing.T) {
	ms, _, _ := newMembers(t, "", "n1", "n2")
	ctx := context.Background()
	tok, err := ms[1].s.Login(ctx, "alice", pw)
	if err != nil {
		t.Fatal(err)
	}
	if err := accepts(ms[0], tok.AccessToken); err != nil {
		t.Fatal(err)
	}
	set := ms[0].s.verifier.issuers.Load()
	for i := range 3 {
		if _, err := ms[0].s.Login(ctx, "alice", pw); err != nil {
			t.Fatal(err)
		}
		if _, err := ms[0].s.CreateUser(ctx, NewUser{Username: fmt.Sprintf("user%d", i), Password: pw}); err != nil {
			t.Fatal(err)
		}
		if err := accepts(ms[0], tok.AccessToken); err != nil {
			t.Fatal(err)
		}
	}
	if ms[0].s.verifier.issuers.Load() != set {
		t.Fatal("the accepted issuers were derived again though no key changed")
	}
}

func TestClusterIssuerIsRecordedOnceAndHeldToEveryMember(t *testing.T) {
	const ours = "https://auth.example"
	ms, st, clk := newMembers(t, ours, "n1", "n2")
	ctx := context.Background()
	st.s.View(func(r fsm.Reader) error {
		if got, ok := r.TokensIssuer(); !ok || got != ours {
			t.Fatalf("recorded tokens issuer %q %v, want %q", got, ok, ours)
		}
		return nil
	})
	tok, err := ms[1].s.Login(ctx, "alice", pw)
	if err != nil {
		t.Fatal(err)
	}
	if err := accepts(ms[0], tok.AccessToken); err != nil {
		t.Fatal(err)
	}
	for _, configured := range []string{"https://other.example", ""} {
		m := addMember(t, st, clk, "n3", configured)
		var conflict *IssuerConflictError
		if err := m.s.CheckIssuer(); !errors.As(err, &conflict) || conflict.Configured != configured || conflict.Cluster != ours {
			t.Errorf("CheckIssuer with %q: %v", configured, err)
		}
		if err := m.s.PublishSigningKey(ctx); !errors.As(err, &conflict) || !errors.Is(err, ErrIssuerConflict) {
			t.Errorf("PublishSigningKey with %q: %v", configured, err)
		}
	}
	st.s.View(func(r fsm.Reader) error {
		if got, _ := r.TokensIssuer(); got != ours {
			t.Fatalf("tokens issuer %q after the refusals", got)
		}
		var n3 int
		r.PublicKeys(func(k *fsm.PublicKey) bool {
			if k.Node == "n3" {
				n3++
			}
			return true
		})
		if n3 != 0 {
			t.Fatalf("a member with another issuer published %d keys", n3)
		}
		return nil
	})
}

// BenchmarkAuthenticate is a Bearer request with another member's token
// that this node has verified before: the cached path, on which the
// issuer check costs map lookups, not a read of the keys.
func BenchmarkAuthenticate(b *testing.B) {
	ms, _, _ := newMembers(b, "", "n1", "n2")
	ctx := context.Background()
	tok, err := ms[1].s.Login(ctx, "alice", pw)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := ms[0].s.Authenticate(ctx, tok.AccessToken); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ms[0].s.Authenticate(ctx, tok.AccessToken); err != nil {
			b.Fatal(err)
		}
	}
}

// A node that publishes its key below level 3 publishes it again with its
// issuer once the level has risen, and from then on the other members
// accept its tokens.
func TestKeyGetsItsIssuerWhenTheLevelRises(t *testing.T) {
	st := newLocalStore(t)
	clk := newClock()
	ctx := context.Background()
	ms := []*member{addMember(t, st, clk, "n1", ""), addMember(t, st, clk, "n2", "")}
	for _, m := range ms {
		if err := m.s.PublishSigningKey(ctx); !errors.Is(err, ErrIssuerNotRecorded) {
			t.Fatalf("at level 1: %v, want ErrIssuerNotRecorded", err)
		}
	}
	if _, err := ms[0].s.CreateUser(ctx, NewUser{Username: "alice", Password: pw}); err != nil {
		t.Fatal(err)
	}
	tok, err := ms[1].s.Login(ctx, "alice", pw)
	if err != nil {
		t.Fatal(err)
	}
	if err := accepts(ms[1], tok.AccessToken); err != nil {
		t.Fatalf("n2 refuses its own token at level 1: %v", err)
	}
	if err := accepts(ms[0], tok.AccessToken); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("n1 accepts n2's issuer, which the log does not hold yet: %v", err)
	}
	raise, _ := fsm.NewCommand(fsm.TypeClusterLevel, 1, clk.Now().UnixNano(), fsm.ClusterLevel{Level: fsm.LevelIssuers})
	if _, err := st.Apply(ctx, raise); err != nil {
		t.Fatal(err)
	}
	if err := ms[1].s.PublishSigningKey(ctx); err != nil {
		t.Fatal(err)
	}
	if err := accepts(ms[0], tok.AccessToken); err != nil {
		t.Fatalf("n1 refuses n2's token once its issuer is published: %v", err)
	}
	if st.versions[fsm.TypeKeyPublish] != 2 {
		t.Fatalf("the key was published again with key.publish v%d", st.versions[fsm.TypeKeyPublish])
	}
}
