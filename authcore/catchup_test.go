package authcore

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/bulwark-auth/bulwark/fsm"
)

// replica is a second node's state: it applies what the first node's
// store applied only when caught up (the follower an entry has not reached
// yet).
type replica struct {
	*localStore
	mu      sync.Mutex
	pending []fsm.Command
	calls   int
}

// follow makes every command leader applies reach r on its next catchUp.
func (r *replica) follow(leader *localStore) {
	leader.after = func(cmd fsm.Command) {
		r.mu.Lock()
		r.pending = append(r.pending, cmd)
		r.mu.Unlock()
	}
}

func (r *replica) catchUp(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	for _, cmd := range r.pending {
		if _, err := r.apply(cmd); err != nil && !errors.Is(err, fsm.ErrInvalidCommand) {
			return err
		}
	}
	r.pending = nil
	return nil
}

// A token minted on another node a moment ago, for a session this node has
// not applied yet, is accepted once this node has caught up with the
// leader, and not before; an older token whose session is missing is
// refused without asking the leader; a catch-up that fails refuses.
func TestAuthenticateCatchesUpForNewSessions(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	box := testBox(t)
	a, b := newLocalStore(t), &replica{localStore: newLocalStore(t)}
	b.follow(a)
	raise, _ := fsm.NewCommand(fsm.TypeClusterLevel, 1, 1, fsm.ClusterLevel{Level: fsm.MaxLevel})
	if _, err := a.Apply(ctx, raise); err != nil {
		t.Fatal(err)
	}
	n1 := newNodeService(t, a, "n1", Config{}, WithClock(clk), WithSecretBox(box))
	if err := n1.PublishSigningKey(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := n1.CreateUser(ctx, NewUser{Username: "alice", Password: pw}); err != nil {
		t.Fatal(err)
	}
	if err := b.catchUp(ctx); err != nil { // n2 holds everything so far
		t.Fatal(err)
	}
	node2 := func(catchUp func(context.Context) error) *Service {
		opts := []Option{WithClock(clk), WithSecretBox(box)}
		if catchUp != nil {
			opts = append(opts, WithCatchUp(catchUp))
		}
		return newNodeService(t, b, "n2", Config{}, opts...)
	}
	plain, n2 := node2(nil), node2(b.catchUp)
	failing := node2(func(context.Context) error { return errors.New("no leader") })

	tok := login(t, n1) // logged by n1; n2 has not applied it
	if _, err := plain.Authenticate(ctx, tok.AccessToken); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("without catching up: %v, want ErrInvalidToken", err)
	}
	if _, err := failing.Authenticate(ctx, tok.AccessToken); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("with a catch-up that fails: %v, want ErrInvalidToken", err)
	}
	p, err := n2.Authenticate(ctx, tok.AccessToken)
	if err != nil || p.SessionID != tok.SessionID || b.calls != 2 {
		t.Fatalf("after catching up: %+v %v (catch-ups %d); want the session, after one catch-up", p, err, b.calls)
	}
	// Known now: no further catch-up.
	if _, err := n2.Authenticate(ctx, tok.AccessToken); err != nil || b.calls != 2 {
		t.Fatalf("again: %v, catch-ups %d", err, b.calls)
	}

	// A token older than the window whose session is not here is refused
	// without asking the leader (a replayed old token costs nothing).
	old := login(t, n1)
	clk.Advance(catchUpWindow)
	if _, err := n2.Authenticate(ctx, old.AccessToken); !errors.Is(err, ErrInvalidToken) || b.calls != 2 {
		t.Fatalf("an old token whose session is missing: %v, catch-ups %d; want ErrInvalidToken and none", err, b.calls)
	}
	// A session ended on n1 stays ended here after a catch-up.
	ended := login(t, n1)
	pe, err := n1.Authenticate(ctx, ended.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := n1.Logout(ctx, pe); err != nil {
		t.Fatal(err)
	}
	if _, err := n2.Authenticate(ctx, ended.AccessToken); !errors.Is(err, ErrInvalidToken) || b.calls != 3 {
		t.Fatalf("a session ended on n1: %v, catch-ups %d; want ErrInvalidToken after one", err, b.calls)
	}
}
