package fsm

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// checkHighWater reads bbolt's two meta pages without mapping the file and
// refuses a file shorter than the newest valid meta's high-water mark: the
// tail of such a file was lost in a crash, and opening it would fault on
// pages past its end (bbolt walks every page at open when the freelist is
// not synced). The layout read here is bbolt's file format version 2:
// a 16-byte page header, then magic, version, page size, flags, root
// bucket (16 bytes), freelist, high-water page id, txid, and an FNV-64a
// checksum of the 56 bytes before it. A missing or empty file is new.
func checkHighWater(path string) error {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() == 0 {
		return nil
	}
	var best *bboltMeta
	for _, off := range metaOffsets(f) {
		m, ok := readMeta(f, off)
		if ok && (best == nil || m.txid > best.txid) {
			best = &m
		}
	}
	if best == nil {
		return fmt.Errorf("no valid meta page")
	}
	if need := int64(best.pgid) * int64(best.pageSize); st.Size() < need {
		return fmt.Errorf("file is %d bytes, its pages reach %d", st.Size(), need)
	}
	return nil
}

const (
	bboltMagic       = 0xED0CDAED
	bboltVersion     = 2
	bboltPageHeader  = 16
	bboltMetaSumSize = 56
)

type bboltMeta struct {
	pageSize uint32
	pgid     uint64
	txid     uint64
}

// metaOffsets returns where the two meta pages may start: page 0, and page 1
// at the page size meta 0 names, or at the usual page sizes if meta 0 is
// unreadable.
func metaOffsets(f *os.File) []int64 {
	offs := []int64{0}
	if m, ok := readMeta(f, 0); ok {
		return append(offs, int64(m.pageSize))
	}
	return append(offs, 4096, 8192, 16384, 65536)
}

func readMeta(f *os.File, off int64) (bboltMeta, bool) {
	buf := make([]byte, bboltPageHeader+bboltMetaSumSize+8)
	if _, err := f.ReadAt(buf, off); err != nil && err != io.EOF {
		return bboltMeta{}, false
	}
	m := buf[bboltPageHeader:]
	le := binary.LittleEndian
	if le.Uint32(m[0:]) != bboltMagic || le.Uint32(m[4:]) != bboltVersion {
		return bboltMeta{}, false
	}
	h := fnv.New64a()
	h.Write(m[:bboltMetaSumSize])
	if h.Sum64() != le.Uint64(m[bboltMetaSumSize:]) {
		return bboltMeta{}, false
	}
	return bboltMeta{pageSize: le.Uint32(m[8:]), pgid: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}, true
}
