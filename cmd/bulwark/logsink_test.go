package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
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
	deadline := time.Now().Add(2 * time.Second)
	for {
		got, writes := out.snapshot()
		if strings.Count(got, "\n") == 1000 {
			if writes > 2 {
				t.Errorf("1000 lines took %d writes", writes)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not flushed by the ticker")
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.Write([]byte("last\n"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := out.snapshot(); !strings.HasSuffix(got, "last\n") {
		t.Error("Close did not flush")
	}
}
