package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/internal/waitfor"
)

// dataKeyFingerprints runs `keys datakey-fingerprint --json` (extra args
// first) and returns the keystore's and the state's fingerprints.
func (n *testNode) dataKeyFingerprints(extra ...string) (keystore, cluster string, match *bool) {
	n.t.Helper()
	out, errOut, code := n.cli("", append([]string{"keys", "datakey-fingerprint", "--json"}, extra...)...)
	if code != 0 {
		n.t.Fatalf("keys datakey-fingerprint %v: exit %d: %s%s", extra, code, out, errOut)
	}
	var v struct {
		Keystore string `json:"keystore"`
		Cluster  string `json:"cluster"`
		Match    *bool  `json:"match"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		n.t.Fatalf("datakey-fingerprint --json: %v: %q", err, out)
	}
	return v.Keystore, v.Cluster, v.Match
}

// TestBlackBoxEscrowRecovery is docs/recovery.md end to end: escrow the
// data key and issue shares on a running node, back it up, lose every
// machine, restore the backup on new hardware, and recover the data key
// there with two of three shares, and separately with the escrow key.
func TestBlackBoxEscrowRecovery(t *testing.T) {
	src := newTestNode(t)
	src.start()
	const pw = "correct horse battery staple"
	src.addUser("alice", pw, false)

	// The operator makes an escrow key pair offline.
	keys := t.TempDir()
	priv, pub := filepath.Join(keys, "escrow.key"), filepath.Join(keys, "escrow.pub")
	out, err := exec.Command(src.bin, "keys", "escrow-keygen", priv, pub).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "fingerprint:") {
		t.Fatalf("escrow-keygen: %v\n%s", err, out)
	}
	if fi, err := os.Stat(priv); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key file: %v, mode %v; want 0600", err, fi.Mode())
	}
	if out, err := exec.Command(src.bin, "keys", "escrow-keygen", priv, pub).CombinedOutput(); err == nil || !strings.Contains(string(out), "exists") {
		t.Errorf("escrow-keygen over existing files: %v %s", err, out)
	}

	// Escrow, once per public key.
	if out, errOut, code := src.cli("", "keys", "escrow-key", pub); code != 0 || !strings.Contains(out, "escrowed the cluster data key") {
		t.Fatalf("escrow-key: exit %d: %s%s", code, out, errOut)
	}
	if _, errOut, code := src.cli("", "keys", "escrow-key", pub); code != 1 || !strings.Contains(errOut, "already escrowed") {
		t.Errorf("second escrow-key: exit %d, %q", code, errOut)
	}
	if _, errOut, code := src.cli("", "keys", "escrow-key", priv); code != 1 || !strings.Contains(errOut, "ESCROW PUBLIC KEY") {
		t.Errorf("escrow-key with the private file: exit %d, %q", code, errOut)
	}

	// Shares, printed once.
	if _, _, code := src.cli("", "keys", "recovery-shares", "--threshold", "1", "--shares", "3"); code != 2 {
		t.Errorf("recovery-shares --threshold 1: exit %d, want 2", code)
	}
	out2, errOut, code := src.cli("", "keys", "recovery-shares", "--threshold", "2", "--shares", "3")
	if code != 0 {
		t.Fatalf("recovery-shares: exit %d: %s", code, errOut)
	}
	var shares []string
	for _, m := range regexp.MustCompile(`(?m)^share (\d) of 3: (bwshare1-\S+)$`).FindAllStringSubmatch(out2, -1) {
		shares = append(shares, m[2])
	}
	if len(shares) != 3 {
		t.Fatalf("recovery-shares printed:\n%s", out2)
	}
	if _, errOut, code := src.cli("", "keys", "recovery-shares", "--threshold", "2", "--shares", "3"); code != 1 ||
		!strings.Contains(errOut, "recovery shares were already issued at") {
		t.Errorf("second recovery-shares: exit %d, %q", code, errOut)
	}

	// The original key, read from the running node's keystore.
	want, cluster, _ := src.dataKeyFingerprints()
	if len(want) != 64 || cluster != "" {
		t.Fatalf("datakey-fingerprint on a running node: %q, cluster %q", want, cluster)
	}
	// Recovery refuses a running daemon.
	if _, errOut, code := src.cli("", "keys", "recover", "--share", shares[0], "--share", shares[1]); code != 1 || !strings.Contains(errOut, "running") {
		t.Errorf("recover while running: exit %d, %q", code, errOut)
	}

	backup := filepath.Join(t.TempDir(), "cluster.bwbk")
	if out, errOut, code := src.cli("", "backup", "create", backup); code != 0 {
		t.Fatalf("backup create: exit %d: %s%s", code, out, errOut)
	}
	src.stop()
	if _, cluster, match := src.dataKeyFingerprints(); cluster != want || match == nil || !*match {
		t.Errorf("stopped node: cluster %q, match %v; want %s", cluster, match, want)
	}
	archive, _ := os.ReadFile(backup)
	for _, s := range shares {
		if bytes.Contains(archive, []byte(s[9:40])) || strings.Contains(src.logs.String(), s[9:40]) {
			t.Error("a share is in the backup or the logs")
		}
	}

	// New hardware: the backup restored into an empty data directory,
	// which has no keystore yet.
	dst := newTestNode(t)
	if out, errOut, code := dst.cli("", "backup", "restore", backup); code != 0 {
		t.Fatalf("backup restore: exit %d: %s%s", code, out, errOut)
	}
	if _, errOut, code := dst.cli("", "keys", "recover", "--share", shares[1]); code != 1 || !strings.Contains(errOut, "2 of the 3 are needed") {
		t.Errorf("recover with one share: exit %d, %q", code, errOut)
	}
	bad := []byte(shares[2])
	bad[15] = map[bool]byte{true: 'B', false: 'A'}[bad[15] == 'A']
	if _, errOut, code := dst.cli("", "keys", "recover", "--share", shares[0], "--share", string(bad)); code != 1 || !strings.Contains(errOut, "mistyped") {
		t.Errorf("recover with a mistyped share: exit %d, %q", code, errOut)
	}
	if _, errOut, code := dst.cli("", "keys", "datakey-fingerprint"); code != 1 || !strings.Contains(errOut, "no keystore") {
		t.Errorf("datakey-fingerprint before recovery: exit %d, %q", code, errOut)
	}
	out3, errOut, code := dst.cli("", "keys", "recover", "--share", shares[0], "--share", shares[2])
	if code != 0 || !strings.Contains(out3, "recovered the cluster data key "+want) {
		t.Fatalf("recover with shares 1 and 3: exit %d: %s%s", code, out3, errOut)
	}
	if got, cluster, match := dst.dataKeyFingerprints(); got != want || cluster != want || !*match {
		t.Fatalf("after recovery: keystore %s, cluster %s; want %s", got, cluster, want)
	}
	// The restored node serves with the recovered key and its users.
	dst.start()
	if _, errOut, code := dst.cli("", "user", "show", "alice"); code != 0 {
		t.Errorf("alice on the restored node: %s", errOut)
	}
	waitfor.True(t, "the restored node confirms its data key", 10*time.Second, 20*time.Millisecond, func() bool {
		return strings.Contains(dst.logs.String(), "cluster data key registered")
	})
	if strings.Contains(dst.logs.String(), "mismatch") {
		t.Error("the restored node reports a data key mismatch")
	}
	dst.stop()

	// Separately: another restore, recovered with the escrow private key.
	other := filepath.Join(t.TempDir(), "data")
	if out, errOut, code := dst.cli("", "backup", "restore", backup, "--data-dir", other); code != 0 {
		t.Fatalf("second restore: exit %d: %s%s", code, out, errOut)
	}
	out4, errOut, code := dst.cli("", "keys", "recover", "--data-dir", other, "--escrow-private-key", priv)
	if code != 0 || !strings.Contains(out4, "from the escrow to") {
		t.Fatalf("recover with the escrow key: exit %d: %s%s", code, out4, errOut)
	}
	if got, cluster, _ := dst.dataKeyFingerprints("--data-dir", other); got != want || cluster != want {
		t.Fatalf("after escrow recovery: keystore %s, cluster %s; want %s", got, cluster, want)
	}
	// Again: nothing to do.
	if out, _, code := dst.cli("", "keys", "recover", "--data-dir", other, "--escrow-private-key", priv); code != 0 || !strings.Contains(out, "nothing to do") {
		t.Errorf("second recover: exit %d: %s", code, out)
	}
}
