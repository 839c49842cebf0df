package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/crowdpilot/crowdpilot/internal/cliflag"
)

// parseFlags parses args into fs the way every command does (see
// internal/cliflag): flag, then CROWDPILOT_<FLAG>, then the --config YAML
// file, then the default. For --help it writes the command's help on
// stdout and returns flag.ErrHelp (badInput turns that into exit 0); any
// other error is one line naming the flag, for exit code 2.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer, synopsis, about string, cliOnly ...string) error {
	o := cliflag.Options{LookupEnv: os.LookupEnv, CommandLineOnly: cliOnly}
	err := cliflag.Parse(fs, args, o)
	if errors.Is(err, flag.ErrHelp) {
		cliflag.Usage(stdout, fs, synopsis, about, o)
	}
	return err
}

// envName is the environment variable for a flag: store-bytes -> CROWDPILOT_STORE_BYTES.
func envName(flagName string) string { return cliflag.EnvName(flagName) }

// byteSize is a flag of bytes with optional suffix: 256MiB, 8MB, 4096.
type byteSize = cliflag.ByteSize

// newLogger builds the process logger: JSON unless stderr is a terminal.
func newLogger(stderr io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(stderr, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(stderr, opts)), nil
	case "auto", "":
		if isTerminal(stderr) {
			return slog.New(slog.NewTextHandler(stderr, opts)), nil
		}
		return slog.New(slog.NewJSONHandler(stderr, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want auto, json or text", format)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// badInput prints a one-line error for exit code 2.
func badInput(stderr io.Writer, cmd string, err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	// errors.Join reports several problems on several lines: keep one.
	fmt.Fprintf(stderr, "crowdpilot %s: %s\n", cmd, strings.ReplaceAll(err.Error(), "\n", "; "))
	return 2
}
