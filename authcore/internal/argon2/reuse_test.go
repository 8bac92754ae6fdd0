package argon2

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	xargon2 "golang.org/x/crypto/argon2"
)

// idCase is one IDKey call.
type idCase struct {
	password, salt []byte
	time, memory   uint32
	threads        uint8
	keyLen         uint32
}

func (c idCase) String() string {
	return fmt.Sprintf("t=%d m=%d p=%d len=%d pw=%d salt=%d", c.time, c.memory, c.threads, c.keyLen, len(c.password), len(c.salt))
}

func randomCase(r *rand.Rand) idCase {
	c := idCase{
		password: make([]byte, r.IntN(65)),
		salt:     make([]byte, 8+r.IntN(57)),
		time:     1 + r.Uint32N(3),
		threads:  uint8(1 + r.IntN(4)),
		keyLen:   4 + r.Uint32N(61),
	}
	// From below the 8 KiB per lane minimum (rounded up) to a few MiB.
	c.memory = r.Uint32N(8 << r.IntN(10))
	for _, b := range [][]byte{c.password, c.salt} {
		for i := range b {
			b[i] = byte(r.Uint32())
		}
	}
	return c
}

// TestMatchesXCrypto checks IDKey against x/crypto on random parameters,
// one after another so that each call reuses memory the last one left in
// the pool, then from several goroutines at once.
func TestMatchesXCrypto(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	cases := make([]idCase, 150)
	for i := range cases {
		cases[i] = randomCase(r)
	}
	check := func(c idCase) error {
		got := IDKey(c.password, c.salt, c.time, c.memory, c.threads, c.keyLen)
		want := xargon2.IDKey(c.password, c.salt, c.time, c.memory, c.threads, c.keyLen)
		if !bytes.Equal(got, want) {
			return fmt.Errorf("%v: got %x, x/crypto %x", c, got, want)
		}
		return nil
	}
	for _, c := range cases {
		if err := check(c); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(cases))
	for g := range 4 {
		wg.Go(func() {
			for i := g; i < len(cases); i += 4 {
				if err := check(cases[i]); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestStaleMemoryIsOverwritten runs every mode in memory full of random
// bytes, as a pooled memory holds another call's blocks, and checks the
// result against x/crypto (argon2i, argon2id) or the same call in zeroed
// memory (argon2d, which x/crypto does not export). It fails if any block
// is read before this call wrote it.
func TestStaleMemoryIsOverwritten(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	password, salt := []byte("password"), []byte("somesalt")
	for _, mode := range []int{argon2d, argon2i, argon2id} {
		for _, threads := range []uint8{1, 3, 4} {
			for _, time := range []uint32{1, 2, 3} {
				const memory = 100 // not a multiple of 4 × threads for 3
				stale := make([]block, blocksFor(memory, threads)+7)
				for i := range stale {
					for j := range stale[i] {
						stale[i][j] = r.Uint64()
					}
				}
				got := deriveKeyIn(stale, mode, password, salt, nil, nil, time, memory, threads, 32)
				var want []byte
				switch mode {
				case argon2i:
					want = xargon2.Key(password, salt, time, memory, threads, 32)
				case argon2id:
					want = xargon2.IDKey(password, salt, time, memory, threads, 32)
				default:
					want = deriveKeyIn(make([]block, blocksFor(memory, threads)), mode, password, salt, nil, nil, time, memory, threads, 32)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("mode %d t=%d p=%d in stale memory: got %x, want %x", mode, time, threads, got, want)
				}
			}
		}
	}
}

func TestPooledMemoryFits(t *testing.T) {
	for _, c := range []struct {
		n      int
		memory uint32
		want   bool
	}{{64, 64, true}, {128, 64, true}, {129, 64, false}, {63, 64, false}, {19456, 19456, true}, {1 << 22, 19456, false}} {
		if got := fits(c.n, c.memory); got != c.want {
			t.Errorf("fits(%d, %d) = %v, want %v", c.n, c.memory, got, c.want)
		}
	}
}

// FuzzMatchesXCrypto compares IDKey with x/crypto on fuzzed input; the
// cost parameters are kept small so that each input runs fast.
func FuzzMatchesXCrypto(f *testing.F) {
	f.Add([]byte("password"), []byte("somesalt"), uint8(2), uint16(64), uint8(1), uint8(32))
	f.Add([]byte{}, []byte("saltsaltsalt"), uint8(1), uint16(8), uint8(4), uint8(4))
	f.Fuzz(func(t *testing.T, password, salt []byte, time uint8, memory uint16, threads, keyLen uint8) {
		tm, th, kl := uint32(time%4)+1, threads%8+1, uint32(keyLen%64)+4
		m := uint32(memory % 2048)
		got := IDKey(password, salt, tm, m, th, kl)
		want := xargon2.IDKey(password, salt, tm, m, th, kl)
		if !bytes.Equal(got, want) {
			t.Fatalf("t=%d m=%d p=%d len=%d: got %x, x/crypto %x", tm, m, th, kl, got, want)
		}
	})
}

// BenchmarkIDKeyParallel compares this package with x/crypto at bulwark's
// default cost (m=19456 KiB, t=2, p=1) with one hash per core, as a busy
// server runs them:
//
//	go test -run '^$' -bench IDKeyParallel -benchtime 200x -count 5 ./authcore/internal/argon2
func BenchmarkIDKeyParallel(b *testing.B) {
	for _, impl := range []struct {
		name  string
		idKey func(password, salt []byte, time, memory uint32, threads uint8, keyLen uint32) []byte
	}{{"pooled", IDKey}, {"x-crypto", xargon2.IDKey}} {
		b.Run(impl.name, func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					impl.idKey([]byte("password"), []byte("saltsaltsaltsalt"), 2, 19456, 1, 32)
				}
			})
		})
	}
}

// TestMemoriesBoundedByConcurrency checks that no more memories are
// allocated than calls run at once, whichever goroutines and Ps make
// them: a sync.Pool's P-local slots hid free memories from the other Ps,
// which then allocated 19 MiB more each (5 memories for 2 hash slots).
func TestMemoriesBoundedByConcurrency(t *testing.T) {
	prev := runtime.GOMAXPROCS(4)
	defer runtime.GOMAXPROCS(prev)
	const callers = 3
	var mu sync.Mutex
	seen := map[*[]block]bool{} // held, so no collection frees one meanwhile
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for range 300 {
				// Each call on a new goroutine, which any P may run.
				done := make(chan struct{})
				go func() {
					defer close(done)
					b := getBlocks(64)
					mu.Lock()
					seen[b] = true
					mu.Unlock()
					time.Sleep(time.Microsecond)
					putBlocks(b)
				}()
				<-done
			}
		})
	}
	wg.Wait()
	if len(seen) > callers {
		t.Errorf("%d callers at once made %d memories", callers, len(seen))
	}
}

// TestFreeMemoryIsCollected checks that a memory no call uses is freed by
// the next garbage collection: an idle node gives its hashes' memory back.
func TestFreeMemoryIsCollected(t *testing.T) {
	b := getBlocks(64)
	freed := make(chan struct{})
	runtime.AddCleanup(b, func(ch chan struct{}) { close(ch) }, freed)
	putBlocks(b)
	b = nil
	runtime.GC()
	select {
	case <-freed:
	case <-time.After(5 * time.Second):
		t.Fatal("a free memory survived a garbage collection")
	}
}
