package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/internal/waitfor"
)

// fakeSystemd stands in for systemd's notification socket.
type fakeSystemd struct{ conn *net.UnixConn }

// listenNotify listens on a unixgram socket at name (a path, or '@' and an
// abstract name) and points NOTIFY_SOCKET at it.
func listenNotify(t *testing.T, name string) *fakeSystemd {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen %q: %v", name, err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", name)
	return &fakeSystemd{conn}
}

// read returns the next datagram, failing the test after 5 s.
func (f *fakeSystemd) read(t *testing.T) string {
	t.Helper()
	buf := make([]byte, 4096)
	f.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := f.conn.Read(buf)
	if err != nil {
		t.Fatalf("read notification: %v", err)
	}
	return string(buf[:n])
}

// count reads and counts the datagrams that arrive within d.
func (f *fakeSystemd) count(d time.Duration) int {
	buf := make([]byte, 4096)
	f.conn.SetReadDeadline(time.Now().Add(d))
	n := 0
	for {
		if _, err := f.conn.Read(buf); err != nil {
			return n
		}
		n++
	}
}

func TestNotifyReadyPathSocket(t *testing.T) {
	sd := listenNotify(t, filepath.Join(t.TempDir(), "notify.sock"))
	if err := notifyReady("serving; seal=tpm\nnode=n1"); err != nil {
		t.Fatal(err)
	}
	if got, want := sd.read(t), "READY=1\nSTATUS=serving; seal=tpm node=n1\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if err := notifyStopping(); err != nil {
		t.Fatal(err)
	}
	if got := sd.read(t); !strings.HasPrefix(got, "STOPPING=1\n") {
		t.Fatalf("got %q, want STOPPING=1 first", got)
	}
	if err := notifyStatus("rotating keys"); err != nil {
		t.Fatal(err)
	}
	if got, want := sd.read(t), "STATUS=rotating keys\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestNotifyReadyAbstractSocket(t *testing.T) {
	name := fmt.Sprintf("@bulwark-notify-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	sd := listenNotify(t, name)
	if err := notifyReady(""); err != nil {
		t.Fatal(err)
	}
	if got, want := sd.read(t), "READY=1\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestNotifyWithoutSocketIsNoop(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "1000")
	if err := notifyReady("x"); err != nil {
		t.Fatalf("notifyReady without NOTIFY_SOCKET: %v", err)
	}
	if err := notifyStopping(); err != nil {
		t.Fatalf("notifyStopping without NOTIFY_SOCKET: %v", err)
	}
	done := make(chan struct{})
	go func() {
		runWatchdog(context.Background(), func() bool { return true })
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("runWatchdog without NOTIFY_SOCKET did not return")
	}
}

func TestNotifyErrors(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "nobody-listens"))
	if err := notifyReady("x"); err == nil {
		t.Fatal("notifyReady to a missing socket: no error")
	}
	t.Setenv("NOTIFY_SOCKET", "vsock:2:1234")
	if err := notifyReady("x"); err == nil {
		t.Fatal("notifyReady to an unsupported address: no error")
	}
}

func TestNotifyWatchdogPingsWhileHealthy(t *testing.T) {
	sd := listenNotify(t, filepath.Join(t.TempDir(), "notify.sock"))
	t.Setenv("WATCHDOG_USEC", "40000") // pings every 20 ms
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))

	var healthy atomic.Bool
	healthy.Store(true)
	var unhealthyCalls atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		runWatchdog(ctx, func() bool {
			if healthy.Load() {
				return true
			}
			unhealthyCalls.Add(1)
			return false
		})
		close(done)
	}()
	for i := 0; i < 3; i++ {
		if got := sd.read(t); got != "WATCHDOG=1\n" {
			t.Fatalf("ping %d: got %q", i, got)
		}
	}

	// Unhealthy: the loop keeps asking but sends nothing. The loop is
	// sequential and a datagram is queued when Write returns, so once
	// healthy() has answered false every earlier ping is in the queue.
	healthy.Store(false)
	waitfor.True(t, "health asked once", 5*time.Second, time.Millisecond, func() bool { return unhealthyCalls.Load() >= 1 })
	sd.count(10 * time.Millisecond)
	waitfor.True(t, "health asked four times", 5*time.Second, time.Millisecond, func() bool { return unhealthyCalls.Load() >= 4 })
	if n := sd.count(10 * time.Millisecond); n != 0 {
		t.Fatalf("%d pings sent while unhealthy", n)
	}

	healthy.Store(true)
	if got := sd.read(t); got != "WATCHDOG=1\n" {
		t.Fatalf("after recovery: got %q", got)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("runWatchdog did not return after cancel")
	}
}

func TestNotifyWatchdogOtherPID(t *testing.T) {
	listenNotify(t, filepath.Join(t.TempDir(), "notify.sock"))
	t.Setenv("WATCHDOG_USEC", "40000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()+1))
	if _, ok := watchdogInterval(); ok {
		t.Fatal("watchdog enabled for another process's WATCHDOG_PID")
	}
	t.Setenv("WATCHDOG_PID", "")
	t.Setenv("WATCHDOG_USEC", "not-a-number")
	if _, ok := watchdogInterval(); ok {
		t.Fatal("watchdog enabled for a bad WATCHDOG_USEC")
	}
	t.Setenv("WATCHDOG_USEC", "30000000")
	if d, ok := watchdogInterval(); !ok || d != 15*time.Second {
		t.Fatalf("WatchdogSec=30s: interval %v, %v; want 15s", d, ok)
	}
}
