package load

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/trace"
	"strings"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/cliflag"
)

// Exit codes of Command.Run.
const (
	ExitOK       = 0
	ExitFailure  = 1 // the run could not be completed or its output written
	ExitBadInput = 2 // nothing was sent
)

// EnvPrefix prefixes the environment variable of every flag:
// --max-inflight is read from CROWDPILOT_MAX_INFLIGHT when not given.
const EnvPrefix = cliflag.EnvPrefix

// Command is `crowdpilot load`.
type Command struct {
	Stdout, Stderr io.Writer
	// Progress receives the live progress line. If nil, the run is quiet;
	// the caller sets it to Stderr when that is a terminal.
	Progress io.Writer
	// LookupEnv reads flag defaults from the environment. If nil, the
	// environment is ignored.
	LookupEnv func(string) (string, bool)
	// Transport sends the probe, the load and the scrapes. If nil, the
	// generator's own transport is used (see Config.Transport).
	Transport http.RoundTripper
}

// listFlag is a repeatable flag that also splits on commas.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// crowdFlag parses a crowd spec as it is set.
type crowdFlag struct{ c Crowd }

func (f *crowdFlag) String() string { return f.c.String() }

func (f *crowdFlag) Set(v string) (err error) {
	f.c, err = ParseCrowd(v)
	return err
}

// options are the parsed flags.
type options struct {
	cfg              Config
	outJSON, outPNG  string
	outTrace         string
	targets, hot, ad listFlag
	crowd            crowdFlag
}

