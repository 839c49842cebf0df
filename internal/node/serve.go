package node

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/fill"
	"github.com/crowdpilot/crowdpilot/internal/httpcache"
	"github.com/crowdpilot/crowdpilot/internal/route"
)

// Request results, the label values of crowdpilot_requests_total.
const (
	resHit       = "hit"
	resMiss      = "miss"
	resStale     = "stale"
	resCollapsed = "collapsed"
	resForwarded = "forwarded"
	resPass      = "pass"
	resShed      = "shed"
	resError     = "error"
	resBad       = "bad_request"
)

// ServeHTTP is the data listener: route, then serve from the store or fill.
func (n *Node) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := n.cfg.Now()
	result := resError // what a request cut off mid-body (a panic) counts as
	// Deferred, so that a response aborted mid-body (http.ErrAbortHandler)
	// still gives its slot back.
	defer func() {
		n.inflight.Add(-1)
		if result != resUncounted {
			n.m.observe(result, n.cfg.Now().Sub(start))
		}
	}()
	if n.inflight.Add(1) > n.cfg.MaxInflight {
		// Past the bound a request gets a fast 503, not a slot in a queue.
		n.m.shed("inflight")
		result = n.unavailable(w, "node at capacity", "inflight")
		return
	}
	result = n.serve(w, r, start)
}

func (n *Node) serve(w http.ResponseWriter, r *http.Request, now time.Time) string {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if r.ContentLength != 0 {
			// A body (chunked: -1) means nothing to a GET: read, dropped.
			if res, ok := n.dropBody(w, r); !ok {
				return res
			}
		}
	case http.MethodConnect, http.MethodTrace:
		return n.fail(w, http.StatusMethodNotAllowed, resBad, "method "+r.Method+" is not supported")
	default:
		if n.cfg.RejectUnsafe {
			return n.fail(w, http.StatusMethodNotAllowed, resBad, "method "+r.Method+" is not allowed here")
		}
		return n.serveUnsafe(w, r)
	}
	base, err := n.baseKey(r)
	if err != nil {
		return n.fail(w, http.StatusBadRequest, resBad, err.Error())
	}
	n.keyRequest(r, base) // forward exactly what is keyed
	hash := httpcache.KeyHash(base)
	tenant := "" // every node, as without tenants
	if n.cfg.Tenants != nil {
		tenant = n.tenantOf(r)
	}
	if !n.admitHop(r, base) {
		if msg := n.admitClient(r); msg != "" {
			return n.fail(w, http.StatusMisdirectedRequest, resBad, msg)
		}
		if n.ap.leader != nil {
			n.ap.heat.Observe(hash, base) // counted once, where the request enters
		}
		hot, crossed := n.meter.Observe(hash, now.UnixNano())
		if crossed {
			n.reportSoon()
		}
		var buf [4]route.Target
		plan := n.router.PlanFor(tenant, hash, buf[:0]) // the tenant's node set; "" is every node
		if !plan.Local && viaOK(r) {
			if res, ok := n.serveVia(w, r, base, hash, plan, hot && !n.cfg.NearCopy.off(), now); ok {
				return res
			}
		}
		busy := 0
		for i, t := range plan.Targets {
			if plan.Successor && i == len(plan.Targets)-1 && !n.router.Suspected(plan.Owner.ID()) {
				break // the key has not moved: the successor would only ask the owner again, or the origin
			}
			switch n.forward(w, r, t) {
			case forwarded:
				return resForwarded
			case peerBusy:
				busy++
			}
			if r.Context().Err() != nil {
				return resError
			}
		}
		if busy > 0 && busy == len(plan.Members()) {
			// Every member is at its limit: what this node holds, or a
			// fast 503, rather than a queue or a fetch of its own.
			return n.serveBusy(w, r, base, now)
		}
		// Every member failed (or this node is in R(k)): serve here,
		// still collapsed locally.
	} else {
		n.ho.hops.Add(1) // a draining node waits for these to stop
		if _, peek := r.Header[peekHeader]; peek {
			return n.servePeek(w, r, base) // a new owner asking; never fetches
		}
		if _, inv := r.Header[invalidateHeader]; inv {
			return n.servePeerInvalidate(w, base) // a peer passed a write through
		}
		if rev := r.Header.Get(purgeRevHeader); rev != "" && rev != "0" {
			// A replica filling from us has applied purges up to rev: never
			// hand it a copy we have not purged yet.
			if !n.waitPurged(r.Context(), parseRev(rev), 2*time.Second) {
				return n.unavailable(w, "purge log behind", "purge-lag")
			}
		}
	}
	return n.serveLocal(w, r, base, hash, tenant)
}

