//go:build !linux

package node

import (
	"errors"
	"os"
)

// fsSpace is not measured here: the guard stays off (diskspace.go).
func fsSpace(string) (avail, total int64, err error) { return 0, 0, errors.ErrUnsupported }

func allocate(*os.File, int64) error { return errors.ErrUnsupported }
