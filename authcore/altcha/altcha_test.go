package altcha

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

var key = []byte("0123456789abcdef0123456789abcdef")

func TestSolveAndVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	ch, err := New(key, 5000, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	sol, err := Solve(context.Background(), ch)
	if err != nil {
		t.Fatal(err)
	}
	p, exp, err := Verify(key, sol, now)
	if err != nil || p.Challenge != ch.Challenge || !exp.Equal(now.Add(time.Minute)) {
		t.Fatalf("verify: %+v %v %v", p, exp, err)
	}
	if _, _, err := Verify(key, sol, now.Add(time.Minute)); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired: %v", err)
	}
	if _, _, err := Verify([]byte("another key, another cluster...."), sol, now); !errors.Is(err, ErrForged) {
		t.Fatalf("another key: %v", err)
	}
	// A wrong number, and a salt moved to a later expiry (its hash no
	// longer matches): forged.
	var q Payload
	raw, _ := base64.StdEncoding.DecodeString(sol)
	json.Unmarshal(raw, &q)
	for _, change := range []func(*Payload){
		func(p *Payload) { p.Number++ },
		func(p *Payload) { p.Salt = p.Salt[:24] + fmt.Sprintf("?expires=%d", now.Add(time.Hour).Unix()) },
	} {
		p := q
		change(&p)
		b, _ := json.Marshal(p)
		if _, _, err := Verify(key, base64.StdEncoding.EncodeToString(b), now); !errors.Is(err, ErrForged) {
			t.Fatalf("altered %+v: %v", p, err)
		}
	}
	for _, bad := range []string{"", "%%%", base64.StdEncoding.EncodeToString([]byte(`{"algorithm":"SHA-1"}`))} {
		if _, _, err := Verify(key, bad, now); !errors.Is(err, ErrMalformed) {
			t.Fatalf("%q: %v", bad, err)
		}
	}
}

// BenchmarkSolve measures the client's work per difficulty; the median
// solve of a challenge is about maxnumber/2 hashes.
//
//	go test -run '^$' -bench BenchmarkSolve -count 5 ./authcore/altcha
func BenchmarkSolve(b *testing.B) {
	for _, max := range []int64{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("maxnumber=%d", max), func(b *testing.B) {
			var took []time.Duration
			for range b.N {
				ch, err := New(key, max, time.Now().Add(time.Minute))
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				if _, err := Solve(context.Background(), ch); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "median-ms")
		})
	}
}
