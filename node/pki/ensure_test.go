package pki

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// memKeyStore is an in-memory KeyStore.
type memKeyStore struct {
	mu   sync.Mutex
	keys map[string]crypto.Signer
	puts int
}

func newMemKeyStore() *memKeyStore { return &memKeyStore{keys: map[string]crypto.Signer{}} }

func (m *memKeyStore) PrivateKey(name string) (crypto.Signer, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.keys[name]
	return k, ok
}

func (m *memKeyStore) Put(name string, key crypto.Signer) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keys[name] = key
	m.puts++
	return nil
}

func (m *memKeyStore) without(name string) *memKeyStore {
	c := &memKeyStore{keys: maps.Clone(m.keys)}
	delete(c.keys, name)
	return c
}

func ensure(t *testing.T, dataDir string, ks KeyStore, hosts []string, now time.Time) (*x509.Certificate, *x509.CertPool) {
	t.Helper()
	cert, pool, err := Ensure(dataDir, ks, "node-1", hosts, "", now)
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if cert.Leaf == nil || len(cert.Certificate) != 1 || !bytes.Equal(cert.Certificate[0], cert.Leaf.Raw) {
		t.Fatal("Ensure returned an incomplete tls.Certificate")
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{
		Roots: pool, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}); err != nil {
		t.Fatalf("Ensure's certificate does not verify against its pool: %v", err)
	}
	if !SamePublicKey(cert.PrivateKey.(crypto.Signer).Public(), cert.Leaf.PublicKey) {
		t.Fatal("Ensure's private key does not match its certificate")
	}
	return cert.Leaf, pool
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEnsureFirstStartAndRestart(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	ks := newMemKeyStore()
	hosts := []string{"node1.example.com", "10.0.0.1"}
	leaf, _ := ensure(t, dataDir, ks, hosts, testNow)

	if got := slices.Sorted(maps.Keys(ks.keys)); !slices.Equal(got, []string{CAKeyName, NodeKeyName}) {
		t.Fatalf("keystore names = %v", got)
	}
	for path, want := range map[string]fs.FileMode{
		dataDir: 0o700, filepath.Join(dataDir, "tls"): 0o700,
		filepath.Join(dataDir, CAFile): 0o644, filepath.Join(dataDir, NodeCertFile): 0o644,
	} {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v, mode %v; want %#o", path, err, fi.Mode().Perm(), want)
		}
	}
	certs, err := ParseCertPEM(readFile(t, filepath.Join(dataDir, CAFile)))
	if err != nil || len(certs) != 1 || !certs[0].IsCA {
		t.Fatalf("ca.pem: %d certs, err %v", len(certs), err)
	}
	if !SamePublicKey(ks.keys[CAKeyName].Public(), certs[0].PublicKey) {
		t.Fatal("ca.pem does not hold the keystore's CA key")
	}
	if !covers(leaf, hosts) || leaf.Subject.CommonName != "node-1" {
		t.Fatalf("leaf SANs %v %v, CN %q", leaf.DNSNames, leaf.IPAddresses, leaf.Subject.CommonName)
	}

	before := snapshotDir(t, dataDir)
	puts := ks.puts
	again, _ := ensure(t, dataDir, ks, hosts, testNow.Add(24*time.Hour))
	if !bytes.Equal(again.Raw, leaf.Raw) {
		t.Fatal("restart re-issued the node certificate")
	}
	if ks.puts != puts {
		t.Fatal("restart wrote to the keystore")
	}
	assertSnapshotEqual(t, before, snapshotDir(t, dataDir))

	// A node that holds no CA key (it joined) restarts with what it has.
	joined, _ := ensure(t, dataDir, ks.without(CAKeyName), hosts, testNow.Add(48*time.Hour))
	if !bytes.Equal(joined.Raw, leaf.Raw) {
		t.Fatal("restart without CA key changed the node certificate")
	}
}

