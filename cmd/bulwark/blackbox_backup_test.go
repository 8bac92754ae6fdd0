package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/internal/waitfor"
	"github.com/bulwark-auth/bulwark/node"
)

// sameIssuer makes tokens of the backed-up node and of the restored one
// (on other ports) comparable.
const sameIssuer = "[tokens]\nissuer = \"https://bulwark.test\"\n"

// createViaAPI creates a user over the HTTP API with an admin token. It is
// safe off the test goroutine: it reports errors instead of failing.
func createViaAPI(hc *http.Client, url, token, name, password string) error {
	body, _ := json.Marshal(map[string]string{"username": name, "password": password})
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("create %s: status %d", name, resp.StatusCode)
	}
	return nil
}

// auditExport returns the node's audit trail by seq.
func auditExport(t *testing.T, n *testNode) map[float64]map[string]any {
	t.Helper()
	out, errOut, code := n.cli("", "audit", "export")
	if code != 0 {
		t.Fatalf("audit export: %d %s", code, errOut)
	}
	entries := map[float64]map[string]any{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit export line %q: %v", sc.Text(), err)
		}
		entries[e["seq"].(float64)] = e
	}
	return entries
}

// treeState lists every file under dir with its size, mode and time.
func treeState(t *testing.T, dir string) map[string]string {
	t.Helper()
	st := map[string]string{}
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		fi, err := d.Info()
		if err != nil {
			t.Fatal(err)
		}
		st[path] = fmt.Sprintf("%d %v %d", fi.Size(), fi.Mode(), fi.ModTime().UnixNano())
		return nil
	})
	return st
}

