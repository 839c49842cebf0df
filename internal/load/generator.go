package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
	"golang.org/x/net/http/httpguts"
)

// Defaults for the zero fields of Config.
const (
	DefaultKeys        = 10000
	DefaultZipf        = 1.1
	DefaultMaxInflight = 10000
	DefaultTimeout     = 5 * time.Second
	MaxDrain           = 5 * time.Second
	adminTimeout       = 900 * time.Millisecond
)

// ErrNoTargets is returned by New when Config.Targets is empty.
var ErrNoTargets = errors.New("no --target given")

// Config configures a Generator. Zero fields mean the documented defaults.
type Config struct {
	// Targets are the base URLs requests go to, round robin. Required.
	Targets []string
	// Schedule is the send plan. Required; see Schedule.Validate.
	Schedule Schedule
	// Keys is the catalogue size (paths /obj/0 ... /obj/Keys-1). 0 means
	// DefaultKeys.
	Keys int
	// Zipf is the catalogue's Zipf exponent, > 1. 0 means DefaultZipf.
	Zipf float64
	// Hot are the paths the crowd's extra requests go to. Empty: the crowd
	// follows the catalogue.
	Hot []string
	// Seed seeds the key choice.
	Seed uint64
	// Host, if not empty, is every request's Host header instead of the
	// target's: the site a cluster fronting several should serve.
	Host string
	// MaxInflight caps requests sent and not yet done; a request due while
	// the cap is full is not sent and counts as Counts.NotSent (the
	// generator's own failure, not the cluster's). 0 means
	// DefaultMaxInflight.
	MaxInflight int
	// Timeout bounds each request from its send to the end of its body.
	// 0 means DefaultTimeout.
	Timeout time.Duration
	// Admins are node admin addresses (host:port) whose /metrics are scraped
	// once a second. Admins that fail are skipped.
	Admins []string
	// Transport sends the requests and scrapes. If nil, the generator's own
	// (connTransport: each request on its caller's goroutine, over a pool
	// of up to MaxInflight idle connections per host; no proxies, no
	// compression) is used.
	Transport http.RoundTripper
	// Progress receives a live progress line every second ("\r"-rewritten).
	// If nil, the run is quiet.
	Progress io.Writer
}

// A Generator runs one open-loop load run.
type Generator struct {
	cfg    Config
	bases  []*url.URL
	client *http.Client
}

// New validates cfg, fills its defaults and returns a Generator.
func New(cfg Config) (*Generator, error) {
	if len(cfg.Targets) == 0 {
		return nil, ErrNoTargets
	}
	if err := cfg.Schedule.Validate(); err != nil {
		return nil, err
	}
	if cfg.Keys == 0 {
		cfg.Keys = DefaultKeys
	}
	if cfg.Zipf == 0 {
		cfg.Zipf = DefaultZipf
	}
	if cfg.MaxInflight == 0 {
		cfg.MaxInflight = DefaultMaxInflight
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	switch {
	case cfg.Keys < 1:
		return nil, fmt.Errorf("keys %d: want ≥ 1", cfg.Keys)
	case !(cfg.Zipf > 1):
		return nil, fmt.Errorf("zipf %v: want an exponent > 1", cfg.Zipf)
	case cfg.MaxInflight < 1:
		return nil, fmt.Errorf("max-inflight %d: want ≥ 1", cfg.MaxInflight)
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("timeout %v: want > 0", cfg.Timeout)
	}
	if cfg.Host != "" && !httpguts.ValidHostHeader(cfg.Host) {
		return nil, fmt.Errorf("host %q: want a host name, optionally with a port, such as news.example", cfg.Host)
	}
	for _, h := range cfg.Hot {
		if len(h) == 0 || h[0] != '/' {
			return nil, fmt.Errorf("hot object %q: want a path starting with /", h)
		}
	}
	g := &Generator{cfg: cfg}
	for _, t := range cfg.Targets {
		u, err := url.Parse(t)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("target %q: want an http:// or https:// base URL", t)
		}
		g.bases = append(g.bases, u)
	}
	rt := cfg.Transport
	if rt == nil {
		rt = newConnTransport(cfg.Timeout, cfg.MaxInflight)
	}
	g.client = &http.Client{
		Transport:     rt,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return g, nil
}

// Probe sends one GET of the most popular catalogue object to every target
// and fails if one cannot be reached. Any HTTP answer will do.
func (g *Generator) Probe(ctx context.Context) error {
	for _, b := range g.bases {
		u := *b
		u.Path = joinPath(b.Path, CataloguePath(0))
		ctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err == nil {
			var resp *http.Response
			if resp, err = g.client.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
				resp.Body.Close()
			}
		}
		cancel()
		if err != nil {
			return fmt.Errorf("target %s unreachable: %w", b, err)
		}
	}
	return nil
}

// Close drops the idle connections.
func (g *Generator) Close() { g.client.CloseIdleConnections() }

