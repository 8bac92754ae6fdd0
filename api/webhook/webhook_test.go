package webhook

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/bulwark-auth/bulwark/authcore"
	"github.com/bulwark-auth/bulwark/internal/waitfor"
)

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// fakeTrail is an audit trail with cursors, as the replicated state
// keeps them.
type fakeTrail struct {
	mu      sync.Mutex
	entries []authcore.AuditEntry
	cursors map[string]uint64
}

func (f *fakeTrail) add(typ, severity string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	seq := uint64(len(f.entries) + 1)
	f.entries = append(f.entries, authcore.AuditEntry{Seq: seq, Type: typ, Severity: severity,
		Time: time.Unix(1700000000+int64(seq), 0).UTC(), Hash: "abcdef0123456789abcdef0123456789abcdef" + string(rune('a'+seq))})
}

func (f *fakeTrail) Audit(ctx context.Context, after uint64, limit int) ([]authcore.AuditEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []authcore.AuditEntry
	for _, e := range f.entries {
		if e.Seq > after && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, nil
}

func (f *fakeTrail) AuditHead() (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return uint64(len(f.entries)), nil
}

func (f *fakeTrail) WebhookCursor(target string) (uint64, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.cursors[target]
	return c, ok, nil
}

func (f *fakeTrail) SetWebhookCursor(ctx context.Context, target string, seq uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cursors[target] = max(f.cursors[target], seq)
	return nil
}

// receiver verifies each delivery with the Standard Webhooks library and
// keeps the event types it accepted; it refuses the first `fail` tries.
type receiver struct {
	t     *testing.T
	mu    sync.Mutex
	got   []string
	ids   []string
	fail  atomic.Int32
	tries atomic.Int32
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.tries.Add(1)
	if rc.fail.Add(-1) >= 0 {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	body, _ := io.ReadAll(r.Body)
	wh, _ := standardwebhooks.NewWebhook(secret)
	if err := wh.Verify(body, r.Header); err != nil {
		rc.t.Errorf("a delivery that does not verify: %v", err)
		http.Error(w, "bad signature", http.StatusBadRequest)
		return
	}
	var ev event
	if err := json.Unmarshal(body, &ev); err != nil {
		rc.t.Errorf("body %q: %v", body, err)
	}
	rc.mu.Lock()
	rc.got = append(rc.got, ev.Type)
	rc.ids = append(rc.ids, r.Header.Get("webhook-id"))
	rc.mu.Unlock()
}

func (rc *receiver) types() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.got...)
}

func fast() Options {
	return Options{Poll: 5 * time.Millisecond, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}
}

// Only the leader delivers, from the head when first configured, the
// events at or above the target's severity, in order, retrying a
// receiver that is down; a new leader resumes at the recorded cursor.
func TestDeliveryFromTheCursor(t *testing.T) {
	rc := &receiver{t: t}
	rc.fail.Store(2)
	srv := httptest.NewServer(rc)
	defer srv.Close()
	trail := &fakeTrail{cursors: map[string]uint64{}}
	trail.add("login.success", "info") // history: never sent
	trail.add("refresh.reuse", "critical")
	var leading atomic.Bool
	d, err := New([]Target{{URL: srv.URL, Secret: secret, MinSeverity: "warning"}}, trail, leading.Load, fast())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	time.Sleep(30 * time.Millisecond)
	if rc.tries.Load() != 0 {
		t.Fatal("a follower delivered")
	}
	leading.Store(true)
	id := authcore.WebhookTarget(srv.URL)
	waitfor.True(t, "the cursor at the head Run found", 5*time.Second, 5*time.Millisecond, func() bool {
		c, ok, _ := trail.WebhookCursor(id)
		return ok && c == 2
	})
	trail.add("login.failure", "warning")
	trail.add("login.success", "info")
	trail.add("refresh.reuse", "critical")
	waitfor.True(t, "two events delivered", 5*time.Second, 5*time.Millisecond, func() bool { return len(rc.types()) == 2 })
	if got := rc.types(); got[0] != "security.login.failure" || got[1] != "security.refresh.reuse" {
		t.Fatalf("delivered %v", got)
	}
	waitfor.True(t, "the cursor past the last", 5*time.Second, 5*time.Millisecond, func() bool {
		c, _, _ := trail.WebhookCursor(id)
		return c == 5
	})
	cancel()
	<-done

	// Another node takes over: nothing is sent again.
	trail.add("lockout", "warning")
	d2, _ := New([]Target{{URL: srv.URL, Secret: secret, MinSeverity: "warning"}}, trail, func() bool { return true }, fast())
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go d2.Run(ctx)
	waitfor.True(t, "the new leader's delivery", 5*time.Second, 5*time.Millisecond, func() bool { return len(rc.types()) == 3 })
	time.Sleep(30 * time.Millisecond)
	if got := rc.types(); len(got) != 3 || got[2] != "security.lockout" {
		t.Fatalf("after the new leader: %v", got)
	}
	if rc.tries.Load() != 5 { // two refused, three accepted
		t.Fatalf("%d tries, want 5", rc.tries.Load())
	}
}

func TestTargetsChecked(t *testing.T) {
	trail := &fakeTrail{cursors: map[string]uint64{}}
	for _, tg := range []Target{
		{URL: "http://siem.example/hook", Secret: secret, MinSeverity: "critical"},
		{URL: "ftp://127.0.0.1/x", Secret: secret, MinSeverity: "critical"},
		{URL: "https://u:p@siem.example/", Secret: secret, MinSeverity: "critical"},
		{URL: "https://siem.example/", Secret: "plain", MinSeverity: "critical"},
		{URL: "https://siem.example/", Secret: secret, MinSeverity: "loud"},
	} {
		if _, err := New([]Target{tg}, trail, func() bool { return true }, Options{}); err == nil {
			t.Errorf("accepted %+v", tg)
		}
	}
	for _, ok := range []string{"https://siem.example/hooks?token=x", "http://127.0.0.1:9/h", "http://[::1]:9/h", "http://localhost/h"} {
		if err := CheckURL(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}