func TestEnsureReissue(t *testing.T) {
	hosts := []string{"node1.example.com"}
	tests := []struct {
		name     string
		change   func(t *testing.T, dataDir string)
		hosts    []string
		nodeName string
		now      time.Time
	}{
		{name: "new host", hosts: []string{"node1.example.com", "auth.example.com"}},
		{name: "new IP", hosts: []string{"node1.example.com", "192.0.2.7"}},
		{name: "near expiry", now: testNow.Add(NodeCertTTL - RenewBefore + time.Hour)},
		{name: "expired", now: testNow.Add(NodeCertTTL + time.Hour)},
		{name: "renamed node", nodeName: "node-9"},
		{name: "node.pem removed", change: func(t *testing.T, d string) { removeFile(t, filepath.Join(d, NodeCertFile)) }},
		{name: "node.pem garbage", change: func(t *testing.T, d string) {
			if err := os.WriteFile(filepath.Join(d, NodeCertFile), []byte("junk"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dataDir := t.TempDir()
			ks := newMemKeyStore()
			first, _ := ensure(t, dataDir, ks, hosts, testNow)
			caPEM := readFile(t, filepath.Join(dataDir, CAFile))
			nodeKey := ks.keys[NodeKeyName]
			if tt.change != nil {
				tt.change(t, dataDir)
			}
			h, name, now := hosts, "node-1", testNow.Add(time.Hour)
			if tt.hosts != nil {
				h = tt.hosts
			}
			if tt.nodeName != "" {
				name = tt.nodeName
			}
			if !tt.now.IsZero() {
				now = tt.now
			}
			cert, _, err := Ensure(dataDir, ks, name, h, "", now)
			if err != nil {
				t.Fatal(err)
			}
			leaf := cert.Leaf
			switch {
			case bytes.Equal(leaf.Raw, first.Raw):
				t.Fatal("node certificate not re-issued")
			case !covers(leaf, h) || leaf.Subject.CommonName != name:
				t.Fatalf("re-issued certificate: SANs %v %v, CN %q", leaf.DNSNames, leaf.IPAddresses, leaf.Subject.CommonName)
			case leaf.NotAfter.Sub(now) < RenewBefore:
				t.Fatalf("re-issued certificate expires at %v", leaf.NotAfter)
			case !SamePublicKey(leaf.PublicKey, nodeKey.Public()):
				t.Fatal("re-issue changed the node key")
			case !bytes.Equal(readFile(t, filepath.Join(dataDir, CAFile)), caPEM):
				t.Fatal("re-issue changed ca.pem")
			case !bytes.Equal(EncodeCertPEM(leaf), readFile(t, filepath.Join(dataDir, NodeCertFile))):
				t.Fatal("node.pem does not hold the re-issued certificate")
			}
		})
	}
}

func TestEnsureWithoutCAKey(t *testing.T) {
	dataDir := t.TempDir()
	ks := newMemKeyStore()
	first, _ := ensure(t, dataDir, ks, nil, testNow)
	joined := ks.without(CAKeyName)

	// A valid certificate that is due is served as it is: the running node
	// renews it through the cluster. Nothing is written.
	for _, tt := range []struct {
		name  string
		hosts []string
		at    time.Time
		due   string
	}{
		{"new host", []string{"new.example.com"}, testNow.Add(time.Hour), "does not cover hosts"},
		{"expires within RenewBefore", nil, first.NotAfter.Add(-RenewBefore + time.Hour), "certificate expires at"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshotDir(t, dataDir)
			cert, _, err := Ensure(dataDir, joined, "node-1", tt.hosts, "", tt.at)
			if err != nil {
				t.Fatalf("Ensure: %v", err)
			}
			if !cert.Leaf.Equal(first) {
				t.Fatal("Ensure without the CA key returned another certificate")
			}
			if why := RenewalDue(cert.Leaf, tt.hosts, "", tt.at); !strings.Contains(why, tt.due) {
				t.Fatalf("RenewalDue = %q, want %q", why, tt.due)
			}
			assertSnapshotEqual(t, before, snapshotDir(t, dataDir))
		})
	}
	if why := RenewalDue(first, nil, "", testNow.Add(time.Hour)); why != "" {
		t.Fatalf("RenewalDue of a fresh certificate = %q", why)
	}

	// What cannot be served is refused, naming the missing CA key.
	tests := []struct {
		name   string
		ks     KeyStore
		at     time.Time
		before func(t *testing.T)
	}{
		{name: "expired", ks: joined, at: first.NotAfter.Add(time.Hour)},
		{name: "no node key", ks: joined.without(NodeKeyName), at: testNow.Add(time.Hour)},
		{name: "ca.pem lost", ks: joined, at: testNow.Add(time.Hour), before: func(t *testing.T) { removeFile(t, filepath.Join(dataDir, CAFile)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.before != nil {
				tt.before(t)
			}
			before := snapshotDir(t, dataDir)
			_, _, err := Ensure(dataDir, tt.ks, "node-1", nil, "", tt.at)
			if !errors.Is(err, ErrNoCAKey) {
				t.Fatalf("Ensure: %v, want ErrNoCAKey", err)
			}
			assertSnapshotEqual(t, before, snapshotDir(t, dataDir))
		})
	}
}

func TestEnsureRecreatesLostCACert(t *testing.T) {
	dataDir := t.TempDir()
	ks := newMemKeyStore()
	leaf, pool := ensure(t, dataDir, ks, nil, testNow)
	caPath := filepath.Join(dataDir, CAFile)
	oldCA, _ := ParseCertPEM(readFile(t, caPath))
	removeFile(t, caPath)

	again, newPool := ensure(t, dataDir, ks, nil, testNow.Add(time.Hour))
	newCA, err := ParseCertPEM(readFile(t, caPath))
	if err != nil {
		t.Fatal(err)
	}
	if Pin(newCA[0]) != Pin(oldCA[0]) {
		t.Fatal("re-created CA has a different pin")
	}
	if !bytes.Equal(again.Raw, leaf.Raw) {
		t.Fatal("node certificate re-issued although it still verifies")
	}
	opts := x509.VerifyOptions{Roots: pool, CurrentTime: testNow.Add(time.Hour), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	if _, err := again.Verify(opts); err != nil {
		t.Fatalf("node certificate no longer verifies against the old CA: %v", err)
	}
	opts.Roots = newPool
	if _, err := leaf.Verify(opts); err != nil {
		t.Fatalf("old node certificate does not verify against the re-created CA: %v", err)
	}
}

func TestEnsureRefuses(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dataDir string, ks *memKeyStore)
		hosts []string
		want  error
	}{
		{
			name: "CA key does not match ca.pem",
			setup: func(t *testing.T, _ string, ks *memKeyStore) {
				ks.keys[CAKeyName] = newKey256(t)
			},
			want: ErrKeyMismatch,
		},
		{name: "bad host", hosts: []string{"bad host"}, want: ErrInvalidHost},
		{
			name: "ca.pem holds a private key",
			setup: func(t *testing.T, d string, _ *memKeyStore) {
				b := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})
				if err := os.WriteFile(filepath.Join(d, CAFile), b, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: ErrNoCertificate,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dataDir := t.TempDir()
			ks := newMemKeyStore()
			ensure(t, dataDir, ks, nil, testNow)
			if tt.setup != nil {
				tt.setup(t, dataDir, ks)
			}
			before := snapshotDir(t, dataDir)
			if _, _, err := Ensure(dataDir, ks, "node-1", tt.hosts, "", testNow); !errors.Is(err, tt.want) {
				t.Fatalf("Ensure: %v, want %v", err, tt.want)
			}
			assertSnapshotEqual(t, before, snapshotDir(t, dataDir))
		})
	}
}

