package node

// Invalidation after unsafe requests (RFC 9111 §4.4): which methods
// invalidate, which URLs, and how the purge log is fed without letting a
// client grow etcd.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/httpcache"
	"github.com/crowdpilot/crowdpilot/internal/purge"
	"github.com/crowdpilot/crowdpilot/internal/route"
)

// invalidates reports whether a successful request with this method
// invalidates its target: every method but the registered safe ones (RFC
// 9111 §4.4: "unsafe ... including methods whose safety is unknown"; RFC
// 9110 §9.2.1 and the IANA method registry's safe methods). OPTIONS (every
// browser's CORS preflight), TRACE and WebDAV's reads pass through without
// touching the cache. Unknown methods cannot grow etcd: the invalidator
// coalesces and bounds what they log.
func invalidates(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace,
		"PROPFIND", "REPORT", "SEARCH", "QUERY":
		return false
	}
	return true
}

// invalidateResponse invalidates the target of an unsafe request that the
// origin accepted, and the Location and Content-Location of its response
// when they name a URL of this origin (RFC 9111 §4.4; another host's URL
// could be used to purge what the client does not own). It returns once
// this node and the key's replica set have dropped them (invalidatePeers),
// so the client's next request through this node is not answered from a
// copy its write made stale.
func (n *Node) invalidateResponse(r *http.Request, base string, code int, h http.Header) {
	if code >= 400 || !invalidates(r.Method) {
		return
	}
	keys := []invalidation{{base: base, path: r.URL.RequestURI()}}
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
			if !strings.EqualFold(ref.Host, r.Host) && (n.cfg.KeyHost || !strings.EqualFold(ref.Host, n.origin.Host)) {
				continue // another origin's URL
			}
		}
		u := r.URL.ResolveReference(ref)
		lb, err := n.keyOfURLOn(r.Host, u.RequestURI())
		if err != nil || lb == base {
			continue
		}
		keys = append(keys, invalidation{base: lb, path: u.RequestURI()})
	}
	for _, k := range keys {
		n.invalidate(k.base, k.path)
	}
	tenant := ""
	if n.cfg.Tenants != nil {
		tenant = n.tenantOf(r)
	}
	n.invalidatePeers(r.Context(), tenant, keys)
}

// invalidation is one URL an unsafe request invalidates.
type invalidation struct{ base, path string }

// Peer invalidation: the node that passed an unsafe request through asks
// the members of each invalidated key's replica set (the owner, its next
// rendezvous candidate, leased replicas) to drop the key before it answers
// the client. The purge log reaches every node too, but later (it is
// appended in the background, coalesced): without this, a client's GET
// right after its own POST is answered by an owner that has not applied
// the log yet. Near copies on other routers and nodes that miss the call
// are left to the log.
const (
	// invalidateHeader marks a peer's invalidation: a GET on a hop that
	// the receiver answers by dropping the key, never by serving it.
	invalidateHeader = route.InternalPrefix + "Invalidate"
	// invalidateMethod is what an invalidation's hop proof is made for, in
	// place of the request's GET, so that a GET's proof does not purge and
	// an invalidation's proof does not read.
	invalidateMethod = "INVALIDATE"
	// peerInvalidateWait bounds how long an unsafe request waits for the
	// replica sets; a peer that is slower is left to the purge log.
	peerInvalidateWait = 500 * time.Millisecond
	// peerInvalidateMax bounds the peer calls of one unsafe request.
	peerInvalidateMax = 12
)

// hopMethod is the method a hop proof for r is made for.
func hopMethod(r *http.Request) string {
	if _, ok := r.Header[invalidateHeader]; ok {
		return invalidateMethod
	}
	return r.Method
}

// invalidatePeers asks every other member of each key's replica set to
// drop it, in parallel, waiting at most peerInvalidateWait.
func (n *Node) invalidatePeers(ctx context.Context, tenant string, keys []invalidation) {
	type call struct {
		peer       route.Peer
		host, path string
	}
	var calls []call
	for _, k := range keys {
		for _, p := range n.replicaSet(tenant, httpcache.KeyHash(k.base)) {
			if len(calls) < peerInvalidateMax {
				calls = append(calls, call{p, keyHost(k.base), k.path})
			}
		}
	}
	if len(calls) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), peerInvalidateWait)
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range calls {
		wg.Go(func() {
			result := "dropped"
			if err := n.invalidatePeer(ctx, c.peer, c.host, c.path); err != nil {
				result = "failed"
				n.cfg.Logger.Debug("peer invalidation failed; the purge log will reach it", "peer", c.peer.ID, "path", c.path, "err", err)
			}
			n.m.peerInvalidations.WithLabelValues("sent", result).Inc()
		})
	}
	wg.Wait()
}

// replicaSet returns the members of R(k) other than this node: the owner
// within the tenant's node set, the next rendezvous candidate (where the
// key goes when the owner fails, and where a failed-over fill stored it)
// and the leased replicas.
func (n *Node) replicaSet(tenant string, hash uint64) []route.Peer {
	var out []route.Peer
	add := func(p route.Peer) {
		if p.ID == n.cfg.ID || slices.ContainsFunc(out, func(q route.Peer) bool { return q.ID == p.ID }) {
			return
		}
		out = append(out, p)
	}
	if p, ok := n.router.OwnerFor(tenant, hash); ok {
		add(p)
	}
	var buf [2]route.Peer
	for _, p := range n.router.Candidates(hash, buf[:0]) {
		add(p)
	}
	if reps := n.router.Replicas(hash); len(reps) > 0 {
		for _, p := range n.router.Peers() {
			if slices.Contains(reps, p.ID) {
				add(p)
			}
		}
	}
	return out
}

// invalidatePeer asks p to drop path's key; host is the key's (with
// KeyHost the peer keys by it; without, every node keys under the
// origin's host whatever is sent).
func (n *Node) invalidatePeer(ctx context.Context, p route.Peer, host, path string) error {
	if !n.cfg.KeyHost {
		host = n.origin.Host
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+path, nil)
	if err != nil {
		return fmt.Errorf("invalidate %s at %s: %w", path, p.ID, err)
	}
	req.Host = host
	req.Header.Set(invalidateHeader, "1")
	resp, err := n.fills.Fetch(ctx, req, p.Addr)
	if err != nil {
		return fmt.Errorf("invalidate %s at %s: %w", path, p.ID, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("invalidate %s at %s: status %d", path, p.ID, resp.StatusCode)
	}
	return nil
}

// servePeerInvalidate answers a peer's invalidation: the key is dropped
// here (as the purge log will, later) and nothing is served.
func (n *Node) servePeerInvalidate(w http.ResponseWriter, base string) string {
	n.store.PurgeKey(base, false)
	n.m.peerInvalidations.WithLabelValues("received", "dropped").Inc()
	w.Header()["X-Served-By"] = n.servedBy
	w.WriteHeader(http.StatusNoContent)
	return resUncounted
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
