package main

// The sd_notify protocol, by hand: one datagram of newline-separated
// VAR=value assignments sent to the Unix socket systemd names in
// $NOTIFY_SOCKET (a path, or an abstract name written with a leading '@').
// Without NOTIFY_SOCKET (not started by systemd, or Type= is not notify)
// every function here does nothing. See sd_notify(3) and
// systemd.service(5) on Type=notify and WatchdogSec=.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// notifyReady tells systemd the node is up (READY=1) with a one-line
// status for `systemctl status`. Call it once, after the keys are unsealed
// and the listeners serve.
func notifyReady(status string) error {
	return sdNotify("READY=1", statusLine(status))
}

// notifyStopping tells systemd the node is shutting down (STOPPING=1), so
// it is shown as deactivating while it drains.
func notifyStopping() error {
	return sdNotify("STOPPING=1", statusLine("draining connections"))
}

// notifyStatus updates the free-form status line alone.
func notifyStatus(status string) error {
	return sdNotify(statusLine(status))
}

// runWatchdog pings systemd's watchdog (WATCHDOG=1) every WATCHDOG_USEC/2
// while healthy returns true, until ctx ends. When the service has no
// watchdog (WATCHDOG_USEC unset, or WATCHDOG_PID naming another process)
// it returns at once.
//
// healthy should answer whether this process still works (its loops turn,
// it can reach its own state), not whether the cluster is ready: a node
// waiting for a quorum is alive, and a watchdog that kills it for lack of
// a leader only restarts it into the same wait. Once healthy has returned
// false for WatchdogSec, systemd kills the process (SIGABRT, see the unit)
// and Restart=on-failure starts it again.
func runWatchdog(ctx context.Context, healthy func() bool) {
	interval, ok := watchdogInterval()
	if !ok {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if healthy() {
			// A lost ping is retried on the next tick; there is nothing
			// better to do with the error.
			_ = sdNotify("WATCHDOG=1")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// watchdogInterval is half the watchdog timeout systemd set for this
// process, and whether there is one.
func watchdogInterval() (time.Duration, bool) {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return 0, false
	}
	usec, err := strconv.ParseUint(os.Getenv("WATCHDOG_USEC"), 10, 63)
	if err != nil || usec == 0 {
		return 0, false
	}
	if p := os.Getenv("WATCHDOG_PID"); p != "" {
		pid, err := strconv.Atoi(p)
		if err != nil || pid != os.Getpid() {
			return 0, false
		}
	}
	d := time.Duration(usec) * time.Microsecond / 2
	if d < time.Millisecond {
		d = time.Millisecond
	}
	return d, true
}

// statusLine is a STATUS= assignment, or "" for an empty status. The
// protocol is line-based, so newlines become spaces.
func statusLine(status string) string {
	if status == "" {
		return ""
	}
	return "STATUS=" + strings.NewReplacer("\n", " ", "\r", " ").Replace(status)
}

// sdNotify sends the non-empty assignments as one datagram to
// $NOTIFY_SOCKET. It is a no-op without NOTIFY_SOCKET.
func sdNotify(assignments ...string) error {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return nil
	}
	// Go's sockaddr code turns a leading '@' into the NUL byte of an
	// abstract socket name, which is what systemd's '@' means.
	if name[0] != '/' && name[0] != '@' {
		return fmt.Errorf("sd_notify: unsupported NOTIFY_SOCKET %q", name)
	}
	var msg []string
	for _, a := range assignments {
		if a != "" {
			msg = append(msg, a)
		}
	}
	if len(msg) == 0 {
		return errors.New("sd_notify: empty message")
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer conn.Close()
	if err := conn.SetWriteDeadline(time.Now().Add(time.Second)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	if _, err := conn.Write([]byte(strings.Join(msg, "\n") + "\n")); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}
