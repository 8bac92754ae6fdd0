package main

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulwark-auth/bulwark/node/loopback"
)

// Data directories written by released formats live in testdata/ as
// datadir-<format>.tar.gz, and every later version must boot them: a node
// upgraded in place finds its users, sessions and audit trail.
//
// BULWARK_WRITE_TESTDATA=v1 go test -run TestWriteUpgradeTestdata ./cmd/bulwark
// writes the archive for the current format (run it once per format).

// upgradeNode is the config the archived data directory was written with.
const upgradeNodeConfig = `node_name = "upgrade1"
data_dir = %q
[api]
listen = "127.0.0.1:%d"
[cluster]
listen = "127.0.0.1:%d"
advertise = "127.0.0.1:18444"
[seal]
mode = "software"
[metrics]
listen = "127.0.0.1:%d"
[tokens]
issuer = "https://127.0.0.1:18443"
[auth.security]
jwt_expiry = "1h"
refresh_token_expiry = "3650d"
[auth.sessions]
idle_timeout = "3650d"
[auth.password]
argon2_memory_kib = 8192
argon2_iterations = 1
`

const upgradePassword = "correct horse battery staple"

func TestWriteUpgradeTestdata(t *testing.T) {
	format := os.Getenv("BULWARK_WRITE_TESTDATA")
	if format == "" {
		t.Skip("set BULWARK_WRITE_TESTDATA=<format> to write testdata/datadir-<format>.tar.gz")
	}
	n := newTestNode(t)
	writeUpgradeConfig(t, n)
	n.start()
	n.addUser("alice", upgradePassword, true)
	n.addUser("bob", upgradePassword, false)
	code, tok := n.login("alice", upgradePassword)
	if code != 200 {
		t.Fatalf("login: %d", code)
	}
	if _, errOut, c := n.cli("", "user", "disable", "bob"); c != 0 {
		t.Fatal(errOut)
	}
	n.stop()
	// The refresh token lets the boot test show the session survived.
	if err := os.WriteFile(filepath.Join(n.dataDir(), "test-refresh-token"), []byte(tok["refresh_token"].(string)), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join("testdata", "datadir-"+format+".tar.gz")
	if err := writeTarGz(n.dataDir(), out); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", out)
}

func TestBootUpgradeTestdata(t *testing.T) {
	archives, _ := filepath.Glob(filepath.Join("testdata", "datadir-*.tar.gz"))
	if len(archives) == 0 {
		t.Fatal("no testdata/datadir-*.tar.gz: the upgrade test has nothing to boot")
	}
	for _, a := range archives {
		t.Run(filepath.Base(a), func(t *testing.T) {
			n := newTestNode(t)
			if err := extractTarGz(a, n.dataDir()); err != nil {
				t.Fatal(err)
			}
			writeUpgradeConfig(t, n)
			n.start()
			out, errOut, c := n.cli("", "user", "list", "--json")
			if c != 0 || !strings.Contains(out, `"alice"`) || !strings.Contains(out, `"bob"`) {
				t.Fatalf("users after upgrade: %s %s", out, errOut)
			}
			if code, _ := n.login("alice", upgradePassword); code != 200 {
				t.Errorf("login after upgrade: %d", code)
			}
			if code, _ := n.login("bob", upgradePassword); code != 401 {
				t.Errorf("disabled bob after upgrade: %d", code)
			}
			rt, err := os.ReadFile(filepath.Join(n.dataDir(), "test-refresh-token"))
			if err != nil {
				t.Fatal(err)
			}
			if code, _, _ := n.apiCall("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": string(rt)}); code != 200 {
				t.Errorf("the old session's refresh token after upgrade: %d", code)
			}
			if out, errOut, c := n.cli("", "audit", "verify"); c != 0 {
				t.Errorf("audit verify after upgrade: %s %s", out, errOut)
			}
		})
	}
}

func writeUpgradeConfig(t *testing.T, n *testNode) {
	t.Helper()
	cfg := fmt.Sprintf(upgradeNodeConfig, n.dataDir(), n.apiPort, loopback.Port(t), n.metrics)
	if err := os.WriteFile(n.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeTarGz(dir, out string) error {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir || d.Type()&fs.ModeSocket != 0 {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = rel
		hdr.ModTime, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = hdr.ModTime.Truncate(0).UTC(), 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if d.Type().IsRegular() {
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			defer src.Close()
			_, err = io.Copy(tw, src)
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

func extractTarGz(archive, dir string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		p := filepath.Join(dir, filepath.Clean("/"+hdr.Name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				return err
			}
			out, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fs.FileMode(hdr.Mode)&0o777)
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, tr); err != nil {
				out.Close()
				return err
			}
			if err := out.Close(); err != nil {
				return err
			}
		}
	}
}
