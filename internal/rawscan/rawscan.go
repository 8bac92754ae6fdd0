// Package rawscan reads every file under a directory as bytes, as an
// attacker holding the disk would, for tests that check what a node
// leaves behind (an erased user's name, a secret).
package rawscan

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Find returns "path holds \"needle\"" for each regular file under dir
// that holds one of needles, ASCII letters compared without case.
func Find(dir string, needles ...string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		b = bytes.ToLower(b)
		for _, n := range needles {
			if bytes.Contains(b, []byte(strings.ToLower(n))) {
				out = append(out, fmt.Sprintf("%s holds %q", p, n))
			}
		}
		return nil
	})
	return out, err
}
