package main

import (
	"bufio"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/bulwark-auth/bulwark/cmd/bulwark/config"
)

// memoryPlan is how the daemon bounds its memory: the Go runtime's soft
// limit, where it came from, and how many password hashes may run at
// once within it.
type memoryPlan struct {
	limit  int64  // bytes, for debug.SetMemoryLimit
	source string // what set it, for the log
	hashes int    // authcore.Config.MaxConcurrentHashes
	// gogc is the GC percentage below the limit (-1: GOGC from the
	// environment stays).
	gogc int
}

// gcPercent is the collector's pace while the heap is well below the
// limit: collect once the heap has grown by 4x its live part. A server's
// live heap is small and its allocation rate high (every request), and
// collecting at 5x the live heap rather than 2x took about a tenth of
// the CPU back under load. Before the limit, the same pace let the heap
// grow to 5x whatever was live, 600 MiB through make bench; the limit
// now caps it, and the collector speeds up as the heap nears it.
const gcPercent = 400

// planMemory decides the plan from server.memory_limit (0: auto), the
// GOMEMLIMIT and GOGC environment variables, the cgroup's memory.max
// (0: none), the number of CPUs and the bytes one argon2id hash works in.
// The hashes allowed at once are as many as fit in the limit beside
// config.MemoryReserve, at least one, at most one per CPU; an error if
// not even one fits.
func planMemory(configured int64, goMemLimit, goGC string, cgroupMax int64, cpus int, hashBytes int64) (memoryPlan, error) {
	p := memoryPlan{gogc: gcPercent}
	if goGC != "" {
		p.gogc = -1
	}
	switch {
	case configured > 0:
		p.limit, p.source = configured, "server.memory_limit"
	case goMemLimit != "":
		// The runtime parsed it at start; an invalid value stops the
		// process before main.
		p.limit, p.source = debug.SetMemoryLimit(-1), "GOMEMLIMIT"
	case cgroupMax > 0:
		p.limit, p.source = cgroupMax/4*3, "3/4 of the cgroup's memory.max"
	default:
		// The reserve and one hash per CPU, nothing idle beyond: under
		// GOGC=400 the heap fills whatever limit it is given (a live
		// heap of 10-25 MiB outside the hashes), and the process's
		// resident memory is this limit plus the mapped files
		// (the binary, state.db), which grow with the data.
		p.limit, p.source = config.MemoryReserve+int64(cpus)*hashBytes, "64 MiB + one argon2id memory per CPU"
	}
	room := (p.limit - config.MemoryReserve) / max(hashBytes, 1)
	if room < 1 {
		return p, fmt.Errorf("server.memory_limit: the memory limit (%d MiB, %s) leaves no room for one password hash: "+
			"the daemon needs %d MiB beside auth.password.argon2_memory_kib (%d MiB); raise the limit or lower the hash's memory",
			p.limit>>20, p.source, config.MemoryReserve>>20, hashBytes>>20)
	}
	p.hashes = int(min(room, int64(max(cpus, 1))))
	return p, nil
}

// apply sets the limit and, unless GOGC is in the environment, the pace.
func (p memoryPlan) apply() {
	debug.SetMemoryLimit(p.limit)
	if p.gogc > 0 {
		debug.SetGCPercent(p.gogc)
	}
}

// log says what apply set and why.
func (p memoryPlan) log(log *slog.Logger, cpus int, hashBytes int64) {
	gogc := "GOGC from the environment"
	if p.gogc > 0 {
		gogc = strconv.Itoa(p.gogc)
	}
	log.Info("memory limit set", "limit_mib", p.limit>>20, "from", p.source, "gogc", gogc,
		"password_hashes_at_once", p.hashes, "cpus", cpus, "argon2id_mib_each", hashBytes>>20,
		"hashes_mib", int64(p.hashes)*hashBytes>>20)
	if p.hashes < cpus {
		log.Warn("fewer password hashes at once than CPUs: the memory limit holds only these beside the rest of the daemon; logins are slower than the machine allows",
			"password_hashes_at_once", p.hashes, "cpus", cpus)
	}
}

// cgroupMemoryMax is the smallest memory.max of this process's cgroup
// (v2) and its ancestors under root (normally /sys/fs/cgroup), from
// procCgroup (the text of /proc/self/cgroup); 0 when none is set or
// they cannot be read. systemd's MemoryMax= writes it.
func cgroupMemoryMax(root fs.FS, procCgroup string) int64 {
	var dir string
	sc := bufio.NewScanner(strings.NewReader(procCgroup))
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			dir = strings.TrimPrefix(path.Clean(p), "/")
		}
	}
	var least int64
	for {
		name := "memory.max"
		if dir != "" && dir != "." {
			name = dir + "/memory.max"
		}
		if b, err := fs.ReadFile(root, name); err == nil {
			s := strings.TrimSpace(string(b))
			if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 && n < math.MaxInt64 && (least == 0 || n < least) {
				least = n
			}
		}
		if dir == "" || dir == "." {
			return least
		}
		dir = path.Dir(dir)
	}
}

// ownCgroupMemoryMax is cgroupMemoryMax for this process on this machine.
func ownCgroupMemoryMax() int64 {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0
	}
	return cgroupMemoryMax(os.DirFS("/sys/fs/cgroup"), string(b))
}
