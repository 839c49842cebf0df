package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/crowdpilot/crowdpilot/internal/load"
)

// runLoad runs `crowdpilot load`: the open-loop flash-crowd load generator.
// Its flags and their CROWDPILOT_* environment variables are parsed in
// internal/load, whose tests cover them; this only wires the process in:
// the environment, the live progress line when stderr is a terminal, and
// the GC floor: the generator's heap is small too, and a collection's
// stop-the-world pause at a crowd's first instant is a stall the cluster
// would be blamed for.
func runLoad(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	defer startGCFloor(ctx, slog.New(slog.DiscardHandler), gcFloorFor(0, 1, debug.SetMemoryLimit(-1)))()
	cmd := load.Command{Stdout: stdout, Stderr: stderr, LookupEnv: os.LookupEnv}
	if isTerminal(stderr) {
		cmd.Progress = stderr
	}
	return cmd.Run(ctx, args)
}
