package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
)

// BackupFunc writes a backup archive of the node's state to w. It must
// write nothing to w before it knows it can take the backup, so that an
// early error is answered as a JSON error; an error after the first byte
// cuts the connection, and the client is left with a truncated archive
// that its checksums reject.
type BackupFunc func(ctx context.Context, w io.Writer) error

// AdminBackup serves GET /admin/v1/backup with fn: the answer streams the
// archive as application/octet-stream. Without this option the route
// answers 404 not_found.
func AdminBackup(fn BackupFunc) AdminOption {
	return func(o *Options) {
		o.Backup = fn
	}
}

// adminBackupRoute is the GET /admin/v1/backup handler of fn.
func adminBackupRoute(fn BackupFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if fn == nil {
			writeError(w, r, &Error{Status: http.StatusNotFound, Code: CodeNotFound,
				Description: "backups are not available on this node"})
			return
		}
		bw := &backupWriter{w: w}
		err := fn(r.Context(), bw)
		switch {
		case err == nil:
			scopeOf(r).log.Info("backup sent", "bytes", bw.n)
		case !bw.started:
			writeError(w, r, err)
		default:
			scopeOf(r).log.Error("backup failed after it started; connection cut", "bytes", bw.n, "error", err)
			panic(http.ErrAbortHandler)
		}
	}
}

// backupWriter sends the archive's headers with its first byte.
type backupWriter struct {
	w       http.ResponseWriter
	started bool
	n       int64
}

func (b *backupWriter) Write(p []byte) (int, error) {
	if !b.started {
		b.started = true
		h := b.w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Disposition", `attachment; filename="bulwark.bwbk"`)
		h.Set("Cache-Control", "no-store")
		b.w.WriteHeader(http.StatusOK)
	}
	n, err := b.w.Write(p)
	b.n += int64(n)
	return n, err
}

// Download sends GET path to the daemon and copies a 2xx answer's body to
// w, for answers too large or slow for Do: only ctx bounds it, not Do's
// 30 s. A non-2xx answer is returned as an *Error, as Do does.
func (c *AdminClient) Download(ctx context.Context, path string, w io.Writer) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://bulwark-admin"+path, nil)
	if err != nil {
		return 0, fmt.Errorf("admin request: %w", err)
	}
	hc := *c.hc
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return 0, c.unreachable(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return 0, answerError(resp, data)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("download of GET %s stopped after %d bytes: %w", path, n, err)
	}
	return n, nil
}
