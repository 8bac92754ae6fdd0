package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/internal/boltcheck"

	"github.com/bulwark-auth/bulwark/internal/waitfor"
)

// mountTiny puts a filesystem of mib MiB at dir: ext4 in a loop-mounted
// image, or else tmpfs with a size limit. It skips the test when this
// process may not mount (the tests run as root in CI). The cleanup kills
// n's process first, since a busy filesystem cannot be unmounted.
func mountTiny(t *testing.T, n *testNode, dir string, mib int) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	kind := "ext4"
	img := filepath.Join(t.TempDir(), "disk.img")
	err := exec.Command("truncate", "-s", fmt.Sprintf("%dM", mib), img).Run()
	if err == nil {
		err = exec.Command("mkfs.ext4", "-q", "-m", "0", img).Run()
	}
	if err == nil {
		err = exec.Command("mount", "-o", "loop", img, dir).Run()
	}
	if err != nil {
		kind = "tmpfs"
		if out, err2 := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm,mode=0700", mib), "tmpfs", dir).CombinedOutput(); err2 != nil {
			t.Skipf("cannot mount a small filesystem for the data directory (ext4 on a loop device: %v; tmpfs: %v %s); run as root", err, err2, out)
		}
	}
	t.Cleanup(func() {
		if n.running() {
			n.cmd.Process.Kill()
			<-n.done
		}
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	os.Remove(filepath.Join(dir, "lost+found"))
	return kind
}

// fill writes a file at path until the disk refuses more, and returns how
// much it wrote.
func fill(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte{0xa5}, 64<<10)
	var total int64
	for i := 0; i < 1<<14; i++ { // at most 1 GiB: the disk is a few MiB
		k, err := f.Write(chunk)
		total += int64(k)
		if err == nil {
			continue
		}
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("filling the disk: %v", err)
		}
		// ext4 may take a few more bytes once the chunk no longer fits.
		for j := 0; j < 1<<12; j++ {
			k, err := f.Write(chunk[:4096])
			total += int64(k)
			if err != nil {
				break
			}
		}
		f.Sync()
		return total
	}
	t.Fatal("the disk never filled")
	return 0
}

// checkBolt runs bbolt's consistency check on a stopped node's file.
func checkBolt(t *testing.T, path string) {
	t.Helper()
	if err := boltcheck.Check(path); err != nil {
		t.Error(err)
	}
}