// Run sends the schedule and returns the report. Cancelling ctx stops the
// sending early; the report then covers what was sent and Interrupted is
// set. Run ends at most min(Timeout, MaxDrain) after the last planned send:
// requests still out then are cut and count as timeouts.
func (g *Generator) Run(ctx context.Context) (*Report, error) {
	sched := g.cfg.Schedule
	mix, err := NewMix(sched, g.cfg.Keys, g.cfg.Zipf, g.cfg.Hot, g.cfg.Seed)
	if err != nil {
		return nil, err
	}
	rec := newRecorder(sched)
	var due time.Duration // planned time of the request being built
	targeter := NewTargeter(g.bases, mix, func() time.Duration { return due }, g.cfg.Host)

	// Requests outlive ctx by the drain, then are cut.
	reqCtx, cutRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer cutRequests()
	bgCtx, stopBackground := context.WithCancel(ctx)
	var bg sync.WaitGroup
	defer bg.Wait()
	defer stopBackground()

	start := time.Now()
	lastScrape := make(chan struct{}) // closed once the last second is scraped
	bg.Go(func() { g.monitor(bgCtx, start, rec, lastScrape) })

	var (
		// Workers send one request at a time; there are at most MaxInflight.
		// jobs is unbuffered, so a send succeeds only if a worker is idle.
		jobs        = make(chan job)
		workers     int
		reqs        sync.WaitGroup // the workers
		lag         = newHist()    // send time - planned time
		timer       = time.NewTimer(time.Hour)
		end         = sched.Duration
		interrupted bool
	)
	timer.Stop()
	abort := func(err error) (*Report, error) {
		cutRequests()
		close(jobs)
		reqs.Wait()
		return nil, err
	}
send:
	for n := uint64(0); ; n++ {
		at, ok := sched.At(n)
		if !ok {
			break
		}
		if wait := time.Until(start.Add(at)); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				timer.Stop()
				end, interrupted = time.Since(start), true
				break send
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			end, interrupted = time.Since(start), true
			break
		}
		due = at
		var tgt vegeta.Target
		if err := targeter(&tgt); err != nil {
			return abort(fmt.Errorf("pick target: %w", err))
		}
		req, err := tgt.Request()
		if err != nil {
			return abort(fmt.Errorf("build request for %s: %w", tgt.URL, err))
		}
		j := job{req: req, at: at, planned: start.Add(at)}
		select {
		case jobs <- j:
		default:
			if workers == g.cfg.MaxInflight {
				rec.dispatch(at, true)
				continue
			}
			workers++
			reqs.Go(func() { g.work(reqCtx, rec, j, jobs) })
		}
		rec.dispatch(at, false)
		recordLatency(lag, time.Since(j.planned))
	}
	close(jobs)

	// Bounded drain, then cut what is still out.
	drained := make(chan struct{})
	go func() { reqs.Wait(); close(drained) }()
	drain := time.NewTimer(min(g.cfg.Timeout, MaxDrain))
	select {
	case <-drained:
	case <-drain.C:
		cutRequests()
		<-drained
	}
	drain.Stop()
	if len(g.cfg.Admins) > 0 && !interrupted {
		// Let the last second's scrape land, but not for long.
		wait := time.NewTimer(time.Until(start.Add(sched.Duration + 2*time.Second)))
		select {
		case <-lastScrape:
		case <-wait.C:
		}
		wait.Stop()
	}
	stopBackground()
	bg.Wait()
	if g.cfg.Progress != nil {
		fmt.Fprintln(g.cfg.Progress)
	}

	series, phases, total := rec.finish(end)
	return &Report{
		Config:      g.reportConfig(),
		Interrupted: interrupted,
		Series:      series,
		Phases:      phases,
		Total:       total,
		Generator:   generatorStats(lag, total.NotSent, g.cfg.MaxInflight),
	}, nil
}

// job is one request to send.
type job struct {
	req     *http.Request
	at      time.Duration // planned send time, since the start
	planned time.Time
}

// work sends first, then every job it receives, until jobs is closed.
func (g *Generator) work(ctx context.Context, rec *recorder, first job, jobs <-chan job) {
	// One trace per worker (its requests run one at a time): did the
	// request get an idle connection or one dialed for it?
	var reused atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused.Store(i.Reused) }})
	rec.done(g.hit(ctx, first, &reused))
	for j := range jobs {
		rec.done(g.hit(ctx, j, &reused))
	}
}

// hit sends j's request, reads the whole answer and says what happened.
func (g *Generator) hit(ctx context.Context, j job, reused *atomic.Bool) outcome {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	o := outcome{at: j.at}
	reused.Store(true) // a request that never got a connection dialed none
	resp, err := g.client.Do(j.req.WithContext(ctx))
	o.newConn = !reused.Load()
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil {
			o.status = resp.StatusCode
			o.servedBy = resp.Header.Get("X-Served-By")
			o.cache = classifyCacheStatus(resp.Header.Values("Cache-Status"))
		}
	}
	o.latency = time.Since(j.planned)
	if err != nil {
		var ne net.Error
		o.timeout = ctx.Err() != nil || errors.As(err, &ne) && ne.Timeout()
	}
	return o
}
