package node

// Invalidation after unsafe requests (RFC 9111 §4.4): which methods
// invalidate, which URLs, and how the purge log is fed without letting a
// client grow etcd.

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/purge"
)

// invalidates reports whether a successful request with this method
// invalidates its target. Only the unsafe methods of RFC 9110 §9.2.1 that
// change state do: OPTIONS (every browser's CORS preflight) and methods
// nobody defined pass through without touching the cache.
func invalidates(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch:
		return true
	}
	return false
}

// invalidateResponse invalidates the target of an unsafe request that the
// origin accepted, and the Location and Content-Location of its response
// when they name a URL of this origin (RFC 9111 §4.4; another host's URL
// could be used to purge what the client does not own).
func (n *Node) invalidateResponse(r *http.Request, base string, code int, h http.Header) {
	if code >= 400 || !invalidates(r.Method) {
		return
	}
	n.invalidate(base, r.URL.RequestURI())
	for _, k := range []string{"Location", "Content-Location"} {
		v := h.Get(k)
		if v == "" {
			continue
		}
		ref, err := url.Parse(v)
		if err != nil {
			continue
		}
		if ref.IsAbs() || ref.Host != "" {
			if ref.Scheme != "" && ref.Scheme != "http" && ref.Scheme != "https" {
				continue
			}
			if !strings.EqualFold(ref.Host, r.Host) && !strings.EqualFold(ref.Host, n.origin.Host) {
				continue // another origin's URL
			}
		}
		u := r.URL.ResolveReference(ref)
		lb, err := n.keyOfURL(u.RequestURI())
		if err != nil || lb == base {
			continue
		}
		n.invalidate(lb, u.RequestURI())
	}
}

// invalidatorMaxPending bounds the paths waiting to be logged; a path that
// does not fit degrades to one soft purge of everything (every object is
// revalidated on its next read), so nothing is lost and etcd gets one
// entry per interval however many paths overflowed.
const invalidatorMaxPending = 1024

// invalidatorBatch is the most entries one node appends per interval.
const invalidatorBatch = 64

// invalidator coalesces the invalidations of unsafe requests per URL and
// appends them to the purge log at a bounded rate: a flood of POSTs to one
// URL becomes one log entry per interval, and a node appends at most
// invalidatorBatch entries (plus one soft purge-all on overflow) per
// interval, whatever its clients send.
type invalidator struct {
	interval time.Duration
	append   func(ctx context.Context, r purge.Request) error
	shed     func(reason string)
	logger   *slog.Logger
	wake     chan struct{} // capacity 1: coalesces wake-ups

	mu       sync.Mutex          // guards pending and overflow
	pending  map[string]struct{} // paths waiting for the log
	overflow bool                // a path did not fit: owe one soft purge-all
}

func newInvalidator(interval time.Duration, app func(context.Context, purge.Request) error, shed func(string), logger *slog.Logger) *invalidator {
	return &invalidator{
		interval: interval,
		append:   app,
		shed:     shed,
		logger:   logger,
		wake:     make(chan struct{}, 1),
		pending:  make(map[string]struct{}),
	}
}

// add queues path. It never blocks.
func (v *invalidator) add(path string) {
	v.mu.Lock()
	if _, ok := v.pending[path]; !ok {
		if len(v.pending) < invalidatorMaxPending {
			v.pending[path] = struct{}{}
		} else {
			if !v.overflow {
				v.logger.Warn("too many invalidations pending: degrading to one soft purge of everything", "path", path)
			}
			v.overflow = true
			v.shed("invalidate_overflow")
		}
	}
	v.mu.Unlock()
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

// depth is how many invalidations are pending, and the bound on them.
func (v *invalidator) depth() (int, int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.pending), invalidatorMaxPending
}

// take removes and returns up to invalidatorBatch pending paths and
// whether a soft purge-all is owed.
func (v *invalidator) take() ([]string, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]string, 0, min(len(v.pending), invalidatorBatch))
	for p := range v.pending {
		if len(out) == invalidatorBatch {
			break
		}
		out = append(out, p)
		delete(v.pending, p)
	}
	over := v.overflow
	v.overflow = false
	return out, over
}

// retry puts back what could not be logged (etcd unreachable), to try
// again next interval.
func (v *invalidator) retry(paths []string, over bool) {
	v.mu.Lock()
	for _, p := range paths {
		if len(v.pending) < invalidatorMaxPending {
			v.pending[p] = struct{}{}
		} else {
			v.overflow = true
		}
	}
	v.overflow = v.overflow || over
	v.mu.Unlock()
}

// run appends batches until ctx ends: at once for the first invalidation
// after a quiet interval, then at most one batch per interval.
func (v *invalidator) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-v.wake:
		}
		for {
			paths, over := v.take()
			if len(paths) == 0 && !over {
				break
			}
			var failed []string
			for _, p := range paths {
				if err := v.append(ctx, purge.Request{Key: p}); err != nil {
					failed = append(failed, p)
				}
			}
			failedAll := false
			if over {
				failedAll = v.append(ctx, purge.Request{All: true, Soft: true}) != nil
			}
			if len(failed) > 0 || failedAll {
				if ctx.Err() != nil {
					return
				}
				v.shed("invalidate_append")
				v.logger.Warn("invalidations not logged yet; retrying next interval", "paths", len(failed), "purge_all", failedAll)
				v.retry(failed, failedAll)
			}
			timer.Reset(v.interval)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		}
	}
}

// appendInvalidation is the invalidator's append: one entry, bounded in
// time so a hung etcd does not stall the loop.
func (n *Node) appendInvalidation(ctx context.Context, r purge.Request) error {
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := n.purgeLog.Append(actx, r)
	return err
}
