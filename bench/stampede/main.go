// Command stampede measures cold and expired stampedes side by side: a
// 3-node crowdpilot cluster (`crowdpilot up`), nginx proxy_cache and Varnish,
// each in front of its own slow demo origin started in this process, each
// hit by the same burst of simultaneous requests. It prints Markdown tables
// and writes one JSON line per stampede to <out>/results.jsonl.
//
// Run it through bench/stampede.sh, which installs nginx and Varnish and
// builds the binaries.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type config struct {
	crowdpilot, nginx, varnishd string
	nginxWorkers                string
	contenders                  []string
	nodes                       int
	requests                    int
	runs                        int
	latency                     time.Duration
	shortAge                    time.Duration
	timeout                     time.Duration
	deadline                    time.Duration
	out, tmp, pgidFile          string
	trace                       bool // a Go execution trace of crowdpilot around each stampede
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	var cfg config
	fs := flag.NewFlagSet("stampede", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.crowdpilot, "crowdpilot", "", "crowdpilot binary (required)")
	fs.StringVar(&cfg.nginx, "nginx", "nginx", "nginx binary")
	fs.StringVar(&cfg.varnishd, "varnishd", "varnishd", "varnishd binary")
	fs.StringVar(&cfg.nginxWorkers, "nginx-workers", "auto", "nginx worker_processes (auto: one per core)")
	contenders := fs.String("contenders", "crowdpilot,nginx,varnish", "comma-separated contenders, in the first run's order")
	fs.IntVar(&cfg.nodes, "nodes", 3, "crowdpilot nodes")
	fs.IntVar(&cfg.requests, "requests", 2000, "simultaneous requests per stampede")
	fs.IntVar(&cfg.runs, "runs", 3, "runs of each scenario (the contender order rotates each run)")
	fs.DurationVar(&cfg.latency, "origin-latency", 200*time.Millisecond, "demo origin response time")
	fs.DurationVar(&cfg.shortAge, "stale-max-age", 2*time.Second, "max-age of the object in the expired scenario (whole seconds)")
	fs.DurationVar(&cfg.timeout, "timeout", 30*time.Second, "bound on one request of a stampede")
	fs.DurationVar(&cfg.deadline, "deadline", 15*time.Minute, "bound on the whole benchmark")
	fs.StringVar(&cfg.out, "out", "bench/out/stampede", "directory for results.jsonl and the contenders' logs")
	fs.BoolVar(&cfg.trace, "trace", false, "write a 1 s Go execution trace (go tool trace), allocation and CPU profile (go tool pprof) of the crowdpilot process around each of its stampedes to the --out directory")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg.contenders = strings.Split(*contenders, ",")
	var lvl slog.Level
	badFlag := func(name string, err error) int {
		fmt.Fprintf(stderr, "stampede: --%s: %v\n", name, err)
		return 2
	}
	switch {
	case fs.NArg() > 0:
		return badFlag("", fmt.Errorf("unexpected arguments %q", fs.Args()))
	case cfg.crowdpilot == "":
		return badFlag("crowdpilot", errors.New("required (a crowdpilot binary)"))
	case cfg.nodes < 1 || cfg.nodes > 16:
		return badFlag("nodes", fmt.Errorf("%d must be between 1 and 16", cfg.nodes))
	case cfg.requests < 1 || cfg.requests > 8000:
		return badFlag("requests", fmt.Errorf("%d must be between 1 and 8000", cfg.requests))
	case cfg.runs < 1 || cfg.runs > 20:
		return badFlag("runs", fmt.Errorf("%d must be between 1 and 20", cfg.runs))
	case cfg.latency < 0 || cfg.latency > 5*time.Second:
		return badFlag("origin-latency", fmt.Errorf("%v must be between 0 and 5s", cfg.latency))
	case cfg.shortAge < time.Second || cfg.shortAge > 5*time.Second || cfg.shortAge%time.Second != 0:
		return badFlag("stale-max-age", fmt.Errorf("%v must be 1s to 5s in whole seconds (the stale window is 10 s)", cfg.shortAge))
	case cfg.nginxWorkers != "auto" && !isPositiveInt(cfg.nginxWorkers):
		return badFlag("nginx-workers", fmt.Errorf("%q is not auto or a positive number", cfg.nginxWorkers))
	case cfg.timeout <= 0:
		return badFlag("timeout", fmt.Errorf("%v must be positive", cfg.timeout))
	case cfg.deadline <= 0:
		return badFlag("deadline", fmt.Errorf("%v must be positive", cfg.deadline))
	case lvl.UnmarshalText([]byte(*logLevel)) != nil:
		return badFlag("log-level", fmt.Errorf("%q is not debug, info, warn or error", *logLevel))
	}
	seen := map[string]bool{}
	for _, c := range cfg.contenders {
		if c != "crowdpilot" && c != "nginx" && c != "varnish" {
			return badFlag("contenders", fmt.Errorf("%q is not crowdpilot, nginx or varnish", c))
		}
		if seen[c] {
			return badFlag("contenders", fmt.Errorf("%q named twice", c))
		}
		seen[c] = true
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl})))

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancelDeadline := context.WithTimeout(ctx, cfg.deadline)
	defer cancelDeadline()
	if err := bench(ctx, cfg, stdout); err != nil {
		fmt.Fprintf(stderr, "stampede: %v\n", err)
		return 1
	}
	return 0
}

