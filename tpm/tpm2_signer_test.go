package tpm

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/bulwark-auth/bulwark/authcore"
)

// The simulator rules of tpm2_test.go hold here: no test runs in parallel,
// and each closes one simulator before it opens the next.

// faultTPM answers the next command with code cc with a canned response
// code or error instead of sending it, once.
type faultTPM struct {
	transport.TPMCloser
	mu    sync.Mutex
	cc    tpm2.TPMCC
	rc    tpm2.TPMRC
	err   error
	armed bool
}

func (f *faultTPM) failNext(cc tpm2.TPMCC, rc tpm2.TPMRC, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cc, f.rc, f.err, f.armed = cc, rc, err, true
}

func (f *faultTPM) Send(cmd []byte) ([]byte, error) {
	f.mu.Lock()
	hit := f.armed && len(cmd) >= tpmHeaderLen && tpm2.TPMCC(binary.BigEndian.Uint32(cmd[6:10])) == f.cc
	if hit {
		f.armed = false
	}
	rc, err := f.rc, f.err
	f.mu.Unlock()
	if !hit {
		return f.TPMCloser.Send(cmd)
	}
	if err != nil {
		return nil, err
	}
	rsp := []byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(rsp[6:], uint32(rc))
	return rsp, nil
}

// openFaultySimSealer opens a sealer on the simulator through a faultTPM.
func openFaultySimSealer(t *testing.T, seed int64) (simTPM, *faultTPM) {
	t.Helper()
	sim, err := simulator.GetWithFixedSeedInsecure(seed)
	if err != nil {
		t.Fatalf("simulator: %v", err)
	}
	raw := transport.FromReadWriteCloser(sim)
	f := &faultTPM{TPMCloser: raw}
	s, err := NewTPMSealer("", nil, WithTPMTransport(f))
	if err != nil {
		t.Fatalf("NewTPMSealer: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return simTPM{TPMSealer: s, raw: raw}, f
}

func mustNewSigningKey(t testing.TB, s *TPMSealer, path string) *TPMKey {
	t.Helper()
	k, err := s.NewSigningKey(path)
	if err != nil {
		t.Fatalf("NewSigningKey: %v", err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

func mustLoadSigningKey(t *testing.T, s *TPMSealer, path string) *TPMKey {
	t.Helper()
	k, err := s.LoadSigningKey(path)
	if err != nil {
		t.Fatalf("LoadSigningKey: %v", err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// mustSignVerifies signs a digest of msg with k and verifies the DER
// signature under want (k's own public key when want is nil).
func mustSignVerifies(t testing.TB, k crypto.Signer, want *ecdsa.PublicKey, msg string) {
	t.Helper()
	if want == nil {
		want = k.Public().(*ecdsa.PublicKey)
	}
	d := sha256.Sum256([]byte(msg))
	der, err := k.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if !ecdsa.VerifyASN1(want, d[:], der) {
		t.Fatalf("signature %x does not verify", der)
	}
}

func TestTPMKeyCreateSign(t *testing.T) {
	s := openSimSealer(t, seedA, nil)
	path := SigningKeyPath(t.TempDir(), 1)
	k := mustNewSigningKey(t, s.TPMSealer, path)

	pub, ok := k.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Fatalf("Public() = %T, want a P-256 *ecdsa.PublicKey", k.Public())
	}
	d := sha256.Sum256([]byte("header.payload"))
	sig1, err := k.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	sig2, err := k.Sign(nil, d[:], crypto.SHA256) // rand is not used
	if err != nil {
		t.Fatal(err)
	}
	for _, sig := range [][]byte{sig1, sig2} {
		if !ecdsa.VerifyASN1(pub, d[:], sig) {
			t.Fatalf("signature %x does not verify", sig)
		}
	}
	if bytes.Equal(sig1, sig2) {
		t.Error("two ECDSA signatures of one digest are equal")
	}

	for _, tt := range []struct {
		name   string
		digest []byte
		opts   crypto.SignerOpts
	}{
		{"SHA-384", make([]byte, 48), crypto.SHA384},
		{"short digest", d[:31], crypto.SHA256},
		{"no hash", d[:], crypto.Hash(0)},
	} {
		if _, err := k.Sign(nil, tt.digest, tt.opts); err == nil || !strings.Contains(err.Error(), "want a 32-byte SHA-256 digest") {
			t.Errorf("%s: Sign = %v, want a digest error", tt.name, err)
		}
	}

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte("BWTK\x01")) {
		t.Errorf("key file starts %q, want BWTK version 1", data[:5])
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, %v; want 0600", fi.Mode(), err)
	}
	// A generation is never replaced.
	if _, err := s.NewSigningKey(path); !errors.Is(err, fs.ErrExist) {
		t.Errorf("NewSigningKey over an existing file: %v, want fs.ErrExist", err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
		t.Error("the key file changed")
	}

	// The key stays loaded between signatures; Close unloads it.
	if h := loadedHandles(t, s.raw); len(h) != 1 || h[0] != k.handle {
		t.Errorf("loaded handles %#x, want only the key's %#x", h, k.handle)
	}
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	assertNoHandles(t, s.raw)
	if _, err := k.Sign(nil, d[:], crypto.SHA256); !errors.Is(err, ErrClosed) {
		t.Errorf("Sign after Close: %v, want ErrClosed", err)
	}
	if err := k.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestTPMKeyReopen(t *testing.T) {
	path := SigningKeyPath(t.TempDir(), 7)
	s := openSimSealer(t, seedA, nil)
	k := mustNewSigningKey(t, s.TPMSealer, path)
	want := k.Public().(*ecdsa.PublicKey)
	k.Close()

	// The same TPM after a reboot loads the same key.
	s = s.reboot(t, seedA, nil)
	k = mustLoadSigningKey(t, s.TPMSealer, path)
	if !want.Equal(k.Public()) {
		t.Fatal("the reloaded key has another public key")
	}
	mustSignVerifies(t, k, want, "after reboot")
	k.Close()

	// Another TPM refuses it, by the storage key's Name, and leaves nothing
	// loaded.
	s = s.reboot(t, seedB, nil)
	_, err := s.LoadSigningKey(path)
	wantUnsealError(t, err, "made by a different TPM (or its owner hierarchy was cleared)")
	wantUnsealError(t, err, "load signing key "+path)
	assertNoHandles(t, s.raw)
	t.Log(err)

	// A sealer that is closed refuses to load.
	s.Close()
	if _, err := s.LoadSigningKey(path); !errors.Is(err, ErrClosed) {
		t.Errorf("LoadSigningKey after Close: %v, want ErrClosed", err)
	}
	if _, err := s.NewSigningKey(SigningKeyPath(t.TempDir(), 1)); !errors.Is(err, ErrClosed) {
		t.Errorf("NewSigningKey after Close: %v, want ErrClosed", err)
	}
}

// holdsScalarFor reports whether some 32 consecutive bytes of data are the
// private scalar of pub.
func holdsScalarFor(data []byte, pub *ecdsa.PublicKey) bool {
	want, err := pub.Bytes()
	if err != nil {
		panic(err)
	}
	for i := 0; i+32 <= len(data); i++ {
		if k, err := ecdh.P256().NewPrivateKey(data[i : i+32]); err == nil && bytes.Equal(k.PublicKey().Bytes(), want) {
			return true
		}
	}
	return false
}

// TestTPMKeyFileHoldsNoScalar: the private half in the key file is wrapped
// by the TPM; no 32 bytes of the file are the scalar of the public key.
func TestTPMKeyFileHoldsNoScalar(t *testing.T) {
	// The check finds a scalar that is there.
	soft, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	scalar, err := soft.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if !holdsScalarFor(append(append([]byte("BWTK\x01junk"), scalar...), "junk"...), &soft.PublicKey) {
		t.Fatal("holdsScalarFor misses a scalar in clear")
	}

	s := openSimSealer(t, seedA, nil)
	path := SigningKeyPath(t.TempDir(), 1)
	k := mustNewSigningKey(t, s.TPMSealer, path)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if holdsScalarFor(data, k.Public().(*ecdsa.PublicKey)) {
		t.Fatal("the key file holds the private scalar in clear")
	}
}

// TestTPMKeyJWT: authcore signs and verifies access tokens through the TPM
// key as through a software key.
func TestTPMKeyJWT(t *testing.T) {
	s := openSimSealer(t, seedA, nil)
	k := mustNewSigningKey(t, s.TPMSealer, SigningKeyPath(t.TempDir(), 1))
	sig, err := authcore.NewSigner(k, authcore.AlgES256)
	if err != nil {
		t.Fatalf("NewSigner: %v", err)
	}
	now := time.Now()
	tok, err := sig.Sign(testClaims(now))
	if err != nil {
		t.Fatal(err)
	}
	keys := oneKey{kid: sig.Kid(), pub: k.Public()}
	c, err := authcore.VerifyAccessToken(tok, keys, "https://bulwark.test", "api", now, time.Minute)
	if err != nil {
		t.Fatalf("VerifyAccessToken: %v", err)
	}
	if c.Subject != "user-1" {
		t.Errorf("sub = %q", c.Subject)
	}
	// The signature is r||s of 64 bytes, as JWS wants.
	if parts := strings.Split(tok, "."); len(parts) != 3 || len(parts[2]) != 86 {
		t.Errorf("token %q: want a 64-byte (86 base64url characters) ES256 signature", tok)
	}
}

func testClaims(now time.Time) authcore.AccessClaims {
	return authcore.AccessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: "https://bulwark.test", Subject: "user-1", Audience: jwt.ClaimStrings{"api"},
			ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), IssuedAt: jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now), ID: "jti-1",
		},
		Sid: "sid-1",
	}
}

type oneKey struct {
	kid string
	pub crypto.PublicKey
}

func (o oneKey) PublicKey(kid string) (crypto.PublicKey, string, error) {
	if kid != o.kid {
		return nil, "", fmt.Errorf("unknown kid %q", kid)
	}
	return o.pub, authcore.AlgES256, nil
}

// TestTPMKeyReloads: a key whose handle the TPM lost, or gave to another
// key, is loaded again and signs correctly.
func TestTPMKeyReloads(t *testing.T) {
	s, faults := openFaultySimSealer(t, seedA)
	dir := t.TempDir()
	a := mustNewSigningKey(t, s.TPMSealer, SigningKeyPath(dir, 1))
	b := mustNewSigningKey(t, s.TPMSealer, SigningKeyPath(dir, 2))
	pubA, pubB := a.Public().(*ecdsa.PublicKey), b.Public().(*ecdsa.PublicKey)

	t.Run("flushed", func(t *testing.T) {
		flushContext(t, s.raw, a.handle)
		mustSignVerifies(t, a, pubA, "after flush")
	})
	t.Run("handle reused by another key", func(t *testing.T) {
		for _, h := range loadedHandles(t, s.raw) {
			flushContext(t, s.raw, h)
		}
		// b loads into the first free slot, a's old handle.
		mustSignVerifies(t, b, pubB, "b first")
		if a.handle != b.handle {
			t.Fatalf("set-up: a's stale handle %#x is not b's %#x", a.handle, b.handle)
		}
		mustSignVerifies(t, a, pubA, "a with a stale handle")
		if a.handle == b.handle {
			t.Fatal("a still uses b's handle")
		}
	})
	t.Run("TPM awaits startup", func(t *testing.T) {
		faults.failNext(tpm2.TPMCCSign, tpm2.TPMRCInitialize, nil)
		mustSignVerifies(t, a, pubA, "after TPM_RC_INITIALIZE")
	})
	t.Run("connection lost", func(t *testing.T) {
		faults.failNext(tpm2.TPMCCSign, 0, fmt.Errorf("%w: connection reset", ErrNoTPM))
		mustSignVerifies(t, a, pubA, "after a lost connection")
	})
	t.Run("other errors are not retried", func(t *testing.T) {
		faults.failNext(tpm2.TPMCCSign, tpm2.TPMRCFailure, nil)
		d := sha256.Sum256([]byte("x"))
		if _, err := a.Sign(nil, d[:], crypto.SHA256); !errors.Is(err, tpm2.TPMRCFailure) {
			t.Fatalf("Sign = %v, want TPM_RC_FAILURE", err)
		}
		mustSignVerifies(t, a, pubA, "next")
	})
	a.Close()
	b.Close()
	assertNoHandles(t, s.raw)
}

func flushContext(t *testing.T, tp transport.TPM, h tpm2.TPMHandle) {
	t.Helper()
	if _, err := (tpm2.FlushContext{FlushHandle: h}).Execute(tp); err != nil {
		t.Fatalf("FlushContext(%#x): %v", h, err)
	}
}

// TestTPMKeyManyGenerations: more keys than a TPM without a resource
// manager has object slots (the simulator, like swtpm, has three) are
// created and all sign; the sealer still seals.
func TestTPMKeyManyGenerations(t *testing.T) {
	s := openSimSealer(t, seedA, nil)
	dir := t.TempDir()
	var keys []*TPMKey
	for gen := 1; gen <= 5; gen++ {
		keys = append(keys, mustNewSigningKey(t, s.TPMSealer, SigningKeyPath(dir, gen)))
	}
	if h := loadedHandles(t, s.raw); len(h) >= len(keys) {
		t.Fatalf("set-up: %d handles loaded; want the TPM to have run out of slots", len(h))
	}
	for round := range 2 {
		for i, k := range keys {
			mustSignVerifies(t, k, nil, fmt.Sprintf("round %d key %d", round, i))
		}
	}
	mustUnseal(t, s, mustSeal(t, s, []byte("secret")), []byte("secret"))
	for _, k := range keys {
		k.Close()
	}
	assertNoHandles(t, s.raw)
}

func TestTPMKeyConcurrent(t *testing.T) {
	s := openSimSealer(t, seedA, nil)
	k := mustNewSigningKey(t, s.TPMSealer, SigningKeyPath(t.TempDir(), 1))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 4 {
		wg.Go(func() {
			for j := range 5 {
				d := sha256.Sum256(fmt.Appendf(nil, "%d/%d", i, j))
				der, err := k.Sign(nil, d[:], crypto.SHA256)
				if err == nil && !ecdsa.VerifyASN1(k.pub, d[:], der) {
					err = errors.New("signature does not verify")
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	// Sealing interleaves with signing.
	wg.Go(func() {
		for range 2 {
			blob, err := s.Seal([]byte("secret"))
			if err == nil {
				_, err = s.Unseal(blob)
			}
			if err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestTPMKeyFileDamaged(t *testing.T) {
	s := openSimSealer(t, seedA, nil)
	dir := t.TempDir()
	path := SigningKeyPath(dir, 1)
	mustNewSigningKey(t, s.TPMSealer, path).Close()
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := parseTPMKeyFile(good)
	if err != nil {
		t.Fatal(err)
	}
	pubStart := 5 + 2 + len(f.srkName) + 2 + 2 // past the TPM2B size
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0x01
		return b
	}
	// The same key, but for its noDA attribute: not the template's.
	otherAttrs := bytes.Clone(good)
	otherAttrs[pubStart+4+2] ^= 0x04 // TPMA_OBJECT, big-endian: bit 10 is noDA
	sealed := mustSeal(t, s, []byte("secret"))
	tests := []struct {
		name    string
		data    []byte
		wantMsg string
	}{
		{"empty", nil, "too short"},
		{"sealed blob", sealed, "not a TPM key file"},
		{"version", flip(4), "unsupported TPM key file version"},
		{"truncated", good[:len(good)-1], "malformed TPM key file"},
		{"trailing", append(bytes.Clone(good), 0), "trailing bytes"},
		{"too long", make([]byte, maxTPMKeyLen+1), "more than"},
		{"storage key name", flip(8), "made by a different TPM"},
		{"attributes", otherAttrs, "not that of a bulwark signing key"},
		{"private area", flip(len(good) - 1), "the file is corrupted or was altered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := SigningKeyPath(dir, 100)
			if err := os.WriteFile(p, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := s.LoadSigningKey(p)
			wantUnsealError(t, err, tt.wantMsg)
			t.Log(err)
		})
	}
	if _, err := s.LoadSigningKey(SigningKeyPath(dir, 404)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadSigningKey of a missing file: %v, want fs.ErrNotExist", err)
	}
	assertNoHandles(t, s.raw)
}

func FuzzParseTPMKeyFile(f *testing.F) {
	tmpl := signingKeyTemplate()
	tmpl.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: elliptic.P256().Params().Gx.Bytes()},
		Y: tpm2.TPM2BECCParameter{Buffer: elliptic.P256().Params().Gy.Bytes()},
	})
	kf := tpmKeyFile{
		srkName: append([]byte{0, 0x0b}, make([]byte, 32)...),
		public:  tpm2.New2B(tmpl),
		private: tpm2.TPM2BPrivate{Buffer: make([]byte, 120)},
	}
	f.Add(kf.marshal())
	if _, err := parseTPMKeyFile(kf.marshal()); err != nil {
		f.Fatalf("seed does not parse: %v", err)
	}
	f.Add([]byte("BWTK\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		kf, err := parseTPMKeyFile(data)
		if err != nil {
			if !errors.Is(err, ErrUnseal) {
				t.Fatalf("error %v does not wrap ErrUnseal", err)
			}
			return
		}
		if !bytes.Equal(kf.marshal(), data) {
			t.Fatal("parse then marshal changes the file")
		}
	})
}

// BenchmarkTPMSign measures TPM2_Sign on the in-process simulator, raw and
// as whole ES256 access tokens. The simulator is software on this CPU: the
// figures say nothing of a hardware TPM, which takes tens of milliseconds.
func BenchmarkTPMSign(b *testing.B) {
	sim, err := simulator.GetWithFixedSeedInsecure(seedA)
	if err != nil {
		b.Fatal(err)
	}
	s, err := NewTPMSealer("", nil, WithTPMTransport(transport.FromReadWriteCloser(sim)))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	k := mustNewSigningKey(b, s, SigningKeyPath(b.TempDir(), 1))
	benchmarkSigner(b, k)
}

// benchmarkSigner reports signs/s of k and tokens/s through authcore.
func benchmarkSigner(b *testing.B, k *TPMKey) {
	b.Run("sign", func(b *testing.B) {
		d := sha256.Sum256([]byte("header.payload"))
		for b.Loop() {
			if _, err := k.Sign(nil, d[:], crypto.SHA256); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "signs/s")
	})
	b.Run("token", func(b *testing.B) {
		sig, err := authcore.NewSigner(k, authcore.AlgES256)
		if err != nil {
			b.Fatal(err)
		}
		c := testClaims(time.Now())
		for b.Loop() {
			if _, err := sig.Sign(c); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
	})
}

// TestTPMKeySwtpm runs the signing key against swtpm over its TCP command
// channel: create, sign, survive an swtpm restart, reload from a new sealer,
// be refused by another swtpm; and logs signs/s and tokens/s (go test -v).
func TestTPMKeySwtpm(t *testing.T) {
	requireSwtpm(t)
	stateA := t.TempDir()
	path := SigningKeyPath(t.TempDir(), 1)
	a := startSwtpm(t, stateA)
	s, err := NewTPMSealer(a.device(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	k := mustNewSigningKey(t, s, path)
	want := k.Public().(*ecdsa.PublicKey)
	mustSignVerifies(t, k, want, "swtpm")
	logRate(t, "swtpm", k)

	// swtpm restarts from its state: the open key reconnects and reloads.
	a.stop(t)
	a = startSwtpmOn(t, stateA, a.port)
	probe := &streamTPM{network: "tcp", addr: strings.TrimPrefix(a.device(), "tcp:"), label: a.device()}
	if err := probe.dial(); err != nil {
		t.Fatal(err)
	}
	assertNoHandles(t, probe) // the key is gone from the TPM
	probe.Close()
	mustSignVerifies(t, k, want, "after swtpm restart")
	k.Close()
	s.Close()

	s, err = NewTPMSealer(a.device(), nil)
	if err != nil {
		t.Fatal(err)
	}
	k = mustLoadSigningKey(t, s, path)
	mustSignVerifies(t, k, want, "new sealer")
	k.Close()
	s.Close()

	b := startSwtpm(t, t.TempDir())
	other, err := NewTPMSealer(b.device(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	_, err = other.LoadSigningKey(path)
	wantUnsealError(t, err, "made by a different TPM (or its owner hierarchy was cleared)")
}

// logRate times signatures and whole access tokens with k.
func logRate(t *testing.T, what string, k *TPMKey) {
	t.Helper()
	const n = 200
	d := sha256.Sum256([]byte("header.payload"))
	start := time.Now()
	for range n {
		if _, err := k.Sign(nil, d[:], crypto.SHA256); err != nil {
			t.Fatal(err)
		}
	}
	signs := time.Since(start)
	sig, err := authcore.NewSigner(k, authcore.AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	c := testClaims(time.Now())
	start = time.Now()
	for range n {
		if _, err := sig.Sign(c); err != nil {
			t.Fatal(err)
		}
	}
	tokens := time.Since(start)
	t.Logf("%s: %.0f signs/s (%v each), %.0f tokens/s (%v each), over %d of each",
		what, n/signs.Seconds(), signs/n, n/tokens.Seconds(), tokens/n, n)
}
