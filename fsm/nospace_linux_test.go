package fsm

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestApplyBatchWaitsForSpace: a batch whose commit the full disk refuses
// is neither lost nor a crash: ApplyBatch tells SetNoSpace's function and
// tries again, and applies every entry once space returns, leaving a file
// that passes bbolt's check.
func TestApplyBatchWaitsForSpace(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs (run as root): %v %s", err, out)
	}
	s, err := Open(filepath.Join(dir, "state.db"))
	if err != nil {
		exec.Command("umount", dir).Run()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		closeAndCheck(t, s)
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount: %v %s", err, out)
		}
	})
	appendSamples(t, s, 1, 10)

	// Fill the disk.
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte{1}, 4096)
	for i := 0; ; i++ {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
		if i > 1<<12 {
			t.Fatal("the 4 MiB tmpfs never filled")
		}
	}
	f.Close()

	told := make(chan error, 1)
	var endTold atomic.Bool // the last call said the batch no longer waits
	s.SetNoSpace(func(err error) {
		endTold.Store(err == nil)
		select {
		case told <- err:
		default:
		}
	})
	var batch []Entry
	for i := 0; i < 400; i++ {
		batch = append(batch, auditCmd(t, 11+uint64(i), t0.Add(time.Duration(i)*time.Second), sampleAudit(i)))
	}
	done := make(chan []Result, 1)
	go func() { done <- s.ApplyBatch(batch) }()
	select {
	case err := <-told:
		if !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("SetNoSpace's function was told %v, want ENOSPC", err)
		}
	case res := <-done:
		t.Fatalf("a batch of 400 entries committed on a full disk (%d results)", len(res))
	case <-time.After(10 * time.Second):
		t.Fatal("ApplyBatch neither committed nor reported a full disk within 10 s")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-done:
		for i, r := range res {
			if r.Err != nil {
				t.Fatalf("entry %d: %v", i, r.Err)
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ApplyBatch did not finish within 10 s of space returning")
	}
	if !endTold.Load() {
		t.Error("SetNoSpace's function was not told (nil) that the commit went through")
	}
	if got := len(allAudit(t, s)); got != 410 {
		t.Errorf("%d audit entries, want 410", got)
	}
	if idx, _, _ := s.Applied(); idx != 410 {
		t.Errorf("applied index %d, want 410", idx)
	}
}