// baseKey is the cache key of r. Its host is the origin's: every node
// fetches with the origin's Host, so the client's Host cannot change the
// response, and clients that reach different nodes by address must share
// one entry. With KeyHost it is r's own Host (one of the allowed hosts,
// admitClient checks), which the origin is then asked with.
func (n *Node) baseKey(r *http.Request) (string, error) {
	if n.cfg.KeyHost {
		return httpcache.BaseKey(r)
	}
	kr := *r
	kr.Host = n.origin.Host
	return httpcache.BaseKey(&kr)
}

// Outcomes of one forward.
const (
	forwarded = iota // answered: the response is written
	failed           // nothing written; the member failed
	peerBusy         // nothing sent; the member is at its concurrency limit
)

// forward tries one member; anything but forwarded means nothing was
// written and the caller should try the next.
func (n *Node) forward(w http.ResponseWriter, r *http.Request, t route.Target) int {
	done, err := n.router.Admit(r.Context(), t)
	if err != nil {
		if errors.Is(err, route.ErrPeerBusy) {
			n.m.shed("peer_limit")
			return peerBusy
		}
		return failed
	}
	ended := false
	defer func() {
		if !ended {
			done(nil) // aborted mid-body (a panic): the peer's count goes back down
		}
	}()
	err = n.fwd.Forward(r.Context(), w, r, t.Addr(), statusForwarded)
	ended = true
	if err == nil {
		done(nil)
		return forwarded
	}
	if r.Context().Err() != nil {
		done(nil) // the client left; the peer is not to blame
		return failed
	}
	n.m.failovers.Inc()
	if done(err) {
		n.cfg.Logger.Warn("peer suspected: forwards skip it for a while", "peer", t.ID(), "err", err)
	} else {
		n.cfg.Logger.Debug("forward failed, failing over", "peer", t.ID(), "err", err)
	}
	return failed
}

// serveBusy answers when every member of R(k) is at its limit: from this
// node's store when it holds anything it may serve (fresh, or stale within
// its windows), else a fast 503 with Retry-After.
func (n *Node) serveBusy(w http.ResponseWriter, r *http.Request, base string, now time.Time) string {
	return n.serveHeld(w, r, base, now, "peer-busy", "replica set busy")
}

// serveUnreachable answers, as serveBusy does, when the key's owner could
// not be reached and nobody else may fetch it (errOwnerUnreachable).
func (n *Node) serveUnreachable(w http.ResponseWriter, r *http.Request, base string, now time.Time) string {
	n.m.shed("owner_unreachable")
	return n.serveHeld(w, r, base, now, "owner-unreachable", ownerUnreachableMsg)
}

const ownerUnreachableMsg = "the key's owner is unreachable"

// serveHeld serves what this node holds for the request if it may (fresh,
// or stale within its windows; Cache-Status detail), else a fast 503 with
// Retry-After and msg.
func (n *Node) serveHeld(w http.ResponseWriter, r *http.Request, base string, now time.Time, detail, msg string) string {
	if e, ok := n.store.Get(base, r.Header); ok && e.State(now, n.cfg.Prefresh) <= httpcache.StaleError {
		n.writeEntry(w, r, e, now, []string{staleStatus(e, now, detail)})
		return resStale
	}
	return n.unavailable(w, msg, detail)
}

