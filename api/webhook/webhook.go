// Package webhook delivers security events, the entries of the audit
// trail at or above a severity, to the webhooks of [[incident.webhooks]],
// signed as Standard Webhooks prescribes (github.com/standard-webhooks:
// headers webhook-id, webhook-timestamp and webhook-signature, an HMAC-SHA256
// under the whsec_ secret). Only the leader delivers; it reads the trail in
// seq order from a cursor kept in the replicated state (authcore's
// WebhookCursor), so a new leader resumes where the last one stopped, and
// a receiver that is down gets every event, in order, once it is back:
// the trail itself is the queue. Delivery is at least once; an event sent
// twice (its leader died before the cursor committed) carries the same
// webhook-id both times, for the receiver to deduplicate.
//
// It is imported by cmd/bulwark only, and imports authcore for the
// trail's types.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/bulwark-auth/bulwark/authcore"
)

// Target is one configured webhook.
type Target struct {
	URL         string
	Secret      string // whsec_… (base64 after the prefix)
	MinSeverity string // "info", "warning" or "critical"
}

// Trail is what the dispatcher reads and records (*authcore.Service).
type Trail interface {
	Audit(ctx context.Context, after uint64, limit int) ([]authcore.AuditEntry, error)
	AuditHead() (uint64, error)
	WebhookCursor(target string) (uint64, bool, error)
	SetWebhookCursor(ctx context.Context, target string, seq uint64) error
}

// Leader reports whether this node leads the cluster now.
type Leader func() bool

// Options tune the dispatcher; zero values take the defaults.
type Options struct {
	Poll       time.Duration // how often the trail is read: 500ms
	MinBackoff time.Duration // first retry after a failed delivery: 1s
	MaxBackoff time.Duration // retries back off up to: 5m
	Timeout    time.Duration // one delivery's HTTP timeout: 10s
	Client     *http.Client  // nil: one with Timeout, no redirects
	Logger     *slog.Logger
}

// Dispatcher delivers the trail to every target.
type Dispatcher struct {
	targets []target
	trail   Trail
	leader  Leader
	opts    Options
	client  *http.Client
	log     *slog.Logger
}

type target struct {
	Target
	id   string // authcore.WebhookTarget(URL)
	sign *standardwebhooks.Webhook
	min  int
}

// severities orders the audit trail's severities (fsm.AuditInfo and on).
var severities = map[string]int{"info": 0, "warning": 1, "critical": 2}

// CheckURL accepts an https URL, or an http one to a loopback address
// (API.md): events are never sent in the clear over a network.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("%q is not an absolute URL without credentials", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if ip := net.ParseIP(u.Hostname()); (ip != nil && ip.IsLoopback()) || u.Hostname() == "localhost" {
			return nil
		}
		return fmt.Errorf("%q: http:// is allowed to a loopback address only; use https://", raw)
	}
	return fmt.Errorf("%q: the scheme must be https", raw)
}

