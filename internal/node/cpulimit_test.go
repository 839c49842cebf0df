package node

import (
	"io/fs"
	"testing"
	"time"
)

func TestCPULimit(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  float64
	}{
		{name: "no cgroup file: the machine", files: map[string]string{}, want: 2},
		{name: "v1, no quota", files: map[string]string{
			"/proc/self/cgroup":                    "2:cpuacct:/\n1:cpu:/\n0::/\n",
			"/sys/fs/cgroup/cpu/cpu.cfs_quota_us":  "-1\n",
			"/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
		}, want: 2},
		{name: "v1, the testbed's quarter core", files: map[string]string{
			"/proc/self/cgroup": "1:cpu:/crowdpilot-bench/auto-n0\n",
			"/sys/fs/cgroup/cpu/crowdpilot-bench/auto-n0/cpu.cfs_quota_us":  "25000\n",
			"/sys/fs/cgroup/cpu/crowdpilot-bench/auto-n0/cpu.cfs_period_us": "100000\n",
		}, want: 0.25},
		{name: "v1, cpu,cpuacct mount, tighter ancestor", files: map[string]string{
			"/proc/self/cgroup": "4:cpu,cpuacct:/a/b\n",
			"/sys/fs/cgroup/cpu,cpuacct/a/b/cpu.cfs_quota_us":  "150000\n",
			"/sys/fs/cgroup/cpu,cpuacct/a/b/cpu.cfs_period_us": "100000\n",
			"/sys/fs/cgroup/cpu,cpuacct/a/cpu.cfs_quota_us":    "50000\n",
			"/sys/fs/cgroup/cpu,cpuacct/a/cpu.cfs_period_us":   "100000\n",
		}, want: 0.5},
		{name: "v2 quota", files: map[string]string{
			"/proc/self/cgroup": "0::/system.slice/crowdpilot.service\n",
			"/sys/fs/cgroup/system.slice/crowdpilot.service/cpu.max": "150000 100000\n",
			"/sys/fs/cgroup/system.slice/cpu.max":                    "max 100000\n",
		}, want: 1.5},
		{name: "v2 unlimited", files: map[string]string{
			"/proc/self/cgroup":        "0::/x\n",
			"/sys/fs/cgroup/x/cpu.max": "max 100000\n",
		}, want: 2},
		{name: "garbage", files: map[string]string{
			"/proc/self/cgroup":        "0::/x\nnonsense\n",
			"/sys/fs/cgroup/x/cpu.max": "lots\n",
		}, want: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			read := func(name string) ([]byte, error) {
				if s, ok := tt.files[name]; ok {
					return []byte(s), nil
				}
				return nil, fs.ErrNotExist
			}
			if got := cpuLimit(read, 2); got != tt.want {
				t.Errorf("cpuLimit = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestCPULimitIsReadAtMostOncePerRefresh: heat reports (several a second)
// reuse the limit read within cpuLimitRefresh, and read it again after.
func TestCPULimitIsReadAtMostOncePerRefresh(t *testing.T) {
	reads := 0
	r := cpuLimitReader{read: func() float64 { reads++; return float64(reads) / 4 }}
	t0 := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	for i := range 40 { // 10 s of reports every 250ms, less the last
		if got := r.get(t0.Add(time.Duration(i) * 250 * time.Millisecond)); got != 0.25 {
			t.Fatalf("report %d: limit %v, want the first read's 0.25", i, got)
		}
	}
	if got := r.get(t0.Add(cpuLimitRefresh)); got != 0.5 || reads != 2 {
		t.Errorf("after cpuLimitRefresh: limit %v after %d reads, want 0.5 after 2", got, reads)
	}
	if got := r.get(t0); got != 0.75 { // the clock stepped back: read again
		t.Errorf("clock stepped back: limit %v, want a new read (0.75)", got)
	}
}
