package main

import (
	"context"
	"io"
	"os"

	"github.com/crowdpilot/crowdpilot/internal/load"
)

// runLoad runs `crowdpilot load`: the open-loop flash-crowd load generator.
// Its flags and their CROWDPILOT_* environment variables are parsed in
// internal/load, whose tests cover them; this only wires the process in:
// the environment, and the live progress line when stderr is a terminal.
func runLoad(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := load.Command{Stdout: stdout, Stderr: stderr, LookupEnv: os.LookupEnv}
	if isTerminal(stderr) {
		cmd.Progress = stderr
	}
	return cmd.Run(ctx, args)
}