func (o *options) flags() *flag.FlagSet {
	fs := flag.NewFlagSet("crowdpilot load", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c := &o.cfg
	fs.Var(&o.targets, "target", "base `URL` to load, round robin (repeatable or comma-separated; required)")
	fs.Float64Var(&c.Schedule.Base, "rate", 100, "baseline `requests` per second")
	fs.DurationVar(&c.Schedule.Duration, "duration", time.Minute, "length of the run")
	fs.Var(&o.crowd, "crowd", "flash crowd `spec` MULTx@START+HOLD[,ramp=D][,decay=D], e.g. 50x@10s+30s,ramp=2s (if empty, no crowd)")
	fs.IntVar(&c.Keys, "keys", DefaultKeys, "catalogue size: paths /obj/0 ... /obj/N-1")
	fs.Float64Var(&c.Zipf, "zipf", DefaultZipf, "Zipf exponent of the catalogue (> 1)")
	fs.Var(&o.hot, "hot", "`path` the crowd's extra requests go to (repeatable)")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of the key choice")
	fs.StringVar(&c.Host, "host", "", "Host header of every request, e.g. news.example (if empty, each target's own): the site of a cluster fronting several")
	fs.IntVar(&c.MaxInflight, "max-inflight", DefaultMaxInflight, "cap on requests in flight; a request due at the cap is not sent, and reported as the generator's own failure (not sent), not the cluster's")
	fs.DurationVar(&c.Timeout, "timeout", DefaultTimeout, "per-request timeout")
	fs.Var(&o.ad, "admin", "node admin `host:port` to scrape /metrics from each second (repeatable)")
	fs.StringVar(&o.outJSON, "out-json", "", "write the per-second series and summary to this `file`")
	fs.StringVar(&o.outPNG, "out-png", "", "write the chart to this `file`")
	fs.StringVar(&o.outTrace, "out-trace", "", "write a Go execution trace of the generator itself (go tool trace) to this `file`, from 1 s before the crowd (or the start) for 3 s: to tell its own stalls from the cluster's")
	return fs
}

// parse reads args, then the environment for the flags args did not set,
// then the --config file (see internal/cliflag).
func parse(args []string, lookupEnv func(string) (string, bool)) (*options, error) {
	o := &options{}
	fs := o.flags()
	if err := cliflag.Parse(fs, args, cliflag.Options{LookupEnv: lookupEnv}); err != nil {
		return nil, err
	}
	o.cfg.Targets, o.cfg.Hot, o.cfg.Admins = o.targets, o.hot, o.ad
	o.cfg.Schedule.Crowd = o.crowd.c
	return o, nil
}

const about = `Sends an open-loop flash crowd at one or more nodes: requests leave on
schedule (--rate, plus the --crowd multiplier) whatever the latency, so a slow
cluster cannot make the load look lighter than planned. The summary keeps the
generator's own failures (requests it never sent because --max-inflight were
outstanding, and its send lag) apart from the cluster's (5xx, timeouts,
connection errors). With --admin it also charts origin fetches and replicas.`

// usage writes the flag list.
func usage(w io.Writer) {
	fs := (&options{}).flags()
	cliflag.Usage(w, fs, "crowdpilot load --target URL[,URL...] [flags]", about, cliflag.Options{})
}

// Run runs `crowdpilot load args` and returns the exit code. Bad input
// (flags, crowd spec, URLs, an unreachable target) gets one line on Stderr
// and ExitBadInput before any load is sent.
func (c *Command) Run(ctx context.Context, args []string) int {
	badInput := func(err error) int {
		fmt.Fprintf(c.Stderr, "crowdpilot load: %v\n", err)
		return ExitBadInput
	}
	o, err := parse(args, c.LookupEnv)
	if errors.Is(err, flag.ErrHelp) {
		usage(c.Stdout)
		return ExitOK
	}
	if err != nil {
		return badInput(err)
	}
	for _, path := range []string{o.outJSON, o.outPNG, o.outTrace} {
		if err := checkOut(path); err != nil {
			return badInput(err)
		}
	}
	o.cfg.Progress = c.Progress
	o.cfg.Transport = c.Transport
	g, err := New(o.cfg)
	if err != nil {
		return badInput(err)
	}
	defer g.Close()
	if err := g.Probe(ctx); err != nil {
		return badInput(err)
	}
	stopTrace := func() error { return nil }
	if o.outTrace != "" {
		from := max(o.cfg.Schedule.Crowd.Start-time.Second, 0)
		stopTrace = traceWindow(ctx, o.outTrace, from, 3*time.Second)
	}
	rep, err := g.Run(ctx)
	if err := stopTrace(); err != nil {
		fmt.Fprintf(c.Stderr, "crowdpilot load: %v\n", err)
	}
	if err != nil {
		fmt.Fprintf(c.Stderr, "crowdpilot load: %v\n", err)
		return ExitFailure
	}
	code := ExitOK
	if err := rep.WriteTable(c.Stdout); err != nil {
		fmt.Fprintf(c.Stderr, "crowdpilot load: write summary: %v\n", err)
		code = ExitFailure
	}
	for _, out := range []struct {
		path  string
		write func(io.Writer) error
	}{{o.outJSON, rep.WriteJSON}, {o.outPNG, rep.WritePNG}} {
		if out.path == "" {
			continue
		}
		if err := writeFile(out.path, out.write); err != nil {
			fmt.Fprintf(c.Stderr, "crowdpilot load: %v\n", err)
			code = ExitFailure
		}
	}
	if rep.Interrupted {
		fmt.Fprintln(c.Stderr, "crowdpilot load: interrupted before the end of the schedule")
		code = ExitFailure
	}
	return code
}

// checkOut fails early for an output file whose folder does not exist.
func checkOut(path string) error {
	if path == "" {
		return nil
	}
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("output %s: folder %s does not exist", path, dir)
	}
	return nil
}

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// traceWindow writes a Go execution trace of this process to path, from
// `from` after now for `length`, in a goroutine of its own; the function
// it returns ends the trace early if need be, waits for the goroutine and
// says what failed.
func traceWindow(ctx context.Context, path string, from, length time.Duration) func() error {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			select {
			case <-time.After(from):
			case <-ctx.Done():
				return nil
			}
			f, err := os.Create(path)
			if err != nil {
				return fmt.Errorf("trace: %w", err)
			}
			if err := trace.Start(f); err != nil {
				f.Close()
				return fmt.Errorf("trace: %w", err)
			}
			select {
			case <-time.After(length):
			case <-ctx.Done():
			}
			trace.Stop()
			return f.Close()
		}()
	}()
	return func() error {
		cancel()
		return <-done
	}
}
