package scorecard

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ReadHost reads the host's facts: the data directory's ownership and
// modes, and this process's sandbox.
func ReadHost(dataDir string) (DataDirFacts, SandboxFacts) {
	sb := SandboxFacts{UnderSystemd: os.Getenv("INVOCATION_ID") != ""}
	f, err := os.Open("/proc/self/status")
	if err == nil {
		err = readStatus(f, &sb)
		f.Close()
	}
	sb.Err = err
	return readDataDir(dataDir, os.Geteuid()), sb
}

// maxLoose bounds the names DataDirFacts.Loose lists, and maxWalk the
// entries readDataDir looks at.
const (
	maxLoose = 5
	maxWalk  = 10_000
)

// publicFiles may be readable by everyone: certificates, public by
// nature (clients trust the CA's).
var publicFiles = map[string]bool{"ca.pem": true, "tls/node.pem": true}

func readDataDir(dir string, uid int) DataDirFacts {
	d := DataDirFacts{Path: dir, DaemonUID: uid}
	fi, err := os.Stat(dir)
	if err != nil {
		d.Err = err
		return d
	}
	d.Mode = fi.Mode()
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		d.Err = errors.New("no owner information on this system")
		return d
	}
	d.OwnerUID = int(st.Uid)
	seen := 0
	loose := 0
	err = filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable: what can be read is judged
		}
		if seen++; seen > maxWalk {
			return filepath.SkipAll
		}
		if !e.Type().IsRegular() {
			return nil // files are judged: the directory itself above, the admin socket by its own rule
		}
		info, err := e.Info()
		if err != nil || info.Mode().Perm()&0o077 == 0 {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		if publicFiles[rel] {
			return nil
		}
		if loose++; loose <= maxLoose {
			d.Loose = append(d.Loose, fmt.Sprintf("%s (%04o)", rel, info.Mode().Perm()))
		}
		return nil
	})
	if loose > maxLoose {
		d.Loose = append(d.Loose, fmt.Sprintf("and %d more", loose-maxLoose))
	}
	if err != nil {
		d.Err = err
	}
	return d
}

// readStatus reads NoNewPrivs, Seccomp, CapEff and CapBnd from
// /proc/self/status.
func readStatus(r io.Reader, sb *SandboxFacts) error {
	found := 0
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		var err error
		switch key {
		case "NoNewPrivs":
			sb.NoNewPrivs, found = val == "1", found+1
		case "Seccomp":
			sb.Seccomp, err = strconv.Atoi(val)
			found++
		case "CapEff":
			sb.CapEff, err = strconv.ParseUint(val, 16, 64)
			found++
		case "CapBnd":
			sb.CapBnd, err = strconv.ParseUint(val, 16, 64)
			found++
		}
		if err != nil {
			return fmt.Errorf("/proc/self/status: %s: %w", key, err)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if found < 4 {
		return errors.New("/proc/self/status lacks NoNewPrivs, Seccomp, CapEff or CapBnd")
	}
	return nil
}
