package main

import (
	"log/slog"
	"os"
	"runtime"
)

// maxProcs runs the Go scheduler on one thread when the process may use
// at most one core (a cgroup quota), unless the operator set GOMAXPROCS.
// Go never sets fewer than 2 by itself: under a 0.25-core quota, two
// threads burn the period's quota in half the time and the whole process
// is then throttled until the next period, which is a latency spike for
// every request in flight; idle threads spinning for work burn it too.
// Measured in bench/RESULTS.md ("Hit path in a 0.25-core cgroup").
func maxProcs(logger *slog.Logger, limit float64) {
	if _, set := os.LookupEnv("GOMAXPROCS"); set {
		return
	}
	if n := procsFor(limit, runtime.GOMAXPROCS(0)); n != runtime.GOMAXPROCS(0) {
		runtime.GOMAXPROCS(n)
		logger.Debug("GOMAXPROCS lowered to the CPU quota", "gomaxprocs", n, "cpu_limit_cores", limit)
	}
}

// procsFor is the GOMAXPROCS for a CPU limit in cores: 1 at or under one
// core, else what the runtime chose.
func procsFor(limit float64, current int) int {
	if limit > 0 && limit <= 1 {
		return 1
	}
	return current
}
