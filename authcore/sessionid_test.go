package authcore

import (
	"testing"
	"time"
)

// Session ids sort in creation order (the store's pages stay together for
// sessions logged in together; fsm's BenchmarkRefreshAtSize), keep 192
// random bits, and fit what the store and refresh tokens accept.
func TestSessionIDsSortByCreation(t *testing.T) {
	base := time.Date(2026, 12, 8, 1, 0, 0, 0, time.UTC)
	var ids []string
	seen := map[string]bool{}
	for i := range 200 {
		at := base.Add(time.Duration(i/2) * time.Millisecond) // two per millisecond
		id, err := NewSessionID(at)
		if err != nil {
			t.Fatal(err)
		}
		if len(id) != 44 || len(id) > maxRefreshSID || seen[id] {
			t.Fatalf("id %q: %d characters, or seen before", id, len(id))
		}
		seen[id] = true
		ids = append(ids, id)
	}
	for i := 2; i < len(ids); i += 2 {
		if ids[i-2] >= ids[i] || ids[i-1] >= ids[i] {
			t.Fatalf("ids of later sessions sort first: %q, %q, then %q", ids[i-2], ids[i-1], ids[i])
		}
	}
	// The prefix is the millisecond; the rest differs between ids of the
	// same millisecond.
	if ids[0][:12] != ids[1][:12] || ids[0][12:] == ids[1][12:] {
		t.Fatalf("ids of one millisecond: %q and %q", ids[0], ids[1])
	}
}
