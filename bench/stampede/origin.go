package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/demo"
)

// maxArrivals bounds the log of object requests one origin keeps.
const maxArrivals = 100_000

// origin is one contender's own demo origin: paths under /stale/ come from a
// demo origin with a short max-age (the expired scenario), everything else
// from one with a long max-age (the cold scenario, warm-ups, probes). It
// logs when each object request arrived, so a report can say when the extra
// fetches came.
type origin struct {
	long, short *demo.Origin
	srv         *http.Server
	url         string

	mu       sync.Mutex // guards arrivals and dropped
	arrivals []arrival
	dropped  int
}

// arrival is one request the origin received for a path under /cold/ or /stale/.
type arrival struct {
	path        string
	at          time.Time
	conditional bool // carried If-None-Match (a revalidation)
}

func startOrigin(latency, longAge, shortAge time.Duration) (*origin, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo origin listen: %w", err)
	}
	o := &origin{
		long:  demo.New(demo.Config{Latency: latency, MaxAge: longAge}),
		short: demo.New(demo.Config{Latency: latency, MaxAge: shortAge}),
		url:   "http://" + ln.Addr().String(),
	}
	o.srv = &http.Server{Handler: o, ReadHeaderTimeout: 10 * time.Second}
	go o.srv.Serve(ln)
	return o, nil
}

func (o *origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if strings.HasPrefix(p, "/cold/") || strings.HasPrefix(p, "/stale/") {
		o.mu.Lock()
		if len(o.arrivals) < maxArrivals {
			o.arrivals = append(o.arrivals, arrival{path: p, at: time.Now(), conditional: r.Header.Get("If-None-Match") != ""})
		} else {
			o.dropped++
		}
		o.mu.Unlock()
	}
	if strings.HasPrefix(p, "/stale/") {
		o.short.ServeHTTP(w, r)
		return
	}
	o.long.ServeHTTP(w, r)
}

// fetchesOf is the demo origin's count of answered object requests for path.
func (o *origin) fetchesOf(path string) int64 {
	if strings.HasPrefix(path, "/stale/") {
		return o.short.FetchesOf(path)
	}
	return o.long.FetchesOf(path)
}

// arrivalsOf lists, in milliseconds since t0, when requests for path
// arrived (a trailing "c" marks a conditional one), at most max of them.
func (o *origin) arrivalsOf(path string, t0 time.Time, max int) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, a := range o.arrivals {
		if a.path != path || len(out) >= max {
			continue
		}
		s := fmt.Sprintf("%+dms", a.at.Sub(t0).Milliseconds())
		if a.conditional {
			s += "c"
		}
		out = append(out, s)
	}
	return out
}

func (o *origin) close(ctx context.Context) {
	if err := o.srv.Shutdown(ctx); err != nil {
		o.srv.Close()
	}
}
