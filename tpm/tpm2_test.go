package tpm

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// The simulator is one per process (simulator.Get blocks until the previous
// one is closed), so no test here runs in parallel, and each closes one
// simulator before it opens the next. A fixed seed fixes the hierarchy seeds:
// closing and reopening with the same seed is a reboot of the same TPM, a
// different seed is a different TPM.
const (
	seedA int64 = 1
	seedB int64 = 2
)

// simTPM is an open simulator and the sealer that owns it.
type simTPM struct {
	*TPMSealer
	raw transport.TPM // the simulator, for the test's own commands
}

func openSimSealer(t *testing.T, seed int64, pcrs []int) simTPM {
	t.Helper()
	sim, err := simulator.GetWithFixedSeedInsecure(seed)
	if err != nil {
		t.Fatalf("simulator: %v", err)
	}
	raw := transport.FromReadWriteCloser(sim)
	s, err := NewTPMSealer("", pcrs, WithTPMTransport(raw))
	if err != nil {
		t.Fatalf("NewTPMSealer: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return simTPM{TPMSealer: s, raw: raw}
}

// reboot closes the simulator and opens it again with seed.
func (s simTPM) reboot(t *testing.T, seed int64, pcrs []int) simTPM {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return openSimSealer(t, seed, pcrs)
}

func extendPCR(t *testing.T, tp transport.TPM, pcr int) {
	t.Helper()
	d := sha256.Sum256([]byte("a different boot"))
	_, err := tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
		Digests:   tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{HashAlg: tpm2.TPMAlgSHA256, Digest: d[:]}}},
	}.Execute(tp)
	if err != nil {
		t.Fatalf("PCRExtend(%d): %v", pcr, err)
	}
}

// loadedHandles lists the transient objects and sessions loaded in the TPM.
func loadedHandles(t *testing.T, tp transport.TPM) []tpm2.TPMHandle {
	t.Helper()
	var all []tpm2.TPMHandle
	for _, first := range []uint32{0x80000000, 0x02000000} {
		rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: first, PropertyCount: 64}.Execute(tp)
		if err != nil {
			t.Fatalf("GetCapability: %v", err)
		}
		list, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range list.Handle {
			if h>>24 == tpm2.TPMHandle(first>>24) || first == 0x02000000 && h>>24 == 0x03 {
				all = append(all, h)
			}
		}
	}
	return all
}

func assertNoHandles(t *testing.T, tp transport.TPM) {
	t.Helper()
	if h := loadedHandles(t, tp); len(h) != 0 {
		t.Fatalf("handles left loaded in the TPM: %#x", h)
	}
}

func mustSeal(t *testing.T, s Sealer, secret []byte) []byte {
	t.Helper()
	blob, err := s.Seal(secret)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return blob
}

func mustUnseal(t *testing.T, s Sealer, blob, want []byte) {
	t.Helper()
	got, err := s.Unseal(blob)
	if err != nil {
		t.Fatalf("Unseal: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Unseal = %x, want %x", got, want)
	}
}

func wantUnsealError(t *testing.T, err error, msg string) {
	t.Helper()
	if !errors.Is(err, ErrUnseal) {
		t.Fatalf("err = %v, want one wrapping ErrUnseal", err)
	}
	if !strings.Contains(err.Error(), msg) {
		t.Fatalf("error %q does not contain %q", err, msg)
	}
}

func TestTPMSealerRoundTrip(t *testing.T) {
	for _, pcrs := range [][]int{nil, {16}, {0, 7, 16, 23}} {
		t.Run(fmt.Sprint(pcrs), func(t *testing.T) {
			s := openSimSealer(t, seedA, pcrs)
			if s.Mode() != ModeTPM {
				t.Fatalf("Mode = %q", s.Mode())
			}
			for _, n := range []int{1, 32, maxTPMSecret} {
				secret := bytes.Repeat([]byte{0xA5}, n)
				blob := mustSeal(t, s, secret)
				if !bytes.HasPrefix(blob, []byte("BWTP\x01")) {
					t.Fatalf("blob starts %q, want BWTP version 1", blob[:5])
				}
				if n >= 32 && bytes.Contains(blob, secret[:16]) {
					t.Fatal("blob contains the secret in clear")
				}
				mustUnseal(t, s, blob, secret)
				mustUnseal(t, s, blob, secret) // unsealing is repeatable
			}
			for _, n := range []int{0, maxTPMSecret + 1} {
				if _, err := s.Seal(make([]byte, n)); err == nil {
					t.Fatalf("Seal of %d bytes succeeded", n)
				}
			}
			assertNoHandles(t, s.raw)
		})
	}
}

