package authcore

import (
	"context"
	"testing"
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
