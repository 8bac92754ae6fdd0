// Package packaging_test builds the bulwark .deb the way `make package`
// does (packaging/build.sh) and checks it: two builds of one tree give the
// same bytes, and the package holds the right files with the right modes,
// owners, conffiles and maintainer scripts. It needs git and dpkg-deb and
// takes some seconds, so -short skips it.
package packaging_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"debug/buildinfo"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestDebReproducibleAndComplete(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the .deb twice; skipped in -short mode")
	}
	for _, tool := range []string{"git", "dpkg-deb", "sh"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: the package test runs on Debian (make deps)", tool)
		}
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	epoch := strings.TrimSpace(run(t, root, nil, "git", "log", "-1", "--format=%ct"))
	sde, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		t.Fatalf("last commit time %q: %v", epoch, err)
	}
	pkgVersion := strings.TrimSpace(run(t, root, nil, "sh", "packaging/version.sh"))
	goarch := strings.TrimSpace(run(t, root, nil, "go", "env", "GOARCH"))

	// Two builds into two directories, with the command make package uses.
	var debs [2]string
	for i := range debs {
		dist := filepath.Join(t.TempDir(), "dist")
		run(t, root, []string{"DIST=" + dist, "PACKAGERS=deb", "SOURCE_DATE_EPOCH=" + epoch},
			"sh", "packaging/build.sh", "package")
		debs[i] = filepath.Join(dist, "bulwark_"+pkgVersion+"-1_"+goarch+".deb")
		if i == 0 {
			// A second of difference would show in any timestamp taken
			// from the clock rather than SOURCE_DATE_EPOCH.
			time.Sleep(1100 * time.Millisecond)
		}
	}
	a, b := readFile(t, debs[0]), readFile(t, debs[1])
	if !bytes.Equal(a, b) {
		t.Errorf("two builds of one tree differ: %s (%d bytes) and %s (%d bytes)", debs[0], len(a), debs[1], len(b))
	}
	deb := debs[0]

	// Control fields.
	info := run(t, root, nil, "dpkg-deb", "-I", deb)
	for _, want := range []string{
		"Package: bulwark",
		"Version: " + pkgVersion + "-1",
		"Architecture: " + goarch,
		"Recommends: tpm-udev",
	} {
		if !strings.Contains(info, "\n "+want+"\n") {
			t.Errorf("dpkg-deb -I lacks %q:\n%s", want, info)
		}
	}
	for _, script := range []string{"preinst", "postinst", "prerm", "postrm"} {
		if !regexp.MustCompile(`(?m)^\s+\d+ bytes,\s+\d+ lines\s+\*\s+` + script + `\s+#!/bin/sh$`).MatchString(info) {
			t.Errorf("dpkg-deb -I: no executable %s shell script:\n%s", script, info)
		}
	}
	if got := strings.TrimSpace(run(t, root, nil, "dpkg-deb", "-I", deb, "conffiles")); got != "/etc/bulwark/bulwark.toml" {
		t.Errorf("conffiles = %q, want /etc/bulwark/bulwark.toml", got)
	}

	// The maintainer scripts never start or enable a node on install: the
	// only unit action allowed besides stop/disable is try-restart, which
	// restarts a node that already runs.
	postinst := run(t, root, nil, "dpkg-deb", "-I", deb, "postinst")
	for _, line := range strings.Split(postinst, "\n") {
		code := strings.TrimSpace(line)
		if strings.HasPrefix(code, "#") || !strings.HasPrefix(code, "systemctl ") {
			continue
		}
		if !strings.HasPrefix(code, "systemctl daemon-reload") && !strings.HasPrefix(code, "systemctl try-restart") {
			t.Errorf("postinst runs %q: a fresh install must not start or enable the node", code)
		}
	}
	if prerm := run(t, root, nil, "dpkg-deb", "-I", deb, "prerm"); !strings.Contains(prerm, "remove | 0)") {
		t.Errorf("prerm does not limit stopping to removal:\n%s", prerm)
	}
	if postrm := run(t, root, nil, "dpkg-deb", "-I", deb, "postrm"); regexp.MustCompile(`(?m)^\s*rm\b`).MatchString(postrm) {
		t.Errorf("postrm deletes files; /var/lib/bulwark holds the keys and must stay:\n%s", postrm)
	}

	// Files: dpkg-deb -c lists mode, owner/group, size, mtime and path.
	type entry struct{ mode, owner string }
	want := map[string]entry{
		"./usr/bin/bulwark":                              {"-rwxr-xr-x", "root/root"},
		"./usr/lib/systemd/system/bulwark.service":       {"-rw-r--r--", "root/root"},
		"./usr/lib/sysusers.d/bulwark.conf":              {"-rw-r--r--", "root/root"},
		"./usr/lib/tmpfiles.d/bulwark.conf":              {"-rw-r--r--", "root/root"},
		"./etc/bulwark/":                                 {"drwxr-x---", "root/bulwark"},
		"./etc/bulwark/bulwark.toml":                     {"-rw-r-----", "root/bulwark"},
		"./usr/share/bulwark/alerts.yml":                 {"-rw-r--r--", "root/root"},
		"./usr/share/doc/bulwark/README.md":              {"-rw-r--r--", "root/root"},
		"./usr/share/doc/bulwark/INSTALL.md":             {"-rw-r--r--", "root/root"},
		"./usr/share/doc/bulwark/examples/low-port.conf": {"-rw-r--r--", "root/root"},
	}
	stamp := time.Unix(sde, 0).UTC().Format("2006-01-02 15:04")
	listing := run(t, root, []string{"TZ=UTC"}, "dpkg-deb", "-c", deb)
	seen := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(listing))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 6 {
			t.Errorf("dpkg-deb -c: unexpected line %q", sc.Text())
			continue
		}
		mode, owner, date, path := f[0], f[1], f[3]+" "+f[4], f[5]
		seen[path] = true
		if date != stamp {
			t.Errorf("%s: mtime %s, want SOURCE_DATE_EPOCH %s", path, date, stamp)
		}
		if strings.HasPrefix(path, "./var/") {
			t.Errorf("%s: the package must not own the state directory (purge would remove the keys)", path)
		}
		if w, ok := want[path]; ok && (w.mode != mode || w.owner != owner) {
			t.Errorf("%s: %s %s, want %s %s", path, mode, owner, w.mode, w.owner)
		}
		if mode[5] == 'w' || mode[8] == 'w' {
			t.Errorf("%s: %s is group- or world-writable", path, mode)
		}
	}
	for path := range want {
		if !seen[path] {
			t.Errorf("package lacks %s:\n%s", path, listing)
		}
	}

	// Contents: the shipped unit, config and sysusers file are the
	// repository's, and the binary is static and knows its version.
	files := fsysFiles(t, deb)
	for path, src := range map[string]string{
		"./usr/lib/systemd/system/bulwark.service": "systemd/bulwark.service",
		"./etc/bulwark/bulwark.toml":               "packaging/bulwark.toml",
		"./usr/lib/sysusers.d/bulwark.conf":        "packaging/sysusers.conf",
		"./usr/share/bulwark/alerts.yml":           "packaging/alerts.yml",
	} {
		if !bytes.Equal(files[path], readFile(t, filepath.Join(root, src))) {
			t.Errorf("%s differs from %s", path, src)
		}
	}
	bin := filepath.Join(t.TempDir(), "bulwark")
	if err := os.WriteFile(bin, files["./usr/bin/bulwark"], 0o755); err != nil {
		t.Fatal(err)
	}
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatalf("packaged binary: %v", err)
	}
	for _, s := range bi.Settings {
		if s.Key == "CGO_ENABLED" && s.Value != "0" {
			t.Errorf("packaged binary built with CGO_ENABLED=%s, want 0", s.Value)
		}
		if s.Key == "-trimpath" && s.Value != "true" {
			t.Errorf("packaged binary built without -trimpath")
		}
	}
	if goarch == runtime.GOARCH {
		out := run(t, root, nil, bin, "version")
		if gitVersion := strings.TrimSpace(run(t, root, nil, "git", "describe", "--tags", "--always", "--dirty")); !strings.Contains(out, gitVersion) {
			t.Errorf("bulwark version = %q, want it to contain %q", out, gitVersion)
		}
	}
}

// run runs a command in dir with extra environment and returns its
// standard output, failing the test on error.
func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fsysFiles reads the regular files of the package's data archive.
func fsysFiles(t *testing.T, deb string) map[string][]byte {
	t.Helper()
	cmd := exec.Command("dpkg-deb", "--fsys-tarfile", deb)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dpkg-deb --fsys-tarfile: %v", err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(out))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatalf("data archive: %v", err)
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = b
		}
	}
}