func TestTPMSealerRestartUnseals(t *testing.T) {
	for _, pcrs := range [][]int{nil, {7, 16}} {
		t.Run(fmt.Sprint(pcrs), func(t *testing.T) {
			secret := []byte("the key-encryption key, 32 bytes")
			s := openSimSealer(t, seedA, pcrs)
			blob := mustSeal(t, s, secret)
			s = s.reboot(t, seedA, pcrs)
			mustUnseal(t, s, blob, secret)
			// Unseal follows the blob, not the sealer's PCR list.
			s = s.reboot(t, seedA, nil)
			mustUnseal(t, s, blob, secret)
		})
	}
}

func TestTPMSealerWrongTPM(t *testing.T) {
	for _, pcrs := range [][]int{nil, {16}} {
		t.Run(fmt.Sprint(pcrs), func(t *testing.T) {
			s := openSimSealer(t, seedA, pcrs)
			blob := mustSeal(t, s, []byte("secret"))
			s = s.reboot(t, seedB, pcrs)
			_, err := s.Unseal(blob)
			wantUnsealError(t, err, "sealed by a different TPM (or its owner hierarchy was cleared)")
			assertNoHandles(t, s.raw)
		})
	}
}

func TestTPMSealerPCRChanged(t *testing.T) {
	tests := []struct {
		sealedTo []int
		extend   int
		wantMsg  string // "" if it still unseals
	}{
		{sealedTo: []int{16}, extend: 16, wantMsg: "PCR values changed since sealing (PCRs [16]): boot state differs"},
		{sealedTo: []int{23}, extend: 23, wantMsg: "PCR values changed since sealing (PCRs [23]): boot state differs"},
		{sealedTo: []int{7, 23}, extend: 23, wantMsg: "PCR values changed since sealing (PCRs [7 23]): boot state differs"},
		{sealedTo: []int{16}, extend: 23},
		{sealedTo: nil, extend: 16},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("sealed to %v, extend %d", tt.sealedTo, tt.extend), func(t *testing.T) {
			secret := []byte("secret")
			s := openSimSealer(t, seedA, tt.sealedTo)
			blob := mustSeal(t, s, secret)
			extendPCR(t, s.raw, tt.extend)
			got, err := s.Unseal(blob)
			if tt.wantMsg == "" {
				if err != nil || !bytes.Equal(got, secret) {
					t.Fatalf("Unseal = %q, %v; want the secret", got, err)
				}
			} else {
				wantUnsealError(t, err, tt.wantMsg)
				if !errors.Is(err, tpm2.TPMRCPolicyFail) {
					t.Errorf("error %v does not wrap TPM_RC_POLICY_FAIL", err)
				}
			}
			assertNoHandles(t, s.raw)
			// A reboot resets the PCRs, and the blob unseals again.
			s = s.reboot(t, seedA, tt.sealedTo)
			mustUnseal(t, s, blob, secret)
		})
	}
}

func TestTPMSealerTampered(t *testing.T) {
	s := openSimSealer(t, seedA, []int{16})
	blob := mustSeal(t, s, []byte("secret"))
	parsed, err := parseTPMBlob(blob)
	if err != nil {
		t.Fatal(err)
	}
	privEnd := len(blob) - 2 - len(tpm2.Marshal(parsed.pcrSel))
	flip := func(i int) []byte {
		b := bytes.Clone(blob)
		b[i] ^= 0x01
		return b
	}
	soft := newTestSoftwareSealer(t)
	softBlob := mustSeal(t, soft, make([]byte, 32))
	tests := []struct {
		name    string
		blob    []byte
		wantMsg string
	}{
		{"empty", nil, "too short"},
		{"magic", flip(0), "not a TPM-sealed blob"},
		{"version", flip(4), "unsupported TPM-sealed blob version"},
		{"truncated", blob[:len(blob)-1], "malformed"},
		{"trailing byte", append(bytes.Clone(blob), 0), "trailing bytes"},
		{"storage key name", flip(8), "sealed by a different TPM"},
		{"private area", flip(privEnd - 1), "the blob is corrupted or was altered"},
		{"public area", flip(5 + 2 + len(parsed.srkName) + 2 + 4), ""},
		{"software blob", softBlob, "sealed in software mode"},
		{"too long", make([]byte, maxTPMBlobLen+1), "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Unseal(tt.blob)
			if !errors.Is(err, ErrUnseal) {
				t.Fatalf("Unseal = %x, %v; want error wrapping ErrUnseal", got, err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("error %q does not contain %q", err, tt.wantMsg)
			}
			t.Log(err)
		})
	}
	assertNoHandles(t, s.raw)
	mustUnseal(t, s, blob, []byte("secret"))
}

