package tpm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/bulwark-auth/bulwark/tpm/atomicfile"
)

// recordingSealer wraps a Sealer and records every secret it seals, so tests
// can look for the raw KEK on disk.
type recordingSealer struct {
	Sealer
	mu     sync.Mutex
	sealed [][]byte
}

func (r *recordingSealer) Seal(secret []byte) ([]byte, error) {
	r.mu.Lock()
	r.sealed = append(r.sealed, bytes.Clone(secret))
	r.mu.Unlock()
	return r.Sealer.Seal(secret)
}

// failingSealer stands in for a TPM that refuses to unseal.
type failingSealer struct{ mode string }

func (f failingSealer) Mode() string                  { return f.mode }
func (f failingSealer) Seal([]byte) ([]byte, error)   { return nil, errors.New("no TPM") }
func (f failingSealer) Unseal([]byte) ([]byte, error) { return nil, errors.New("TPM_RC_INTEGRITY") }
func (f failingSealer) Close() error                  { return nil }

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

type testKeys struct {
	ecdsa   *ecdsa.PrivateKey
	ed25519 ed25519.PrivateKey
	rsa     *rsa.PrivateKey
}

func (k testKeys) all() map[string]crypto.Signer {
	return map[string]crypto.Signer{"ca": k.ecdsa, "signing/ed-1": k.ed25519, "signing/rsa-1": k.rsa}
}

func newTestKeys(t *testing.T) testKeys {
	t.Helper()
	rsaOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return testKeys{ecdsa: ec, ed25519: ed, rsa: rsaKey}
}

func openTestKeystore(t *testing.T, dataDir string, s Sealer) *Keystore {
	t.Helper()
	ks, err := OpenKeystore(dataDir, s)
	if err != nil {
		t.Fatalf("OpenKeystore: %v", err)
	}
	return ks
}

func TestKeystoreCreateReopen(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	s := newTestSoftwareSealer(t)
	keys := newTestKeys(t)

	ks := openTestKeystore(t, dataDir, s)
	if ks.Mode() != ModeSoftware {
		t.Fatalf("Mode() = %q", ks.Mode())
	}
	if n := ks.Names(); len(n) != 0 {
		t.Fatalf("new keystore has names %v", n)
	}
	checkMode(t, dataDir, 0o700)
	checkMode(t, filepath.Join(dataDir, "tpm"), 0o700)
	checkMode(t, filepath.Join(dataDir, KEKFile), 0o600)
	checkMode(t, filepath.Join(dataDir, KeystoreFile), 0o600)

	for name, k := range keys.all() {
		if err := ks.Put(name, k); err != nil {
			t.Fatalf("Put(%q, %T): %v", name, k, err)
		}
	}
	dataKey := bytes.Repeat([]byte{0x42}, 32)
	if err := ks.PutSecret("cluster-data-key", dataKey); err != nil {
		t.Fatal(err)
	}

	for _, reopened := range []*Keystore{ks, openTestKeystore(t, dataDir, s)} {
		want := []string{"ca", "cluster-data-key", "signing/ed-1", "signing/rsa-1"}
		if got := reopened.Names(); !slices.Equal(got, want) {
			t.Fatalf("Names() = %v, want %v", got, want)
		}
		for name, k := range keys.all() {
			got, ok := reopened.PrivateKey(name)
			if !ok {
				t.Fatalf("PrivateKey(%q) missing", name)
			}
			if !got.(interface{ Equal(crypto.PrivateKey) bool }).Equal(k) {
				t.Fatalf("PrivateKey(%q) differs from the key put", name)
			}
		}
		if got, ok := reopened.Secret("cluster-data-key"); !ok || !bytes.Equal(got, dataKey) {
			t.Fatalf("Secret = %x, %v", got, ok)
		}
		if _, ok := reopened.PrivateKey("tls"); ok {
			t.Fatalf("PrivateKey(tls) present, never put")
		}
	}
}

