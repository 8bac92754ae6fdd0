package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/internal/waitfor"
	"github.com/bulwark-auth/bulwark/node"
)

// clusterIssuer is every test node's tokens.issuer: a cluster behind one
// name, so a token from any node verifies on every other.
const clusterIssuer = "https://bulwark.test"

// newClusterNode writes the config of a node named name on free loopback
// ports, with the shared issuer; it is started by start or startJoin.
func newClusterNode(t *testing.T, name string, extra ...string) *testNode {
	t.Helper()
	return newNamedTestNode(t, name, append([]string{fmt.Sprintf("[tokens]\nissuer = %q\n", clusterIssuer)}, extra...)...)
}

// startJoin runs `serve --join token` and waits until the node is ready.
func (n *testNode) startJoin(token string) {
	n.t.Helper()
	n.launch("--join", token)
}

func (n *testNode) joinToken(args ...string) string {
	n.t.Helper()
	// An election in progress (a loaded machine, 300 ms heartbeats) is
	// answered "try again shortly"; an operator would, and so does this.
	var out, errOut string
	var code int
	waitfor.Poll(10*time.Second, 100*time.Millisecond, func() bool {
		out, errOut, code = n.cli("", append([]string{"cluster", "join-token"}, args...)...)
		return code == 0 || !strings.Contains(errOut, "try again shortly")
	})
	tok := strings.TrimSuffix(out, "\n")
	if code != 0 || !strings.HasPrefix(tok, "bwj1.") || strings.ContainsAny(tok, " \n") {
		n.t.Fatalf("cluster join-token: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	return tok
}

type clusterStatusJSON struct {
	Leader string `json:"leader"`
	Nodes  []struct {
		ID           string `json:"id"`
		Address      string `json:"address"`
		Suffrage     string `json:"suffrage"`
		Leader       bool   `json:"leader"`
		Reachable    bool   `json:"reachable"`
		AppliedIndex uint64 `json:"applied_index"`
		Lag          uint64 `json:"lag"`
		CAHolder     bool   `json:"ca_holder"`
	} `json:"nodes"`
}

// jwksKids is the sorted, comma-joined kids of the node's JWKS.
func (n *testNode) jwksKids() string {
	n.t.Helper()
	resp, err := n.client().Get(n.url("/.well-known/jwks.json"))
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil || resp.StatusCode != 200 {
		n.t.Fatalf("JWKS: %d %v", resp.StatusCode, err)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.Kid)
	}
	slices.Sort(kids)
	return strings.Join(kids, ",")
}

func (n *testNode) clusterStatus() clusterStatusJSON {
	n.t.Helper()
	out, errOut, code := n.cli("", "cluster", "status", "--json")
	if code != 0 {
		n.t.Fatalf("cluster status --json: exit %d: %s", code, errOut)
	}
	var st clusterStatusJSON
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		n.t.Fatalf("cluster status --json: %v: %q", err, out)
	}
	return st
}

