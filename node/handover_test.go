package node

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/bulwark-auth/bulwark/internal/waitfor"
)

// TestHandoverWaitsForWritesInFlight: once a leader starts handing over
// (Close), a new proposal is refused before it reaches the log, as Raft
// refuses one during a transfer (the caller sends it to the next leader),
// and the handover waits for the proposals already in flight, which then
// commit: none is left to fail as "leadership lost" when the old leader
// steps down.
func TestHandoverWaitsForWritesInFlight(t *testing.T) {
	var hold atomic.Bool
	release := make(chan struct{})
	blocked := make(chan struct{}, 1)
	n, err := Open(Config{ID: "n1", DataDir: t.TempDir(), Advertise: "127.0.0.1:18444", Logger: testLogger(t),
		storeFault: func() error {
			if hold.Load() {
				select {
				case blocked <- struct{}{}:
				default:
				}
				<-release
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	createUser(t, n, "before")

	// A write in flight: raft.db's append holds it.
	hold.Store(true)
	inFlight := make(chan error, 1)
	go func() {
		_, err := n.Apply(ctx, userCmd(t, "in-flight"))
		inFlight <- err
	}()
	select {
	case <-blocked:
	case <-ctx.Done():
		t.Fatal("the write never reached raft.db")
	}
	drained := make(chan bool, 1)
	go func() { drained <- n.stopProposing(10 * time.Second) }()
	// A new write is refused at once, and reaches no log.
	waitfor.True(t, "the handover refusing proposals", 5*time.Second, time.Millisecond, func() bool {
		n.handover.mu.RLock()
		defer n.handover.mu.RUnlock()
		return n.handover.stopping
	})
	last := n.raft.LastIndex()
	refused := make(chan error, 1)
	go func() {
		_, err := n.propose(mustEncode(t, userCmd(t, "refused")), time.Second)
		refused <- err
	}()
	select {
	case err := <-refused:
		if !errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			t.Fatalf("a proposal during the handover: %v, want ErrLeadershipTransferInProgress", err)
		}
	case <-time.After(5 * time.Second):
		close(release) // let it and the write in flight end
		t.Fatal("a proposal during the handover went to Raft instead of being refused")
	}
	if got := n.raft.LastIndex(); got != last {
		t.Fatalf("the refused proposal moved the log from %d to %d", last, got)
	}
	select {
	case <-drained:
		t.Fatal("the handover did not wait for the write in flight")
	case <-time.After(50 * time.Millisecond):
	}
	hold.Store(false)
	close(release)
	if ok := <-drained; !ok {
		t.Fatal("stopProposing gave up on the write in flight")
	}
	if err := <-inFlight; err != nil {
		t.Fatalf("the write in flight: %v", err)
	}
	if !users(t, n)["in-flight"] || users(t, n)["refused"] {
		t.Fatalf("users after the handover: %v", users(t, n))
	}
}

func mustEncode(t *testing.T, c interface{ Encode() ([]byte, error) }) []byte {
	t.Helper()
	b, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFollowersKeepForwardingConnsToEveryVoter: every member holds its
// forwarding connections open to every other voter, not only to the
// leader and not only once it has forwarded a write, so the first write a
// survivor forwards to a new leader does not wait for a TLS handshake.
func TestFollowersKeepForwardingConnsToEveryVoter(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{})
	for _, n := range c.nodes {
		waitfor.Nil(t, "forwarding connections from "+n.cfg.ID, 10*time.Second, 10*time.Millisecond, func() error {
			conns := liveForwardConns(n)
			for _, p := range c.nodes {
				if p == n {
					continue
				}
				if got := conns[p.cfg.ID+"@"+p.cfg.Advertise]; got != forwardConns {
					return fmt.Errorf("%s holds %d forwarding connections to %s, want %d (all: %v)", n.cfg.ID, got, p.cfg.ID, forwardConns, conns)
				}
			}
			return nil
		})
	}
}

// TestLeaderCloseLosesNoWrite: while the leader closes (handing its
// leadership over), both survivors keep writing; every write succeeds,
// none fails as "may or may not have taken effect", and each is on both
// survivors afterwards.
func TestLeaderCloseLosesNoWrite(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{timeout: time.Second})
	leader := c.leader()
	survivors := c.followers(leader)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	written := make([][]string, len(survivors))
	errs := make([]error, len(survivors))
	for i, n := range survivors {
		wg.Go(func() {
			for k := 0; k < 2000; k++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("w%d-%d", i, k)
				if _, err := n.Apply(ctx, userCmd(t, name)); err != nil {
					errs[i] = fmt.Errorf("write %s on %s: %w", name, n.cfg.ID, err)
					return
				}
				written[i] = append(written[i], name)
			}
		})
	}
	// Writes flow through both survivors before the leader closes.
	waitfor.True(t, "writes on both survivors", 10*time.Second, 5*time.Millisecond, func() bool {
		return len(users(t, survivors[0])) > 10 && len(users(t, survivors[1])) > 10
	})
	before := len(users(t, survivors[0]))
	changes := survivors[0].LeaderChanges()
	for i, n := range c.nodes {
		if n == leader {
			c.stop(i)
		}
	}
	waitfor.True(t, "writes after the handover", 10*time.Second, 5*time.Millisecond, func() bool {
		return len(users(t, survivors[0])) > before+20 || errs[0] != nil || errs[1] != nil
	})
	close(stop)
	wg.Wait()
	for _, err := range errs {
		if err == nil {
			continue
		}
		// One leader change is the handover. More means leadership moved
		// by itself too (a starved heartbeat on a loaded machine), and a
		// write in flight at a leader that steps down that way may fail
		// as "may or may not have taken effect": not what this tests.
		if got := survivors[0].LeaderChanges(); got > changes+1 {
			t.Skipf("leadership changed %d times around the stop, not once: %v", got-changes, err)
		}
		t.Fatal(err)
	}
	total := len(written[0]) + len(written[1])
	for _, n := range survivors {
		waitUsers(t, n, total)
		have := users(t, n)
		for _, names := range written {
			for _, name := range names {
				if !have[name] {
					t.Fatalf("%s acknowledged but missing on %s", name, n.cfg.ID)
				}
			}
		}
	}
}

// TestGoodbyeEndsServedForwarding: a stopping node (endServing) answers
// every forwarded request it has read, reads no more (a request half read
// is dropped, never applied) and ends with the goodbye frame, id 0; a
// connection that reaches it afterwards gets the goodbye at once.
func TestGoodbyeEndsServedForwarding(t *testing.T) {
	n := &Node{log: testLogger(t)} // no certificate: each request read is answered "refused"
	srv, cli := net.Pipe()
	served := make(chan struct{})
	go func() { defer close(served); n.serveForward(srv) }()
	cli.SetDeadline(time.Now().Add(10 * time.Second))
	r, w := bufio.NewReader(cli), bufio.NewWriter(cli)
	frame := func(id uint64, payload []byte) []byte {
		var b [idSize]byte
		binary.BigEndian.PutUint64(b[:], id)
		return append(b[:], payload...)
	}
	if err := writeFrame(w, frame(1, []byte("first"))); err != nil {
		t.Fatal(err)
	}
	ans, err := readFrame(r)
	if err != nil || binary.BigEndian.Uint64(ans) != 1 {
		t.Fatalf("the answer to request 1: %q, %v", ans, err)
	}
	// Request 2, half written: its length and id, part of its payload.
	var size [4]byte
	binary.BigEndian.PutUint32(size[:], idSize+10)
	half := append(size[:], frame(2, []byte("sec"))...)
	if _, err := cli.Write(half); err != nil { // returns once read: the pipe has no buffer
		t.Fatal(err)
	}
	n.endServing()
	last, err := readFrame(r)
	if err != nil {
		t.Fatalf("no goodbye frame: %v", err)
	}
	if len(last) != idSize || binary.BigEndian.Uint64(last) != 0 {
		t.Fatalf("after endServing: frame %q, want the goodbye (id 0, nothing else)", last)
	}
	if _, err := readFrame(r); err == nil {
		t.Fatal("a frame after the goodbye")
	}
	<-served

	srv, cli = net.Pipe()
	go n.serveForward(srv)
	cli.SetDeadline(time.Now().Add(10 * time.Second))
	last, err = readFrame(bufio.NewReader(cli))
	if err != nil || len(last) != idSize || binary.BigEndian.Uint64(last) != 0 {
		t.Fatalf("a connection after endServing: %q, %v; want the goodbye", last, err)
	}
}

// TestGoodbyeSendsUnansweredOn: a follower whose leader ends a forwarding
// connection with the goodbye frame takes the requests it has answered as
// answered and every other as not sent (errNotApplied), to go to the next
// leader, not as "may or may not have taken effect".
func TestGoodbyeSendsUnansweredOn(t *testing.T) {
	srv, cli := net.Pipe()
	fc := newFwdConn(cli)
	defer fc.fail(errors.New("test over"))
	srv.SetDeadline(time.Now().Add(10 * time.Second))
	type reply struct {
		b    []byte
		sent bool
		err  error
	}
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	replies := make(chan reply, 2)
	for _, p := range []string{"one", "two"} {
		go func() {
			b, sent, err := fc.call(ctx, deadline, []byte(p))
			replies <- reply{b, sent, err}
		}()
	}
	r, w := bufio.NewReader(srv), bufio.NewWriter(srv)
	first, err := readFrame(r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readFrame(r); err != nil {
		t.Fatal(err)
	}
	// The first request read is answered; the other is left unread.
	if err := writeFrameParts(w, first[:idSize], []byte(`{"index":7}`)); err != nil {
		t.Fatal(err)
	}
	if err := writeFrame(w, goodbyeID[:]); err != nil {
		t.Fatal(err)
	}
	var answered, sentOn int
	for range 2 {
		rp := <-replies
		switch {
		case rp.err == nil && rp.sent && string(rp.b) == `{"index":7}`:
			answered++
		case errors.Is(rp.err, errNotApplied) && !rp.sent:
			sentOn++
		default:
			t.Errorf("a call: %q, sent %v, %v", rp.b, rp.sent, rp.err)
		}
	}
	if answered != 1 || sentOn != 1 {
		t.Fatalf("%d answered, %d to send on; want 1 and 1", answered, sentOn)
	}
	if fc.alive() {
		t.Fatal("the connection lives on after the goodbye")
	}
}