// New checks the targets and returns their dispatcher.
func New(targets []Target, trail Trail, leader Leader, opts Options) (*Dispatcher, error) {
	d := &Dispatcher{trail: trail, leader: leader, opts: opts, client: opts.Client, log: opts.Logger}
	if d.opts.Poll <= 0 {
		d.opts.Poll = 500 * time.Millisecond
	}
	if d.opts.MinBackoff <= 0 {
		d.opts.MinBackoff = time.Second
	}
	if d.opts.MaxBackoff <= 0 {
		d.opts.MaxBackoff = 5 * time.Minute
	}
	if d.opts.Timeout <= 0 {
		d.opts.Timeout = 10 * time.Second
	}
	if d.client == nil {
		d.client = &http.Client{Timeout: d.opts.Timeout,
			// A redirect would send the event where nobody configured it.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	for i, t := range targets {
		if err := CheckURL(t.URL); err != nil {
			return nil, fmt.Errorf("webhook %d: %w", i+1, err)
		}
		min, ok := severities[t.MinSeverity]
		if !ok {
			return nil, fmt.Errorf("webhook %d: min_severity %q is not info, warning or critical", i+1, t.MinSeverity)
		}
		if !strings.HasPrefix(t.Secret, "whsec_") {
			return nil, fmt.Errorf("webhook %d: the secret is not a Standard Webhooks secret (whsec_…)", i+1)
		}
		sign, err := standardwebhooks.NewWebhook(t.Secret)
		if err != nil {
			return nil, fmt.Errorf("webhook %d: the secret: %w", i+1, err)
		}
		d.targets = append(d.targets, target{Target: t, id: authcore.WebhookTarget(t.URL), sign: sign, min: min})
	}
	return d, nil
}

// Run delivers until ctx ends, one goroutine per target. A webhook with
// no cursor yet starts at the trail's head as Run finds it: every event
// from then on is sent, none from before.
func (d *Dispatcher) Run(ctx context.Context) {
	start, err := d.trail.AuditHead()
	if err != nil {
		d.log.Error("webhooks: the audit trail cannot be read", "error", err)
	}
	done := make(chan struct{})
	for _, t := range d.targets {
		go func() {
			defer func() { done <- struct{}{} }()
			d.run(ctx, t, start)
		}()
	}
	for range d.targets {
		<-done
	}
}

// event is the body of a delivery.
type event struct {
	Type      string              `json:"type"`
	Timestamp time.Time           `json:"timestamp"`
	Data      authcore.AuditEntry `json:"data"`
}

func (d *Dispatcher) run(ctx context.Context, t target, start uint64) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(d.opts.Poll):
		}
		if !d.leader() {
			continue
		}
		if err := d.step(ctx, t, start); err != nil && ctx.Err() == nil {
			d.log.Debug("webhook delivery paused", "url", redact(t.URL), "error", err)
		}
	}
}

// step delivers what the trail holds after the target's cursor, one page.
func (d *Dispatcher) step(ctx context.Context, t target, start uint64) error {
	cursor, ok, err := d.trail.WebhookCursor(t.id)
	if err != nil {
		return err
	}
	if !ok {
		// A new webhook is not sent the history before Run started.
		return d.trail.SetWebhookCursor(ctx, t.id, start)
	}
	entries, err := d.trail.Audit(ctx, cursor, authcore.MaxAuditLimit)
	if err != nil || len(entries) == 0 {
		return err
	}
	passed := cursor
	for _, e := range entries {
		if severities[e.Severity] >= t.min {
			if passed > cursor { // what was passed over is done
				if err := d.trail.SetWebhookCursor(ctx, t.id, passed); err != nil {
					return err
				}
				cursor = passed
			}
			if err := d.deliver(ctx, t, e); err != nil {
				return err
			}
			if err := d.trail.SetWebhookCursor(ctx, t.id, e.Seq); err != nil {
				return err
			}
			cursor = e.Seq
		}
		passed = e.Seq
	}
	if passed > cursor {
		return d.trail.SetWebhookCursor(ctx, t.id, passed)
	}
	return nil
}

// deliver sends e to t until it is accepted (a 2xx), backing off between
// tries, for as long as this node leads and ctx lives.
func (d *Dispatcher) deliver(ctx context.Context, t target, e authcore.AuditEntry) error {
	body, err := json.Marshal(event{Type: "security." + e.Type, Timestamp: e.Time, Data: e})
	if err != nil {
		return err
	}
	id := "msg_" + e.Hash[:min(len(e.Hash), 32)]
	wait := d.opts.MinBackoff
	for attempt := 1; ; attempt++ {
		err := d.post(ctx, t, id, body)
		if err == nil {
			return nil
		}
		d.log.Warn("webhook delivery failed; retrying", "url", redact(t.URL), "seq", e.Seq, "attempt", attempt,
			"retry_in", wait, "error", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		if !d.leader() {
			return errors.New("no longer the leader")
		}
		wait = min(2*wait, d.opts.MaxBackoff)
	}
}

func (d *Dispatcher) post(ctx context.Context, t target, id string, body []byte) error {
	now := time.Now()
	sig, err := t.sign.Sign(id, now, body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "bulwark-webhook")
	req.Header.Set(standardwebhooks.HeaderWebhookID, id)
	req.Header.Set(standardwebhooks.HeaderWebhookTimestamp, fmt.Sprint(now.Unix()))
	req.Header.Set(standardwebhooks.HeaderWebhookSignature, sig)
	resp, err := d.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("answered %s", resp.Status)
	}
	return nil
}

// redact keeps a URL's scheme, host and path for logs: a query may carry
// a token.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Scheme + "://" + u.Host + u.Path
}
