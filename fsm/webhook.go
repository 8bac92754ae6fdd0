package fsm

import (
	"encoding/binary"
	"fmt"
	"reflect"
)

// Webhook delivery cursors (level 4). The leader delivers audit entries
// to each configured webhook in seq order and records here, through the
// log, the last seq it has delivered (or passed over: below the target's
// minimum severity); a new leader resumes from the cursor instead of
// resending the trail or skipping what its predecessor had not sent.
// Delivery is at least once: an entry sent just before its leader died,
// its cursor not yet committed, is sent again, under the same
// webhook-id, which is what Standard Webhooks receivers deduplicate on.
const TypeWebhookCursor Type = "webhook.cursor"

// WebhookCursor is webhook.cursor v1: Target names the webhook (hex
// SHA-256 of its URL); Seq only ever moves forward.
type WebhookCursor struct {
	Target string `json:"target"`
	Seq    uint64 `json:"seq"`
}

var webhookCommands = []CommandSpec{
	{Type: TypeWebhookCursor, Version: 1, Level: 4, Apply: applyWebhookCursor, Result: reflect.TypeFor[uint64]()},
}

// applyWebhookCursor moves a target's cursor forward; its result is the
// cursor afterwards (an older seq changes nothing).
func applyWebhookCursor(t txn, c Command) (any, error) {
	var p WebhookCursor
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if !validHexHash(p.Target) {
		return nil, fmt.Errorf("%w: webhook.cursor needs a target hash", ErrInvalidCommand)
	}
	b := t.tx.Bucket(bucketWebhooks)
	if v := b.Get([]byte(p.Target)); len(v) == 8 && binary.BigEndian.Uint64(v) >= p.Seq {
		return binary.BigEndian.Uint64(v), nil
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], p.Seq)
	return p.Seq, b.Put([]byte(p.Target), v[:])
}

// WebhookCursor returns the last seq recorded as delivered to target, and
// whether any is.
func (r Reader) WebhookCursor(target string) (uint64, bool) {
	v := r.tx.Bucket(bucketWebhooks).Get([]byte(target))
	if len(v) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(v), true
}
