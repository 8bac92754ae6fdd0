// Package fsmtest is a replicated state without Raft, for tests of the
// packages that propose commands: each Apply encodes the command, applies
// it as the next log entry to a real fsm.Store, and returns its result,
// the way a one-node cluster would. Only tests import it.
package fsmtest

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/bulwark-auth/bulwark/fsm"
)

// Store applies commands in order to an fsm.Store in a test's temporary
// directory.
type Store struct {
	mu    sync.Mutex
	s     *fsm.Store
	index uint64
}

// New opens a Store that t closes at its end.
func New(t testing.TB) *Store {
	t.Helper()
	s, err := fsm.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &Store{s: s}
}

// Apply commits cmd as the next entry and returns its result.
func (s *Store) Apply(_ context.Context, cmd fsm.Command) (any, error) {
	b, err := cmd.Encode()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index++
	r := s.s.ApplyBatch([]fsm.Entry{{Index: s.index, Term: 1, Command: true, Data: b}})[0]
	return r.Value, r.Err
}

// View reads the state.
func (s *Store) View(fn func(fsm.Reader) error) error { return s.s.View(fn) }
