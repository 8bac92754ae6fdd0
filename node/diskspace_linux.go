package node

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// fsSpace is the space left to an unprivileged writer, and the size, of
// the filesystem holding path.
func fsSpace(path string) (avail, total int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Bavail) * st.Bsize, int64(st.Blocks) * st.Bsize, nil
}

// allocate gives f size bytes of disk blocks (not a sparse file), so
// removing it frees them: fallocate, or zeros written where the
// filesystem has no fallocate.
func allocate(f *os.File, size int64) error {
	err := unix.Fallocate(int(f.Fd()), 0, 0, size)
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) {
		return err
	}
	zeros := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(zeros)) {
		if _, err := f.WriteAt(zeros[:min(int64(len(zeros)), size-off)], off); err != nil {
			return err
		}
	}
	return nil
}
