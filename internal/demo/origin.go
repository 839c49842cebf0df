// Package demo is a deliberately slow origin that drowns past a concurrency
// limit, so a newcomer (and the tests and the testbed) can see what
// crowdpilot protects.
package demo

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures an Origin. Zero fields mean the defaults.
type Config struct {
	// Latency is the time one response takes when the origin is healthy.
	// Default 50ms.
	Latency time.Duration
	// Capacity is how many requests the origin works on at once; more queue
	// behind them. Default 8.
	Capacity int
	// QueueLimit is how many requests may wait; beyond it the origin answers
	// 503 at once, as a drowning origin does. Default 4 × Capacity.
	QueueLimit int
	// MaxAge is the Cache-Control max-age of responses. Default 5s.
	MaxAge time.Duration
	// BodyBytes is the body size of catalogue objects. Default 1024.
	BodyBytes int
	// Now stamps the Date header. Nil means time.Now.
	Now func() time.Time
}

// Origin serves /any/path with a body naming the path and a version that
// changes when the object is updated (POST /_update?path=...). GET /_stats
// reports the fetch counts. The version lets tests tell old copies from new.
type Origin struct {
	cfg   Config
	slots chan struct{} // capacity: one token per request being worked on
	queue atomic.Int64  // requests waiting for a slot

	fetches atomic.Int64
	shed    atomic.Int64
	down    atomic.Bool

	mu       sync.Mutex       // guards versions and perPath
	versions map[string]int   // path -> version, bumped by updates
	perPath  map[string]int64 // path -> fetch count
}

// New returns an Origin.
func New(cfg Config) *Origin {
	if cfg.Latency <= 0 {
		cfg.Latency = 50 * time.Millisecond
	}
	if cfg.Capacity <= 0 {
		cfg.Capacity = 8
	}
	if cfg.QueueLimit <= 0 {
		cfg.QueueLimit = 4 * cfg.Capacity
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 5 * time.Second
	}
	if cfg.BodyBytes <= 0 {
		cfg.BodyBytes = 1024
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Origin{
		cfg:      cfg,
		slots:    make(chan struct{}, cfg.Capacity),
		versions: make(map[string]int),
		perPath:  make(map[string]int64),
	}
}

// Fetches is the number of object requests answered with content.
func (o *Origin) Fetches() int64 { return o.fetches.Load() }

// FetchesOf is the number of object requests for path.
func (o *Origin) FetchesOf(path string) int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.perPath[path]
}

// SetDown makes the origin fail every request (connection kept, 503 body)
// or recover.
func (o *Origin) SetDown(down bool) { o.down.Store(down) }

// Update bumps the version of path, as an editor publishing would.
func (o *Origin) Update(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.versions[path]++
	return o.versions[path]
}

// Version is the current version of path.
func (o *Origin) Version(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.versions[path]
}

// ServeHTTP implements http.Handler.
func (o *Origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/_stats":
		fmt.Fprintf(w, "{\"fetches\":%d,\"shed\":%d}\n", o.fetches.Load(), o.shed.Load())
		return
	case "/_update":
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		fmt.Fprintf(w, "%d\n", o.Update(r.URL.Query().Get("path")))
		return
	}
	if o.down.Load() {
		http.Error(w, "origin down", http.StatusServiceUnavailable)
		return
	}
	if !o.acquire(r.Context()) {
		if r.Context().Err() == nil {
			http.Error(w, "origin overloaded", http.StatusServiceUnavailable)
		}
		return
	}
	defer func() { <-o.slots }()
	// Like a real origin, read the object's state first, then spend the
	// latency rendering it: an update during the render is not in this
	// response.
	o.mu.Lock()
	v := o.versions[r.URL.Path]
	o.mu.Unlock()
	select {
	case <-time.After(o.cfg.Latency):
	case <-r.Context().Done():
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	o.mu.Lock()
	o.perPath[r.URL.Path]++
	o.mu.Unlock()
	o.fetches.Add(1)

	etag := `"v` + strconv.Itoa(v) + `"`
	h := w.Header()
	h.Set("Cache-Control", "public, max-age="+strconv.Itoa(int(o.cfg.MaxAge/time.Second)))
	h.Set("ETag", etag)
	h.Set("Date", o.cfg.Now().UTC().Format(http.TimeFormat))
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Surrogate-Key", "demo "+tagOf(r.URL.Path))
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := make([]byte, o.cfg.BodyBytes)
	head := fmt.Sprintf("%s version=%d\n", r.URL.Path, v)
	n := copy(body, head)
	for i := n; i < len(body); i++ {
		body[i] = '.'
	}
	if len(body) > 0 {
		body[len(body)-1] = '\n'
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}

// acquire waits for a work slot, or sheds at once when the queue is full.
func (o *Origin) acquire(ctx context.Context) bool {
	select {
	case o.slots <- struct{}{}:
		return true
	default:
	}
	if o.queue.Add(1) > int64(o.cfg.QueueLimit) {
		o.queue.Add(-1)
		o.shed.Add(1)
		return false
	}
	defer o.queue.Add(-1)
	select {
	case o.slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// tagOf is the demo's tag for a path: its first segment ("/live/x" -> "live").
func tagOf(path string) string {
	for i := 1; i < len(path); i++ {
		if path[i] == '/' {
			return path[1:i]
		}
	}
	if len(path) > 1 {
		return path[1:]
	}
	return "root"
}
