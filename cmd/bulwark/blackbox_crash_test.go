package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// adminSocketClient talks to n's admin API over its Unix socket, as the
// CLI does, without a process per request.
func (n *testNode) adminSocketClient() *http.Client {
	sock := filepath.Join(n.dataDir(), "admin.sock")
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
}

// TestBlackBoxKill9Repeated kills a node with SIGKILL five times in the
// middle of heavy writes (users created over the admin socket, each then
// logged in, from four clients). After every kill, before the restart,
// state.db and raft.db pass bbolt's consistency check and the audit trail
// verifies; every restart comes up, and every write acknowledged before
// any of the kills is there: each user, and each session (/v1/me).
func TestBlackBoxKill9Repeated(t *testing.T) {
	n := newTestNode(t, "[auth.rate_limit]\nexempt = [\"127.0.0.0/8\"]\n")
	const pw = "correct horse battery staple"
	type acked struct{ user, token string }
	var all, last []acked
	// verify counts the writes in ws that the running node has lost.
	verify := func(ws []acked) int {
		t.Helper()
		if !strings.Contains(n.logs.String(), "not closed cleanly") {
			t.Error("the restart did not notice the unclean shutdown")
		}
		list, errOut, c := n.cli("", "user", "list", "--json")
		if c != 0 {
			t.Fatalf("user list: %s", errOut)
		}
		lost := 0
		for _, a := range ws {
			if a.token == "" {
				if !strings.Contains(list, `"`+a.user+`"`) {
					t.Errorf("user %s, acknowledged, lost in the crashes", a.user)
					lost++
				}
			} else if code, _, _ := n.apiCall("GET", "/v1/me", a.token, nil); code != 200 {
				t.Errorf("session of %s, acknowledged, lost in the crashes: /v1/me %d", a.user, code)
				lost++
			}
			if lost > 10 {
				t.Fatal("more than 10 acknowledged writes lost")
			}
		}
		return lost
	}
	for cycle := 0; cycle < 5; cycle++ {
		n.start()
		if cycle > 0 && verify(last) > 0 {
			t.Fatalf("cycle %d: the restart lost acknowledged writes of the kill before", cycle)
		}
		var (
			mu     sync.Mutex
			got    []acked
			failed int
			wg     sync.WaitGroup
			stop   = make(chan struct{})
			admin  = n.adminSocketClient()
			client = n.client()
		)
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 500; i++ {
					select {
					case <-stop:
						return
					default:
					}
					name := fmt.Sprintf("c%dw%du%d", cycle, w, i)
					code, _, _, err := rawCall(admin, "http://bulwark/admin/v1/users", "", map[string]string{"username": name, "password": pw})
					if err != nil || code != 201 {
						mu.Lock()
						failed++
						mu.Unlock()
						continue
					}
					mu.Lock()
					got = append(got, acked{user: name})
					mu.Unlock()
					code, out, _, err := rawCall(client, n.url("/v1/auth/login"), "", map[string]string{"username": name, "password": pw})
					if err != nil || code != 200 {
						mu.Lock()
						failed++ // killed in flight: not acknowledged
						mu.Unlock()
						continue
					}
					mu.Lock()
					got = append(got, acked{user: name, token: out["access_token"].(string)})
					mu.Unlock()
				}
			}()
		}
		// Kill once the workload is well under way: at least 60
		// acknowledged writes this cycle (more each cycle, so the kill
		// lands at a different point of the stream), or 4 s.
		waitStart := time.Now()
		for time.Since(waitStart) < 4*time.Second {
			mu.Lock()
			k := len(got)
			mu.Unlock()
			if k >= 60+cycle*15 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		close(stop) // the writes in flight are cut off by the kill
		n.cmd.Process.Kill()
		<-n.exited
		wg.Wait()
		mu.Lock()
		t.Logf("cycle %d: killed after %v; %d acknowledged writes, %d cut off", cycle,
			time.Since(waitStart).Round(time.Millisecond), len(got), failed)
		all, last = append(all, got...), got
		mu.Unlock()
		if len(got) == 0 {
			t.Fatalf("cycle %d: no write was acknowledged before the kill", cycle)
		}

		checkBolt(t, filepath.Join(n.dataDir(), "state.db"))
		checkBolt(t, filepath.Join(n.dataDir(), "raft", "raft.db"))
		if out, errOut, c := n.cli("", "audit", "verify", "--data-dir", n.dataDir()); c != 0 {
			t.Errorf("cycle %d: audit verify after the kill: exit %d %s %s", cycle, c, out, errOut)
		}
		if t.Failed() {
			return
		}
	}

	n.start()
	if lost := verify(all); lost > 0 {
		t.Errorf("%d of %d acknowledged writes lost over 5 kills", lost, len(all))
	}
	t.Logf("%d acknowledged writes over 5 kills, all there", len(all))
}
