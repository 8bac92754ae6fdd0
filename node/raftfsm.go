package node

import (
	"io"

	"github.com/hashicorp/raft"

	"github.com/bulwark-auth/bulwark/fsm"
)

// raftFSM adapts fsm.Store to Raft. It only translates: the dispatcher
// lives in fsm, so tests and recovery can replay entries without Raft.
type raftFSM struct {
	store *fsm.Store
	// applied, if set, is called after every batch (wakes forwarders
	// waiting for their entry to be applied here).
	applied func()
}

var _ raft.BatchingFSM = (*raftFSM)(nil)

func (f *raftFSM) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies a whole Raft batch in one state.db transaction.
func (f *raftFSM) ApplyBatch(logs []*raft.Log) []any {
	entries := make([]fsm.Entry, len(logs))
	for i, l := range logs {
		entries[i] = fsm.Entry{Index: l.Index, Term: l.Term, Command: l.Type == raft.LogCommand, Data: l.Data}
	}
	results := f.store.ApplyBatch(entries)
	if f.applied != nil {
		f.applied()
	}
	out := make([]any, len(results))
	for i, r := range results {
		out[i] = r
	}
	return out
}

func (f *raftFSM) Snapshot() (raft.FSMSnapshot, error) {
	s, err := f.store.Snapshot()
	if err != nil {
		return nil, err
	}
	return snapshot{s}, nil
}

func (f *raftFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	err := f.store.Restore(rc)
	if f.applied != nil {
		f.applied()
	}
	return err
}

type snapshot struct{ s *fsm.Snapshot }

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.s.WriteTo(sink); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s snapshot) Release() { s.s.Release() }
