package api

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
)

var errTestNoLeader = errors.New("test: no leader")

func backupHandler(t *testing.T, fn BackupFunc) *AdminClient {
	t.Helper()
	logger, _ := newTestLogger(t)
	path := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := ListenAdmin(path, ListenLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	var opts []AdminOption
	if fn != nil {
		opts = append(opts, AdminBackup(fn))
	}
	opts = append(opts, AdminIsNoLeader(func(err error) bool { return errors.Is(err, errTestNoLeader) }))
	serveAdmin(t, ln, NewAdminHandler(newFakeUsers(), nil, nil, logger, opts...))
	return NewAdminClient(path)
}

func TestAdminBackupRoute(t *testing.T) {
	ctx := context.Background()
	payload := bytes.Repeat([]byte("bulwark backup "), 100_000) // 1.5 MB, several writes

	c := backupHandler(t, func(ctx context.Context, w io.Writer) error {
		for off := 0; off < len(payload); off += 100_000 {
			if _, err := w.Write(payload[off:min(off+100_000, len(payload))]); err != nil {
				return err
			}
		}
		return nil
	})
	var got bytes.Buffer
	if n, err := c.Download(ctx, "/admin/v1/backup", &got); err != nil || n != int64(len(payload)) || !bytes.Equal(got.Bytes(), payload) {
		t.Fatalf("download: %d bytes, %v", n, err)
	}

	// An error before the first byte is a JSON error answer.
	c = backupHandler(t, func(context.Context, io.Writer) error { return errTestNoLeader })
	_, err := c.Download(ctx, "/admin/v1/backup", io.Discard)
	var e *Error
	if !errors.As(err, &e) || e.Status != 503 || e.Code != CodeNoLeader {
		t.Fatalf("early failure: %#v", err)
	}

	// An error after the first byte cuts the connection: the client sees
	// a failed download, not a short success.
	c = backupHandler(t, func(ctx context.Context, w io.Writer) error {
		w.Write(payload[:100_000]) // more than net/http buffers: the 200 is sent
		return errors.New("disk on fire")
	})
	if _, err := c.Download(ctx, "/admin/v1/backup", io.Discard); err == nil || !strings.Contains(err.Error(), "stopped after") {
		t.Fatalf("failure mid-stream: %v", err)
	}

	// Without AdminBackup, there is no backup.
	c = backupHandler(t, nil)
	if _, err := c.Download(ctx, "/admin/v1/backup", io.Discard); !errors.As(err, &e) || e.Status != 404 {
		t.Fatalf("no backup function: %v", err)
	}
}
