package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/internal/waitfor"
)

type syncBuf struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	return s.b.Write(p)
}

func (s *syncBuf) snapshot() (string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String(), s.writes
}

func TestLogSinkBatchesAndFlushes(t *testing.T) {
	out := &syncBuf{}
	s := newLogSink(out)
	for i := 0; i < 1000; i++ {
		s.Write([]byte("a log line\n"))
	}
	if got, _ := out.snapshot(); got != "" {
		t.Fatal("lines were written before a flush")
	}
	// The ticker flushes within flushEvery.
	var writes int
	waitfor.True(t, "flushed by the ticker", 2*time.Second, 10*time.Millisecond, func() bool {
		var got string
		got, writes = out.snapshot()
		return strings.Count(got, "\n") == 1000
	})
	if writes > 2 {
		t.Errorf("1000 lines took %d writes", writes)
	}
	s.Write([]byte("last\n"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := out.snapshot(); !strings.HasSuffix(got, "last\n") {
		t.Error("Close did not flush")
	}
}