func TestKeystoreSecretIsCopied(t *testing.T) {
	ks := openTestKeystore(t, t.TempDir(), newTestSoftwareSealer(t))
	b := []byte("0123456789abcdef")
	if err := ks.PutSecret("s", b); err != nil {
		t.Fatal(err)
	}
	b[0] = 'X'
	got, _ := ks.Secret("s")
	got[1] = 'Y'
	if again, _ := ks.Secret("s"); string(again) != "0123456789abcdef" {
		t.Fatalf("stored secret changed through an alias: %q", again)
	}
}

func TestKeystorePutRejects(t *testing.T) {
	ks := openTestKeystore(t, t.TempDir(), newTestSoftwareSealer(t))
	keys := newTestKeys(t)
	if err := ks.PutSecret("data", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := ks.Put("tls", keys.ecdsa); err != nil {
		t.Fatal(err)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		put  func() error
		want error
	}{
		{"small RSA", func() error { return ks.Put("r", small) }, ErrUnsupportedKey},
		{"nil key", func() error { return ks.Put("n", nil) }, ErrUnsupportedKey},
		{"foreign signer", func() error { return ks.Put("f", fakeSigner{}) }, ErrUnsupportedKey},
		{"empty name", func() error { return ks.Put("", keys.ecdsa) }, ErrInvalidName},
		{"space in name", func() error { return ks.Put("a b", keys.ecdsa) }, ErrInvalidName},
		{"long name", func() error { return ks.Put(strings.Repeat("a", maxNameLen+1), keys.ecdsa) }, ErrInvalidName},
		{"key over secret", func() error { return ks.Put("data", keys.ecdsa) }, ErrNameTaken},
		{"secret over key", func() error { return ks.PutSecret("tls", []byte("x")) }, ErrNameTaken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.put(); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if got := ks.Names(); !slices.Equal(got, []string{"data", "tls"}) {
		t.Fatalf("Names() after rejected puts = %v", got)
	}
}

type fakeSigner struct{}

func (fakeSigner) Public() crypto.PublicKey                                  { return nil }
func (fakeSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) { return nil, nil }

func TestKeystoreWrongSealerChangesNothing(t *testing.T) {
	tests := []struct {
		name    string
		corrupt func(t *testing.T, dataDir string) // applied before the snapshot
		sealer  func(t *testing.T, orig Sealer) Sealer
		wantMsg string
	}{
		{
			name:    "other software key",
			sealer:  func(t *testing.T, _ Sealer) Sealer { return newTestSoftwareSealer(t) },
			wantMsg: "cannot unseal tpm/kek.sealed with the software sealer",
		},
		{
			name:    "tpm that refuses",
			sealer:  func(*testing.T, Sealer) Sealer { return failingSealer{mode: ModeTPM} },
			wantMsg: "cannot unseal tpm/kek.sealed with the tpm sealer",
		},
		{
			name:    "tampered kek.sealed",
			corrupt: func(t *testing.T, d string) { flipLastByte(t, filepath.Join(d, KEKFile)) },
			sealer:  func(_ *testing.T, orig Sealer) Sealer { return orig },
			wantMsg: "cannot unseal tpm/kek.sealed with the software sealer",
		},
		{
			name:    "tampered keystore.sealed",
			corrupt: func(t *testing.T, d string) { flipLastByte(t, filepath.Join(d, KeystoreFile)) },
			sealer:  func(_ *testing.T, orig Sealer) Sealer { return orig },
			wantMsg: "cannot decrypt keystore.sealed with the KEK unsealed by the software sealer",
		},
		{
			name: "keystore.sealed swapped for another node's",
			corrupt: func(t *testing.T, d string) {
				other := t.TempDir()
				openTestKeystore(t, other, newTestSoftwareSealer(t))
				copyFile(t, filepath.Join(other, KeystoreFile), filepath.Join(d, KeystoreFile))
			},
			sealer:  func(_ *testing.T, orig Sealer) Sealer { return orig },
			wantMsg: "cannot decrypt keystore.sealed",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dataDir := t.TempDir()
			orig := newTestSoftwareSealer(t)
			ks := openTestKeystore(t, dataDir, orig)
			if err := ks.Put("ca", newTestKeys(t).ecdsa); err != nil {
				t.Fatal(err)
			}
			if tt.corrupt != nil {
				tt.corrupt(t, dataDir)
			}
			before := snapshotDir(t, dataDir)
			got, err := OpenKeystore(dataDir, tt.sealer(t, orig))
			if !errors.Is(err, ErrUnseal) {
				t.Fatalf("OpenKeystore = %v, %v; want error wrapping ErrUnseal", got, err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("error %q does not contain %q", err, tt.wantMsg)
			}
			assertSnapshotEqual(t, before, snapshotDir(t, dataDir))
		})
	}
}

func TestKeystoreIncompleteState(t *testing.T) {
	for _, remove := range []string{KeystoreFile, KEKFile} {
		t.Run("without "+remove, func(t *testing.T) {
			dataDir := t.TempDir()
			s := newTestSoftwareSealer(t)
			openTestKeystore(t, dataDir, s)
			if err := os.Remove(filepath.Join(dataDir, remove)); err != nil {
				t.Fatal(err)
			}
			before := snapshotDir(t, dataDir)
			_, err := OpenKeystore(dataDir, s)
			if !errors.Is(err, ErrIncompleteState) {
				t.Fatalf("OpenKeystore: %v, want ErrIncompleteState", err)
			}
			if !strings.Contains(err.Error(), remove) {
				t.Fatalf("error %q does not name the missing file %s", err, remove)
			}
			assertSnapshotEqual(t, before, snapshotDir(t, dataDir))
		})
	}
}

func TestKeystoreWriteFailure(t *testing.T) {
	dataDir := t.TempDir()
	s := newTestSoftwareSealer(t)
	errDisk := errors.New("injected: no space left on device")
	var fail bool
	write := func(path string, data []byte, perm os.FileMode) error {
		if fail {
			return errDisk
		}
		return atomicfile.WriteFile(path, data, perm)
	}
	ks, err := openKeystore(dataDir, s, write)
	if err != nil {
		t.Fatal(err)
	}
	keys := newTestKeys(t)
	if err := ks.Put("ca", keys.ecdsa); err != nil {
		t.Fatal(err)
	}
	before := snapshotDir(t, dataDir)
	fail = true
	if err := ks.Put("tls", keys.ed25519); !errors.Is(err, errDisk) {
		t.Fatalf("Put with failing disk: %v", err)
	}
	if err := ks.PutSecret("data", []byte("x")); !errors.Is(err, errDisk) {
		t.Fatalf("PutSecret with failing disk: %v", err)
	}
	if got := ks.Names(); !slices.Equal(got, []string{"ca"}) {
		t.Fatalf("Names() after failed writes = %v, want [ca]", got)
	}
	assertSnapshotEqual(t, before, snapshotDir(t, dataDir))

	// A first start that fails half way leaves nothing behind, so the next
	// start creates a fresh keystore instead of refusing.
	fresh := t.TempDir()
	if _, err := openKeystore(fresh, s, write); !errors.Is(err, errDisk) {
		t.Fatalf("create with failing disk: %v", err)
	}
	for _, f := range []string{KeystoreFile, KEKFile} {
		if _, err := os.Stat(filepath.Join(fresh, f)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s left behind after failed create: %v", f, err)
		}
	}
	openTestKeystore(t, fresh, s)
}

// TestKeystoreNoPlaintextOnDisk scans every file under the data directory for
// private keys (PKCS#8 DER, its base64, PEM, raw scalars), secrets and the KEK.
func TestKeystoreNoPlaintextOnDisk(t *testing.T) {
	dataDir := t.TempDir()
	rec := &recordingSealer{Sealer: newTestSoftwareSealer(t)}
	ks := openTestKeystore(t, dataDir, rec)
	keys := newTestKeys(t)
	for name, k := range keys.all() {
		if err := ks.Put(name, k); err != nil {
			t.Fatal(err)
		}
	}
	secret := bytes.Repeat([]byte("data-key"), 4)
	if err := ks.PutSecret("cluster-data-key", secret); err != nil {
		t.Fatal(err)
	}
	openTestKeystore(t, dataDir, rec) // reopen writes nothing, but scan after it too

	forbidden := map[string][]byte{"secret": secret}
	if len(rec.sealed) != 1 || len(rec.sealed[0]) != kekSize {
		t.Fatalf("sealer saw %d secrets, want exactly the KEK", len(rec.sealed))
	}
	forbidden["KEK"] = rec.sealed[0]
	forbidden["KEK base64"] = []byte(base64.StdEncoding.EncodeToString(rec.sealed[0]))
	for name, k := range keys.all() {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		forbidden[name+" PKCS#8"] = der
		forbidden[name+" PKCS#8 base64"] = []byte(base64.StdEncoding.EncodeToString(der))
		forbidden[name+" PEM"] = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	forbidden["ECDSA scalar"] = keys.ecdsa.D.Bytes()
	forbidden["Ed25519 seed"] = keys.ed25519.Seed()
	forbidden["RSA prime"] = keys.rsa.Primes[0].Bytes()

	files := 0
	err := filepath.WalkDir(dataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for what, needle := range forbidden {
			if bytes.Contains(b, needle) {
				t.Errorf("%s contains the %s", path, what)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files != 2 {
		t.Fatalf("scanned %d files, want 2 (keystore.sealed and tpm/kek.sealed)", files)
	}
}

func TestKeystoreConcurrent(t *testing.T) {
	ks := openTestKeystore(t, t.TempDir(), newTestSoftwareSealer(t))
	key := newTestKeys(t).ecdsa
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 5 {
				name := fmt.Sprintf("signing/k%d-%d", i, j)
				if err := ks.Put(name, key); err != nil {
					t.Error(err)
				}
				if _, ok := ks.PrivateKey(name); !ok {
					t.Errorf("%s missing after Put", name)
				}
				ks.Names()
			}
		})
	}
	wg.Wait()
	if n := len(ks.Names()); n != 20 {
		t.Fatalf("%d names, want 20", n)
	}
}

func FuzzDecodeKeystore(f *testing.F) {
	kek := bytes.Repeat([]byte{1}, kekSize)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	valid, err := encodeKeystore(kek, map[string]crypto.Signer{"ca": ec}, map[string][]byte{"d": []byte("x")})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add([]byte(keystoreMagic + "\x01"))
	f.Add([]byte(`{"v":1,"entries":{"ca":{"type":"pkcs8","data":"AAAA"}}}`))
	f.Add([]byte(`{"v":1,"entries":{"x y":{"type":"secret","data":""}}}`))
	f.Add([]byte(`{"v":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		// The encrypted file, as read from disk.
		if _, _, err := decodeKeystore(kek, b); err != nil && !errors.Is(err, ErrUnseal) {
			t.Fatalf("decodeKeystore error %v does not wrap ErrUnseal", err)
		}
		// The decrypted payload, to reach the parser behind the AEAD.
		decodePayload(b)
	})
}

// fileState is what snapshotDir records for each path.
type fileState struct {
	mode fs.FileMode
	sum  [sha256.Size]byte
}

func snapshotDir(t *testing.T, dir string) map[string]fileState {
	t.Helper()
	m := map[string]fileState{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fileState{mode: fi.Mode()}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			st.sum = sha256.Sum256(b)
		}
		m[path] = st
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func assertSnapshotEqual(t *testing.T, before, after map[string]fileState) {
	t.Helper()
	for p, b := range before {
		a, ok := after[p]
		switch {
		case !ok:
			t.Errorf("%s was removed", p)
		case a != b:
			t.Errorf("%s changed", p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s was created", p)
		}
	}
}

func flipLastByte(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
