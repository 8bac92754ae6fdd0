package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Black-box tests for what the outside security reviews broke: each
// drives the built binary the way the reviewer's attack did.

// exemptLoopback lifts the rate limits for the test's own address, so
// what is measured is the lockout alone.
const exemptLoopback = "[auth.rate_limit]\nexempt = [\"127.0.0.0/8\"]\n"

// defaultHash is the argon2id cost an operator gets: a check long enough
// for a client to act while it runs.
const defaultHash = "[auth.password]\nargon2_memory_kib = 19456\nargon2_iterations = 2\n"

// halfClosedLogin sends one login over its own TLS connection, closes its
// write side (TLS close_notify) after delay, and returns the status it
// then reads, or 0 if none came.
func (n *testNode) halfClosedLogin(user, password string, delay time.Duration) int {
	n.t.Helper()
	pem, err := os.ReadFile(filepath.Join(n.dataDir(), "ca.pem"))
	if err != nil {
		n.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", n.apiPort), &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}})
	if err != nil {
		n.t.Fatal(err)
	}
	defer c.Close()
	body := fmt.Sprintf(`{"username":%q,"password":%q}`, user, password)
	fmt.Fprintf(c, "POST /v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	time.Sleep(delay)
	c.CloseWrite()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestBlackBoxHalfClosedLoginsCountedOnFollower: a client that sends wrong
// passwords to a follower and closes its write side while each is checked
// (review finding 1) has every one it is answered counted: at most
// max_failed_attempts are answered 401, the name locks, the right
// password is then refused, and the trail holds the failures and the lock.
func TestBlackBoxHalfClosedLoginsCountedOnFollower(t *testing.T) {
	nodes := formCluster(t, exemptLoopback+defaultHash)
	nodes[0].addUser("victim", clusterPassword, false)
	leader := leaderOf(t, nodes)
	var follower *testNode
	for _, n := range nodes {
		if n != leader {
			follower = n
			break
		}
	}
	codes := map[int]int{}
	for i := range 24 {
		code := follower.halfClosedLogin("victim", fmt.Sprintf("wrong password %d", i), time.Duration(i%8)*5*time.Millisecond)
		codes[code]++
	}
	t.Logf("answers to 24 half-closed wrong logins on %s: %v", follower.name(), codes)
	if codes[401] > 5 {
		t.Errorf("%d wrong passwords answered 401 within one lockout window, limit 5", codes[401])
	}
	if code, _ := follower.login("victim", clusterPassword); code != 429 {
		t.Errorf("the right password after 24 wrong ones: %d, want 429 (locked)", code)
	}
	tail, _, _ := leader.cli("", "audit", "tail", "-n", "100")
	if got := strings.Count(tail, "login.failure"); got < codes[401] || got < 5 {
		t.Errorf("%d login.failure audit entries for %d answered failures:\n%s", got, codes[401], tail)
	}
	if !strings.Contains(tail, "lockout") {
		t.Errorf("no lockout audit entry:\n%s", tail)
	}
}

// TestBlackBoxPasswordChangeRaceOverThreeNodes: clients log in with the
// old password on every node while the owner changes it (review finding
// 2). No session made from the old password outlives the change: once
// the change has answered and the logins in flight have ended, no token
// of theirs refreshes.
func TestBlackBoxPasswordChangeRaceOverThreeNodes(t *testing.T) {
	// Room for every session the clients make, so none of the owner's is
	// evicted by the per-user limit.
	nodes := formCluster(t, exemptLoopback+defaultHash+"[auth.sessions]\nmax_per_user = 1000\n")
	nodes[0].addUser("carol", clusterPassword, false)
	passwords := []string{clusterPassword, "second long passphrase here", "third long passphrase here", "fourth long passphrase here"}
	_, owner := nodes[0].login("carol", clusterPassword)
	bearer, _ := owner["access_token"].(string)
	for round := range 3 {
		old, next := passwords[round], passwords[round+1]
		var mu sync.Mutex
		var refresh []string // refresh tokens of sessions from the old password
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for c := range 4 {
			wg.Go(func() {
				for i := 0; i < 200; i++ {
					select {
					case <-stop:
						return
					default:
					}
					code, out := nodes[(c+i)%3].login("carol", old)
					if code == 200 {
						mu.Lock()
						refresh = append(refresh, out["refresh_token"].(string))
						mu.Unlock()
					}
				}
			})
		}
		time.Sleep(400 * time.Millisecond)
		code, out, _ := nodes[round%3].apiCall("POST", "/v1/me/password", bearer,
			map[string]string{"current_password": old, "new_password": next})
		if code != 200 {
			close(stop)
			wg.Wait()
			t.Fatalf("round %d: password change: %d %v", round, code, out)
		}
		bearer = out["access_token"].(string)
		time.Sleep(300 * time.Millisecond)
		close(stop)
		wg.Wait()
		survivors := 0
		for i, rt := range refresh {
			if code, _, _ := nodes[i%3].apiCall("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": rt}); code == 200 {
				survivors++
			}
		}
		t.Logf("round %d: %d sessions made from the old password, %d refreshed after the change", round, len(refresh), survivors)
		if survivors != 0 {
			t.Errorf("round %d: %d of %d sessions made from the replaced password still refresh", round, survivors, len(refresh))
		}
		if code, _ := nodes[0].login("carol", next); code != 200 && code != 429 {
			t.Fatalf("round %d: the new password: %d", round, code)
		}
		nodes[0].cli("", "user", "unlock", "carol") // the old password's failures
	}
}

// TestBlackBoxTimingAfterHashCostChange: after the operator raises the
// argon2id cost, a wrong password for an existing name and any password
// for an unknown name still take the same time (review finding 3): over
// 33 pairs of tries, the median ratio stays within 30%.
func TestBlackBoxTimingAfterHashCostChange(t *testing.T) {
	n := newTestNode(t, exemptLoopback+defaultHash)
	n.start()
	const users = 11
	for i := range users {
		n.addUser(fmt.Sprintf("user%02d", i), clusterPassword, false)
	}
	n.stop()
	b, err := os.ReadFile(n.config)
	if err != nil {
		t.Fatal(err)
	}
	raised := strings.Replace(string(b), "argon2_memory_kib = 19456\nargon2_iterations = 2", "argon2_memory_kib = 65536\nargon2_iterations = 3", 1)
	if raised == string(b) {
		t.Fatal("could not raise the cost in the config")
	}
	if err := os.WriteFile(n.config, []byte(raised), 0o600); err != nil {
		t.Fatal(err)
	}
	n.start()
	timed := func(name string) time.Duration {
		start := time.Now()
		if code, _ := n.login(name, "not the password at all"); code != 401 {
			t.Fatalf("%s: %d, want 401", name, code)
		}
		return time.Since(start)
	}
	timed("warmup") // the first unknown name also counts the stored hashes
	// Pairs measured back to back, in alternating order, so a busy spell
	// of the machine (other test packages run beside this one) weighs on
	// both sides of a pair: the median of the pairs' ratios is what an
	// attacker timing many pairs would learn. Each existing name is tried
	// three times, below its lockout.
	var known, unknown []time.Duration
	var ratios []float64
	for round := range 3 {
		for i := range users {
			var k, u time.Duration
			if (round*users+i)%2 == 0 {
				k = timed(fmt.Sprintf("user%02d", i))
				u = timed(fmt.Sprintf("ghost%02d-%d", i, round))
			} else {
				u = timed(fmt.Sprintf("ghost%02d-%d", i, round))
				k = timed(fmt.Sprintf("user%02d", i))
			}
			known, unknown = append(known, k), append(unknown, u)
			ratios = append(ratios, float64(u)/float64(k))
		}
	}
	slices.Sort(known)
	slices.Sort(unknown)
	slices.Sort(ratios)
	k, u, ratio := known[len(known)/2], unknown[len(unknown)/2], ratios[len(ratios)/2]
	t.Logf("after raising argon2 to m=65536,t=3: median wrong password %v for existing names, %v for unknown ones; median ratio of %d pairs %.2f",
		k, u, len(ratios), ratio)
	if ratio > 1.3 || ratio < 1/1.3 {
		t.Errorf("unknown names answer %.2f× as long as existing ones (median of %d pairs; medians %v and %v), limit 1.3×", ratio, len(ratios), u, k)
	}
}