func TestTPMSealerClosed(t *testing.T) {
	s := openSimSealer(t, seedA, nil)
	blob := mustSeal(t, s, []byte("secret"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Seal([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Seal after Close: %v", err)
	}
	if _, err := s.Unseal(blob); !errors.Is(err, ErrClosed) {
		t.Fatalf("Unseal after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestTPMSealerConcurrent(t *testing.T) {
	s := openSimSealer(t, seedA, []int{16})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 4 {
		wg.Go(func() {
			secret := []byte(fmt.Sprintf("secret %d", i))
			for range 3 {
				blob, err := s.Seal(secret)
				if err == nil {
					var got []byte
					got, err = s.Unseal(blob)
					if err == nil && !bytes.Equal(got, secret) {
						err = fmt.Errorf("got %q, want %q", got, secret)
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	assertNoHandles(t, s.raw)
}

func TestNewTPMSealerFlushesLeftovers(t *testing.T) {
	sim, err := simulator.GetWithFixedSeedInsecure(seedA)
	if err != nil {
		t.Fatal(err)
	}
	raw := transport.FromReadWriteCloser(sim)
	// What a process that died mid-seal leaves behind on a TPM with no
	// resource manager: a loaded primary key and an open session.
	if _, err := (tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tpm2.ECCSRKTemplate)}).Execute(raw); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tpm2.HMACSession(raw, tpm2.TPMAlgSHA256, 16); err != nil {
		t.Fatal(err)
	}
	if h := loadedHandles(t, raw); len(h) != 2 {
		t.Fatalf("set-up: loaded handles %#x, want 2", h)
	}
	s, err := NewTPMSealer("", nil, WithTPMTransport(raw))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	assertNoHandles(t, raw)
}

func TestNewTPMSealerErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "tpmrm0")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := l.Addr().String()
	l.Close()
	tests := []struct {
		device  string
		pcrs    []int
		wantErr error
		wantMsg string
	}{
		{device: missing, wantErr: ErrNoTPM, wantMsg: "no TPM at " + missing + ": "},
		{device: "tcp:" + closedPort, wantErr: ErrNoTPM, wantMsg: "cannot reach the TPM at tcp:" + closedPort},
		{device: "unix:" + missing, wantErr: ErrNoTPM, wantMsg: "cannot reach the TPM at unix:" + missing},
		{device: "tpmrm0", wantErr: ErrInvalidDevice},
		{device: DefaultDevice, pcrs: []int{24}, wantMsg: "PCR 24 is out of range 0-23"},
		{device: DefaultDevice, pcrs: []int{-1}, wantMsg: "PCR -1 is out of range"},
		{device: DefaultDevice, pcrs: []int{7, 7}, wantMsg: "PCR 7 listed twice"},
	}
	for _, tt := range tests {
		t.Run(tt.device+fmt.Sprint(tt.pcrs), func(t *testing.T) {
			s, err := NewTPMSealer(tt.device, tt.pcrs)
			if err == nil {
				s.Close()
				t.Fatal("NewTPMSealer succeeded")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want one wrapping %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("error %q does not contain %q", err, tt.wantMsg)
			}
		})
	}
}

// TestTPMSealerOverSocket runs the simulator behind a TCP and a Unix socket
// server that speaks the raw command channel swtpm does, answering in 3-byte
// writes so that the client must reassemble responses.
func TestTPMSealerOverSocket(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if network == "unix" {
				addr = filepath.Join(t.TempDir(), "tpm.sock")
			}
			device := serveSimulator(t, network, addr, seedA)
			s, err := NewTPMSealer(device, []int{16})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			blob := mustSeal(t, s, []byte("over the wire"))
			mustUnseal(t, s, blob, []byte("over the wire"))
		})
	}
}

// serveSimulator serves one simulator on a socket, one connection at a time,
// until the test ends; it returns the device string.
func serveSimulator(t *testing.T, network, addr string, seed int64) string {
	t.Helper()
	sim, err := simulator.GetWithFixedSeedInsecure(seed)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		sim.Close()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			serveConn(conn, sim)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		sim.Close()
	})
	if network == "unix" {
		return "unix:" + l.Addr().String()
	}
	return "tcp:" + l.Addr().String()
}

func serveConn(conn net.Conn, sim io.ReadWriter) {
	defer conn.Close()
	for {
		hdr := make([]byte, tpmHeaderLen)
		if _, err := io.ReadFull(conn, hdr); err != nil {
			return
		}
		cmd := append(hdr, make([]byte, binary.BigEndian.Uint32(hdr[2:6])-tpmHeaderLen)...)
		if _, err := io.ReadFull(conn, cmd[tpmHeaderLen:]); err != nil {
			return
		}
		if _, err := sim.Write(cmd); err != nil {
			return
		}
		rsp, err := io.ReadAll(sim)
		if err != nil {
			return
		}
		for len(rsp) > 0 {
			n := min(3, len(rsp))
			if _, err := conn.Write(rsp[:n]); err != nil {
				return
			}
			rsp = rsp[n:]
		}
	}
}

// fakeTPM answers each command with the next canned response code.
type fakeTPM struct {
	codes []tpm2.TPMRC
	sent  int
}

func (f *fakeTPM) Send([]byte) ([]byte, error) {
	rc := f.codes[min(f.sent, len(f.codes)-1)]
	f.sent++
	rsp := []byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(rsp[6:], uint32(rc))
	return rsp, nil
}

func (f *fakeTPM) Close() error { return nil }

func TestRetryTPM(t *testing.T) {
	tests := []struct {
		name     string
		codes    []tpm2.TPMRC
		wantSent int
		wantRC   tpm2.TPMRC
	}{
		{"success", []tpm2.TPMRC{tpm2.TPMRCSuccess}, 1, tpm2.TPMRCSuccess},
		{"error is not retried", []tpm2.TPMRC{tpm2.TPMRCPolicyFail, tpm2.TPMRCSuccess}, 1, tpm2.TPMRCPolicyFail},
		{"retry", []tpm2.TPMRC{tpm2.TPMRCRetry, tpm2.TPMRCRetry, tpm2.TPMRCSuccess}, 3, tpm2.TPMRCSuccess},
		{"yielded", []tpm2.TPMRC{tpm2.TPMRCYielded, tpm2.TPMRCSuccess}, 2, tpm2.TPMRCSuccess},
		{"testing", []tpm2.TPMRC{tpm2.TPMRCTesting, tpm2.TPMRCSuccess}, 2, tpm2.TPMRCSuccess},
		{"gives up", []tpm2.TPMRC{tpm2.TPMRCRetry}, tpmRetries + 1, tpm2.TPMRCRetry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeTPM{codes: tt.codes}
			rsp, err := retryTPM{TPMCloser: f, delay: time.Microsecond}.Send([]byte("cmd"))
			if err != nil {
				t.Fatal(err)
			}
			if rc := tpm2.TPMRC(binary.BigEndian.Uint32(rsp[6:])); rc != tt.wantRC || f.sent != tt.wantSent {
				t.Fatalf("got %v after %d sends, want %v after %d", rc, f.sent, tt.wantRC, tt.wantSent)
			}
		})
	}
}

func TestTPMErrorMessages(t *testing.T) {
	s := &TPMSealer{label: DefaultDevice}
	err := s.explain("TPM2_Unseal", fmt.Errorf("wrapped: %w", tpm2.TPMRCLockout))
	for _, want := range []string{"TPM is in dictionary-attack lockout", "TPM2_Unseal on /dev/tpmrm0", "TPM_RC_LOCKOUT"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("lockout error %q does not contain %q", err, want)
		}
	}
	if !errors.Is(err, tpm2.TPMRCLockout) {
		t.Errorf("lockout error does not wrap TPM_RC_LOCKOUT")
	}
}

