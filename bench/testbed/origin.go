package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/demo"
)

// maxHotTimes bounds the hot object's recorded fetch times; past it they
// are counted, not kept.
const maxHotTimes = 100000

// hotLog records when the origin served the hot object (200 or 304), so
// the report can count its fetches in each contender's crowd window.
type hotLog struct {
	path string

	mu      sync.Mutex // guards times and dropped
	times   []int64    // unix milliseconds at arrival
	dropped int64
}

// hotStats is the answer of GET /_testbed/hot.
type hotStats struct {
	Path    string  `json:"path"`
	TimesMs []int64 `json:"times_ms"`
	Dropped int64   `json:"dropped"`
}

func (h *hotLog) add(ms int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.times) >= maxHotTimes {
		h.dropped++
		return
	}
	h.times = append(h.times, ms)
}

func (h *hotLog) snapshot() hotStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return hotStats{Path: h.path, TimesMs: append([]int64{}, h.times...), Dropped: h.dropped}
}

// maxFetchKeys bounds the objects fetchLog keeps a count for; fetches of
// others are counted as dropped.
const maxFetchKeys = 200000

// fetchLog counts the origin's fetches (GETs and HEADs answered 200 or 304) per
// object, host and path and query, so that a run can tell first fetches
// from repeats: with a max-age longer than the run, a repeat is a fetch the
// cluster should not have made (an ownership change that lost a copy, a
// miss that was not collapsed).
type fetchLog struct {
	mu      sync.Mutex // guards the rest
	counts  map[string]int32
	fetches int64
	dropped int64
}

// fetchStats is the answer of GET /_testbed/fetches.
type fetchStats struct {
	Objects int64 `json:"objects"` // distinct objects fetched
	Fetches int64 `json:"fetches"`
	Repeats int64 `json:"repeats"` // fetches beyond each object's first
	Dropped int64 `json:"dropped"` // fetches of objects past maxFetchKeys, not told apart
}

func (f *fetchLog) add(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fetches++
	if _, ok := f.counts[key]; !ok && len(f.counts) >= maxFetchKeys {
		f.dropped++
		return
	}
	f.counts[key]++
}

func (f *fetchLog) snapshot() fetchStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := fetchStats{Objects: int64(len(f.counts)), Fetches: f.fetches, Dropped: f.dropped}
	st.Repeats = st.Fetches - st.Objects - st.Dropped
	return st
}

// statusWriter keeps the status the wrapped handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// originHandler is the demo origin plus GET /_testbed/hot, the fetch times
// of the hot object, and GET /_testbed/fetches, the fetch counts of every
// object (a fetch is what the demo origin itself counts as one: a GET or
// HEAD answered 200 or 304).
func originHandler(o *demo.Origin, h *hotLog, f *fetchLog) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/_testbed/hot":
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(h.snapshot())
			return
		case "/_testbed/fetches":
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(f.snapshot())
			return
		}
		if (r.Method != http.MethodGet && r.Method != http.MethodHead) || strings.HasPrefix(r.URL.Path, "/_") {
			o.ServeHTTP(w, r)
			return
		}
		at := time.Now().UnixMilli()
		sw := &statusWriter{ResponseWriter: w}
		o.ServeHTTP(sw, r)
		if sw.status == http.StatusOK || sw.status == http.StatusNotModified {
			f.add(r.Host + r.URL.RequestURI())
			if r.URL.Path == h.path {
				h.add(at)
			}
		}
	})
}

// runOrigin serves the demo origin until SIGINT or SIGTERM.
func runOrigin(args []string) int {
	fs := flag.NewFlagSet("testbed origin", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "host:port to serve on")
	latency := fs.Duration("latency", 50*time.Millisecond, "response time")
	capacity := fs.Int("capacity", 8, "requests worked on at once (4x that queue, then 503)")
	maxAge := fs.Duration("max-age", 5*time.Second, "Cache-Control max-age of responses (whole seconds)")
	hot := fs.String("hot", "/live/match-1", "path whose fetch times GET /_testbed/hot lists")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(os.Stderr, "testbed origin: unexpected argument %q\n", fs.Arg(0))
		return 2
	case *latency <= 0:
		fmt.Fprintf(os.Stderr, "testbed origin: --latency %v: want > 0\n", *latency)
		return 2
	case *capacity < 1:
		fmt.Fprintf(os.Stderr, "testbed origin: --capacity %d: want >= 1\n", *capacity)
		return 2
	case *maxAge < time.Second || *maxAge%time.Second != 0:
		fmt.Fprintf(os.Stderr, "testbed origin: --max-age %v: want whole seconds, at least 1s\n", *maxAge)
		return 2
	case len(*hot) == 0 || (*hot)[0] != '/':
		fmt.Fprintf(os.Stderr, "testbed origin: --hot %q: want a path starting with /\n", *hot)
		return 2
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testbed origin: %v\n", err)
		return 1
	}
	o := demo.New(demo.Config{Latency: *latency, Capacity: *capacity, MaxAge: *maxAge})
	srv := &http.Server{Handler: originHandler(o, &hotLog{path: *hot}, &fetchLog{counts: map[string]int32{}}), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		return 0
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "testbed origin: %v\n", err)
		return 1
	}
}