// serveLocal answers from this node's store, filling from the origin.
func (n *Node) serveLocal(w http.ResponseWriter, r *http.Request, base string, hash uint64, tenant string) string {
	ctx := r.Context()
	if r.Header.Get("Authorization") != "" || n.cookieNotShared(r, base) {
		// Never shared with other clients' waits; stored only if the
		// response explicitly allows it (RFC 9111 §3.5).
		res, err := n.fill.FetchOnce(ctx, r, base, n.upstreamIn(tenant, hash))
		return n.answer(w, r, base, nil, res, err)
	}
	req := httpcache.RequestDirectives(r.Header)
	e, ok := n.store.Get(base, r.Header)
	if !ok {
		e = nil
	}
	if e != nil && !e.Near.IsZero() {
		n.adoptNear(base, r.Header, e) // we are in R(k) now: keep it past its lease
	}
	now := n.cfg.Now()
	act := httpcache.Decide(req, e, now, n.policy)
	if act <= httpcache.ServeRefresh && !n.trustedFresh(e.ResponseTime, now) {
		act = httpcache.ServeStale
	}
	switch act {
	case httpcache.Serve:
		n.writeEntry(w, r, e, now, hitStatus(e, now))
		return resHit
	case httpcache.ServeRefresh:
		n.refresh(r, req, base, e, tenant, hash)
		n.writeEntry(w, r, e, now, hitStatus(e, now))
		return resHit
	case httpcache.ServeStale:
		n.refresh(r, req, base, e, tenant, hash)
		n.writeEntry(w, r, e, now, []string{staleStatus(e, now, "stale")})
		return resStale
	case httpcache.GatewayTimeout:
		return n.onlyIfCached(w)
	}
	if req.NoStore {
		// Nothing of this request's may be stored: it neither leads nor
		// joins the shared fetch (RFC 9111 §5.2.1.5).
		res, err := n.fill.FetchOnce(ctx, r, base, n.upstreamIn(tenant, hash))
		return n.answer(w, r, base, e, res, err)
	}
	// Miss, or stale beyond revalidation: fetch (conditionally), or fall
	// back to this copy if the origin fails within stale-if-error. A miss
	// first asks the key's previous owners (warm handoff, handoff.go).
	up := n.upstreamIn(tenant, hash)
	if e == nil {
		up = n.missUpstream(tenant, base, hash) // previous owners within the tenant's sets
	}
	res, err := n.fill.Fetch(ctx, r, base, e, up)
	return n.answer(w, r, base, e, res, err)
}

// refresh renews e in the background, once however many hits ask while it
// runs.
func (n *Node) refresh(r *http.Request, req httpcache.Directives, base string, e *httpcache.Entry, tenant string, hash uint64) {
	if !n.fill.Refreshing(e.Key, false) {
		n.fill.Refresh(refreshRequest(r, req), base, e, n.upstreamIn(tenant, hash))
	}
}

// answer writes the outcome of a fetch: the fetched response, or the stale
// entry when the origin failed (stale-if-error), or a fast 503.
func (n *Node) answer(w http.ResponseWriter, r *http.Request, base string, stale *httpcache.Entry, res fill.Result, err error) string {
	now := n.cfg.Now()
	staleOK := stale != nil && stale.State(now, n.cfg.Prefresh) <= httpcache.StaleError
	switch {
	case err == nil && res.Stream != nil:
		// Too large to store: one upstream response relayed to every
		// request that joined it (fill/relay.go).
		n.writeStream(w, r, res.Stream, []string{relayStatus(res.Stream, res.Collapsed, "relay")}, n.servedBy)
		if res.Collapsed {
			return resCollapsed
		}
		return resMiss
	case err == nil && staleOK && fill.IsErrorStatus(res.Entry.Status):
		n.writeEntry(w, r, stale, now, []string{staleStatus(stale, now, "stale-if-error")})
		return resStale
	case err == nil:
		if fill.IsErrorStatus(res.Entry.Status) {
			// The origin's own error, passed on; clients still learn when
			// to come back.
			w.Header().Set("Retry-After", "1")
		}
		n.writeEntry(w, r, res.Entry, now, []string{fetchStatus(res, now)})
		if res.Collapsed {
			return resCollapsed
		}
		return resMiss
	case r.Context().Err() != nil:
		return resError // the client left; nothing to write
	case staleOK:
		n.writeEntry(w, r, stale, now, []string{staleStatus(stale, now, "stale-if-error")})
		return resStale
	case errors.Is(err, fill.ErrTooLarge):
		// Too large, and a Range or a conditional a relay cannot answer.
		n.passThrough(w, r)
		return resPass
	case errors.Is(err, fill.ErrShed):
		return n.unavailable(w, "origin busy", "shed")
	case errors.Is(err, errOwnerUnreachable):
		n.m.shed("owner_unreachable")
		return n.unavailable(w, ownerUnreachableMsg, "owner-unreachable")
	case errors.Is(err, context.DeadlineExceeded):
		n.m.shed("origin_timeout")
		return n.unavailable(w, "origin timed out", "origin-timeout")
	default:
		n.cfg.Logger.Debug("origin fetch failed", "key", base, "err", err)
		return n.unavailable(w, "origin unavailable", "origin-error")
	}
}

