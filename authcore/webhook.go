package authcore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"

	"github.com/bulwark-auth/bulwark/fsm"
)

// WebhookTarget names a webhook in the replicated state: hex SHA-256 of
// its URL, so a cursor never holds the URL (which may carry a token).
func WebhookTarget(url string) string {
	h := sha256.Sum256([]byte("bulwark webhook " + url))
	return hex.EncodeToString(h[:])
}

// WebhookCursor returns the last audit seq recorded as delivered to the
// webhook target, and whether one is recorded.
func (s *Service) WebhookCursor(target string) (seq uint64, ok bool, err error) {
	err = s.store.View(func(r fsm.Reader) error {
		seq, ok = r.WebhookCursor(target)
		return nil
	})
	return seq, ok, err
}

// SetWebhookCursor records, through the log, that every audit entry up
// to seq has been delivered to target (or passed over).
func (s *Service) SetWebhookCursor(ctx context.Context, target string, seq uint64) error {
	cmd, err := fsm.NewCommand(fsm.TypeWebhookCursor, 1, s.now().UnixNano(), fsm.WebhookCursor{Target: target, Seq: seq})
	if err != nil {
		return err
	}
	_, err = s.propose(ctx, cmd)
	return err
}

// AuditHead is the seq of the last audit entry (0: none).
func (s *Service) AuditHead() (uint64, error) {
	var seq uint64
	err := s.store.View(func(r fsm.Reader) error {
		e, err := r.AuditLast()
		if e != nil {
			seq = e.Seq
		}
		return err
	})
	return seq, err
}
