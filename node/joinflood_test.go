package node

import (
	"context"
	"crypto"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/node/loopback"
	"github.com/bulwark-auth/bulwark/node/pki"
	"github.com/bulwark-auth/bulwark/tpm"
)

// heapInUse is the heap in use after a collection.
func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// floodJoinPort opens up to count connections to addr from workers
// goroutines, stopping at limit: each completes a TLS handshake without a
// client certificate, names protocol 'J', announces a request frame of
// maxJoinFrame bytes and sends nothing more. It keeps only the TCP
// connections of those that got that far (their TLS state is dropped, so
// this process's heap shows the server's cost, not the client's) and
// counts the others, refused during the handshake.
func floodJoinPort(addr string, count, workers int, limit time.Duration) (held []net.Conn, refused int) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
		CurvePreferences: []tls.CurveID{tls.X25519}} // the cheaper exchange: the server's cost is what counts
	prefix := binary.BigEndian.AppendUint32([]byte{protoJoin}, maxJoinFrame)
	stop := time.Now().Add(limit)
	var mu sync.Mutex
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(count) && time.Now().Before(stop) {
				raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err == nil {
					tc := tls.Client(raw, cfg)
					tc.SetDeadline(time.Now().Add(5 * time.Second))
					if err = tc.Handshake(); err == nil {
						_, err = tc.Write(prefix)
					}
				}
				mu.Lock()
				if err == nil {
					held = append(held, raw)
				} else {
					refused++
					if raw != nil {
						raw.Close()
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return held, refused
}

// TestJoinPortFlood (security finding 8): protocol 'J' is served on the
// cluster port to clients without a certificate. A flood of them, each
// announcing a large join request and then stalling, must leave the heap
// bounded, and the cluster as it was: writes commit (forwarded ones over
// the flooded port too), a member's new connection to that port is
// served, and a join with a valid token succeeds once the flood ends.
func TestJoinPortFlood(t *testing.T) {
	ca := newTestCA(t)
	// Timeouts of a second: 1,500 handshakes under -race load two cores.
	nodes := newCluster(t, 3, clusterOpts{timeout: time.Second, ca: ca, adjust: func(_ int, c *Config) {
		c.TLS.Cert.Certificate = append(c.TLS.Cert.Certificate, ca.cert.Raw) // the joiner checks the pin
	}}).nodes
	target := waitLeader(t, nodes)
	var member *Node // a follower: its writes are forwarded to target's port
	for _, n := range nodes {
		if n != target {
			member = n
			break
		}
	}
	target.EnableJoin(ca.cert, fakeKeys{keys: map[string]crypto.Signer{pki.CAKeyName: ca.key},
		secrets: map[string][]byte{tpm.DataKeyName: tpm.NewDataKey()}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	token, _, err := target.CreateJoinToken(ctx, time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	createUser(t, member, "before-flood")

	// Writes through the follower all along the flood.
	floodDone := make(chan struct{})
	var writes int
	var writeErrs []error
	writer := make(chan struct{})
	stopWriter := sync.OnceFunc(func() { close(floodDone); <-writer })
	defer stopWriter()
	go func() {
		defer close(writer)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-floodDone:
				return
			case <-tick.C:
			}
			wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := member.Apply(wctx, userCmd(t, fmt.Sprintf("during-flood-%d", writes)))
			wcancel()
			writes++
			if err != nil {
				writeErrs = append(writeErrs, err)
			}
		}
	}()

	const conns, workers = 1500, 16
	before := heapInUse()
	start := time.Now()
	held, refused := floodJoinPort(target.cfg.Advertise, conns, workers, 60*time.Second)
	took := time.Since(start)
	during := heapInUse()
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	growth := during - before
	t.Logf("flood: %d connections in %v: %d announced a join request, %d were refused in the handshake; heap in use %.1f MiB before, %.1f MiB while held (+%.1f MiB)",
		len(held)+refused, took.Round(time.Millisecond), len(held), refused,
		float64(before)/(1<<20), float64(during)/(1<<20), float64(growth)/(1<<20))
	if len(held)+refused < conns/2 {
		t.Fatalf("only %d connections in %v: the flood did not happen", len(held)+refused, took)
	}
	const bound = 16 << 20
	if growth > bound {
		t.Errorf("the flood grew the heap by %.1f MiB, want at most %d MiB", float64(growth)/(1<<20), bound>>20)
	}

	// While the flood's connections are still open: a member's new
	// connection to the flooded port is served, and writes commit.
	if err := callInfo(ctx, member.fwd.tls, target.cfg.Advertise); err != nil {
		t.Errorf("a member's new connection to the flooded port: %v", err)
	}
	stopWriter()
	if writes == 0 || len(writeErrs) > 0 {
		t.Errorf("during the flood %d writes through a follower, failed: %v", writes, writeErrs)
	}
	createUser(t, target, "after-flood")

	// The flood ends; a join with the valid token succeeds. A connection
	// the server has not yet seen close may still hold a slot for a
	// moment, refusing the joiner's connection: it retries, as Join's
	// caller would.
	for _, c := range held {
		c.Close()
	}
	held = nil
	addr := loopback.Addr(t)
	var j *Joined
	for try := 0; ; try++ {
		jctx, jcancel := context.WithTimeout(ctx, 30*time.Second)
		j, err = Join(jctx, token, JoinRequest{NodeID: "joiner", Advertise: addr})
		jcancel()
		if err == nil || !errors.Is(err, ErrJoinUnreachable) || try == 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("join after the flood: %v", err)
	}
	joined := openJoined(t, "joiner", addr, j)
	waitVoters(t, target, nodes[0].cfg.ID, nodes[1].cfg.ID, nodes[2].cfg.ID, "joiner")
	total := len(users(t, target))
	waitUsers(t, joined, total)
}
