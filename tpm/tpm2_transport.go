package tpm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

const (
	tpmDialTimeout    = 5 * time.Second
	tpmCommandTimeout = 30 * time.Second // far above what an ECC primary key takes
	tpmHeaderLen      = 10               // tag (2), size (4), command or response code (4)
	tpmMaxResponse    = 64 << 10
	tpmRetries        = 8 // 10 ms doubling: about 2.5 s in all
)

// openDevice opens the TPM that d names. Every error wraps ErrNoTPM.
func openDevice(d Device) (transport.TPMCloser, error) {
	switch d.Kind {
	case DeviceKindPath:
		if _, err := os.Stat(d.Addr); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%w: no TPM at %s: %w (is a TPM 2.0 enabled in the firmware and its driver loaded? "+
					"Without one, seal.mode = \"software\" must be chosen explicitly)", ErrNoTPM, d.Addr, err)
			}
			return nil, fmt.Errorf("%w: no TPM at %s: %w", ErrNoTPM, d.Addr, err)
		}
		t, err := linuxtpm.Open(d.Addr)
		switch {
		case errors.Is(err, fs.ErrPermission):
			return nil, fmt.Errorf("%w: cannot open %s: %w (run bulwark as a user allowed to use the TPM, usually the tss group)",
				ErrNoTPM, d.Addr, err)
		case err != nil:
			return nil, fmt.Errorf("%w: cannot open %s: %w", ErrNoTPM, d.Addr, err)
		}
		return t, nil
	case DeviceKindTCP, DeviceKindUnix:
		network := "tcp"
		if d.Kind == DeviceKindUnix {
			network = "unix"
		}
		s := &streamTPM{network: network, addr: d.Addr, label: d.String()}
		if err := s.dial(); err != nil {
			return nil, err
		}
		return s, nil
	default:
		return nil, fmt.Errorf("%w: unknown device kind %q", ErrNoTPM, d.Kind)
	}
}

// streamTPM is a raw TPM command channel over a stream socket, as swtpm
// offers with --server type=tcp or type=unixio: each command is written as
// is and the response is read back, its length taken from its header. It
// sends no platform (power, locality) commands, unlike the Microsoft
// simulator protocol of go-tpm's transport/tcp. A broken connection is
// redialled on the next command.
type streamTPM struct {
	network, addr, label string

	mu   sync.Mutex
	conn net.Conn // nil when not connected
}

func (s *streamTPM) dial() error {
	conn, err := net.DialTimeout(s.network, s.addr, tpmDialTimeout)
	if err != nil {
		return fmt.Errorf("%w: cannot reach the TPM at %s: %w", ErrNoTPM, s.label, err)
	}
	s.conn = conn
	return nil
}

// Send implements transport.TPM.
func (s *streamTPM) Send(cmd []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		if err := s.dial(); err != nil {
			return nil, err
		}
	}
	rsp, err := s.roundTrip(cmd)
	if err != nil {
		s.conn.Close()
		s.conn = nil
		return nil, fmt.Errorf("%w: TPM at %s: %w", ErrNoTPM, s.label, err)
	}
	return rsp, nil
}

func (s *streamTPM) roundTrip(cmd []byte) ([]byte, error) {
	if err := s.conn.SetDeadline(time.Now().Add(tpmCommandTimeout)); err != nil {
		return nil, err
	}
	if _, err := s.conn.Write(cmd); err != nil {
		return nil, err
	}
	rsp := make([]byte, tpmHeaderLen)
	if _, err := io.ReadFull(s.conn, rsp); err != nil {
		return nil, fmt.Errorf("reading response header: %w", err)
	}
	size := binary.BigEndian.Uint32(rsp[2:6])
	if size < tpmHeaderLen || size > tpmMaxResponse {
		return nil, fmt.Errorf("response claims %d bytes", size)
	}
	rsp = append(rsp, make([]byte, size-tpmHeaderLen)...)
	if _, err := io.ReadFull(s.conn, rsp[tpmHeaderLen:]); err != nil {
		return nil, fmt.Errorf("reading response: %w", err)
	}
	return rsp, nil
}

// Close implements io.Closer.
func (s *streamTPM) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}

// retryTPM resends a command that the TPM answered with TPM_RC_RETRY,
// TPM_RC_YIELDED or TPM_RC_TESTING: the TPM did not execute it (or made
// progress it will resume), so sending the same bytes again is correct even
// for commands in an authorisation session.
type retryTPM struct {
	transport.TPMCloser
	delay time.Duration // first back-off; doubles on each retry
}

// Send implements transport.TPM.
func (r retryTPM) Send(cmd []byte) ([]byte, error) {
	delay := r.delay
	for attempt := 0; ; attempt++ {
		rsp, err := r.TPMCloser.Send(cmd)
		if err != nil || attempt == tpmRetries || len(rsp) < tpmHeaderLen {
			return rsp, err
		}
		switch tpm2.TPMRC(binary.BigEndian.Uint32(rsp[6:10])) {
		case tpm2.TPMRCRetry, tpm2.TPMRCYielded, tpm2.TPMRCTesting:
			time.Sleep(delay)
			delay *= 2
		default:
			return rsp, nil
		}
	}
}
