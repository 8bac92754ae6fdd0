package main

import (
	"errors"
	"testing"
	"time"
)

// TestStall: a survivor's stall is the longest time between two
// successful writes from the SIGTERM on, wherever it lies (not only the
// first success after the SIGTERM); 503 no_leader answers are inside it,
// other failures are counted, and a survivor whose writes never resumed
// stalled until the loop ended.
func TestStall(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	ok := func(sent, answered int) stopSample { return stopSample{sent: at(sent), answered: at(answered)} }
	refused := func(sent, answered int) stopSample {
		return stopSample{sent: at(sent), answered: at(answered), err: errors.New("POST /v1/auth/refresh: 503 Service Unavailable no_leader")}
	}
	failed := func(sent, answered int) stopSample {
		return stopSample{sent: at(sent), answered: at(answered), err: errors.New("POST /v1/auth/refresh: 400 Bad Request invalid_grant")}
	}
	sigterm, end := at(100), at(2000)

	// A quick first success after the SIGTERM (the old leader still
	// served), then the real stall, 503s inside it.
	s := stall("n2", []stopSample{ok(80, 90), ok(90, 98), ok(98, 104), ok(104, 110),
		refused(110, 111), refused(113, 114), ok(116, 250), failed(250, 255), ok(256, 262)}, sigterm, end)
	if s.StallMs != 140 || s.StallFromMs != 10 || s.StallToMs != 150 || !s.Resumed {
		t.Errorf("stall %+v, want 140 ms from +10 to +150, resumed", s)
	}
	if s.OK != 6 || s.NoLeader != 2 || s.Failures != 1 || s.FirstFail == "" || s.BaselineMs != 8 {
		t.Errorf("counts %+v, want 6 ok, 2 no_leader, 1 failure named, baseline 8 ms", s)
	}

	// Never resumed: stalled from its last success to the loop's end.
	s = stall("n3", []stopSample{ok(80, 95), refused(95, 300), refused(300, 1900)}, sigterm, end)
	if s.Resumed || s.StallMs != 1905 || s.StallFromMs != -5 {
		t.Errorf("stall %+v, want 1905 ms from -5, not resumed", s)
	}
}
