package hashpool

import "golang.org/x/sys/unix"

// allowedCPUs lists the CPUs the calling thread may run on, in increasing
// order: the process's affinity mask (which taskset, systemd's
// CPUAffinity= and cgroup cpusets narrow) unless the thread was pinned.
func allowedCPUs() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, err
	}
	var cpus []int
	for cpu := 0; len(cpus) < set.Count(); cpu++ {
		if set.IsSet(cpu) {
			cpus = append(cpus, cpu)
		}
	}
	return cpus, nil
}

// pinThread restricts the calling thread to cpu. The goroutine must be
// locked to its thread.
func pinThread(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	return unix.SchedSetaffinity(0, &set)
}
