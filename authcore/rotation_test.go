package authcore

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/internal/clock"
	"github.com/bulwark-auth/bulwark/internal/waitfor"
)

// memVault is an in-memory KeyVault.
type memVault struct {
	mu      sync.Mutex
	keys    map[string]crypto.Signer
	secrets map[string][]byte
}

func newMemVault() *memVault {
	return &memVault{keys: map[string]crypto.Signer{}, secrets: map[string][]byte{}}
}

func (v *memVault) PrivateKey(n string) (crypto.Signer, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	k, ok := v.keys[n]
	return k, ok
}
func (v *memVault) Put(n string, k crypto.Signer) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.keys[n] = k
	return nil
}
func (v *memVault) Secret(n string) ([]byte, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	b, ok := v.secrets[n]
	return b, ok
}
func (v *memVault) PutSecret(n string, b []byte) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.secrets[n] = b
	return nil
}

func newVaultService(t *testing.T, st *localStore, v KeyVault, alg string, clk *clock.Fake) *Service {
	t.Helper()
	s, err := New(st, Config{Hash: testHash, Policy: PasswordPolicy{MinLength: 12, MaxLength: 128},
		Issuer: "https://bulwark.test", NodeID: "n1", SigningAlg: alg}, WithClock(clk), WithKeyVault(v))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PublishSigningKey(context.Background()); err != nil && !errors.Is(err, ErrIssuerNotRecorded) { // level 1: published, no issuer
		t.Fatal(err)
	}
	return s
}

func jwksKids(t *testing.T, s *Service) map[string]bool {
	t.Helper()
	b, err := s.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	kids := map[string]bool{}
	for _, k := range set.Keys {
		kids[k.Kid] = true
	}
	return kids
}

func tokenKidOf(t *testing.T, tok string) string {
	t.Helper()
	kid, err := tokenKid(tok)
	if err != nil {
		t.Fatal(err)
	}
	return kid
}

func TestRotationKeepsOldKeyUntilItsTokensExpire(t *testing.T) {
	clk := newClock()
	s := newVaultService(t, newLocalStore(t), newMemVault(), AlgES256, clk)
	ctx := context.Background()
	if _, err := s.CreateUser(ctx, NewUser{Username: "alice", Password: pw}); err != nil {
		t.Fatal(err)
	}
	before := login(t, s)
	oldKid := tokenKidOf(t, before.AccessToken)

	rot, err := s.RotateSigningKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rot.OldKid != oldKid || rot.NewKid == oldKid || !rot.Retire.Equal(clk.Now().Add(time.Hour+30*time.Second)) {
		t.Fatalf("rotation %+v (old %s)", rot, oldKid)
	}
	after := login(t, s)
	if tokenKidOf(t, after.AccessToken) != rot.NewKid {
		t.Fatal("a token after the rotation is not signed with the new key")
	}
	kids := jwksKids(t, s)
	if !kids[oldKid] || !kids[rot.NewKid] {
		t.Fatalf("JWKS after rotation: %v", kids)
	}
	// The old token still verifies until it expires...
	clk.Advance(59 * time.Minute)
	if _, err := s.Authenticate(ctx, before.AccessToken); err != nil {
		t.Fatalf("a token of the old key, before its exp: %v", err)
	}
	// ...and once every token of the old key has expired, the key leaves.
	clk.Advance(2 * time.Minute)
	if kids := jwksKids(t, s); kids[oldKid] || !kids[rot.NewKid] {
		t.Fatalf("JWKS after retirement: %v", kids)
	}
	keys, err := s.SigningKeys(ctx)
	if err != nil || len(keys) != 2 {
		t.Fatalf("SigningKeys: %+v %v", keys, err)
	}
	for _, k := range keys {
		if (k.Kid == rot.NewKid) != k.Current || (k.Kid == oldKid) == k.InJWKS {
			t.Errorf("key %+v", k)
		}
	}
}

// TestRotationUnderLoadLosesNoToken issues tokens from many goroutines
// while the key rotates again and again; every token must verify against
// the JWKS served the moment it was issued.
func TestRotationUnderLoadLosesNoToken(t *testing.T) {
	clk := newClock()
	s := newVaultService(t, newLocalStore(t), newMemVault(), AlgES256, clk)
	ctx := context.Background()
	if _, err := s.CreateUser(ctx, NewUser{Username: "alice", Password: pw}); err != nil {
		t.Fatal(err)
	}
	first := login(t, s)
	var stop atomic.Bool
	var issued, failed, running atomic.Int64
	ready := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		running.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer running.Add(-1)
			signalled := false
			defer func() {
				if !signalled { // login failed the test: do not leave the rotations waiting
					ready <- struct{}{}
				}
			}()
			tok := first
			if w > 0 {
				tok = login(t, s)
			}
			signalled = true
			ready <- struct{}{}
			for i := 0; i < 2000 && !stop.Load(); i++ {
				next, err := s.Refresh(ctx, tok.RefreshToken)
				if err != nil {
					t.Errorf("refresh during rotation: %v", err)
					return
				}
				tok = next
				issued.Add(1)
				kids := jwksKids(t, s)
				if !kids[tokenKidOf(t, tok.AccessToken)] {
					failed.Add(1)
				}
				if _, err := s.Authenticate(ctx, tok.AccessToken); err != nil {
					t.Errorf("a token issued during rotation does not verify: %v", err)
					failed.Add(1)
				}
			}
		}()
	}
	// Rotate only once every worker has logged in, and after each
	// rotation wait for eight more tokens, so that rotations and issuance
	// interleave however fast or slow the machine is.
	for range 8 {
		<-ready
	}
	for i := 0; i < 10; i++ {
		before := issued.Load()
		if _, err := s.RotateSigningKey(ctx); err != nil {
			t.Error(err)
		}
		// Not a failure by itself: the count of tokens below is.
		waitfor.Poll(10*time.Second, time.Millisecond, func() bool { return issued.Load() >= before+8 || running.Load() == 0 })
	}
	stop.Store(true)
	wg.Wait()
	if failed.Load() != 0 || issued.Load() < 80 {
		t.Fatalf("%d of %d tokens issued during rotation failed (want none, of at least 80)", failed.Load(), issued.Load())
	}
}

