package main

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// The Go collector runs when the heap has grown by GOGC% of what was live
// at the last cycle. A node whose store holds little (a fresh node, a
// site with a few hot objects, every benchmark) has a live heap of a few
// MiB, so at the default GOGC=100 it collects every few MiB allocated:
// several times a second under a crowd. Each cycle scans every connection
// goroutine's stack and shrinks the idle ones, which then grow again on
// their next request, and it makes the requests in flight assist it. A
// stampede of 2,000 new connections ran one cycle mid-crowd, with those
// costs taking about a fifth of the process's CPU (bench/RESULTS.md, "The
// generator's own stalls, a GC floor, and the crowd again"). The memory the operator gave the process (memoryLimit: the
// stores, plus 64 MiB a node for everything else) is there anyway; the
// floor lets a small heap use part of it before a cycle runs.

// gcFloorPerNode is the most heap goal the floor keeps for each node of
// the process (or for a load generator): the 64 MiB a node gets besides
// its store (memoryLimit).
const gcFloorPerNode = 64 << 20

// gcFloorFor is the floor for a process holding nodes with stores of
// storeBytes in all, under the soft memory limit: gcFloorPerNode a node,
// but no more than half the room the limit leaves beside the stores, so
// that what the floor lets pile up before a cycle, with the store still
// empty, stays under the memory signal's 70% of that room (memload.go in
// internal/node) and never looks like a node short of memory.
func gcFloorFor(storeBytes int64, nodes int, limit int64) int64 {
	floor := int64(nodes) * gcFloorPerNode
	if room := limit - storeBytes; room/2 < floor {
		floor = max(room/2, 0)
	}
	return floor
}

// maxGCPercent bounds the GOGC the floor sets. The heap goal a cycle sets
// at its end lasts until that cycle's check: a live heap that jumps in
// between (a store filling at once) gets at most 10× its size, and the
// memory limit still holds.
const maxGCPercent = 1000

// startGCFloor keeps the heap goal at floor bytes or more while the live
// heap is small, by raising GOGC, and at GOGC=100 once the live heap is
// past half the floor, until ctx ends or stop is called (stop waits for
// its goroutine and puts GOGC back at 100). The operator's GOGC, when set,
// stands (nothing starts).
//
// The live heap is measured only when a cycle ends, so the floor checks
// once a cycle (gcCycles) rather than on a ticker: an idle node wakes for
// it never, a busy one once per collection.
func startGCFloor(ctx context.Context, logger *slog.Logger, floor int64) (stop func()) {
	if _, set := os.LookupEnv("GOGC"); set || floor <= 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	f := &gcFloor{floor: floor, percent: 100, read: readGCState, set: debug.SetGCPercent}
	cycles := gcCycles(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer debug.SetGCPercent(100)
		for {
			f.check()
			select {
			case <-cycles:
			case <-ctx.Done():
				return
			}
		}
	}()
	logger.Debug("gc floor", "floor_bytes", floor)
	return func() {
		cancel()
		<-done
	}
}

// gcCycles signals on the channel after each garbage collection cycle (one
// pending signal at most: cycles that end while one waits are folded into
// it), until ctx ends. A sentinel object with a cleanup is left
// unreachable; the cycle that finds it so runs the cleanup, which signals
// and leaves the next sentinel.
func gcCycles(ctx context.Context) <-chan struct{} {
	c := make(chan struct{}, 1)
	var arm func()
	arm = func() {
		if ctx.Err() != nil {
			return
		}
		// Large enough, and holding a pointer, to stay out of the tiny
		// allocator, whose blocks are freed with their neighbours.
		s := &gcSentinel{}
		s.self = s
		runtime.AddCleanup(s, func(struct{}) {
			arm() // first: the cycle the signal prompts must find the next one
			select {
			case c <- struct{}{}:
			default:
			}
		}, struct{}{})
	}
	arm()
	return c
}

type gcSentinel struct {
	self *gcSentinel
	_    [16]byte
}

// gcFloor is the floor's state: the GOGC it last set, and how to read the
// collector and set GOGC (the runtime's, or a test's).
type gcFloor struct {
	floor   int64
	percent int
	read    func() gcState
	set     func(int) int
}

// gcState is what the collector saw at its last cycle.
type gcState struct {
	live int64 // heap marked live
	scan int64 // live heap, stacks and globals: what GOGC is a share of
}

func (f *gcFloor) check() {
	want := gcPercent(f.read(), f.floor)
	// Only a change of a tenth or more: the live heap moves a little every
	// cycle, and setting GOGC recomputes the pacer's goal.
	if d := want - f.percent; d*10 >= f.percent || -d*10 >= f.percent || (want == 100) != (f.percent == 100) {
		f.set(want)
		f.percent = want
	}
}

// gcPercent is the GOGC that puts the heap goal (live + scan × GOGC/100)
// at floor, between 100 and maxGCPercent.
func gcPercent(s gcState, floor int64) int {
	if s.scan <= 0 || s.live >= floor/2 {
		return 100
	}
	p := (floor - s.live) * 100 / s.scan
	return int(min(max(p, 100), maxGCPercent))
}

var gcMetrics = []string{"/gc/heap/live:bytes", "/gc/scan/stack:bytes", "/gc/scan/globals:bytes"}

func readGCState() gcState {
	s := make([]metrics.Sample, len(gcMetrics))
	for i, name := range gcMetrics {
		s[i].Name = name
	}
	metrics.Read(s)
	var v [3]int64
	for i := range s {
		if s[i].Value.Kind() == metrics.KindUint64 {
			v[i] = int64(s[i].Value.Uint64())
		}
	}
	return gcState{live: v[0], scan: v[0] + v[1] + v[2]}
}