func bench(ctx context.Context, cfg config, stdout io.Writer) error {
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return fmt.Errorf("out dir: %w", err)
	}
	tmp, err := os.MkdirTemp("/dev/shm", "crowdpilot-stampede-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	os.Chmod(tmp, 0o755)
	cfg.tmp = tmp
	cfg.pgidFile = filepath.Join(cfg.out, "pgids")
	os.Remove(cfg.pgidFile)
	resf, err := os.Create(filepath.Join(cfg.out, "results.jsonl"))
	if err != nil {
		return fmt.Errorf("results file: %w", err)
	}
	defer resf.Close()

	var started []*contender
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, c := range started {
			c.stop(stopCtx)
		}
	}()
	byName := map[string]*contender{}
	for _, name := range cfg.contenders {
		o, err := startOrigin(cfg.latency, time.Hour, cfg.shortAge)
		if err != nil {
			return err
		}
		var c *contender
		switch name {
		case "crowdpilot":
			c, err = startCrowdpilot(ctx, cfg, o)
		case "nginx":
			c, err = startNginx(ctx, cfg, o)
		case "varnish":
			c, err = startVarnish(ctx, cfg, o)
		}
		if err != nil {
			o.close(ctx)
			return fmt.Errorf("start %s: %w", name, err)
		}
		started = append(started, c)
		byName[name] = c
		slog.Info("started", "contender", name, "targets", c.targets, "origin", o.url)
	}

	fmt.Fprintf(stdout, "stampede: %d simultaneous requests, origin latency %v, %d crowdpilot nodes, %d runs, started %s, load average %s\n",
		cfg.requests, cfg.latency, cfg.nodes, cfg.runs, time.Now().UTC().Format(time.RFC3339), loadavg())
	fmt.Fprintf(stdout, "versions: %s\n", versions(cfg))
	enc := json.NewEncoder(resf)
	var all []result
	record := func(r result) {
		all = append(all, r)
		enc.Encode(r)
		slog.Info("stampede", "scenario", r.Scenario, "run", r.Run, "contender", r.Contender,
			"fetches", r.Fetches, "p50_ms", r.P50, "p99_ms", r.P99, "statuses", r.Statuses)
	}

	// A warm-up stampede on a path of its own, not reported in the tables:
	// a busy cache meets a crowd with its connections and threads up.
	for _, name := range cfg.contenders {
		r, err := measure(ctx, cfg, byName[name], "warmup", 0, "/cold/warmup-"+name, 0)
		if err != nil {
			return err
		}
		record(r)
	}
	stamp := time.Now().UnixNano()
	for run := 1; run <= cfg.runs; run++ {
		for _, name := range rotate(cfg.contenders, run-1) {
			path := fmt.Sprintf("/cold/%d-run%d-%s", stamp, run, name)
			r, err := measure(ctx, cfg, byName[name], "cold", run, path, 0)
			if err != nil {
				return err
			}
			record(r)
		}
		for _, name := range rotate(cfg.contenders, run-1) {
			r, err := expired(ctx, cfg, byName[name], run, fmt.Sprintf("/stale/%d-run%d-%s", stamp, run, name))
			if err != nil {
				return err
			}
			record(r)
		}
	}
	fmt.Fprintf(stdout, "finished %s, load average %s\n\n", time.Now().UTC().Format(time.RFC3339), loadavg())
	writeTables(stdout, all)
	return nil
}

// expired warms path through every target, waits until the object is past
// its max-age by 2 s (inside every contender's 10 s stale window), then
// stampedes it.
func expired(ctx context.Context, cfg config, c *contender, run int, path string) (result, error) {
	for _, t := range c.targets {
		if err := probe(ctx, "http://"+t+path); err != nil {
			return result{}, fmt.Errorf("%s: warm %s: %w", c.name, path, err)
		}
	}
	warmed := time.Now()
	before := c.origin.fetchesOf(path)
	select {
	case <-time.After(cfg.shortAge + 2*time.Second):
	case <-ctx.Done():
		return result{}, ctx.Err()
	}
	r, err := measure(ctx, cfg, c, "expired", run, path, before)
	r.StaleAgeMS = r.t0.Sub(warmed).Milliseconds()
	return r, err
}