// TestBlackBoxClusterJoin forms a three-node cluster the operator's way:
// one node, two join tokens, two `serve --join`.
func TestBlackBoxClusterJoin(t *testing.T) {
	node1 := newClusterNode(t, "node1")
	node1.start()
	tok2 := node1.joinToken()
	tok3 := node1.joinToken("--ttl", "10m")
	if tok2 == tok3 {
		t.Fatal("two join tokens are the same")
	}
	// Each node takes its ports just before it starts, so that no
	// connection of the running ones has taken them meanwhile.
	node2 := newClusterNode(t, "node2")
	node2.startJoin(tok2)
	node3 := newClusterNode(t, "node3")
	node3.startJoin(tok3)

	// Every node shows the same CA; the joiners were promoted to voters.
	ca1, _ := os.ReadFile(filepath.Join(node1.dataDir(), "ca.pem"))
	for _, n := range []*testNode{node2, node3} {
		if ca, _ := os.ReadFile(filepath.Join(n.dataDir(), "ca.pem")); string(ca) != string(ca1) {
			t.Fatalf("%s has another ca.pem", n.dir)
		}
	}
	waitfor.Nil(t, "three reachable voters and a leader", 20*time.Second, 100*time.Millisecond, func() error {
		st := node1.clusterStatus()
		voters, leaders := 0, 0
		for _, m := range st.Nodes {
			if m.Suffrage == "voter" && m.Reachable {
				voters++
			}
			if m.Leader {
				leaders++
			}
		}
		if voters == 3 && leaders == 1 && len(st.Nodes) == 3 && st.Leader != "" {
			return nil
		}
		return fmt.Errorf("cluster status after the joins: %+v", st)
	})
	if out, _, code := node2.cli("", "cluster", "status"); code != 0 || !strings.Contains(out, "node3") || !strings.Contains(out, "node2 (this node)") {
		t.Errorf("cluster status on node2: exit %d: %s", code, out)
	}
	// The joined nodes hold the cluster's data key, sealed by their own sealer.
	want, _, _ := node1.dataKeyFingerprints()
	for _, n := range []*testNode{node2, node3} {
		if got, _, _ := n.dataKeyFingerprints(); got != want {
			t.Errorf("%s holds data key %s, node1 %s", n.dir, got, want)
		}
	}
	// join-token works on any member, and the token sends the joiner to
	// the members holding the CA key. node1 made it; node2 and node3 hold
	// it once they have adopted the shared key, which races with this
	// line. So a token made on node2 now names node1 and CA holders only
	// (holding is for good, so the status read after the token covers
	// every holder it names) ...
	p, err := node.ParseJoinToken(node2.joinToken())
	holders := map[string]bool{}
	for _, m := range node1.clusterStatus().Nodes {
		holders[m.Address] = m.CAHolder
	}
	if err != nil || !slices.Contains(p.Addrs, node1.clusterAddr()) || len(p.Addrs) > 3 {
		t.Errorf("token made on node2: %+v, %v; want node1 (%s) among at most three", p, err, node1.clusterAddr())
	}
	for i, a := range p.Addrs {
		if !holders[a] || slices.Index(p.Addrs, a) != i {
			t.Errorf("token made on node2 names %s, which is not a CA holder or named twice: %+v, holders %v", a, p.Addrs, holders)
		}
	}
	// ... and once every member holds it, every member, node2 first.
	node1.waitCAHolders(3, 15*time.Second)
	p, err = node.ParseJoinToken(node2.joinToken())
	if err != nil || len(p.Addrs) != 3 || p.Addrs[0] != node2.clusterAddr() ||
		!slices.Contains(p.Addrs, node1.clusterAddr()) || !slices.Contains(p.Addrs, node3.clusterAddr()) {
		t.Errorf("token made on node2 with the CA key shared: %+v, %v; want node2 (%s), node1 (%s) and node3 (%s)",
			p, err, node2.clusterAddr(), node1.clusterAddr(), node3.clusterAddr())
	}

	// Every node serves the same JWKS, holding each node's signing key
	// (each signs with its own, published through the log).
	waitfor.Nil(t, "the same JWKS on every node", 10*time.Second, 100*time.Millisecond, func() error {
		var sets []string
		for _, n := range []*testNode{node1, node2, node3} {
			sets = append(sets, n.jwksKids())
		}
		if sets[0] == sets[1] && sets[1] == sets[2] && strings.Count(sets[0], ",") == 2 {
			return nil
		}
		return fmt.Errorf("JWKS kids per node: %q, want the same three on every node", sets)
	})

	// A login on a follower works; its token works on another node, and a
	// logout anywhere ends it everywhere within a second.
	const pw = "correct horse battery staple"
	node1.addUser("alice", pw, false)
	var tok map[string]any
	waitfor.Nil(t, "a login on node2", 5*time.Second, 50*time.Millisecond, func() error {
		var code int
		if code, tok = node2.login("alice", pw); code != 200 {
			return fmt.Errorf("login on node2: %d %v", code, tok)
		}
		return nil
	})
	access := tok["access_token"].(string)
	waitfor.Nil(t, "node2's token on node3", 2*time.Second, 20*time.Millisecond, func() error {
		if code, me, _ := node3.apiCall("GET", "/v1/me", access, nil); code != 200 || me["username"] != "alice" {
			return fmt.Errorf("/v1/me on node3 with node2's token: %d %v", code, me)
		}
		return nil
	})
	if code, out, _ := node1.apiCall("POST", "/v1/auth/logout", access, nil); code != 204 {
		t.Fatalf("logout on node1: %d %v", code, out)
	}
	// The revocation window of a follower: how long after the logout was
	// acknowledged (on node1) the others still accept the session.
	loggedOut := time.Now()
	for _, n := range []*testNode{node2, node3} {
		var refused time.Duration
		waitfor.Nil(t, n.name()+" refuses the session", time.Second-time.Since(loggedOut), 5*time.Millisecond, func() error {
			if code, _, _ := n.apiCall("GET", "/v1/me", access, nil); code != 401 {
				return fmt.Errorf("/v1/me still answers %d on %s a second after the logout", code, n.dir)
			}
			refused = time.Since(loggedOut)
			return nil
		})
		t.Logf("revocation window: %s refused the session %v after node1 acknowledged the logout",
			n.name(), refused.Round(time.Millisecond))
	}

	// A used token is refused, and the refused node's data directory is
	// left as it was: absent.
	node4 := newClusterNode(t, "node4")
	cmd := exec.Command(node4.bin, "serve", "--config", node4.config, "--join", tok2)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "already used") {
		t.Fatalf("serve --join with a used token: %v: %s", err, out)
	}
	if _, err := os.Stat(node4.dataDir()); !os.IsNotExist(err) {
		t.Fatalf("a refused join left %s (%v)", node4.dataDir(), err)
	}
	// An existing data directory is refused before anything else.
	if err := os.MkdirAll(node4.dataDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(node4.dataDir(), "keep"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(node4.bin, "serve", "--config", node4.config, "--join", node2.joinToken()).CombinedOutput()
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "empty data directory") {
		t.Fatalf("serve --join into a used data directory: %v: %s", err, out)
	}
	if ents, _ := os.ReadDir(node4.dataDir()); len(ents) != 1 {
		t.Fatalf("a refused join changed the data directory: %d entries", len(ents))
	}
	if st := node1.clusterStatus(); len(st.Nodes) != 3 {
		t.Fatalf("refused joins changed the cluster: %+v", st)
	}

	// A joined node restarts with its data directory, without --join, and
	// rejoins: its certificate from the join is the one later starts accept.
	node3.stop()
	node3.start()
	if code, _ := node3.login("alice", pw); code != 200 {
		t.Fatalf("login on node3 after its restart: %d", code)
	}

	// Every certificate names its node's API port as the CRL
	// distribution point; node3's (from its join) is revoked below.
	for _, n := range []*testNode{node1, node2, node3} {
		n.checkCRLPoint()
	}
	node3Serial, _ := node3.nodePEMSerial()

	// Remove a member; an unknown one is an error.
	if _, errOut, code := node1.cli("", "cluster", "remove", "nope"); code != 1 || !strings.Contains(errOut, "not a member") {
		t.Errorf("remove an unknown node: exit %d: %s", code, errOut)
	}
	if out, errOut, code := node1.cli("", "cluster", "remove", "node3"); code != 0 || !strings.Contains(out, "removed node3") {
		t.Fatalf("remove node3: exit %d: %s%s", code, out, errOut)
	}
	waitfor.Nil(t, "node3 gone from the cluster status", 5*time.Second, 50*time.Millisecond, func() error {
		if st := node1.clusterStatus(); len(st.Nodes) != 2 {
			return fmt.Errorf("node3 still listed: %+v", st)
		}
		return nil
	})
	// Its certificate is revoked: the CRL every remaining node serves,
	// signed by the cluster CA, lists its serial.
	for _, n := range []*testNode{node1, node2} {
		n.waitRevoked(10*time.Second, node3Serial)
	}
	// Its signing key stopped signing at the removal and leaves the JWKS
	// once the tokens it signed have expired.
	listed, _, _ := node1.cli("", "keys", "list", "--json")
	var keys struct {
		Keys []struct {
			Node     string    `json:"node"`
			NotAfter time.Time `json:"not_after"`
			Retire   time.Time `json:"retire"`
		} `json:"keys"`
	}
	if err := json.Unmarshal([]byte(listed), &keys); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, k := range keys.Keys {
		found = found || k.Node == "node3"
		if k.Node == "node3" && (k.NotAfter.IsZero() || k.Retire.IsZero() || time.Since(k.NotAfter) > time.Minute) {
			t.Fatalf("node3's key after its removal: %+v", k)
		}
		if k.Node != "node3" && !k.NotAfter.IsZero() {
			t.Fatalf("removing node3 retired %s's key", k.Node)
		}
	}
	if !found {
		t.Fatalf("node3's key is not listed: %s", listed)
	}
}

// waitCAHolders waits up to within until n's cluster status shows want
// members holding the CA key, and returns that status.
func (n *testNode) waitCAHolders(want int, within time.Duration) clusterStatusJSON {
	n.t.Helper()
	var st clusterStatusJSON
	waitfor.Nil(n.t, fmt.Sprintf("%d CA holders", want), within, 100*time.Millisecond, func() error {
		st = n.clusterStatus()
		holders := 0
		for _, m := range st.Nodes {
			if m.CAHolder {
				holders++
			}
		}
		if holders != want {
			return fmt.Errorf("%d CA holders, want %d: %+v", holders, want, st)
		}
		return nil
	})
	return st
}
