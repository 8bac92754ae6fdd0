package main

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestPlanMemory(t *testing.T) {
	const mib = 1 << 20
	hash := int64(19 * mib) // argon2id at the default m=19456 KiB
	for _, tt := range []struct {
		name       string
		configured int64
		cgroup     int64
		cpus       int
		wantLimit  int64
		wantHashes int
		wantFrom   string
	}{
		{"default, 2 CPUs", 0, 0, 2, 64*mib + 2*hash, 2, "64 MiB"},
		{"default, 8 CPUs", 0, 0, 8, 64*mib + 8*hash, 8, "64 MiB"},
		{"configured wins over the cgroup", 256 * mib, 1 << 30, 2, 256 * mib, 2, "server.memory_limit"},
		// 100 MiB - 64 MiB holds one 19 MiB hash, not the two CPUs'.
		{"configured, room for one hash", 100 * mib, 0, 2, 100 * mib, 1, "server.memory_limit"},
		{"cgroup memory.max", 0, 512 * mib, 4, 384 * mib, 4, "cgroup"},
		// 3/4 of 128 MiB is 96 MiB: one hash beside the 64 MiB reserve.
		{"small cgroup", 0, 128 * mib, 4, 96 * mib, 1, "cgroup"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := planMemory(tt.configured, "", "", tt.cgroup, tt.cpus, hash)
			if err != nil {
				t.Fatal(err)
			}
			if p.limit != tt.wantLimit || p.hashes != tt.wantHashes || !strings.Contains(p.source, tt.wantFrom) {
				t.Errorf("plan %+v, want limit %d MiB, %d hashes, from %q", p, tt.wantLimit/mib, tt.wantHashes, tt.wantFrom)
			}
			if p.gogc != gcPercent {
				t.Errorf("gogc %d without GOGC in the environment, want %d", p.gogc, gcPercent)
			}
		})
	}
	// Too small for one hash beside the reserve: refused, naming the key.
	if _, err := planMemory(0, "", "", 80<<20, 2, hash); err == nil || !strings.Contains(err.Error(), "server.memory_limit") {
		t.Errorf("a 60 MiB limit from a cgroup: %v, want a refusal naming server.memory_limit", err)
	}
	// GOGC in the environment stays.
	if p, err := planMemory(256<<20, "", "50", 0, 2, hash); err != nil || p.gogc != -1 {
		t.Errorf("with GOGC set: %+v, %v; want gogc -1 (left alone)", p, err)
	}
}

func TestCgroupMemoryMax(t *testing.T) {
	fsys := fstest.MapFS{
		"memory.max":                                {Data: []byte("max\n")},
		"system.slice/memory.max":                   {Data: []byte("1073741824\n")},
		"system.slice/bulwark.service/memory.max":   {Data: []byte("268435456\n")},
		"system.slice/unlimited.service/memory.max": {Data: []byte("max\n")},
	}
	for _, tt := range []struct {
		cgroup string
		want   int64
	}{
		{"0::/system.slice/bulwark.service\n", 256 << 20},
		// No limit of its own: its parent's applies.
		{"0::/system.slice/unlimited.service\n", 1 << 30},
		{"0::/\n", 0},
		{"4:memory:/old\n", 0}, // cgroup v1 only: not read
		{"", 0},
	} {
		if got := cgroupMemoryMax(fsys, tt.cgroup); got != tt.want {
			t.Errorf("cgroupMemoryMax(%q) = %d, want %d", tt.cgroup, got, tt.want)
		}
	}
}
