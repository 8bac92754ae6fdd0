package authcore

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/bulwark-auth/bulwark/fsm"
)

func ctxFrom(ip string) context.Context {
	return WithRequestInfo(context.Background(), RequestInfo{IP: ip, Actor: "local-admin"})
}

func blocked(s *Service, ip string) (time.Duration, bool) {
	return s.Blocked(netip.MustParseAddr(ip))
}

// Detection from level 4: failures from one address reach the threshold
// and block it (only it); a successful login elsewhere goes on; the block
// ends with block_for, by the service's clock.
func TestDetectionBlocksAddress(t *testing.T) {
	s, clk := newAuthService(t, Config{Incident: IncidentConfig{BlockAfterFailures: 4, BlockAfterUsernames: -1,
		BlockFor: 10 * time.Minute}, IncidentExempt: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}})
	st := s.store.(*localStore)
	for i := range 4 {
		if _, ok := blocked(s, "192.0.2.7"); ok {
			t.Fatalf("blocked after %d failures", i)
		}
		if _, err := s.Login(ctxFrom("192.0.2.7"), fmt.Sprint("name", i%2), "a wrong password!"); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatal(err)
		}
		// An exempt address fails as often: never blocked.
		if _, err := s.Login(ctxFrom("10.9.3.4"), fmt.Sprint("other", i%2), "a wrong password!"); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatal(err)
		}
	}
	if v := st.versions[fsm.TypeLoginFailure]; v != 4 { // v3's detection rules, v4's audit cap (level 5)
		t.Fatalf("login.failure v%d at level %d", v, fsm.MaxLevel)
	}
	left, ok := blocked(s, "192.0.2.7")
	if !ok || left != 10*time.Minute {
		t.Fatalf("Blocked = %v, %v; want 10m, true", left, ok)
	}
	if _, ok := blocked(s, "::ffff:192.0.2.7"); !ok {
		t.Fatal("the IPv4-mapped form of a blocked address is not blocked")
	}
	for _, ip := range []string{"192.0.2.8", "10.9.3.4"} {
		if _, ok := blocked(s, ip); ok {
			t.Fatalf("%s blocked", ip)
		}
	}
	if _, err := s.Login(ctxFrom("192.0.2.8"), "alice", pw); err != nil {
		t.Fatal(err)
	}
	bs, err := s.Blocks(context.Background())
	if err != nil || len(bs) != 1 || bs[0].CIDR != "192.0.2.7/32" || !bs[0].Auto {
		t.Fatalf("Blocks = %+v, %v", bs, err)
	}
	if n, err := s.BlockedAddresses(); n != 1 || err != nil {
		t.Fatalf("BlockedAddresses = %d, %v", n, err)
	}
	clk.Advance(10*time.Minute - time.Second)
	if _, ok := blocked(s, "192.0.2.7"); !ok {
		t.Fatal("unblocked before block_for")
	}
	clk.Advance(time.Second)
	if _, ok := blocked(s, "192.0.2.7"); ok {
		t.Fatal("still blocked after block_for")
	}
	if bs, _ := s.Blocks(context.Background()); len(bs) != 0 {
		t.Fatalf("an expired block is listed: %+v", bs)
	}
	if n, _ := s.BlockedAddresses(); n != 0 {
		t.Fatalf("BlockedAddresses counts an expired block: %d", n)
	}
}

func TestManualBlocks(t *testing.T) {
	s, _ := newAuthService(t, Config{IncidentExempt: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}})
	ctx := ctxFrom("")
	b, err := s.AddBlock(ctx, "2001:db8:7::/48", 0, "scanner")
	if err != nil {
		t.Fatal(err)
	}
	if b.CIDR != "2001:db8:7::/48" || b.Until.Sub(b.CreatedAt) != time.Hour || b.Actor != "local-admin" || b.Auto {
		t.Fatalf("block = %+v", b)
	}
	if _, ok := blocked(s, "2001:db8:7:ff::1"); !ok {
		t.Fatal("an address inside a blocked range is not blocked")
	}
	if _, ok := blocked(s, "2001:db8:8::1"); ok {
		t.Fatal("an address outside the range is blocked")
	}
	if _, err := s.AddBlock(ctx, "192.0.2.9", 90*time.Second, ""); err != nil {
		t.Fatal(err)
	}
	if left, ok := blocked(s, "192.0.2.9"); !ok || left != 90*time.Second {
		t.Fatalf("Blocked = %v, %v", left, ok)
	}
	for _, bad := range []struct {
		cidr   string
		d      time.Duration
		reason string
	}{
		{"10.0.0.0/8", time.Hour, ""}, // holds the exempt range
		{"10.9.1.1", time.Hour, ""},   // inside it
		{"not an address", time.Hour, ""},
		{"192.0.2.10", 400 * 24 * time.Hour, ""},
		{"192.0.2.10", time.Hour, "bad\x1b[31m"},
	} {
		if _, err := s.AddBlock(ctx, bad.cidr, bad.d, bad.reason); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("AddBlock(%q, %s, %q) = %v, want ErrInvalidInput", bad.cidr, bad.d, bad.reason, err)
		}
	}
	// A block covering an exempt range, added by a node configured
	// otherwise, is not enforced for the exempt addresses.
	cmd, _ := fsm.NewCommand(fsm.TypeBlockAdd, 1, s.now().UnixNano(), fsm.BlockAdd{CIDR: "10.0.0.0/8", For: int64(time.Hour)})
	if _, err := s.store.Apply(ctx, cmd); err != nil {
		t.Fatal(err)
	}
	if _, ok := blocked(s, "10.8.0.1"); !ok {
		t.Fatal("10.0.0.0/8 does not block 10.8.0.1")
	}
	if _, ok := blocked(s, "10.9.0.1"); ok {
		t.Fatal("an exempt address is blocked")
	}
	if err := s.RemoveBlock(ctx, "10.0.0.0/8"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveBlock(ctx, "192.0.2.9/32"); err != nil {
		t.Fatal(err)
	}
	if _, ok := blocked(s, "192.0.2.9"); ok {
		t.Fatal("blocked after remove")
	}
	if err := s.RemoveBlock(ctx, "192.0.2.9"); !errors.Is(err, ErrBlockNotFound) {
		t.Fatalf("second remove: %v", err)
	}
	if bs, _ := s.Blocks(ctx); len(bs) != 1 {
		t.Fatalf("Blocks = %+v", bs)
	}
}

