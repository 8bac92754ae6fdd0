package tpm

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// newTestSoftwareSealer returns a sealer whose key file lives in its own
// temporary directory, away from any data directory.
func newTestSoftwareSealer(t *testing.T) *SoftwareSealer {
	t.Helper()
	s, err := NewSoftwareSealer(filepath.Join(t.TempDir(), "seal", "software.key"))
	if err != nil {
		t.Fatalf("NewSoftwareSealer: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSoftwareSealerRoundTrip(t *testing.T) {
	s := newTestSoftwareSealer(t)
	if s.Mode() != ModeSoftware {
		t.Fatalf("Mode() = %q, want %q", s.Mode(), ModeSoftware)
	}
	for _, secret := range [][]byte{{}, []byte("k"), bytes.Repeat([]byte{0xa5}, 32), bytes.Repeat([]byte("x"), 4096)} {
		blob, err := s.Seal(secret)
		if err != nil {
			t.Fatalf("Seal(%d bytes): %v", len(secret), err)
		}
		if len(secret) >= 8 && bytes.Contains(blob, secret) {
			t.Fatalf("blob contains the plaintext")
		}
		if string(blob[:4]) != softwareMagic || blob[4] != softwareVersion {
			t.Fatalf("blob header = %q, want %q v%d", blob[:5], softwareMagic, softwareVersion)
		}
		again, _ := s.Seal(secret)
		if bytes.Equal(blob, again) {
			t.Fatalf("two seals of the same secret are identical; nonce not random")
		}
		got, err := s.Unseal(blob)
		if err != nil {
			t.Fatalf("Unseal: %v", err)
		}
		if !bytes.Equal(got, secret) {
			t.Fatalf("Unseal = %x, want %x", got, secret)
		}
	}
}

func TestSoftwareSealerTampered(t *testing.T) {
	s := newTestSoftwareSealer(t)
	blob, err := s.Seal([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		b := bytes.Clone(blob)
		b[i] ^= 0x01
		return b
	}
	tests := []struct {
		name string
		blob []byte
	}{
		{"empty", nil},
		{"header only", blob[:5]},
		{"truncated tag", blob[:len(blob)-1]},
		{"appended byte", append(bytes.Clone(blob), 0)},
		{"magic", flip(0)},
		{"version", flip(4)},
		{"nonce", flip(5)},
		{"ciphertext", flip(5 + gcmNonceLen)},
		{"tag", flip(len(blob) - 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Unseal(tt.blob)
			if !errors.Is(err, ErrUnseal) {
				t.Fatalf("Unseal = %x, %v; want error wrapping ErrUnseal", got, err)
			}
		})
	}
}

func TestSoftwareSealerWrongKey(t *testing.T) {
	a, b := newTestSoftwareSealer(t), newTestSoftwareSealer(t)
	blob, err := a.Seal([]byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Unseal(blob); !errors.Is(err, ErrUnseal) {
		t.Fatalf("Unseal with another key: err = %v, want ErrUnseal", err)
	}
}

func TestSoftwareKeyFileCreatedAndReused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new")
	keyFile := filepath.Join(dir, "software.key")
	s1, err := NewSoftwareSealer(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	checkMode(t, dir, 0o700)
	checkMode(t, keyFile, 0o600)
	blob, err := s1.Seal([]byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	s2, err := NewSoftwareSealer(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s2.Unseal(blob); err != nil || string(got) != "secret" {
		t.Fatalf("reopened sealer Unseal = %q, %v", got, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("key dir holds %d entries, want 1 (no temp files left)", len(entries))
	}
}

func TestSoftwareKeyFileRefused(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, path string)
	}{
		{"group readable", func(t *testing.T, p string) { writeKey(t, p, SoftwareKeySize, 0o640) }},
		{"world readable", func(t *testing.T, p string) { writeKey(t, p, SoftwareKeySize, 0o604) }},
		{"group writable", func(t *testing.T, p string) { writeKey(t, p, SoftwareKeySize, 0o620) }},
		{"too short", func(t *testing.T, p string) { writeKey(t, p, SoftwareKeySize-1, 0o600) }},
		{"too long", func(t *testing.T, p string) { writeKey(t, p, SoftwareKeySize+1, 0o600) }},
		{"empty", func(t *testing.T, p string) { writeKey(t, p, 0, 0o600) }},
		{"directory", func(t *testing.T, p string) {
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
		}},
		{"symlink", func(t *testing.T, p string) {
			target := p + ".target"
			writeKey(t, target, SoftwareKeySize, 0o600)
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "software.key")
			tt.setup(t, p)
			before := snapshotDir(t, filepath.Dir(p))
			s, err := NewSoftwareSealer(p)
			if !errors.Is(err, ErrInsecureKeyFile) {
				t.Fatalf("NewSoftwareSealer = %v, %v; want error wrapping ErrInsecureKeyFile", s, err)
			}
			assertSnapshotEqual(t, before, snapshotDir(t, filepath.Dir(p)))
		})
	}
}

func TestSoftwareSealerClosed(t *testing.T) {
	s := newTestSoftwareSealer(t)
	blob, _ := s.Seal([]byte("x"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Seal([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Seal after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Unseal(blob); !errors.Is(err, ErrClosed) {
		t.Fatalf("Unseal after Close: %v, want ErrClosed", err)
	}
}

func FuzzUnsealBlob(f *testing.F) {
	dir := f.TempDir()
	s, err := NewSoftwareSealer(filepath.Join(dir, "software.key"))
	if err != nil {
		f.Fatal(err)
	}
	blob, _ := s.Seal([]byte("0123456789abcdef0123456789abcdef"))
	f.Add(blob)
	f.Add(blob[:len(blob)-1])
	f.Add([]byte(softwareMagic + "\x01"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := s.Unseal(b); err != nil && !errors.Is(err, ErrUnseal) {
			t.Fatalf("Unseal error %v does not wrap ErrUnseal", err)
		}
	})
}

func writeKey(t *testing.T, path string, size int, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, bytes.Repeat([]byte{7}, size), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil { // umask may have narrowed it
		t.Fatal(err)
	}
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Fatalf("%s has mode %#o, want %#o", path, got, want)
	}
}
