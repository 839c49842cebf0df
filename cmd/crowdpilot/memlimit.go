package main

import (
	"log/slog"
	"os"
	"runtime/debug"
)

// memoryLimit sets the Go runtime's soft memory limit for a process that
// holds nodes with stores of storeBytes in all, unless the operator set
// GOMEMLIMIT: 1.25 × the stores plus 64 MiB per node for everything else.
// Without a limit the heap grows to twice what is live before the GC runs
// (GOGC=100), so a full store of 256 MiB costs up to about 2× in resident
// memory; with it, about 1.25× (bench/RESULTS.md, "Memory"). The live heap
// of a full store is about 1.1× its bound, so the limit leaves room and
// the GC does not run without end.
func memoryLimit(logger *slog.Logger, storeBytes int64, nodes int) {
	if _, set := os.LookupEnv("GOMEMLIMIT"); set || nodes <= 0 {
		return
	}
	limit := storeBytes + storeBytes/4 + int64(nodes)*64<<20
	debug.SetMemoryLimit(limit)
	logger.Debug("go soft memory limit set", "bytes", limit, "store_bytes", storeBytes)
}
