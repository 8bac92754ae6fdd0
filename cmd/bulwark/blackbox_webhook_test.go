package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/bulwark-auth/bulwark/internal/waitfor"
)

// TestBlackBoxWebhookOnRefreshReuse: a refresh token presented twice
// sends a critical security.refresh.reuse event to the configured
// webhook, signed so that the Standard Webhooks library verifies it; the
// earlier info events (logins) are not sent.
func TestBlackBoxWebhookOnRefreshReuse(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var events []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := wh.Verify(body, r.Header); err != nil {
			t.Errorf("a delivery that does not verify: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var ev map[string]any
		json.Unmarshal(body, &ev)
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
	}))
	defer srv.Close()
	secretFile := filepath.Join(t.TempDir(), "webhook.secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := newTestNode(t, exemptLoopback+fmt.Sprintf("[[incident.webhooks]]\nurl = %q\nsecret_file = %q\nmin_severity = \"critical\"\n", srv.URL, secretFile))
	n.start()
	n.addUser("frank", clusterPassword, false)
	_, tok := n.login("frank", clusterPassword)
	old := tok["refresh_token"].(string)
	if c, _, _ := n.apiCall("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": old}); c != 200 {
		t.Fatalf("refresh: %d", c)
	}
	if c, _, _ := n.apiCall("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": old}); c != 400 {
		t.Fatalf("reuse: %d", c)
	}
	waitfor.True(t, "the reuse event", 15*time.Second, 50*time.Millisecond, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(events) > 0
	})
	mu.Lock()
	defer mu.Unlock()
	data, _ := events[0]["data"].(map[string]any)
	if events[0]["type"] != "security.refresh.reuse" || data["severity"] != "critical" || len(events) != 1 {
		t.Fatalf("events %v", events)
	}
}
