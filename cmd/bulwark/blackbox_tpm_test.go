package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/tpm/swtpmtest"
)

// TestBlackBoxTPMSealing runs the daemon with its keys sealed by a TPM
// (swtpm, over its TCP command channel): it serves, restarts and unseals;
// pointed at another TPM it exits non-zero, names the seal, and leaves the
// data directory exactly as it was.
func TestBlackBoxTPMSealing(t *testing.T) {
	swtpmtest.Require(t)
	state := t.TempDir()
	tpmA := swtpmtest.Start(t, state)
	n := newTestNode(t)
	setSeal(t, n, tpmA.Device())
	n.start()
	n.addUser("alice", "correct horse battery staple", false)
	if code, tok := n.login("alice", "correct horse battery staple"); code != 200 || tok["access_token"] == nil {
		t.Fatalf("login on a TPM-sealed node: %d", code)
	}
	_, ready, _ := n.apiCall("GET", "/readyz", "", nil)
	if ready["seal"] != "tpm" {
		t.Fatalf("/readyz seal = %v, want tpm", ready["seal"])
	}
	n.stop()

	// Restart on the same TPM: unseals, serves, the user is there.
	n.start()
	if code, _ := n.login("alice", "correct horse battery staple"); code != 200 {
		t.Fatalf("login after restart: %d", code)
	}
	n.stop()
	logs := n.logs.String()

	// Another TPM: refuse to start, say why, touch nothing.
	tpmB := swtpmtest.Start(t, t.TempDir())
	setSeal(t, n, tpmB.Device())
	before := hashTree(t, n.dataDir())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, n.bin, "serve", "--config", n.config)
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("serve with another TPM: %v, want a non-zero exit", err)
	}
	if msg := stderr.String(); !strings.Contains(msg, "different TPM") || !strings.Contains(msg, "kek.sealed") {
		t.Errorf("the refusal does not name the seal: %q", msg)
	}
	if after := hashTree(t, n.dataDir()); after != before {
		t.Errorf("a refused start changed the data directory:\nbefore %s\nafter  %s", before, after)
	}

	// No private key in plain form under the data directory or in the logs.
	scanForKeyMaterial(t, n.dataDir(), logs+stderr.String())
}

// setSeal points the node's config at a TPM.
func setSeal(t *testing.T, n *testNode, device string) {
	t.Helper()
	b, err := os.ReadFile(n.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(b)
	if i := strings.Index(cfg, "[seal]\n"); i >= 0 { // drop the old table
		rest := cfg[i+len("[seal]\n"):]
		if j := strings.Index(rest, "["); j >= 0 {
			cfg = cfg[:i] + rest[j:]
		} else {
			cfg = cfg[:i]
		}
	}
	cfg += fmt.Sprintf("\n[seal]\nmode = \"tpm\"\ndevice = %q\n", device)
	if err := os.WriteFile(n.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// hashTree summarises every file's path, mode and content.
func hashTree(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %v %d\n", p, info.Mode(), info.Size())
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// scanForKeyMaterial fails if a file or the logs hold a PEM private key or
// the DER prefix of a PKCS#8 (or SEC 1) EC, Ed25519 or RSA private key.
func scanForKeyMaterial(t *testing.T, dir, logs string) {
	t.Helper()
	needles := map[string][]byte{
		"PEM private key":      []byte("PRIVATE KEY-----"),
		"PKCS#8 EC key":        {0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01},
		"PKCS#8 Ed25519 key":   {0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22},
		"PKCS#8 RSA key":       {0x02, 0x01, 0x00, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01},
		"SEC 1 EC private key": {0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20},
	}
	check := func(where string, b []byte) {
		for what, needle := range needles {
			if bytes.Contains(b, needle) {
				t.Errorf("%s holds a %s in plain form", where, what)
			}
		}
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err == nil {
				check(p, b)
			}
		}
		return nil
	})
	check("the logs", []byte(logs))
}

// TestBlackBoxTPMResidentSigning: with seal.signing = "tpm-resident" the
// node's ES256 key is made inside the TPM and every token is signed there;
// rotation makes the next key in the TPM too.
func TestBlackBoxTPMResidentSigning(t *testing.T) {
	swtpmtest.Require(t)
	tpmA := swtpmtest.Start(t, t.TempDir())
	n := newTestNode(t)
	setSeal(t, n, tpmA.Device())
	appendConfig(t, n, `signing = "tpm-resident"`+"\n") // lands in [seal], the last table
	n.start()
	n.addUser("alice", "correct horse battery staple", false)
	code, tok := n.login("alice", "correct horse battery staple")
	if code != 200 {
		t.Fatalf("login: %d", code)
	}
	if code, _, _ := n.apiCall("GET", "/v1/me", tok["access_token"].(string), nil); code != 200 {
		t.Fatalf("/v1/me with a TPM-signed token: %d", code)
	}
	if _, err := os.Stat(filepath.Join(n.dataDir(), "tpm", "signing-1.key")); err != nil {
		t.Fatalf("no TPM key file: %v", err)
	}
	if out, errOut, c := n.cli("", "keys", "rotate"); c != 0 {
		t.Fatalf("keys rotate: %s %s", out, errOut)
	}
	if _, err := os.Stat(filepath.Join(n.dataDir(), "tpm", "signing-2.key")); err != nil {
		t.Fatalf("rotation did not make a TPM key: %v", err)
	}
	if code, tok2 := n.login("alice", "correct horse battery staple"); code != 200 || tok2["access_token"] == tok["access_token"] {
		t.Fatalf("login after rotation: %d", code)
	}
	n.stop()
	// The audit checkpoints' ES256 key is made in the TPM too; the one
	// the node signed at its stop verifies offline.
	if _, err := os.Stat(filepath.Join(n.dataDir(), "tpm", "audit-es256.key")); err != nil {
		t.Fatalf("the audit key is not TPM-resident: %v", err)
	}
	if out, errOut, c := n.cli("", "audit", "verify", "--data-dir", n.dataDir()); c != 0 || !strings.Contains(out, "signed checkpoints verified") {
		t.Fatalf("audit verify: %d %s %s", c, out, errOut)
	}
	scanForKeyMaterial(t, n.dataDir(), n.logs.String())
}

func appendConfig(t *testing.T, n *testNode, text string) {
	t.Helper()
	f, err := os.OpenFile(n.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}
