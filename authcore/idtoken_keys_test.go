package authcore

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"hash"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/clock"
)

// oidcService is a Service at the highest feature level over st, with its
// keys in v (signing key of alg), and user alice.
func oidcService(t *testing.T, st *localStore, v KeyVault, alg string, clk *clock.Fake) *Service {
	t.Helper()
	raise, _ := fsm.NewCommand(fsm.TypeClusterLevel, 1, 1, fsm.ClusterLevel{Level: fsm.MaxLevel})
	if _, err := st.Apply(context.Background(), raise); err != nil {
		t.Fatal(err)
	}
	s, err := New(st, Config{Hash: testHash, Policy: PasswordPolicy{MinLength: 12, MaxLength: 128},
		Issuer: "https://bulwark.test", NodeID: "n1", SigningAlg: alg}, WithClock(clk), WithKeyVault(v), WithSecretBox(testBox(t)))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PublishSigningKey(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.User(context.Background(), "alice"); err != nil {
		if _, err := s.CreateUser(context.Background(), NewUser{Username: "alice", Password: pw}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

const testVerifier = "verifier-verifier-verifier-verifier-verifier-0123"

// codeFlow signs alice in and runs one authorization code flow for
// client; it returns the token answer.
func codeFlow(t *testing.T, s *Service, client string, scopes ...string) OIDCTokens {
	t.Helper()
	ctx := context.Background()
	tok := login(t, s)
	p, err := s.Authenticate(ctx, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	challenge, _ := pkceS256(testVerifier)
	req := AuthorizationRequest{ClientID: client, RedirectURI: "https://" + client + ".example/cb", Scopes: scopes,
		Nonce: "n1", CodeChallenge: challenge, CodeChallengeMethod: "S256"}
	if req.ID, err = s.StartAuthorization(ctx, req); err != nil {
		t.Fatal(err)
	}
	code, err := s.Authorize(ctx, req, p)
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.RedeemCode(ctx, client, code, req.RedirectURI, testVerifier)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func addClient(t *testing.T, s *Service, name, alg string, consent bool) {
	t.Helper()
	if _, _, err := s.CreateClient(context.Background(), NewClient{Name: name, RedirectURIs: []string{"https://" + name + ".example/cb"},
		Public: true, IDTokenAlg: alg, ConsentRequired: consent}); err != nil {
		t.Fatal(err)
	}
}

// jwksAlgs maps each kid of s's JWKS to its alg.
func jwksAlgs(t *testing.T, s *Service) map[string]string {
	t.Helper()
	b, err := s.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []struct{ Kid, Alg string }
	}
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, k := range set.Keys {
		out[k.Kid] = k.Alg
	}
	return out
}

// checkIDToken verifies an ID token against s's JWKS and returns its
// header's alg and kid; it checks at_hash for the access token.
func checkIDToken(t *testing.T, s *Service, tok OIDCTokens) (alg, kid string) {
	t.Helper()
	var claims jwt.MapClaims
	parsed, err := jwt.ParseWithClaims(tok.IDToken, &claims, func(tk *jwt.Token) (any, error) {
		kid, _ := tk.Header["kid"].(string)
		var pub crypto.PublicKey
		err := s.store.View(func(r fsm.Reader) error {
			k, err := r.PublicKey(kid)
			if err != nil {
				return err
			}
			pub, _, _, err = PublicFromJWK(k.JWK)
			return err
		})
		return pub, err
	}, jwt.WithValidMethods([]string{AlgES256, AlgEdDSA, AlgRS256}), jwt.WithTimeFunc(s.now))
	if err != nil {
		t.Fatalf("ID token does not verify against the JWKS: %v", err)
	}
	alg, kid = parsed.Method.Alg(), parsed.Header["kid"].(string)
	if jwksAlgs(t, s)[kid] != alg {
		t.Fatalf("ID token kid %s alg %s is not in the JWKS as that alg: %v", kid, alg, jwksAlgs(t, s))
	}
	var h hash.Hash = sha256.New()
	if alg == AlgEdDSA {
		h = sha512.New()
	}
	h.Write([]byte(tok.AccessToken))
	if want := base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:h.Size()/2]); claims["at_hash"] != want {
		t.Fatalf("%s at_hash %v, want %s", alg, claims["at_hash"], want)
	}
	return alg, kid
}

// Each client's ID tokens are signed in the algorithm it registered with
// (ES256 when it named none), by a key in the JWKS; the access token stays
// the signing key's.
func TestIDTokenInTheClientsAlgorithm(t *testing.T) {
	s := oidcService(t, newLocalStore(t), newMemVault(), AlgES256, newClock())
	addClient(t, s, "dflt", "", false)
	addClient(t, s, "es", AlgES256, false)
	addClient(t, s, "ed", AlgEdDSA, false)
	addClient(t, s, "rs", AlgRS256, false)
	if _, _, err := s.CreateClient(context.Background(), NewClient{Name: "hs", RedirectURIs: []string{"https://hs.example/cb"},
		Public: true, IDTokenAlg: "HS256"}); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("id_token_alg HS256: %v", err)
	}
	main := s.currentSigner().Kid()
	for _, c := range []struct{ client, alg string }{{"dflt", AlgES256}, {"es", AlgES256}, {"ed", AlgEdDSA}, {"rs", AlgRS256}} {
		tok := codeFlow(t, s, c.client, "openid")
		alg, kid := checkIDToken(t, s, tok)
		if alg != c.alg {
			t.Errorf("client %s: ID token in %s, want %s", c.client, alg, c.alg)
		}
		if (alg == AlgES256) != (kid == main) {
			t.Errorf("client %s: ID token kid %s (signing key %s)", c.client, kid, main)
		}
		if k := tokenKidOf(t, tok.AccessToken); k != main {
			t.Errorf("client %s: access token signed by %s, not the signing key", c.client, k)
		}
	}
	// One key per algorithm, made once.
	algs := map[string]int{}
	for _, a := range jwksAlgs(t, s) {
		algs[a]++
	}
	if algs[AlgES256] != 1 || algs[AlgEdDSA] != 1 || algs[AlgRS256] != 1 || len(algs) != 3 {
		t.Fatalf("JWKS algs %v", algs)
	}
	c, _ := s.Client("dflt")
	if c.IDTokenAlg != AlgES256 {
		t.Fatalf("a client that named no alg reads as %q", c.IDTokenAlg)
	}
}

// An ID-token key is kept across a restart (not retired as stale), rotates
// with the signing key (the old one published until its tokens expire),
// and one of the signing key's algorithm is retired when tokens.algorithm
// changes to it.
func TestIDTokenKeysRestartAndRotate(t *testing.T) {
	st, v, clk := newLocalStore(t), newMemVault(), newClock()
	s := oidcService(t, st, v, AlgES256, clk)
	addClient(t, s, "ed", AlgEdDSA, false)
	_, edKid := checkIDToken(t, s, codeFlow(t, s, "ed", "openid"))

	s2 := oidcService(t, st, v, AlgES256, clk)
	if _, kid := checkIDToken(t, s2, codeFlow(t, s2, "ed", "openid")); kid != edKid {
		t.Fatalf("after a restart the EdDSA ID token is signed by %s, not %s", kid, edKid)
	}
	keys, err := s2.SigningKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.Kid == edKid && (!k.NotAfter.IsZero() || !k.Current) {
			t.Fatalf("the EdDSA ID-token key after a restart: %+v", k)
		}
	}

	rot, err := s2.RotateSigningKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_, newKid := checkIDToken(t, s2, codeFlow(t, s2, "ed", "openid"))
	if newKid == edKid {
		t.Fatal("the EdDSA ID-token key did not rotate with the signing key")
	}
	st.View(func(r fsm.Reader) error {
		k, err := r.PublicKey(edKid)
		if err != nil || k.NotAfter.IsZero() || !k.Retire.Equal(rot.Retire) || !k.Published(clk.Now()) {
			t.Errorf("the old EdDSA key after rotation: %+v %v", k, err)
		}
		return nil
	})

	// tokens.algorithm = EdDSA: the signing key signs EdDSA ID tokens,
	// and the ID-token key of that algorithm is retired.
	s3 := oidcService(t, st, v, AlgEdDSA, clk)
	_, kid := checkIDToken(t, s3, codeFlow(t, s3, "ed", "openid"))
	if kid != s3.currentSigner().Kid() {
		t.Fatalf("EdDSA ID token signed by %s, not the EdDSA signing key %s", kid, s3.currentSigner().Kid())
	}
	st.View(func(r fsm.Reader) error {
		if k, err := r.PublicKey(newKid); err != nil || k.NotAfter.IsZero() {
			t.Errorf("the EdDSA ID-token key once tokens.algorithm is EdDSA: %+v %v", k, err)
		}
		return nil
	})
}

// residentVault is a vault whose signing keys are made in it, ES256 only,
// and which stores other keys (tpm.ResidentKeys' behaviour).
type residentVault struct{ genVault }

func (v *residentVault) Put(name string, k crypto.Signer) error {
	if strings.HasPrefix(name, "signing/") {
		return errors.New("signing keys are made by the vault")
	}
	return v.memVault.Put(name, k)
}

func (v *residentVault) GenerateKey(name, alg string) (crypto.Signer, error) {
	if alg != AlgES256 {
		return nil, errors.New("ES256 only")
	}
	return v.genVault.GenerateKey(name, alg)
}

// With TPM-resident signing keys, ES256 ID tokens are signed by the TPM
// key and the EdDSA and RS256 ID-token keys are kept in the sealed
// keystore.
func TestIDTokenKeysBesideResidentSigningKey(t *testing.T) {
	v := &residentVault{genVault{memVault: newMemVault()}}
	s := oidcService(t, newLocalStore(t), v, AlgES256, newClock())
	addClient(t, s, "es", "", false)
	addClient(t, s, "rs", AlgRS256, false)
	if _, kid := checkIDToken(t, s, codeFlow(t, s, "es", "openid")); kid != s.currentSigner().Kid() {
		t.Fatal("the ES256 ID token is not signed by the resident key")
	}
	if alg, _ := checkIDToken(t, s, codeFlow(t, s, "rs", "openid")); alg != AlgRS256 {
		t.Fatalf("RS256 client's ID token in %s", alg)
	}
	if _, ok := v.memVault.PrivateKey("idtoken/RS256/1"); !ok || len(v.made) != 1 {
		t.Fatalf("the RS256 key is not in the keystore (made in the vault: %v)", v.made)
	}
}

// A code is not spent when its client's ID-token key cannot be had (here:
// no vault to make an EdDSA key in): the token request fails before the
// code is redeemed, and no session is started.
func TestCodeKeptWhenNoIDTokenKey(t *testing.T) {
	s, _ := newAuthServiceAt(t, Config{}, fsm.MaxLevel)
	addClient(t, s, "ed", AlgEdDSA, false)
	ctx := context.Background()
	p, err := s.Authenticate(ctx, login(t, s).AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	challenge, _ := pkceS256(testVerifier)
	req := AuthorizationRequest{ClientID: "ed", RedirectURI: "https://ed.example/cb", Scopes: []string{"openid"},
		CodeChallenge: challenge, CodeChallengeMethod: "S256"}
	code, err := s.Authorize(ctx, req, p)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := s.Sessions(ctx, p)
	if _, err := s.RedeemCode(ctx, "ed", code, req.RedirectURI, testVerifier); err == nil {
		t.Fatal("an EdDSA ID token without a key to sign it")
	}
	after, _ := s.Sessions(ctx, p)
	s.store.View(func(r fsm.Reader) error {
		c, err := r.OIDCCode(hashToken(code))
		if err != nil || c.SessionID != "" || len(after) != len(before) {
			t.Errorf("the code was spent: %+v %v; sessions %d → %d", c, err, len(before), len(after))
		}
		return nil
	})
}
