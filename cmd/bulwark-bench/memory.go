package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

// rssWatch follows the peak resident memory (VmHWM) of the node
// processes: per phase, by resetting the kernel's high-water mark before
// the phase (writing 5 to /proc/PID/clear_refs) and reading it after,
// and over the whole run, by folding every reading into overall before
// each reset. A phase's peak includes its workers' set-up (their logins).
type rssWatch struct {
	pids []int
	mu   sync.Mutex
	// overall is the highest VmHWM read of any process so far, in KiB.
	overall int64
	// resetErr is why a high-water mark could not be reset (nil: every
	// reset worked); then each phase's peak is the peak since the start.
	resetErr error
}

func newRSSWatch(pids ...int) *rssWatch { return &rssWatch{pids: pids} }

// reset folds the current peaks into overall and starts a new phase.
func (w *rssWatch) reset() {
	if w == nil {
		return
	}
	w.peak()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, pid := range w.pids {
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil && w.resetErr == nil {
			w.resetErr = err
		}
	}
}

// peak returns the highest VmHWM of the processes since the last reset,
// in MiB, and folds it into overall.
func (w *rssWatch) peak() float64 {
	if w == nil {
		return 0
	}
	var most int64
	for _, pid := range w.pids {
		if kib, err := vmHWM(pid); err == nil {
			most = max(most, kib)
		}
	}
	w.mu.Lock()
	w.overall = max(w.overall, most)
	w.mu.Unlock()
	return float64(most) / 1024
}

// overallMiB is the highest peak seen over the whole watch, in MiB.
func (w *rssWatch) overallMiB() float64 {
	if w == nil {
		return 0
	}
	w.peak()
	w.mu.Lock()
	defer w.mu.Unlock()
	return float64(w.overall) / 1024
}

// vmHWM reads a process's peak resident set size in KiB from
// /proc/PID/status.
func vmHWM(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmHWM", pid)
}