// TestBlackBoxBackupRestore takes a backup while users are being created,
// restores it onto a fresh node with other ports, and finds there every
// user, session and audit entry acknowledged before the backup started.
func TestBlackBoxBackupRestore(t *testing.T) {
	src := newTestNode(t, sameIssuer, passwordAdmins)
	src.start()
	const pw = "correct horse battery staple"
	src.addUser("root", pw, true)
	src.addUser("alice", pw, false)
	code, aliceTok := src.login("alice", pw)
	if code != 200 {
		t.Fatalf("login alice: %d %v", code, aliceTok)
	}
	code, rootTok := src.login("root", pw)
	if code != 200 {
		t.Fatalf("login root: %d %v", code, rootTok)
	}
	// An escrow key, so that the restored node can be given the data key.
	keys := t.TempDir()
	escrowPriv, escrowPub := filepath.Join(keys, "escrow.key"), filepath.Join(keys, "escrow.pub")
	if out, err := exec.Command(src.bin, "keys", "escrow-keygen", escrowPriv, escrowPub).CombinedOutput(); err != nil {
		t.Fatalf("escrow-keygen: %v\n%s", err, out)
	}
	if out, errOut, code := src.cli("", "keys", "escrow-key", escrowPub); code != 0 {
		t.Fatalf("escrow-key: exit %d: %s%s", code, out, errOut)
	}

	// Bounded write load: at most 200 users or 3 s, recording when each
	// creation was acknowledged.
	type ack struct {
		name string
		at   time.Time
	}
	var (
		mu    sync.Mutex
		acks  []ack
		next  atomic.Int64
		wg    sync.WaitGroup
		stop  = make(chan struct{})
		hc    = src.client()
		until = time.Now().Add(3 * time.Second)
		url   = src.url("/v1/admin/users")
		root  = rootTok["access_token"].(string)
	)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(until) {
				select {
				case <-stop:
					return
				default:
				}
				i := next.Add(1)
				if i > 200 {
					return
				}
				name := fmt.Sprintf("load%03d", i)
				if err := createViaAPI(hc, url, root, name, pw); err != nil {
					t.Error(err)
					return
				}
				at := time.Now()
				mu.Lock()
				acks = append(acks, ack{name, at})
				mu.Unlock()
			}
		}()
	}
	waitfor.Nil(t, "20 users created", 5*time.Second, 10*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if n := len(acks); n < 20 {
			return fmt.Errorf("only %d users created", n)
		}
		return nil
	})
	auditBefore := auditExport(t, src)
	backupStart := time.Now()
	file := filepath.Join(t.TempDir(), "bulwark.bwbk")
	out, errOut, code := src.cli("", "backup", "create", file)
	close(stop)
	wg.Wait()
	if code != 0 || !strings.Contains(out, "backup written to "+file) {
		t.Fatalf("backup create: exit %d\n%s%s", code, out, errOut)
	}
	var before []string
	mu.Lock()
	for _, a := range acks {
		if a.at.Before(backupStart) {
			before = append(before, a.name)
		}
	}
	t.Logf("%d users acknowledged in all, %d before the backup started", len(acks), len(before))
	mu.Unlock()

	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, mode %v; want 0600", err, fi.Mode())
	}
	archive, _ := os.ReadFile(file)
	for _, secret := range []string{pw, aliceTok["refresh_token"].(string), "PRIVATE KEY"} {
		if bytes.Contains(archive, []byte(secret)) {
			t.Errorf("the backup holds %q in plain form", secret[:10])
		}
	}
	// An existing file is replaced only with --force.
	if _, errOut, code := src.cli("", "backup", "create", file); code != 1 || !strings.Contains(errOut, "--force") {
		t.Errorf("backup over an existing file: exit %d, %q", code, errOut)
	}
	if again, _ := os.ReadFile(file); !bytes.Equal(again, archive) {
		t.Error("a refused backup changed the existing file")
	}
	forced := filepath.Join(filepath.Dir(file), "forced.bwbk")
	os.WriteFile(forced, []byte("old"), 0o644)
	if _, errOut, code := src.cli("", "backup", "create", forced, "--force"); code != 0 {
		t.Errorf("backup --force: exit %d, %s", code, errOut)
	}
	if fi, err := os.Stat(forced); err != nil || fi.Size() < 1000 || fi.Mode().Perm() != 0o600 {
		t.Errorf("forced backup: %v %v", err, fi)
	}
	src.stop()

	dst := newTestNode(t, sameIssuer)

	// Restoring over a data directory that holds anything is refused and
	// changes nothing.
	stateBefore := treeState(t, src.dataDir())
	if _, errOut, code := dst.cli("", "backup", "restore", file, "--data-dir", src.dataDir()); code != 1 ||
		!strings.Contains(errOut, "not empty") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("restore into a used data directory: exit %d, %q", code, errOut)
	}
	if stateAfter := treeState(t, src.dataDir()); fmt.Sprint(stateAfter) != fmt.Sprint(stateBefore) {
		t.Errorf("a refused restore changed the data directory:\nbefore %v\nafter  %v", stateBefore, stateAfter)
	}
	// A damaged backup is refused, and leaves no data directory behind.
	tampered := filepath.Join(t.TempDir(), "tampered.bwbk")
	bad := bytes.Clone(archive)
	bad[len(bad)/2] ^= 0x01
	os.WriteFile(tampered, bad, 0o600)
	if _, errOut, code := dst.cli("", "backup", "restore", tampered); code != 1 || !strings.Contains(errOut, "damaged") {
		t.Errorf("restore of a tampered backup: exit %d, %q", code, errOut)
	}
	if _, err := os.Stat(dst.dataDir()); !os.IsNotExist(err) {
		t.Errorf("a refused restore left %s behind: %v", dst.dataDir(), err)
	}

	out, errOut, code = dst.cli("", "backup", "restore", file)
	if code != 0 || !strings.Contains(out, "restored") || !strings.Contains(out, "ca.pem") {
		t.Fatalf("restore: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("restore said:\n%s", out)
	dst.start()

	// Every user acknowledged before the backup started.
	out, _, _ = dst.cli("", "user", "list", "--json")
	for _, name := range append(before, "alice", "root") {
		if !strings.Contains(out, fmt.Sprintf("%q", name)) {
			t.Errorf("user %s, acknowledged before the backup, is not on the restored node", name)
		}
	}
	// The session: its access token and refresh token work there.
	if code, me, _ := dst.apiCall("GET", "/v1/me", aliceTok["access_token"].(string), nil); code != 200 || me["username"] != "alice" {
		t.Errorf("/v1/me with a pre-backup token on the restored node: %d %v", code, me)
	}
	// A refresh token names its session under a MAC of the cluster data
	// key, which the backup does not hold in plain form: until `keys
	// recover` it is refused, and the session survives.
	refreshBody := map[string]string{"refresh_token": aliceTok["refresh_token"].(string)}
	if code, tok, _ := dst.apiCall("POST", "/v1/auth/refresh", "", refreshBody); code != 400 || tok["error"] != "invalid_grant" {
		t.Errorf("refresh of a pre-backup session before the data key is recovered: %d %v", code, tok)
	}
	dst.stop()
	if out, errOut, code := dst.cli("", "keys", "recover", "--escrow-private-key", escrowPriv); code != 0 {
		t.Fatalf("keys recover: exit %d: %s%s", code, out, errOut)
	}
	dst.start()
	if code, tok, _ := dst.apiCall("POST", "/v1/auth/refresh", "", refreshBody); code != 200 || tok["session_id"] != aliceTok["session_id"] {
		t.Errorf("refresh of a pre-backup session on the restored node: %d %v", code, tok)
	}
	if code, _ := dst.login("alice", pw); code != 200 {
		t.Errorf("login on the restored node: %d", code)
	}
	// The audit trail: every pre-backup entry, the same, and the chain verifies.
	if out, errOut, code := dst.cli("", "audit", "verify", "--json"); code != 0 || !strings.Contains(out, `"ok": true`) {
		t.Errorf("audit verify on the restored node: %d %s %s", code, out, errOut)
	}
	auditAfter := auditExport(t, dst)
	logins := 0
	for seq, e := range auditBefore {
		got, ok := auditAfter[seq]
		if !ok || got["hash"] != e["hash"] {
			t.Errorf("audit entry %v (%v) lost or changed in the restore: %v", seq, e["type"], got)
		}
		if e["type"] == "login.success" {
			logins++
		}
	}
	if logins != 2 {
		t.Errorf("%d login.success entries before the backup, want 2", logins)
	}
	// A new cluster CA: the restored node makes its own (the old CA's key
	// is in the backup only sealed under the data key).
	oldCA, _ := os.ReadFile(filepath.Join(src.dataDir(), "ca.pem"))
	newCA, _ := os.ReadFile(filepath.Join(dst.dataDir(), "ca.pem"))
	if len(newCA) == 0 || bytes.Equal(oldCA, newCA) {
		t.Error("the restored node does not have a CA of its own")
	}
	dst.stop()
}

// TestBlackBoxRestoredClusterSharesCA: a backup holds the backed-up
// cluster's CA key sealed under the data key. A node restored from it and
// given the data key back (`keys recover`) makes a CA of its own on its
// first start, and must share that CA's key with the members that join it
// later, as a new cluster does, so that losing the restored node costs
// neither joins nor certificate renewals.
func TestBlackBoxRestoredClusterSharesCA(t *testing.T) {
	src := newClusterNode(t, "node1")
	src.start()
	// The source shares its CA key through the state before the backup.
	waitfor.True(t, "the source node shares its CA key", 15*time.Second, 50*time.Millisecond, func() bool {
		return strings.Contains(src.logs.String(), "cluster CA key shared")
	})
	keys := t.TempDir()
	priv, pub := filepath.Join(keys, "escrow.key"), filepath.Join(keys, "escrow.pub")
	if out, err := exec.Command(src.bin, "keys", "escrow-keygen", priv, pub).CombinedOutput(); err != nil {
		t.Fatalf("escrow-keygen: %v\n%s", err, out)
	}
	if out, errOut, code := src.cli("", "keys", "escrow-key", pub); code != 0 {
		t.Fatalf("escrow-key: exit %d: %s%s", code, out, errOut)
	}
	backup := filepath.Join(t.TempDir(), "cluster.bwbk")
	if out, errOut, code := src.cli("", "backup", "create", backup); code != 0 {
		t.Fatalf("backup create: exit %d: %s%s", code, out, errOut)
	}
	src.stop()

	// New hardware: restore, recover the data key, start.
	dst := newClusterNode(t, "node1")
	if out, errOut, code := dst.cli("", "backup", "restore", backup); code != 0 || !strings.Contains(out, "not restored: the old CA's key") {
		t.Fatalf("backup restore: exit %d: %s%s", code, out, errOut)
	}
	if out, errOut, code := dst.cli("", "keys", "recover", "--escrow-private-key", priv); code != 0 {
		t.Fatalf("keys recover: exit %d: %s%s", code, out, errOut)
	}
	dst.start()
	oldCA, _ := os.ReadFile(filepath.Join(src.dataDir(), "ca.pem"))
	newCA, _ := os.ReadFile(filepath.Join(dst.dataDir(), "ca.pem"))
	if len(newCA) == 0 || bytes.Equal(oldCA, newCA) {
		t.Fatal("the restored node does not have a CA of its own")
	}

	// A member joined later adopts the restored cluster's CA key: it can
	// admit nodes itself, and its join tokens name it.
	node2 := newClusterNode(t, "node2")
	node2.startJoin(dst.joinToken())
	dst.waitCAHolders(2, 15*time.Second)
	p, err := node.ParseJoinToken(node2.joinToken())
	if err != nil || !slices.Contains(p.Addrs, node2.clusterAddr()) || !slices.Contains(p.Addrs, dst.clusterAddr()) {
		t.Errorf("token made on node2: %+v, %v; want it to name node2 (%s) and node1 (%s)",
			p, err, node2.clusterAddr(), dst.clusterAddr())
	}
	// node2 counts as a holder once the key is in its keystore; the
	// adoption's audit entry is committed just after.
	waitfor.Nil(t, "node2's adoption of the CA key audited", 10*time.Second, 100*time.Millisecond, func() error {
		if audit, _, _ := dst.cli("", "audit", "tail", "-n", "100"); strings.Count(audit, "cluster.ca_key_adopted") != 1 {
			return fmt.Errorf("the restored cluster's audit trail lacks node2's adoption of the CA key:\n%s", audit)
		}
		return nil
	})
	if strings.Contains(dst.logs.String(), "another cluster CA") {
		t.Error("the restored node refused to share its CA key")
	}
}
