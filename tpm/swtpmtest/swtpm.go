// Package swtpmtest runs Debian's swtpm, a software TPM 2.0, as a separate
// process on loopback for tests: the tpm package's sealer tests and the
// daemon's black-box tests reach it as tcp:127.0.0.1:PORT, as a VM would
// reach a TPM command channel.
package swtpmtest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Require skips the test if swtpm is not installed, unless CI is set:
// CI installs it (make deps-tpm), so there its absence is a failure.
func Require(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("swtpm is not on PATH but CI=%s: `make deps` (deps-tpm) must install it: %v", os.Getenv("CI"), err)
		}
		t.Skip("swtpm is not on PATH; `make deps-tpm` installs it (as root). Skipping the swtpm black-box test")
	}
}

// Proc is a running swtpm.
type Proc struct {
	Port int // the TPM command channel; the control channel is Port+1
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
}

// Device is the seal.device string that reaches this TPM.
func (p *Proc) Device() string { return fmt.Sprintf("tcp:127.0.0.1:%d", p.Port) }

// Start starts swtpm with its state in stateDir on a free pair of loopback
// ports; it is killed when the test ends.
func Start(t testing.TB, stateDir string) *Proc {
	t.Helper()
	var lastErr error
	for range 10 {
		port, err := freePortPair()
		if err != nil {
			t.Fatal(err)
		}
		p, err := launch(t, stateDir, port)
		if err == nil {
			return p
		}
		lastErr = err // most likely a port taken in the meantime
	}
	t.Fatalf("cannot start swtpm: %v", lastErr)
	return nil
}

// StartOn restarts swtpm from stateDir on a given port.
func StartOn(t testing.TB, stateDir string, port int) *Proc {
	t.Helper()
	var lastErr error
	for range 3 { // the old process's ports may take a moment to free
		p, err := launch(t, stateDir, port)
		if err == nil {
			return p
		}
		lastErr = err
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("cannot restart swtpm on port %d: %v", port, lastErr)
	return nil
}

func launch(t testing.TB, stateDir string, port int) (*Proc, error) {
	t.Helper()
	p := &Proc{Port: port, out: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command("swtpm", "socket", "--tpm2",
		"--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port),
		"--ctrl", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port+1),
		"--tpmstate", "dir="+stateDir,
		"--flags", "not-need-init,startup-clear")
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.Kill() })
	// Ready when the control channel accepts (the command channel serves one
	// client at a time, so leave it to the sealer).
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-p.done:
			return nil, fmt.Errorf("swtpm exited: %s", p.out.String())
		default:
		}
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port+1), time.Second)
		if err == nil {
			c.Close()
			return p, nil
		}
		if time.Now().After(deadline) {
			p.Kill()
			return nil, fmt.Errorf("swtpm not listening after 10s: %v; output: %s", err, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop ends swtpm with SIGTERM, letting it write its state, and waits.
func (p *Proc) Stop(t testing.TB) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.Kill()
		t.Fatalf("swtpm did not stop on SIGTERM; output: %s", p.out.String())
	}
}

// Kill ends swtpm at once.
func (p *Proc) Kill() {
	select {
	case <-p.done:
	default:
		p.cmd.Process.Kill()
		<-p.done
	}
}

// freePortPair returns a loopback port P such that P and P+1 were both free.
func freePortPair() (int, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+1))
		l.Close()
		if err == nil {
			l2.Close()
			return port, nil
		}
	}
	return 0, errors.New("no free pair of consecutive loopback ports")
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