func (n *Node) writeEntry(w http.ResponseWriter, r *http.Request, e *httpcache.Entry, now time.Time, cacheStatus []string) {
	h := w.Header()
	h["Cache-Status"] = cacheStatus
	h["X-Served-By"] = n.servedBy
	if len(e.Tags) > 0 && r.Header.Get(purgeRevHeader) != "" {
		// A replica filling from us must index the object's tags, or a
		// tag purge would miss its copy. Clients never see them.
		h["Surrogate-Key"] = []string{strings.Join(e.Tags, " ")}
	}
	httpcache.ServeEntry(w, r, e, now)
}

// unavailable fails fast: 503 with Retry-After, never a queue.
func (n *Node) unavailable(w http.ResponseWriter, msg, detail string) string {
	h := w.Header()
	h.Set("Retry-After", "1")
	h.Set("Cache-Status", "crowdpilot; fwd=miss; detail="+detail)
	h["X-Served-By"] = n.servedBy
	http.Error(w, msg, http.StatusServiceUnavailable)
	return resShed
}

func (n *Node) fail(w http.ResponseWriter, code int, result, msg string) string {
	http.Error(w, msg, code)
	return result
}

func parseRev(s string) int64 {
	v, _ := strconv.ParseInt(s, 10, 64)
	return v
}

// Cache-Status members (RFC 9211). The cache is named "crowdpilot"; the
// router that forwarded adds its own member after the serving node's.
const statusForwarded = "crowdpilot; fwd=bypass; detail=routed"

// hitStatus is a fresh hit's Cache-Status field. Those for the first TTL
// seconds are built once and shared (hitStatuses): a hit costs no
// allocation for it.
func hitStatus(e *httpcache.Entry, now time.Time) []string {
	return sharedStatus(hitStatuses, e, now, "")
}

// nearStatus is the Cache-Status field of a hit on a near copy (detail is
// "near" or "near-stale"), shared as hitStatus's for a fresh one.
func nearStatus(e *httpcache.Entry, now time.Time, detail string) []string {
	if detail == "near" {
		return sharedStatus(nearStatuses, e, now, "; detail=near")
	}
	return []string{staleStatus(e, now, detail)}
}

func sharedStatus(table [][]string, e *httpcache.Entry, now time.Time, suffix string) []string {
	s := ttlSecs(e.TTL(now))
	if s >= 0 && s < int64(len(table)) {
		return table[s]
	}
	return []string{"crowdpilot; hit; ttl=" + strconv.FormatInt(s, 10) + suffix}
}

// hitStatuses and nearStatuses are read-only, shared by every response
// (see hitStatus).
var (
	hitStatuses  = httpcache.SecondsFields("crowdpilot; hit; ttl=", "", 1024)
	nearStatuses = httpcache.SecondsFields("crowdpilot; hit; ttl=", "; detail=near", 1024)
)

func ttlSecs(d time.Duration) int64 { return int64(d.Round(time.Second) / time.Second) }

// secs is d in whole seconds, rounded: a copy fetched a few microseconds
// ago with max-age=5 says ttl=5, not 4.
func secs(d time.Duration) string {
	return strconv.FormatInt(ttlSecs(d), 10)
}

func staleStatus(e *httpcache.Entry, now time.Time, detail string) string {
	return "crowdpilot; hit; ttl=" + secs(e.TTL(now)) + "; detail=" + detail
}

func fetchStatus(res fill.Result, now time.Time) string {
	s := "crowdpilot; fwd=miss; fwd-status=" + strconv.Itoa(res.Entry.Status)
	if res.Revalidated {
		s = "crowdpilot; fwd=stale; fwd-status=304"
	}
	if res.Stored {
		s += "; stored; ttl=" + secs(res.Entry.TTL(now))
	}
	if res.Collapsed {
		s += "; collapsed"
	}
	return s
}
