package authcore

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/bulwark-auth/bulwark/fsm"
)

// BenchmarkRefresh is one refresh-token rotation, proposal to signed
// answer, on a store that applies each command as a one-node Raft would
// (encoded, dispatched, one bbolt transaction; see localStore).
func BenchmarkRefresh(b *testing.B) {
	ms, _, _ := newMembers(b, "", "n1")
	ctx := context.Background()
	tok, err := ms[0].s.Login(ctx, "alice", pw)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if tok, err = ms[0].s.Refresh(ctx, tok.RefreshToken); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRefreshFormat compares, in one run, a rotation of a refresh
// token of each format at level 5 on a one-node store: "stored" (random,
// a record and an index entry kept per token, session.refresh v2: a node
// without the data key) and "named" (session id and generation under a
// MAC, verified before proposing, session.refresh v3). What each keeps
// in state.db: fsm's BenchmarkRefreshState.
func BenchmarkRefreshFormat(b *testing.B) {
	for _, named := range []bool{false, true} {
		name := "stored"
		if named {
			name = "named"
		}
		b.Run(name, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "state.db")
			fs, err := fsm.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { fs.Close() })
			st := &localStore{s: fs}
			ctx := context.Background()
			raise, _ := fsm.NewCommand(fsm.TypeClusterLevel, 1, 1, fsm.ClusterLevel{Level: fsm.MaxLevel})
			if _, err := st.Apply(ctx, raise); err != nil {
				b.Fatal(err)
			}
			opts := []Option{WithClock(newClock())}
			if named {
				opts = append(opts, WithSecretBox(testBox(b)))
			}
			s := newNodeService(b, st, "n1", Config{}, opts...)
			if err := s.PublishSigningKey(ctx); err != nil {
				b.Fatal(err)
			}
			if _, err := s.CreateUser(ctx, NewUser{Username: "alice", Password: pw}); err != nil {
				b.Fatal(err)
			}
			tok, err := s.Login(ctx, "alice", pw)
			if err != nil {
				b.Fatal(err)
			}
			if namesSession(tok.RefreshToken) != named {
				b.Fatalf("named %v, token %q", named, tok.RefreshToken)
			}
			b.ReportAllocs()
			for b.Loop() {
				if tok, err = s.Refresh(ctx, tok.RefreshToken); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
