package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuSample is the CPU time used so far by the node processes (node is
// their sum, nodes each one's), by this process and by the whole machine.
type cpuSample struct {
	node, bench, machine time.Duration
	nodes                []time.Duration
}

// minus is s - o, each counter apart.
func (s cpuSample) minus(o cpuSample) cpuSample {
	d := cpuSample{node: s.node - o.node, bench: s.bench - o.bench, machine: s.machine - o.machine}
	if len(s.nodes) == len(o.nodes) {
		for i := range s.nodes {
			d.nodes = append(d.nodes, s.nodes[i]-o.nodes[i])
		}
	}
	return d
}

// plus is s + o, each counter apart; o's per-node times are added when
// both have the same nodes, and kept when s has none.
func (s cpuSample) plus(o cpuSample) cpuSample {
	sum := cpuSample{node: s.node + o.node, bench: s.bench + o.bench, machine: s.machine + o.machine}
	switch {
	case len(s.nodes) == 0:
		sum.nodes = slices.Clone(o.nodes)
	case len(s.nodes) == len(o.nodes):
		for i := range s.nodes {
			sum.nodes = append(sum.nodes, s.nodes[i]+o.nodes[i])
		}
	}
	return sum
}

func sampleCPU(f func() cpuSample) cpuSample {
	if f == nil {
		return cpuSample{}
	}
	return f()
}

// cpuSampler returns a sampler for the node processes nodePIDs (0 or
// none: no node) and this one.
func cpuSampler(nodePIDs ...int) func() cpuSample {
	return func() cpuSample {
		var s cpuSample
		var ru syscall.Rusage
		if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
			s.bench = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
		for _, pid := range nodePIDs {
			var d time.Duration
			if pid > 0 {
				d, _ = procCPU(pid)
			}
			s.nodes = append(s.nodes, d)
			s.node += d
		}
		s.machine, _ = machineCPU()
		return s
	}
}

// userHZ is the unit of /proc/PID/stat's times (USER_HZ, 100 on Linux).
const userHZ = 100

// procCPU is the user+system time of pid from /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after its ')'
	// start with field 3, so utime (14) and stime (15) are at 11 and 12.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return time.Duration(utime+stime) * time.Second / userHZ, nil
}

// machineCPU is the busy time of all CPUs (everything but idle and iowait)
// from the first line of /proc/stat.
func machineCPU() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, errors.New("/proc/stat: unexpected format")
	}
	var busy int64
	for i, v := range f[1:] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, errors.New("/proc/stat: unexpected format")
		}
		// idle (4) and iowait (5) are not busy; guest times (9, 10) are
		// already counted in user and nice.
		if i != 3 && i != 4 && i < 8 {
			busy += n
		}
	}
	return time.Duration(busy) * time.Second / userHZ, nil
}