// rawCall is apiCall for goroutines other than the test's: it reports
// instead of failing the test.
func rawCall(c *http.Client, url, bearer string, body any) (int, map[string]any, http.Header, error) {
	var rd io.Reader
	method := "GET"
	if body != nil {
		b, _ := json.Marshal(body)
		rd, method = bytes.NewReader(b), "POST"
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	// An answer cut off mid-body (a node killed as it wrote it) is no
	// answer: its status line alone acknowledged nothing.
	out := map[string]any{}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil && !errors.Is(err, io.EOF) {
		return resp.StatusCode, out, resp.Header, fmt.Errorf("reading the answer of %s: %w", url, err)
	}
	return resp.StatusCode, out, resp.Header, nil
}

// TestBlackBoxDiskFull runs a node whose data directory is a 24 MiB
// filesystem, fills it under a load of logins, and checks that writes are
// refused with 503 disk_full and a log line naming the data directory,
// that sessions, JWKS and /readyz go on answering, that the node neither
// crashes nor corrupts anything, and that it accepts writes again, without
// a restart, once the filler is removed.
func TestBlackBoxDiskFull(t *testing.T) {
	// Room for every session the clients make: none is evicted by the
	// per-user limit, so each acknowledged one must be there at the end.
	n := newTestNode(t, "[auth.rate_limit]\nexempt = [\"127.0.0.0/8\"]\n[auth.sessions]\nmax_per_user = 10000\n")
	kind := mountTiny(t, n, n.dataDir(), 24)
	n.start()
	const pw = "correct horse battery staple"
	for i := 0; i < 4; i++ {
		n.addUser(fmt.Sprintf("user%d", i), pw, false)
	}
	before := n.loginOK("user0", pw)

	// Logins from four clients while a filler takes the rest of the disk.
	var (
		mu       sync.Mutex
		acked    []string // access tokens of acknowledged sessions
		answers  = map[string]int{}
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		client   = n.client()
		loginURL = n.url("/v1/auth/login")
	)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				code, out, _, err := rawCall(client, loginURL, "", map[string]string{"username": fmt.Sprintf("user%d", w), "password": pw})
				mu.Lock()
				switch {
				case err != nil:
					answers["error"]++
				case code == 200:
					acked = append(acked, out["access_token"].(string))
					answers["200"]++
				default:
					answers[fmt.Sprintf("%d %v", code, out["error"])]++
				}
				mu.Unlock()
				if code != 200 {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond) // a few logins before the disk fills
	filler := filepath.Join(n.dataDir(), "filler")
	filled := fill(t, filler)

	// Writes are refused, clearly, and the log names the data directory.
	var code int
	var out map[string]any
	var hdr http.Header
	waitfor.True(t, "a login refused for a full disk", 10*time.Second, 50*time.Millisecond, func() bool {
		code, out, hdr = n.apiCall("POST", "/v1/auth/login", "", map[string]string{"username": "user1", "password": pw})
		return code == 503
	})
	if out["error"] != "disk_full" || hdr.Get("Retry-After") == "" {
		t.Errorf("login on a full disk: %d %v, Retry-After %q; want 503 disk_full with Retry-After", code, out, hdr.Get("Retry-After"))
	}
	if _, errOut, c := n.cli(pw+"\n", "user", "add", "late", "--password-stdin"); c == 0 || !strings.Contains(errOut, "disk") {
		t.Errorf("user add on a full disk: exit %d, %q; want a failure that names the disk", c, errOut)
	}
	// The line is written before the first refusal; stderr reaches the
	// test through a pipe, so give it a moment.
	if _, ok := waitfor.Poll(5*time.Second, 50*time.Millisecond, func() bool {
		logs := n.logs.String()
		return strings.Contains(logs, "disk full") && strings.Contains(logs, n.dataDir())
	}); !ok {
		t.Errorf("no log line says the disk of %s is full", n.dataDir())
	}

	// Reads go on: session checks, JWKS, readiness, the user list.
	if code, _, _ := n.apiCall("GET", "/v1/me", before, nil); code != 200 {
		t.Errorf("/v1/me of a session from before, on a full disk: %d", code)
	}
	if code, _, _ := n.apiCall("GET", "/.well-known/jwks.json", "", nil); code != 200 {
		t.Errorf("JWKS on a full disk: %d", code)
	}
	// /readyz stays 200: the node serves what it holds (session checks,
	// JWKS), and a load balancer that drained it would take those away
	// too; writes answer 503 disk_full, which clients retry.
	// A write committed to the log as the disk filled may wait a moment
	// for the reserve's space before state.db applies it ("applying"):
	// readiness returns once it has, with the disk still full.
	var ready int
	var readyOut map[string]any
	waitfor.Poll(10*time.Second, 100*time.Millisecond, func() bool {
		ready, readyOut, _ = n.apiCall("GET", "/readyz", "", nil)
		return ready == 200
	})
	if ready != 200 {
		t.Errorf("/readyz on a full disk: %d %v", ready, readyOut)
	}
	if outList, errOut, c := n.cli("", "user", "list", "--json"); c != 0 || !strings.Contains(outList, `"user3"`) {
		t.Errorf("user list on a full disk: exit %d %s", c, errOut)
	}
	// Still full a second later (no write slipped through and crashed it).
	time.Sleep(time.Second)
	if !n.running() {
		t.Fatalf("bulwark exited on a full disk")
	}
	if code, out := n.login("user2", pw); code != 503 || out["error"] != "disk_full" {
		t.Errorf("login on a full disk a second later: %d %v", code, out)
	}

	// Space returns: writes succeed again, no restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	after := n.loginOK("user3", pw)
	close(stop)
	wg.Wait()
	t.Logf("%s data directory, %d MiB of filler; workload answers %v", kind, filled>>20, answers)
	if strings.Contains(n.logs.String(), "panic") {
		t.Error("the node panicked")
	}
	if !strings.Contains(n.logs.String(), "writes are accepted again") {
		t.Error("no log line says writes are accepted again")
	}
	if _, errOut, c := n.cli(pw+"\n", "user", "add", "late", "--password-stdin"); c != 0 {
		t.Errorf("user add once space returned: %s", errOut)
	}
	// Every acknowledged session is there, before and after a restart.
	mu.Lock()
	tokens := append([]string{before, after}, acked...)
	mu.Unlock()
	checkSessions := func(when string) {
		t.Helper()
		for i, tok := range tokens {
			if code, _, _ := n.apiCall("GET", "/v1/me", tok, nil); code != 200 {
				t.Errorf("%s: acknowledged session %d of %d: /v1/me %d", when, i, len(tokens), code)
			}
		}
	}
	checkSessions("space returned")
	n.stop()
	checkBolt(t, filepath.Join(n.dataDir(), "state.db"))
	checkBolt(t, filepath.Join(n.dataDir(), "raft", "raft.db"))
	if outV, errOut, c := n.cli("", "audit", "verify", "--data-dir", n.dataDir()); c != 0 {
		t.Errorf("audit verify after the disk was full: exit %d %s %s", c, outV, errOut)
	}
	n.start()
	checkSessions("restart")
}