// TestEnsureNeverWritesPrivateKey scans every file Ensure writes, across a
// first start and a re-issue, for the private keys in any encoding.
func TestEnsureNeverWritesPrivateKey(t *testing.T) {
	dataDir := t.TempDir()
	ks := newMemKeyStore()
	ensure(t, dataDir, ks, []string{"a.example"}, testNow)
	ensure(t, dataDir, ks, []string{"a.example", "b.example"}, testNow.Add(time.Hour))

	forbidden := map[string][]byte{}
	for name, k := range ks.keys {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		forbidden[name+" PKCS#8"] = der
		forbidden[name+" PKCS#8 base64"] = []byte(base64.StdEncoding.EncodeToString(der))
		forbidden[name+" PEM"] = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		if ec, ok := k.(interface{ Bytes() ([]byte, error) }); ok {
			if raw, err := ec.Bytes(); err == nil {
				forbidden[name+" scalar"] = raw
			}
		}
	}
	forbidden["any PEM private key"] = []byte("PRIVATE KEY")

	files := 0
	err := filepath.WalkDir(dataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		b := readFile(t, path)
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
		t.Fatalf("Ensure wrote %d files, want 2 (ca.pem and tls/node.pem)", files)
	}
}

func removeFile(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

type fileState struct {
	mode fs.FileMode
	sum  [sha256.Size]byte
}

// snapshotDir records the mode and content hash of everything under dir.
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
			st.sum = sha256.Sum256(readFile(t, path))
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
		if a, ok := after[p]; !ok {
			t.Errorf("%s was removed", p)
		} else if a != b {
			t.Errorf("%s changed", p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s was created", p)
		}
	}
}