func TestAlgorithmChangeRotatesAtStart(t *testing.T) {
	clk := newClock()
	st, vault := newLocalStore(t), newMemVault()
	s1 := newVaultService(t, st, vault, AlgES256, clk)
	es := s1.currentSigner().Kid()
	// Same vault, restarted with tokens.algorithm = EdDSA.
	s2 := newVaultService(t, st, vault, AlgEdDSA, clk)
	if s2.currentSigner().Alg() != AlgEdDSA {
		t.Fatalf("signs with %s", s2.currentSigner().Alg())
	}
	keys, _ := s2.SigningKeys(context.Background())
	for _, k := range keys {
		if k.Kid == es && (k.NotAfter.IsZero() || k.Retire.IsZero()) {
			t.Fatalf("the ES256 key was not retired: %+v", k)
		}
	}
	// Restarted again unchanged: the same key, no new generation.
	s3 := newVaultService(t, st, vault, AlgEdDSA, clk)
	if s3.currentSigner().Kid() != s2.currentSigner().Kid() {
		t.Fatal("a restart made a new key")
	}
}

// TestScheduledRotation: a key rotate_every old is rotated; the next key
// is published at once and signs only KeyActivation later (JWKSMaxAge
// here), by the service's clock, so no relying party's cached key set
// lacks it.
func TestScheduledRotation(t *testing.T) {
	clk := newClock()
	s := newVaultService(t, newLocalStore(t), newMemVault(), AlgES256, clk)
	ctx := context.Background()
	k1 := s.currentSigner().Kid()
	if rotated, err := s.RotateIfDue(ctx, 720*time.Hour); rotated || err != nil {
		t.Fatalf("rotated a fresh key: %v", err)
	}
	clk.Advance(720 * time.Hour)
	done := make(chan error, 1)
	go func() {
		rotated, err := s.RotateIfDue(ctx, 720*time.Hour)
		if err == nil && !rotated {
			err = errors.New("not rotated")
		}
		done <- err
	}()
	waitActivation(t, s, clk, 1, k1)
	clk.Advance(JWKSMaxAge)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("did not rotate a due key: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the rotation did not end once its key's activation time came")
	}
	if s.currentSigner().Kid() == k1 {
		t.Fatal("same key after rotation")
	}
	// Without a vault there is nothing to rotate into.
	s2, _ := newAuthService(t, Config{})
	if _, err := s2.RotateSigningKey(ctx); err == nil || !strings.Contains(err.Error(), "vault") {
		t.Fatalf("rotation without a vault: %v", err)
	}
}

// waitActivation waits until a scheduled rotation of s has published its
// next key and waits on clk to sign with it (waiting timers and tickers
// on clk, with it), and checks that the current key, cur, still signs
// while both are in the JWKS.
func waitActivation(t *testing.T, s *Service, clk *clock.Fake, waiting int, cur string) {
	t.Helper()
	waitfor.True(t, "the next key published, waiting to sign", 10*time.Second, time.Millisecond,
		func() bool { return clk.Waiting() >= waiting })
	if kids := jwksKids(t, s); len(kids) != 2 || !kids[cur] {
		t.Fatalf("JWKS %v while the next key waits: want the current key %s and the next", kids, cur)
	}
	if got := s.currentSigner().Kid(); got != cur {
		t.Fatalf("signing with %s before the next key's activation time, want %s", got, cur)
	}
}

// TestRunKeyRotation: the scheduled check runs every interval of the
// service's clock and rotates once the key is due.
func TestRunKeyRotation(t *testing.T) {
	clk := newClock()
	s := newVaultService(t, newLocalStore(t), newMemVault(), AlgES256, clk)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	defer func() { cancel(); <-stopped }()
	k1 := s.currentSigner().Kid()
	go func() { defer close(stopped); s.RunKeyRotation(ctx, 720*time.Hour, time.Hour) }()
	waitfor.True(t, "the check's ticker", 10*time.Second, time.Millisecond, func() bool { return clk.Waiting() == 1 })
	clk.Advance(719 * time.Hour) // a check, not due
	clk.Advance(time.Hour)
	waitActivation(t, s, clk, 2, k1) // the ticker and the activation timer
	clk.Advance(JWKSMaxAge)
	waitfor.True(t, "the next key signing", 10*time.Second, time.Millisecond, func() bool { return s.currentSigner().Kid() != k1 })
}