// Below level 4 no member may apply blocks: failures stay v2 and the
// blocklist commands refuse.
func TestBlocksBelowLevel4(t *testing.T) {
	s, _ := newAuthServiceAt(t, Config{Incident: IncidentConfig{BlockAfterFailures: 2}}, 3)
	st := s.store.(*localStore)
	for range 3 {
		s.Login(ctxFrom("192.0.2.7"), "x", "a wrong password!")
	}
	if st.versions[fsm.TypeLoginFailure] != 2 {
		t.Fatalf("login.failure v%d at level 3", st.versions[fsm.TypeLoginFailure])
	}
	if _, ok := blocked(s, "192.0.2.7"); ok {
		t.Fatal("blocked at level 3")
	}
	if _, err := s.AddBlock(ctxFrom(""), "192.0.2.7", time.Hour, ""); !errors.Is(err, ErrBlocksUnavailable) {
		t.Fatalf("AddBlock at level 3: %v", err)
	}
}

// genStore is a localStore that tells its blocks generation without a
// view, as node does.
type genStore struct{ *localStore }

func (g genStore) BlocksGeneration() uint64 { return g.s.BlocksGeneration() }

// Both ways of checking the generation see a block added, and one removed.
func TestBlockedSeesChanges(t *testing.T) {
	for _, fast := range []bool{false, true} {
		st := newLocalStore(t)
		raise, _ := fsm.NewCommand(fsm.TypeClusterLevel, 1, 1, fsm.ClusterLevel{Level: fsm.MaxLevel})
		st.Apply(context.Background(), raise)
		var store Store = st
		if fast {
			store = genStore{st}
		}
		s, err := New(store, Config{Hash: testHash, Policy: PasswordPolicy{MinLength: 12, MaxLength: 128}})
		if err != nil {
			t.Fatal(err)
		}
		for i, step := range []func() error{
			func() error { _, err := s.AddBlock(ctxFrom(""), "192.0.2.0/24", time.Hour, ""); return err },
			func() error { return s.RemoveBlock(ctxFrom(""), "192.0.2.0/24") },
			func() error { _, err := s.AddBlock(ctxFrom(""), "192.0.2.1", time.Hour, ""); return err },
		} {
			_, before := blocked(s, "192.0.2.1") // caches the list
			if err := step(); err != nil {
				t.Fatal(err)
			}
			if _, after := blocked(s, "192.0.2.1"); after == before {
				t.Errorf("fast=%v, step %d: Blocked stayed %v", fast, i, after)
			}
		}
	}
}

// BenchmarkBlocked is the check every request pays: the generation
// compared (in a read transaction, or, as node offers, without one), then
// a map lookup and a scan of the ranges that are not host routes or /64s.
func BenchmarkBlocked(b *testing.B) {
	for _, c := range []struct {
		n    int
		fast bool
	}{{0, false}, {1000, false}, {0, true}, {1000, true}} {
		b.Run(fmt.Sprintf("blocks=%d/nontx=%v", c.n, c.fast), func(b *testing.B) {
			n := c.n
			st := newLocalStore(b)
			raise, _ := fsm.NewCommand(fsm.TypeClusterLevel, 1, 1, fsm.ClusterLevel{Level: fsm.MaxLevel})
			st.Apply(context.Background(), raise)
			var store Store = st
			if c.fast {
				store = genStore{st}
			}
			s, err := New(store, Config{Hash: testHash, Policy: PasswordPolicy{MinLength: 12, MaxLength: 128}})
			if err != nil {
				b.Fatal(err)
			}
			for i := range n {
				if _, err := s.AddBlock(ctxFrom(""), fmt.Sprintf("198.18.%d.%d", i/256, i%256), time.Hour, ""); err != nil {
					b.Fatal(err)
				}
			}
			a := netip.MustParseAddr("192.0.2.1")
			b.ResetTimer()
			for b.Loop() {
				if _, ok := s.Blocked(a); ok {
					b.Fatal("blocked")
				}
			}
		})
	}
}