func TestTPMKeystore(t *testing.T) {
	for _, pcrs := range [][]int{nil, {16}} {
		t.Run(fmt.Sprint(pcrs), func(t *testing.T) {
			dataDir := t.TempDir()
			s := openSimSealer(t, seedA, pcrs)
			ks := openTestKeystore(t, dataDir, s)
			if ks.Mode() != ModeTPM {
				t.Fatalf("Mode = %q", ks.Mode())
			}
			keys := newTestKeys(t)
			for name, k := range keys.all() {
				if err := ks.Put(name, k); err != nil {
					t.Fatal(err)
				}
			}
			if err := ks.PutSecret("cluster-data-key", []byte("0123456789abcdef0123456789abcdef")); err != nil {
				t.Fatal(err)
			}

			// Reboot: the same TPM opens the same keystore.
			s = s.reboot(t, seedA, pcrs)
			ks = openTestKeystore(t, dataDir, s)
			for name, k := range keys.all() {
				got, ok := ks.PrivateKey(name)
				if !ok || !got.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public()) {
					t.Fatalf("key %q not the same after reopen", name)
				}
			}
			if got, _ := ks.Secret("cluster-data-key"); string(got) != "0123456789abcdef0123456789abcdef" {
				t.Fatalf("secret after reopen = %q", got)
			}

			refuse := func(s Sealer, wantMsg string) {
				t.Helper()
				before := snapshotDir(t, dataDir)
				got, err := OpenKeystore(dataDir, s)
				if err == nil {
					t.Fatalf("OpenKeystore = %v; want an error", got)
				}
				wantUnsealError(t, err, "cannot unseal tpm/kek.sealed with the tpm sealer")
				wantUnsealError(t, err, wantMsg)
				assertSnapshotEqual(t, before, snapshotDir(t, dataDir))
			}
			if len(pcrs) > 0 {
				extendPCR(t, s.raw, pcrs[0])
				refuse(s, fmt.Sprintf("PCR values changed since sealing (PCRs %v)", pcrs))
			}
			// Another machine's TPM refuses, and nothing changes on disk.
			s = s.reboot(t, seedB, pcrs)
			refuse(s, "sealed by a different TPM (or its owner hierarchy was cleared)")
		})
	}
}

