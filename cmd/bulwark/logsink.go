package main

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// logSink batches the daemon's log lines into few writes: a request's log
// line costs a copy into a buffer instead of a write(2) made while slog's
// handler holds its lock, which at thousands of requests a second
// serialised the handlers behind the log. The buffer is flushed every
// flushEvery, when it fills, and by Close; a crash loses at most the last
// flushEvery of lines.
type logSink struct {
	mu   sync.Mutex
	w    *bufio.Writer
	done chan struct{}
	wg   sync.WaitGroup
}

const flushEvery = 100 * time.Millisecond

func newLogSink(w io.Writer) *logSink {
	s := &logSink{w: bufio.NewWriterSize(w, 64<<10), done: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(flushEvery)
		defer t.Stop()
		for {
			select {
			case <-s.done:
				return
			case <-t.C:
				s.Flush()
			}
		}
	}()
	return s
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// Flush writes out what is buffered.
func (s *logSink) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Flush()
}

// Close stops the flusher and flushes the rest.
func (s *logSink) Close() error {
	close(s.done)
	s.wg.Wait()
	return s.Flush()
}
