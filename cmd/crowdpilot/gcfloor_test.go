package main

import (
	"context"
	"log/slog"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/testwait"
)

func TestGCPercentKeepsTheGoalAtTheFloor(t *testing.T) {
	const floor = 64 << 20
	for _, c := range []struct {
		name string
		s    gcState
		want int
	}{
		{"small heap: goal at the floor", gcState{live: 8 << 20, scan: 10 << 20}, (floor - 8<<20) * 100 / (10 << 20)},
		{"tiny heap: at most maxGCPercent", gcState{live: 1 << 20, scan: 2 << 20}, maxGCPercent},
		{"heap near half the floor: no less than 100", gcState{live: 30 << 20, scan: 40 << 20}, 100},
		{"heap past half the floor: the default", gcState{live: 32 << 20, scan: 33 << 20}, 100},
		{"large heap: the default", gcState{live: 1 << 30, scan: 1 << 30}, 100},
		{"nothing read yet: the default", gcState{}, 100},
	} {
		if got := gcPercent(c.s, floor); got != c.want {
			t.Errorf("%s: gcPercent(%+v) = %d, want %d", c.name, c.s, got, c.want)
		}
		// The goal that GOGC gives is the floor or more while the live heap
		// is under half of it (unless capped), and twice the heap past it.
		got := gcPercent(c.s, floor)
		goal := c.s.live + c.s.scan*int64(got)/100
		if c.s.scan > 0 && got < maxGCPercent && c.s.live < floor/2 && goal < floor-(1<<20) {
			t.Errorf("%s: goal %d MiB under the floor", c.name, goal>>20)
		}
	}
}

func TestGCFloorSetsGOGCOnlyWhenItMovesATenth(t *testing.T) {
	var sets []int
	state := gcState{live: 8 << 20, scan: 10 << 20}
	f := &gcFloor{floor: 64 << 20, percent: 100, read: func() gcState { return state },
		set: func(p int) int { sets = append(sets, p); return 0 }}
	f.check()                                              // 560
	state.live, state.scan = 8<<20+100<<10, 10<<20+100<<10 // a little more live: 550
	f.check()
	state.live, state.scan = 12<<20, 14<<20 // 371
	f.check()
	state.live, state.scan = 40<<20, 41<<20 // past half the floor: 100
	f.check()
	f.check()
	want := []int{560, 371, 100}
	if len(sets) != len(want) {
		t.Fatalf("GOGC set to %v, want %v", sets, want)
	}
	for i := range want {
		if sets[i] != want[i] {
			t.Fatalf("GOGC set to %v, want %v", sets, want)
		}
	}
}

func TestGCFloorLeavesTheOperatorsGOGC(t *testing.T) {
	t.Setenv("GOGC", "50")
	prev := debug.SetGCPercent(50)
	defer debug.SetGCPercent(prev)
	startGCFloor(context.Background(), slog.New(slog.DiscardHandler), 1<<30)()
	if got := debug.SetGCPercent(50); got != 50 {
		t.Errorf("GOGC = %d with the operator's GOGC=50, want it untouched", got)
	}
}

func TestGCFloorRaisesTheRuntimesGOGCForASmallHeapAndPutsItBack(t *testing.T) {
	runtimeGOGC(t)
	runtime.GC()
	s := readGCState()
	if s.live <= 0 || s.scan < s.live {
		t.Fatalf("read live %d, scan %d: want 0 < live <= scan", s.live, s.scan)
	}
	// The test binary's live heap is a few MiB: under a 1 GiB floor its
	// GOGC goes to the cap.
	f := &gcFloor{floor: 1 << 30, percent: 100, read: readGCState, set: debug.SetGCPercent}
	f.check()
	if got := debug.SetGCPercent(100); got != maxGCPercent {
		t.Errorf("GOGC = %d for a live heap of %d MiB under a 1 GiB floor, want %d", got, s.live>>20, maxGCPercent)
	}
	debug.SetGCPercent(700)
	startGCFloor(context.Background(), slog.New(slog.DiscardHandler), 1<<30)()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC = %d after the floor stopped, want 100", got)
	}
}

// The floor is 64 MiB a node, but never more than half the room the
// memory limit leaves beside the stores: with the stores still empty, what
// piles up before a cycle stays under the memory signal's threshold.
func TestGCFloorForLeavesTheMemorySignalAlone(t *testing.T) {
	const mib = 1 << 20
	limitFor := func(stores int64, nodes int) int64 { return stores + stores/4 + int64(nodes)*64*mib } // memoryLimit's
	for _, c := range []struct {
		name   string
		stores int64
		nodes  int
		limit  int64
		want   int64
	}{
		{"one node, default store", 256 * mib, 1, limitFor(256*mib, 1), 64 * mib},
		{"three nodes in one process", 3 * 256 * mib, 3, limitFor(3*256*mib, 3), 3 * 64 * mib},
		{"a small store: half the room", 16 * mib, 1, limitFor(16*mib, 1), 34 * mib},
		{"the operator's limit below the stores: none", 256 * mib, 1, 200 * mib, 0},
		{"no limit (the load generator)", 0, 1, math.MaxInt64, 64 * mib},
	} {
		got := gcFloorFor(c.stores, c.nodes, c.limit)
		if got != c.want {
			t.Errorf("%s: floor %d MiB, want %d MiB", c.name, got/mib, c.want/mib)
		}
		if room := c.limit - c.stores; got > 0 && float64(got) > 0.5*float64(room) {
			t.Errorf("%s: floor %d MiB over half the room beside the stores (%d MiB)", c.name, got/mib, room/mib)
		}
	}
}

func TestGCCyclesSignalsOnceACycle(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cycles := gcCycles(ctx)
	select {
	case <-cycles:
		// A cycle the runtime started by itself: allowed, and drained.
	default:
	}
	for i := range 3 {
		runtime.GC()
		select {
		case <-cycles:
		case <-time.After(30 * time.Second):
			t.Fatalf("no signal after cycle %d", i+1)
		}
	}
}

// The floor follows the collector, not a clock: started for a small heap
// under a large floor, it raises GOGC at its first check, and after the
// live heap grows past half the floor it puts GOGC back at the next cycle.
func TestGCFloorFollowsEachCycle(t *testing.T) {
	runtimeGOGC(t)
	runtime.GC()
	live := readGCState().live
	floor := 8 * live // the heap well below half of it now
	stop := startGCFloor(context.Background(), slog.New(slog.DiscardHandler), floor)
	defer stop()
	testwait.Eventually(t, 30*time.Second, "GOGC raised for a small heap", func() bool { return gogc() > 100 })
	hold := make([][]byte, 0, 64)
	for range 64 {
		hold = append(hold, make([]byte, (5*live)/64+1)) // live heap past floor/2
	}
	runtime.GC()
	testwait.Eventually(t, 30*time.Second, "GOGC back at 100 past half the floor", func() bool {
		return gogc() == 100
	})
	runtime.KeepAlive(hold)
}

func gogc() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// runtimeGOGC leaves the floor to decide: no operator GOGC in the
// environment, GOGC at 100, and the test's GOGC put back at cleanup.
func runtimeGOGC(t *testing.T) {
	t.Setenv("GOGC", "")
	os.Unsetenv("GOGC")
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
}
