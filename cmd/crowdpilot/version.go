package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
)

// runVersion prints the module version, the VCS revision the binary was
// built from, and the Go it was built with.
func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("crowdpilot version", flag.ContinueOnError)
	if err := parseFlags(fs, args, stdout, "crowdpilot version", "Prints the module version, the VCS revision and the Go version of this binary."); err != nil {
		return badInput(stderr, "version", err)
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		fmt.Fprintln(stdout, "crowdpilot (no build information)")
		return 0
	}
	fmt.Fprintln(stdout, versionLine(info))
	return 0
}

// versionLine is "crowdpilot VERSION (rev REV[, modified], TIME) GO".
func versionLine(info *debug.BuildInfo) string {
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	version := info.Main.Version
	if version == "" {
		version = "(devel)"
	}
	rev := settings["vcs.revision"]
	switch {
	case rev == "":
		rev = "unknown revision (built without VCS information)"
	default:
		rev = "rev " + rev
		if settings["vcs.modified"] == "true" {
			rev += ", modified"
		}
		if t := settings["vcs.time"]; t != "" {
			rev += ", " + t
		}
	}
	return fmt.Sprintf("crowdpilot %s (%s) %s", version, rev, info.GoVersion)
}