func FuzzParseTPMBlob(f *testing.F) {
	b := tpmBlob{
		srkName: append([]byte{0, 0x0b}, make([]byte, 32)...),
		public:  tpm2.New2B(sealedObjectTemplate(make([]byte, 32))),
		private: tpm2.TPM2BPrivate{Buffer: make([]byte, 80)},
		pcrSel:  pcrSelection([]int{7, 16}),
	}
	f.Add(b.marshal())
	b.public, b.pcrSel = tpm2.New2B(sealedObjectTemplate(nil)), pcrSelection(nil)
	f.Add(b.marshal())
	f.Add([]byte("BWTP\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := parseTPMBlob(data)
		if err != nil {
			if !errors.Is(err, ErrUnseal) {
				t.Fatalf("error %v does not wrap ErrUnseal", err)
			}
			return
		}
		if !bytes.Equal(b.marshal(), data) {
			t.Fatalf("parse then marshal changes the blob")
		}
	})
}

// busRecorder records every command and response between sealer and TPM.
type busRecorder struct {
	transport.TPMCloser
	mu      sync.Mutex
	traffic [][]byte
}

func (b *busRecorder) Send(cmd []byte) ([]byte, error) {
	// Copy the command before sending it: the simulator decrypts parameters
	// in place, in the caller's buffer.
	sent := bytes.Clone(cmd)
	rsp, err := b.TPMCloser.Send(cmd)
	b.mu.Lock()
	b.traffic = append(b.traffic, sent, bytes.Clone(rsp))
	b.mu.Unlock()
	return rsp, err
}

// TestTPMSealerSecretNeverOnTheBus checks the parameter encryption: the
// secret crosses to the TPM (Create) and back (Unseal) only encrypted.
func TestTPMSealerSecretNeverOnTheBus(t *testing.T) {
	for _, pcrs := range [][]int{nil, {16}} {
		t.Run(fmt.Sprint(pcrs), func(t *testing.T) {
			sim, err := simulator.GetWithFixedSeedInsecure(seedA)
			if err != nil {
				t.Fatal(err)
			}
			bus := &busRecorder{TPMCloser: transport.FromReadWriteCloser(sim)}
			s, err := NewTPMSealer("", pcrs, WithTPMTransport(bus))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			secret := []byte("a KEK that must never be seen on the bus")
			mustUnseal(t, s, mustSeal(t, s, secret), secret)
			for _, msg := range bus.traffic {
				if bytes.Contains(msg, secret[:8]) {
					t.Fatalf("secret seen on the bus in %x", msg)
				}
			}
		})
	}
}
