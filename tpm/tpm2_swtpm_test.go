package tpm

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestTPMSealerSwtpm is a black-box test against swtpm, a separate TPM 2.0
// process reached the way a VM or test rig reaches one: over its raw TCP
// command channel (tcp:127.0.0.1:PORT), with no platform commands.
func TestTPMSealerSwtpm(t *testing.T) {
	requireSwtpm(t)
	stateA := t.TempDir()
	secret := []byte("0123456789abcdef0123456789abcdef")

	// Seal, with and without PCRs, on TPM A.
	a := startSwtpm(t, stateA)
	sealer, err := NewTPMSealer(a.device(), nil)
	if err != nil {
		t.Fatalf("NewTPMSealer(%s): %v", a.device(), err)
	}
	defer sealer.Close()
	blob := mustSeal(t, sealer, secret)
	// swtpm serves one connection at a time: close one sealer, then open
	// the next.
	sealer.Close()
	pcrSealer, err := NewTPMSealer(a.device(), []int{16})
	if err != nil {
		t.Fatal(err)
	}
	defer pcrSealer.Close()
	pcrBlob := mustSeal(t, pcrSealer, secret)
	mustUnseal(t, pcrSealer, pcrBlob, secret)

	// Stop TPM A: the sealer says it cannot reach the TPM.
	a.stop(t)
	_, err = pcrSealer.Unseal(pcrBlob)
	if !errors.Is(err, ErrUnseal) || !errors.Is(err, ErrNoTPM) {
		t.Fatalf("Unseal with swtpm stopped: %v; want an error wrapping ErrUnseal and ErrNoTPM", err)
	}

	// Restart TPM A from its state directory, on the same port: the open
	// sealer reconnects, and a new one unseals too.
	a = startSwtpmOn(t, stateA, a.port)
	mustUnseal(t, pcrSealer, pcrBlob, secret)
	pcrSealer.Close()
	sealer, err = NewTPMSealer(a.device(), nil)
	if err != nil {
		t.Fatal(err)
	}
	mustUnseal(t, sealer, blob, secret)
	mustUnseal(t, sealer, pcrBlob, secret)
	sealer.Close()

	// TPM B, a fresh state directory, is another TPM: it refuses.
	b := startSwtpm(t, t.TempDir())
	other, err := NewTPMSealer(b.device(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for _, bl := range [][]byte{blob, pcrBlob} {
		_, err := other.Unseal(bl)
		wantUnsealError(t, err, "sealed by a different TPM (or its owner hierarchy was cleared)")
		wantUnsealError(t, err, "the TPM at tcp:127.0.0.1:"+strconv.Itoa(b.port))
	}
}

// requireSwtpm skips the test if swtpm is not installed, unless CI is set:
// CI installs it (make deps-tpm), so there its absence is a failure.
func requireSwtpm(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("swtpm is not on PATH but CI=%s: `make deps` (deps-tpm) must install it: %v", os.Getenv("CI"), err)
		}
		t.Skip("swtpm is not on PATH; `make deps-tpm` installs it (as root). Skipping the swtpm black-box test")
	}
}

type swtpmProc struct {
	port int // the TPM command channel; the control channel is port+1
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
}

func (p *swtpmProc) device() string { return fmt.Sprintf("tcp:127.0.0.1:%d", p.port) }

// startSwtpm starts swtpm on a free pair of loopback ports.
func startSwtpm(t *testing.T, stateDir string) *swtpmProc {
	t.Helper()
	var lastErr error
	for range 10 {
		port, err := freePortPair()
		if err != nil {
			t.Fatal(err)
		}
		p, err := launchSwtpm(t, stateDir, port)
		if err == nil {
			return p
		}
		lastErr = err // most likely a port taken in the meantime
	}
	t.Fatalf("cannot start swtpm: %v", lastErr)
	return nil
}

func startSwtpmOn(t *testing.T, stateDir string, port int) *swtpmProc {
	t.Helper()
	var lastErr error
	for range 3 { // the old process's ports may take a moment to free
		p, err := launchSwtpm(t, stateDir, port)
		if err == nil {
			return p
		}
		lastErr = err
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("cannot restart swtpm on port %d: %v", port, lastErr)
	return nil
}

func launchSwtpm(t *testing.T, stateDir string, port int) (*swtpmProc, error) {
	t.Helper()
	p := &swtpmProc{port: port, out: &lockedBuffer{}, done: make(chan struct{})}
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
	t.Cleanup(func() { p.kill() })
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
			p.kill()
			return nil, fmt.Errorf("swtpm not listening after 10s: %v; output: %s", err, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends swtpm with SIGTERM, letting it write its state, and waits.
func (p *swtpmProc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.kill()
		t.Fatalf("swtpm did not stop on SIGTERM; output: %s", p.out.String())
	}
}

func (p *swtpmProc) kill() {
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
