package main

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLoginShareUsesTheBoundMeasuredInTurns(t *testing.T) {
	turns := []pairedRound{{A: 46, B: 50}, {A: 37, B: 40}, {A: 46, B: 50}, {A: 41, B: 45}}
	r := &report{Phases: []PhaseResult{
		{Phase: phaseArgon2, Setup: setupInProcess, Concurrency: 2, Ops: 800, OpsPerSec: 60},
		{Phase: phaseArgon2, Setup: setupBetween, Concurrency: 2, Ops: 740, OpsPerSec: 46.25},
		{Phase: phaseLogin, Setup: setupSingle, Concurrency: 16, Ops: 680, OpsPerSec: 42.5, Rounds: turns},
		{Phase: phaseArgon2, Setup: setupAfter, Concurrency: 2, Ops: 640, OpsPerSec: 30},
	}}
	r.evaluate()
	got := r.Targets[0]
	// 42.5/46.25; the before and after bounds (mean 45) play no part.
	if math.Abs(got.Value-100*42.5/46.25) > 1e-9 || !got.Pass || !strings.Contains(got.Detail, "in 4 turns") {
		t.Errorf("login share %+v, want %.2f%% of the bound measured in turns, pass", got, 100*42.5/46.25)
	}
	// Turn shares 92, 92.5, 92, 91.1: mean 91.9, standard error 0.3, so
	// the 90% verdict is not in doubt.
	if got.Noisy || !strings.Contains(got.Detail, "91.9% ± 0.3") {
		t.Errorf("login share %+v, want per turn 91.9%% ± 0.3, not noisy", got)
	}
	// Per core-second used: the node spent 1.5 cores on 42.5 logins/s,
	// the bound 1.85 cores on 46.25 checks/s, so 28.3 logins against 25
	// checks a core-second (113.3%), whatever share of the machine each got.
	r.Phases[1].BenchCores, r.Phases[2].NodeCores = 1.85, 1.5
	r.evaluate()
	if got := r.Targets[0]; !strings.Contains(got.Detail, "per core-second used 28.3 logins vs 25.0 checks (113.3%), the node on 1.50 cores") ||
		math.Abs(got.Value-100*42.5/46.25) > 1e-9 {
		t.Errorf("login share %+v, want the same value and 113.3%% per core-second used in the detail", got)
	}
	// Turns that disagree put the verdict in doubt.
	r.Phases[2].Rounds = []pairedRound{{A: 30, B: 50}, {A: 50, B: 45}, {A: 45, B: 50}, {A: 40, B: 45}}
	r.evaluate()
	if got := r.Targets[0]; !got.Noisy {
		t.Errorf("turn shares from 60%% to 111%%: %+v, want noisy", got)
	}
}

func TestRunPairedAlternatesAndPools(t *testing.T) {
	var mu sync.Mutex
	var order []string
	worker := func(name string, d time.Duration) newWorker {
		return func(context.Context, int) (op, error) {
			return func(context.Context) error {
				mu.Lock()
				if len(order) == 0 || order[len(order)-1] != name {
					order = append(order, name)
				}
				mu.Unlock()
				time.Sleep(d)
				return nil
			}, nil
		}
	}
	// 1 ms against 100 ms sleeps: a loaded machine stretches short
	// sleeps tenfold, and a should still outpace b.
	lim := phaseLimits{duration: 300 * time.Millisecond, maxOps: 1e6}
	a, b, rounds := runPaired(context.Background(),
		pairedPhase{name: "a", conc: 2, setup: worker("a", time.Millisecond)},
		pairedPhase{name: "b", conc: 1, setup: worker("b", 100*time.Millisecond), inProcess: true}, 3, lim)
	if want := []string{"a", "b", "a", "b", "a", "b"}; !slices.Equal(order, want) {
		t.Errorf("loops ran in the order %v, want %v", order, want)
	}
	if len(rounds) != 3 || a.Phase != "a" || b.Phase != "b" || a.Concurrency != 2 || b.Concurrency != 1 {
		t.Fatalf("a %+v, b %+v, rounds %v", a, b, rounds)
	}
	// Pooled: three loops of at least 300 ms each, every operation counted.
	if a.Seconds < 0.9 || b.Seconds < 0.9 || a.Ops < 3 || b.Ops < 3 {
		t.Errorf("pooled results: a %v ops in %v s, b %v ops in %v s", a.Ops, a.Seconds, b.Ops, b.Seconds)
	}
	var sumA float64
	for _, r := range rounds {
		sumA += r.A
		if r.A <= r.B {
			t.Errorf("round %+v: two workers of 1 ms should outpace one of 100 ms", r)
		}
	}
	if mean := sumA / 3; math.Abs(mean-a.OpsPerSec) > 0.25*a.OpsPerSec {
		t.Errorf("rounds' mean %v ops/s far from the pooled %v", mean, a.OpsPerSec)
	}
	// A side that cannot be set up fails, and nothing runs.
	broken := func(context.Context, int) (op, error) { return nil, errors.New("no") }
	order = nil
	a, b, rounds = runPaired(context.Background(), pairedPhase{name: "a", conc: 1, setup: worker("a", 0)},
		pairedPhase{name: "b", conc: 1, setup: broken}, 2, lim)
	if !b.SetupFailed || a.Ops != 0 || rounds != nil || len(order) != 0 {
		t.Errorf("broken side: a %+v, b %+v, rounds %v, ran %v", a, b, rounds, order)
	}
}
