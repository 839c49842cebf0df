package node

import (
	"math"
	"os"
	"path"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// cpuLimit is the CPU this process may use, in cores: the tightest cgroup
// CPU quota on its own cgroup or an ancestor (v2 cpu.max, v1
// cpu.cfs_quota_us / cpu.cfs_period_us), else the machine's CPUs. Reports
// carry it with the CPU used, so the leader can tell a node at its cap
// from one with room, whatever the cap. readFile reads absolute paths
// (os.ReadFile; tests pass a map).
func cpuLimit(readFile func(string) ([]byte, error), numCPU int) float64 {
	limit := float64(numCPU)
	self, err := readFile("/proc/self/cgroup")
	if err != nil {
		return limit
	}
	for _, line := range strings.Split(strings.TrimSpace(string(self)), "\n") {
		// hierarchy-ID:controllers:path
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		controllers, dir := parts[1], parts[2]
		switch {
		case parts[0] == "0" && controllers == "":
			for d := dir; ; d = path.Dir(d) {
				if q, ok := quotaV2(readFile, path.Join("/sys/fs/cgroup", d, "cpu.max")); ok {
					limit = math.Min(limit, q)
				}
				if d == "/" || d == "." {
					break
				}
			}
		case hasController(controllers, "cpu"):
			for _, mount := range []string{controllers, "cpu", "cpu,cpuacct"} {
				found := false
				for d := dir; ; d = path.Dir(d) {
					base := path.Join("/sys/fs/cgroup", mount, d)
					if q, ok := quotaV1(readFile, base); ok {
						limit, found = math.Min(limit, q), true
					}
					if d == "/" || d == "." {
						break
					}
				}
				if found {
					break
				}
			}
		}
	}
	return limit
}

func hasController(list, c string) bool {
	for _, x := range strings.Split(list, ",") {
		if x == c {
			return true
		}
	}
	return false
}

// quotaV2 reads a cgroup v2 cpu.max ("max 100000" or "25000 100000").
func quotaV2(readFile func(string) ([]byte, error), file string) (float64, bool) {
	b, err := readFile(file)
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 || f[0] == "max" {
		return 0, false
	}
	return ratio(f[0], f[1])
}

// quotaV1 reads a cgroup v1 quota and period in dir (quota -1: none).
func quotaV1(readFile func(string) ([]byte, error), dir string) (float64, bool) {
	q, err := readFile(path.Join(dir, "cpu.cfs_quota_us"))
	if err != nil {
		return 0, false
	}
	p, err := readFile(path.Join(dir, "cpu.cfs_period_us"))
	if err != nil {
		return 0, false
	}
	return ratio(strings.TrimSpace(string(q)), strings.TrimSpace(string(p)))
}

func ratio(quota, period string) (float64, bool) {
	q, err1 := strconv.ParseFloat(quota, 64)
	p, err2 := strconv.ParseFloat(period, 64)
	if err1 != nil || err2 != nil || q <= 0 || p <= 0 {
		return 0, false
	}
	return q / p, true
}

// osCPULimit is cpuLimit for this process.
func osCPULimit(numCPU int) float64 { return cpuLimit(os.ReadFile, numCPU) }

// CPULimit is the CPU this process may use, in cores: its cgroup quota, or
// the machine's CPUs.
func CPULimit() float64 { return osCPULimit(runtime.NumCPU()) }

// cpuLimitRefresh is how long a cpuLimitReader keeps what it read: a
// supervisor may move the process into another cgroup or change its quota,
// but reading the cgroup files on every heat report (several a second)
// costs more than the news is worth.
const cpuLimitRefresh = 10 * time.Second

// cpuLimitReader reads the CPU limit at most once per cpuLimitRefresh. It
// belongs to one goroutine (the heat reporter).
type cpuLimitReader struct {
	read func() float64
	v    float64
	at   time.Time // when v was read; zero: never
}

func (r *cpuLimitReader) get(now time.Time) float64 {
	if r.at.IsZero() || now.Sub(r.at) >= cpuLimitRefresh || now.Before(r.at) {
		r.v, r.at = r.read(), now
	}
	return r.v
}
