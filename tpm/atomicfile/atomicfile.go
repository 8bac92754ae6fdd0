// Package atomicfile writes files so that a crash leaves either the old
// content or the new, never a mix: a temporary file in the same directory,
// fsync, rename (or hard link), fsync of the directory. It serves the
// keystore (tpm) and the certificates (node/pki) and imports only the
// standard library.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteFile replaces path with data: it writes a temporary file in the
// same directory, fsyncs it, renames it over path and fsyncs the directory,
// so a crash leaves either the old or the new content, never a mix.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return place(path, data, perm, os.Rename)
}

// CreateExclusive writes data to path only if path does not exist yet
// (temporary file, fsync, hard link, fsync dir). It returns an error
// satisfying errors.Is(err, fs.ErrExist) if path already exists.
func CreateExclusive(path string, data []byte, perm os.FileMode) error {
	return place(path, data, perm, os.Link)
}

// place writes data to a synced temporary file beside path, puts it at
// path with put (rename: replace; link: only if absent), removes the
// temporary name and syncs the directory.
func place(path string, data []byte, perm os.FileMode, put func(oldpath, newpath string) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a rename there is nothing left to remove
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = put(tmp, path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory, making renames and links in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// MkdirPrivate creates dir (and missing parents) with mode 0700.
func MkdirPrivate(dir string) error {
	return os.MkdirAll(dir, 0o700)
}
