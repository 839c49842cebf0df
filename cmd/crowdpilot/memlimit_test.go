package main

import (
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"testing"
)

// TestMemoryLimit: without GOMEMLIMIT the process's soft limit follows the
// stores it holds; with it, the operator's setting stands.
func TestMemoryLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	log := slog.New(slog.DiscardHandler)

	if v, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		t.Cleanup(func() { os.Setenv("GOMEMLIMIT", v) })
	}
	os.Unsetenv("GOMEMLIMIT")
	debug.SetMemoryLimit(math.MaxInt64)
	memoryLimit(log, 3*256<<20, 3)
	if got, want := debug.SetMemoryLimit(-1), int64(3*256<<20*5/4+3*64<<20); got != want {
		t.Errorf("limit = %d, want %d", got, want)
	}

	t.Setenv("GOMEMLIMIT", "2GiB")
	debug.SetMemoryLimit(math.MaxInt64)
	memoryLimit(log, 256<<20, 1)
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("limit = %d with GOMEMLIMIT set, want it untouched", got)
	}
}