// result is one stampede's outcome; latencies in milliseconds.
type result struct {
	Scenario   string    `json:"scenario"`
	Run        int       `json:"run"`
	Contender  string    `json:"contender"`
	Path       string    `json:"path"`
	Start      time.Time `json:"start"`
	LoadAvg    string    `json:"loadavg"`
	Before     int64     `json:"fetches_before"`
	Fetches    int64     `json:"fetches"` // during the stampede and the settle after it
	Arrivals   []string  `json:"origin_arrivals"`
	StaleAgeMS int64     `json:"warm_to_release_ms,omitempty"`
	// ServerCPU and ClientCPU are the CPU milliseconds the contender's
	// processes and this client used from the dials to the last reply.
	ServerCPU float64        `json:"server_cpu_ms"`
	ClientCPU float64        `json:"client_cpu_ms"`
	P50       float64        `json:"p50_ms"`
	P90       float64        `json:"p90_ms"`
	P99       float64        `json:"p99_ms"`
	Max       float64        `json:"max_ms"`
	Statuses  map[string]int `json:"statuses"`
	Cache     map[string]int `json:"cache_status"`
	ServedBy  map[string]int `json:"served_by,omitempty"`
	// NodeResults is, per crowdpilot node, the rise of
	// crowdpilot_requests_total by result over the stampede: the owner's
	// rise beyond its own share is the forwards it got from the routers.
	NodeResults map[string]map[string]int `json:"node_results,omitempty"`
	t0          time.Time
}

// measure runs one stampede on path and counts the origin's fetches of it
// after a settle of 5 origin latencies (at least 1 s), so background
// refreshes the stampede started are counted too.
func measure(ctx context.Context, cfg config, c *contender, scenario string, run int, path string, before int64) (result, error) {
	r := result{Scenario: scenario, Run: run, Contender: c.name, Path: path, LoadAvg: loadavg(), Before: before}
	m0 := scrapeResults(ctx, c.admins)
	var traced chan error
	kinds := []string{"trace", "allocs", "profile"}
	if cfg.trace && c.name == "crowdpilot" {
		traced = make(chan error, len(kinds))
		for _, k := range kinds {
			go func() {
				traced <- traceProcess(ctx, c.admins, k, filepath.Join(cfg.out, fmt.Sprintf("%s-%s-run%d.out", k, scenario, run)))
			}()
		}
	}
	groups := c.pgids()
	cpu0, self0 := cpuNanos(groups), cpuNanos(nil)
	replies, t0, err := stampede(ctx, c.targets, path, cfg.requests, cfg.timeout)
	if err != nil {
		return r, fmt.Errorf("%s %s run %d: %w", c.name, scenario, run, err)
	}
	r.ServerCPU = float64((cpuNanos(groups)-cpu0)/100_000) / 10
	r.ClientCPU = float64((cpuNanos(nil)-self0)/100_000) / 10
	r.t0, r.Start = t0, t0.UTC()
	settle := max(5*cfg.latency, time.Second)
	select {
	case <-time.After(settle):
	case <-ctx.Done():
		return r, ctx.Err()
	}
	r.Fetches = c.origin.fetchesOf(path) - before
	r.Arrivals = c.origin.arrivalsOf(path, t0, 20)
	r.NodeResults = diffResults(m0, scrapeResults(ctx, c.admins))
	summarize(&r, replies)
	for range cap(traced) {
		if err := <-traced; err != nil {
			slog.Warn("trace", "scenario", scenario, "run", run, "err", err)
		}
	}
	return r, nil
}

func isPositiveInt(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n > 0 && n <= 64
}

func rotate(s []string, k int) []string {
	out := make([]string, 0, len(s))
	for i := range s {
		out = append(out, s[(i+k)%len(s)])
	}
	return out
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func versions(cfg config) string {
	var out []string
	for _, c := range cfg.contenders {
		var cmd *exec.Cmd
		switch c {
		case "nginx":
			cmd = exec.Command(cfg.nginx, "-v")
		case "varnish":
			cmd = exec.Command(cfg.varnishd, "-V")
		default:
			continue
		}
		b, _ := cmd.CombinedOutput()
		line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
		out = append(out, line)
	}
	return strings.Join(out, "; ")
}
