package tpm

import (
	"errors"
	"strconv"
	"testing"

	"github.com/bulwark-auth/bulwark/tpm/swtpmtest"
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

func requireSwtpm(t *testing.T) { swtpmtest.Require(t) }

// swtpmProc adapts swtpmtest.Proc to this file's tests.
type swtpmProc struct {
	*swtpmtest.Proc
	port int
}

func (p *swtpmProc) device() string    { return p.Device() }
func (p *swtpmProc) stop(t *testing.T) { p.Stop(t) }

func startSwtpm(t *testing.T, stateDir string) *swtpmProc {
	p := swtpmtest.Start(t, stateDir)
	return &swtpmProc{p, p.Port}
}

func startSwtpmOn(t *testing.T, stateDir string, port int) *swtpmProc {
	return &swtpmProc{swtpmtest.StartOn(t, stateDir, port), port}
}
