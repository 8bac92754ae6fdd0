package packaging_test

import (
	"bytes"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestDebInstallsAndPurges installs the package on this machine with dpkg,
// as an operator does, checks the files, the user, the permissions and
// that no node was started, then purges it and checks it left nothing but
// the data directory (which holds keys, and is kept on purpose). It
// changes the machine, so it runs only as root, and never where bulwark
// is installed already; CI machines are fresh.
func TestDebInstallsAndPurges(t *testing.T) {
	if testing.Short() {
		t.Skip("installs a package")
	}
	if os.Geteuid() != 0 {
		t.Skip("dpkg -i needs root")
	}
	for _, tool := range []string{"dpkg", "dpkg-deb", "go", "git"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found", tool)
		}
	}
	if exec.Command("dpkg", "-s", "bulwark").Run() == nil {
		t.Skip("a bulwark package is installed on this machine; not touching it")
	}
	for _, p := range []string{"/usr/bin/bulwark", "/etc/bulwark", "/var/lib/bulwark"} {
		if _, err := os.Stat(p); err == nil {
			t.Skipf("%s exists; not touching this machine", p)
		}
	}
	_, userExisted := user.Lookup("bulwark")
	root := strings.TrimSpace(run(t, "..", nil, "git", "rev-parse", "--show-toplevel"))
	epoch := strings.TrimSpace(run(t, root, nil, "git", "log", "-1", "--format=%ct"))
	dist := filepath.Join(t.TempDir(), "dist")
	run(t, root, []string{"DIST=" + dist, "PACKAGERS=deb", "SOURCE_DATE_EPOCH=" + epoch}, "sh", "packaging/build.sh", "package")
	debs, _ := filepath.Glob(filepath.Join(dist, "*.deb"))
	if len(debs) != 1 {
		t.Fatalf("built %v", debs)
	}
	t.Cleanup(func() {
		exec.Command("dpkg", "--purge", "bulwark").Run()
		os.RemoveAll("/var/lib/bulwark")
		if userExisted != nil {
			exec.Command("userdel", "bulwark").Run()
		}
	})

	out := run(t, root, nil, "dpkg", "-i", debs[0])
	if !strings.Contains(out, "not started") {
		t.Errorf("the install did not say the node is not started:\n%s", out)
	}
	u, err := user.Lookup("bulwark")
	if err != nil {
		t.Fatalf("no bulwark user after install: %v", err)
	}
	g, err := user.LookupGroup("bulwark")
	if err != nil {
		t.Fatalf("no bulwark group: %v", err)
	}
	want := []struct {
		path       string
		mode       os.FileMode
		uid, gid   string
		isDir      bool
		executable bool
	}{
		{"/usr/bin/bulwark", 0o755, "0", "0", false, true},
		{"/usr/lib/systemd/system/bulwark.service", 0o644, "0", "0", false, false},
		{"/usr/lib/sysusers.d/bulwark.conf", 0o644, "0", "0", false, false},
		{"/usr/lib/tmpfiles.d/bulwark.conf", 0o644, "0", "0", false, false},
		{"/etc/bulwark/bulwark.toml", 0o640, "0", g.Gid, false, false},
		{"/usr/share/bulwark/alerts.yml", 0o644, "0", "0", false, false},
		{"/var/lib/bulwark", 0o700, u.Uid, g.Gid, true, false},
	}
	for _, w := range want {
		st, err := os.Stat(w.path)
		if err != nil {
			t.Errorf("%s: %v", w.path, err)
			continue
		}
		sys := st.Sys().(*syscall.Stat_t)
		if st.Mode().Perm() != w.mode || st.IsDir() != w.isDir {
			t.Errorf("%s: mode %v, want %v", w.path, st.Mode(), w.mode)
		}
		if uid, gid := itoa(sys.Uid), itoa(sys.Gid); uid != w.uid || gid != w.gid {
			t.Errorf("%s: owner %s:%s, want %s:%s", w.path, uid, gid, w.uid, w.gid)
		}
	}
	if v, err := exec.Command("/usr/bin/bulwark", "version").CombinedOutput(); err != nil || !bytes.HasPrefix(v, []byte("bulwark ")) {
		t.Errorf("installed binary: %s %v", v, err)
	}
	// Nothing was started: no keys were made.
	if entries, _ := os.ReadDir("/var/lib/bulwark"); len(entries) != 0 {
		t.Errorf("the install created state: %v", entries)
	}

	run(t, root, nil, "dpkg", "--purge", "bulwark")
	for _, gone := range []string{"/usr/bin/bulwark", "/usr/lib/systemd/system/bulwark.service", "/etc/bulwark/bulwark.toml", "/usr/share/bulwark/alerts.yml"} {
		if _, err := os.Stat(gone); !os.IsNotExist(err) {
			t.Errorf("%s is still there after purge", gone)
		}
	}
	if exec.Command("dpkg", "-s", "bulwark").Run() == nil {
		t.Error("dpkg still lists bulwark after purge")
	}
}

func itoa(n uint32) string {
	b := []byte{}
	for {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
		if n == 0 {
			return string(b)
		}
	}
}
