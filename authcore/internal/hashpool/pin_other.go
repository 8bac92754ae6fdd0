//go:build !linux

package hashpool

import "errors"

func allowedCPUs() ([]int, error) {
	return nil, errors.New("pinning threads to CPUs is implemented on Linux only")
}

func pinThread(int) error { return errors.ErrUnsupported }
