package main

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// faultProxy forwards TCP connections from its own loopback port to one
// node's cluster port. Every peer dials the node through it (the node's
// cluster.advertise is the proxy), so it can cut the node's incoming
// links in either direction or slow them. A cut stalls bytes (as a lost
// route does: TCP keeps the connection until a side gives up); a heal
// lets them through again.
type faultProxy struct {
	ln     net.Listener
	target string
	// in: bytes towards the node (requests); out: bytes from it (answers).
	cutIn, cutOut atomic.Bool
	delay         atomic.Int64 // nanoseconds added before each chunk, both ways
	mu            sync.Mutex
	conns         []net.Conn
	closed        bool
	wg            sync.WaitGroup
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *faultProxy) addr() string { return p.ln.Addr().String() }

func (p *faultProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		d, err := net.DialTimeout("tcp", p.target, 2*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			d.Close()
			return
		}
		p.conns = append(p.conns, c, d)
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pipe(d, c, &p.cutIn)
		go p.pipe(c, d, &p.cutOut)
	}
}

// pipe copies src to dst chunk by chunk, holding each chunk while cut
// (bounded: the proxy's close ends it) and delaying it while slowed.
func (p *faultProxy) pipe(dst, src net.Conn, cut *atomic.Bool) {
	defer p.wg.Done()
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			for cut.Load() && !p.isClosed() {
				time.Sleep(10 * time.Millisecond)
			}
			if d := p.delay.Load(); d > 0 {
				time.Sleep(time.Duration(d))
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *faultProxy) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// heal lets everything through again.
func (p *faultProxy) heal() {
	p.cutIn.Store(false)
	p.cutOut.Store(false)
	p.delay.Store(0)
}

func (p *faultProxy) close() {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.mu.Unlock()
	p.ln.Close()
	for _, c := range conns {
		c.Close()
	}
	p.wg.Wait()
}

// chaosNode is a cluster member with its proxy and its fault counts.
type chaosNode struct {
	*testNode
	proxy    *faultProxy
	restarts atomic.Int64 // kill -9 and restart cycles, for the lockout bound's scrapes
	paused   atomic.Bool
}

// advertiseThroughProxy makes n's cluster.advertise its proxy's address,
// so every peer reaches n through it.
func advertiseThroughProxy(t *testing.T, n *testNode) *faultProxy {
	t.Helper()
	p := newFaultProxy(t, n.clusterAddr())
	b, err := os.ReadFile(n.config)
	if err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("[cluster]\nlisten = %q\n", n.clusterAddr())
	if !strings.Contains(string(b), listen) {
		t.Fatalf("no %q in %s", listen, n.config)
	}
	cfg := strings.Replace(string(b), listen, listen+fmt.Sprintf("advertise = %q\n", p.addr()), 1)
	if err := os.WriteFile(n.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// nemesis injects one bounded fault at a time into a three-node cluster
// and heals it, until it has injected max faults or until deadline.
type nemesis struct {
	t      *testing.T
	nodes  []*chaosNode
	rng    *rand.Rand
	faults map[string]int
	log    []string
	// crashChecks counts bbolt files checked after a crash.
	crashChecks int
}

// run injects faults until max or deadline. Each fault lasts 0.5–2.5 s,
// then is healed, and the cluster gets 0.5–1.5 s of calm; a killed node
// is started again with its data directory (after its bbolt files pass a
// consistency check) and must become ready within 20 s.
func (m *nemesis) run(max int, deadline time.Time) {
	t := m.t
	for i := 0; i < max && time.Now().Before(deadline); i++ {
		n := m.nodes[m.rng.IntN(len(m.nodes))]
		hold := time.Duration(500+m.rng.IntN(2000)) * time.Millisecond
		var kind string
		began := time.Now()
		switch m.rng.IntN(6) {
		case 0:
			kind = "kill -9"
			n.cmd.Process.Signal(syscall.SIGKILL)
			<-n.exited
			time.Sleep(hold)
			m.checkBolt(n)
			n.restarts.Add(1)
			n.start()
		case 1:
			kind = "pause (SIGSTOP)"
			n.paused.Store(true)
			n.cmd.Process.Signal(syscall.SIGSTOP)
			time.Sleep(hold)
			n.cmd.Process.Signal(syscall.SIGCONT)
			n.paused.Store(false)
		case 2:
			kind = "cut both ways"
			n.proxy.cutIn.Store(true)
			n.proxy.cutOut.Store(true)
			time.Sleep(hold)
			n.proxy.heal()
		case 3:
			kind = "cut towards the node"
			n.proxy.cutIn.Store(true)
			time.Sleep(hold)
			n.proxy.heal()
		case 4:
			kind = "cut from the node"
			n.proxy.cutOut.Store(true)
			time.Sleep(hold)
			n.proxy.heal()
		case 5:
			kind = "slow link"
			n.proxy.delay.Store(int64(time.Duration(20+m.rng.IntN(180)) * time.Millisecond))
			time.Sleep(hold)
			n.proxy.heal()
		}
		m.faults[kind]++
		m.log = append(m.log, fmt.Sprintf("%s %s of %s for %v", began.Format("15:04:05.000"), kind, n.name(), hold))
		time.Sleep(time.Duration(500+m.rng.IntN(1000)) * time.Millisecond)
		if t.Failed() {
			return
		}
	}
}

// total is the number of faults injected.
func (m *nemesis) total() int {
	s := 0
	for _, c := range m.faults {
		s += c
	}
	return s
}

// checkBolt runs bbolt's consistency check on a copy of each bbolt file
// of a crashed node (state.db and the raft log), before it restarts.
func (m *nemesis) checkBolt(n *chaosNode) {
	t := m.t
	t.Helper()
	for _, rel := range []string{"state.db", filepath.Join("raft", "raft.db")} {
		src := filepath.Join(n.dataDir(), rel)
		if _, err := os.Stat(src); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err := boltCheckCopy(src, t.TempDir()); err != nil {
			t.Errorf("after kill -9 of %s: %s: %v", n.name(), rel, err)
		}
		m.crashChecks++
	}
}

// boltCheckCopy copies a bbolt file into dir and checks every page of
// the copy (the original stays as the crash left it for the restart).
func boltCheckCopy(src, dir string) error {
	dst := filepath.Join(dir, filepath.Base(src))
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	db, err := bolt.Open(dst, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
}
