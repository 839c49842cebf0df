package node

// Warm handoff: no ownership change may cost the origin a fetch. When a
// node joins, the previous owner of every key it wins is the key's
// second-ranked live node; when an owner drains, it stays reachable while
// the new owner (its second-ranked node) takes over. A tenant's keys are
// owned within its node set, and the set changes on its own (grown or
// shrunk by the capacity manager, a member draining, an operator's
// isolation, pin or exclusion): the previous owner of a key is then its
// owner in the set as it was, which the router remembers for a while. So
// an owner that misses a key first peeks the previous owners, which answer
// from their stores only, and only then asks the origin.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/crowdpilot/crowdpilot/internal/backoff"
	"github.com/crowdpilot/crowdpilot/internal/cluster"
	"github.com/crowdpilot/crowdpilot/internal/fill"
	"github.com/crowdpilot/crowdpilot/internal/httpcache"
	"github.com/crowdpilot/crowdpilot/internal/route"
)

// peekHeader marks a peer-only request on a hop: the peer answers from its
// store and never fetches. On the answer, "hit" says a copy came back;
// anything else (or its absence) means the peer did not hold one.
const peekHeader = "X-Crowdpilot-Peek"

const (
	// peekBudget bounds the wait for the peers' answers to the peeks of one
	// miss, all together (and at most a third of the origin timeout, which
	// bounds the whole fill): slower peers cost the origin a fetch instead
	// of the client time.
	peekBudget = time.Second
	// peekPurgeWait bounds how long a peer waits to reach the purge
	// revision a peek carries; a peer further behind answers "not held".
	peekPurgeWait = 100 * time.Millisecond
	// peekCandidates is how many next rendezvous candidates a miss peeks.
	peekCandidates = 2
	// peekDraining is how many draining former owners a miss peeks.
	peekDraining = 2
	// peekPast is how many owners of a tenant's past node sets a miss
	// peeks (route.Router.PastOwnersFor).
	peekPast = 2
	// readyWait bounds how long an owner's miss waits for this node to see
	// the membership (a node that just joined knows only itself, and would
	// think it owns every key).
	readyWait = 2 * time.Second
	// drainQuiet is how long no peer request may reach a draining node
	// before it leaves: its peers have taken over what they needed.
	drainQuiet = 500 * time.Millisecond
	// recentPurges is how many of the store's last purges a miss checks
	// for its own key before it peeks (see missUpstream).
	recentPurges = 64
	// handOverMax bounds the objects a drain hands to their new owners
	// (the rest are taken by peeks as they are asked for, or fetched).
	handOverMax = 4096
	// handOverWorkers bounds the hand-overs in flight at once.
	handOverWorkers = 4
	// drainUpdateTimeout bounds marking the own member record draining.
	drainUpdateTimeout = 2 * time.Second
)

// resUncounted is the result of a request crowdpilot_requests_total does
// not count: a peer's peek (counted in crowdpilot_handoff_peeks_served_total).
const resUncounted = ""

// errNotHeld is a peek's answer when the peer holds no fresh copy.
var errNotHeld = errors.New("peer holds no fresh copy")

// handoff is a node's warm-handoff and drain state.
type handoff struct {
	hops     atomic.Int64 // hop requests received (forwards, fills, peeks)
	draining atomic.Bool  // Shutdown is draining this node
	peeks    *prometheus.CounterVec
	served   *prometheus.CounterVec
	drains   *prometheus.CounterVec
	handed   *prometheus.CounterVec

	mu  sync.Mutex   // guards run
	run *handOverRun // the hand-over an API drain started; nil when none runs
}

// handOverRun is one background hand-over.
type handOverRun struct{ cancel context.CancelFunc }

func newHandoff(reg prometheus.Registerer) *handoff {
	h := &handoff{
		peeks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crowdpilot_handoff_peeks_total",
			Help: "Peeks this node sent, as the owner of a key it missed, to the previous owners before asking the origin, by result (held, not_held, error; skipped: a next candidate whose member record says it never owned the key, see owned.go).",
		}, []string{"result"}),
		served: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crowdpilot_handoff_peeks_served_total",
			Help: "Peeks from new owners this node answered from its store, by result (held, not_held, behind: not at the peer's purge revision).",
		}, []string{"result"}),
		drains: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crowdpilot_shutdown_drains_total",
			Help: "Drains at shutdown by how they ended: quiet (no peer request for a while), bound (the drain part of the grace ended), skipped (alone, not joined, or no grace), failed (the member record could not be marked).",
		}, []string{"result"}),
	}
	h.handed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crowdpilot_handoff_handed_over_total",
		Help: "Fresh objects a draining node asked their new owners to take from it, by result (ok, error, over_limit: beyond the bound of one drain).",
	}, []string{"result"})
	reg.MustRegister(h.peeks, h.served, h.drains, h.handed)
	return h
}

// missUpstream is where this node fills a key it does not hold at all: as
// the owner, the previous owners first (warm handoff), then the origin;
// otherwise as upstreamFor says. A key this node dropped itself among its
// last recentPurges purges goes to the origin: peers may not have dropped
// it yet (an unsafe request's invalidation reaches them through the log).
func (n *Node) missUpstream(tenant, base string, hash uint64) fill.Upstream {
	if owner, ok := n.ownerElsewhere(tenant, hash); ok {
		return n.peerUpstream(owner, hash, nil)
	}
	return func(ctx context.Context, out *http.Request) (*http.Response, error) {
		n.actedAsOwner()
		if n.store.PurgedRecently(base, recentPurges) {
			return n.fromOrigin(hash, out)
		}
		return n.handoffFill(ctx, tenant, hash, out)
	}
}

// handoffFill runs inside the key's fill flight (one per key per miss): it
// peeks the key's previous owners (previousOwners), all within peekBudget,
// and only then asks the origin.
func (n *Node) handoffFill(ctx context.Context, tenant string, hash uint64, out *http.Request) (*http.Response, error) {
	if !n.Ready() {
		n.waitReady(ctx, readyWait)
		if owner, ok := n.router.OwnerFor(tenant, hash); ok && owner.ID != n.cfg.ID {
			// Now that the membership is known, the key is someone else's.
			return n.peerUpstream(owner, hash, nil)(ctx, out)
		}
	}
	var buf [peekPast + peekDraining + peekCandidates + 1]route.Peer
	deadline := time.Now().Add(min(peekBudget, n.cfg.OriginTimeout/3))
	for _, p := range n.previousOwners(tenant, hash, buf[:0]) {
		wait := time.Until(deadline)
		if wait <= 0 {
			break
		}
		resp, err := n.peek(ctx, p, out, wait)
		if err == nil {
			n.ho.peeks.WithLabelValues("held").Inc()
			return resp, nil
		}
		if errors.Is(err, errNotHeld) {
			n.ho.peeks.WithLabelValues("not_held").Inc()
		} else {
			n.ho.peeks.WithLabelValues("error").Inc()
			n.cfg.Logger.Debug("peek failed", "peer", p.ID, "err", err)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("peek %s: %w", p.ID, ctx.Err())
		}
	}
	out.Header.Del(purgeRevHeader) // internal headers never reach the origin
	return n.fromOrigin(hash, out)
}

// previousOwners appends the distinct peers that may hold a key of tenant
// this node owns: for a tenant's key, its owners in the tenant's recent
// past node sets that are still members, live or draining (the set grew,
// shrank, lost a drained member or was moved by an operator); then the
// draining members that outrank this node for it (they owned it before
// their drain); then the next live rendezvous candidates within the
// tenant's set, every node's for the default tenant (the owner before this
// node joined, or before the set grew, and the one after).
func (n *Node) previousOwners(tenant string, hash uint64, dst []route.Peer) []route.Peer {
	ms := n.members.Members()
	add := func(p route.Peer) {
		if p.ID != n.cfg.ID && !slices.ContainsFunc(dst, func(q route.Peer) bool { return q.ID == p.ID }) {
			dst = append(dst, p)
		}
	}
	var past [peekPast]route.Peer
	for _, p := range n.router.PastOwnersFor(tenant, hash, past[:0]) {
		// The record of then: it may have left, or moved.
		if i := slices.IndexFunc(ms, func(m cluster.Member) bool { return m.ID == p.ID }); i >= 0 && n.dataAddrOf(ms[i]) != "" {
			add(route.Peer{ID: p.ID, Addr: n.dataAddrOf(ms[i]), Zone: ms[i].Zone})
		}
	}
	drained := 0
	for _, m := range ms {
		if m.Draining && m.ID != n.cfg.ID && drained < peekDraining && route.Outranks(m.ID, n.cfg.ID, hash) && n.dataAddrOf(m) != "" {
			add(route.Peer{ID: m.ID, Addr: n.dataAddrOf(m), Zone: m.Zone})
			drained++
		}
	}
	var buf [peekCandidates + 1]route.Peer
	for _, p := range n.router.CandidatesFor(tenant, hash, buf[:0]) {
		if p.ID == n.cfg.ID || n.needsPeek(p, ms) {
			add(p) // (add leaves this node out)
		} else {
			n.ho.peeks.WithLabelValues("skipped").Inc()
		}
	}
	return dst
}

// peek asks p for its own fresh copy of out's object, waiting at most wait
// for its answer's headers. The peer must first have applied every purge
// this node has (the purge revision header), so a peek never hands back a
// copy a purge removed.
func (n *Node) peek(ctx context.Context, p route.Peer, out *http.Request, wait time.Duration) (*http.Response, error) {
	ctx, cancel := context.WithCancel(ctx)
	req := out.Clone(ctx)
	req.Header.Set(peekHeader, "1")
	req.Header.Set(purgeRevHeader, strconv.FormatInt(n.lastPurge.Load(), 10))
	timer := time.AfterFunc(wait, cancel)
	resp, err := n.fills.Fetch(ctx, req, p.Addr)
	if !timer.Stop() {
		if err == nil {
			resp.Body.Close()
		}
		cancel()
		return nil, fmt.Errorf("peek %s: no answer within %v", p.ID, wait)
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("peek %s: %w", p.ID, err)
	}
	if resp.Header.Get(peekHeader) != "hit" {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("peek %s: %w", p.ID, errNotHeld)
	}
	resp.Header.Del(peekHeader)
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// cancelOnClose releases a peek's context once its body is read.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// servePeek answers a peer's peek from the store only: a copy that is fresh
// here (and trusted fresh, see trustedFresh), or 504 without fetching
// anything (only-if-cached, RFC 9111 §5.2.1.7). A node that has not applied
// the purges the peer has (within peekPurgeWait) holds nothing it may hand
// over.
func (n *Node) servePeek(w http.ResponseWriter, r *http.Request, base string) string {
	now := n.cfg.Now()
	result := "behind"
	if rev := parseRev(r.Header.Get(purgeRevHeader)); rev <= 0 || n.waitPurged(r.Context(), rev, peekPurgeWait) {
		result = "not_held"
		if e, ok := n.store.Get(base, r.Header); ok && e.State(now, n.cfg.Prefresh) <= httpcache.Prefresh && n.trustedFresh(e.ResponseTime, now) {
			n.ho.served.WithLabelValues("held").Inc()
			w.Header().Set(peekHeader, "hit")
			n.writeEntry(w, r, e, now, hitStatus(e, now))
			return resUncounted
		}
	}
	n.ho.served.WithLabelValues(result).Inc()
	h := w.Header()
	h.Set(peekHeader, "miss")
	h["X-Served-By"] = n.servedBy
	http.Error(w, "not held", http.StatusGatewayTimeout)
	return resUncounted
}

// waitReady waits, at most d, until the node has joined the membership.
func (n *Node) waitReady(ctx context.Context, d time.Duration) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !n.Ready() {
		select {
		case <-tick.C:
		case <-deadline.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// join registers this node only once its purge follower has a position in
// the log, and takes the newest purge in the log as the revision its peer
// fills carry: a new node must never store a copy older than a purge
// committed before it started, even from a peer that lags on the log.
func (n *Node) join(ctx context.Context) error {
	for n.follower.Applied() == 0 {
		sig := *n.appliedSignal.Load()
		if n.follower.Applied() != 0 {
			break
		}
		select {
		case <-sig:
		case <-ctx.Done():
			return nil
		}
	}
	bo := backoff.Backoff{Base: 100 * time.Millisecond, Max: 2 * time.Second}
	for {
		rctx, cancel := context.WithTimeout(ctx, drainUpdateTimeout)
		rev, err := n.purgeLog.Latest(rctx)
		cancel()
		if err == nil {
			for cur := n.lastPurge.Load(); rev > cur && !n.lastPurge.CompareAndSwap(cur, rev); cur = n.lastPurge.Load() {
			}
			break
		}
		d := bo.Next()
		n.cfg.Logger.Warn("read the purge log before joining; retrying", "in", d, "err", err)
		if !backoff.Sleep(ctx, d) {
			return nil
		}
	}
	return n.members.Run(ctx)
}

// drain runs first in Shutdown: it marks this node draining (routers stop
// sending it requests and stop counting it as an owner), then keeps serving
// peers' peeks and fills until none has come for drainQuiet, or half the
// shutdown grace has passed. The caller then leaves and stops.
func (n *Node) drain(ctx context.Context) {
	n.onDrainSet(false) // an API drain's hand-over: this drain runs its own
	bound := n.cfg.ShutdownGrace / 2
	if bound <= 0 || !n.Ready() || len(n.members.Members()) < 2 {
		n.ho.drains.WithLabelValues("skipped").Inc()
		return
	}
	start := time.Now()
	uctx, cancel := context.WithTimeout(ctx, drainUpdateTimeout)
	err := n.members.Update(uctx, func(m *cluster.Member) { m.Draining = true })
	cancel()
	if err != nil {
		n.ho.drains.WithLabelValues("failed").Inc()
		n.cfg.Logger.Warn("drain: could not mark the member record; leaving at once", "err", err)
		return
	}
	n.ho.draining.Store(true)
	hctx, cancel := context.WithTimeout(ctx, bound)
	n.handOver(hctx)
	cancel()
	limit := time.NewTimer(bound - time.Since(start))
	defer limit.Stop()
	quiet := time.NewTicker(drainQuiet)
	defer quiet.Stop()
	last := n.ho.hops.Load()
	for {
		select {
		case <-limit.C:
			n.ho.drains.WithLabelValues("bound").Inc()
			n.cfg.Logger.Warn("drain: peers still asking at the end of the drain bound; leaving", "after", time.Since(start).Round(time.Millisecond))
			return
		case <-ctx.Done():
			n.ho.drains.WithLabelValues("bound").Inc()
			return
		case <-quiet.C:
		}
		if now := n.ho.hops.Load(); now != last {
			last = now
			continue
		}
		n.ho.drains.WithLabelValues("quiet").Inc()
		n.cfg.Logger.Info("drain: no peer request for a while; leaving", "after", time.Since(start).Round(time.Millisecond))
		return
	}
}

// drainStatus is GET /api/v1/drain: whether this node is draining and
// whether anything still reaches it, for "crowdpilot drain" to wait on.
type drainStatus struct {
	Node     string `json:"node"`
	Draining bool   `json:"draining"` // its member record says so (or Shutdown is draining it)
	// InFlight is the data requests being served now.
	InFlight int64 `json:"in_flight"`
	// PeerRequests counts every request peers sent it (forwards, fills,
	// peeks) since it started: unchanged between two looks, none came.
	PeerRequests int64 `json:"peer_requests"`
	// PeeksHeld counts the peeks it answered with a copy: keys new owners
	// took from it instead of the origin.
	PeeksHeld int64 `json:"peeks_held"`
}

func (n *Node) drainState() drainStatus {
	st := drainStatus{
		Node:         n.cfg.ID,
		Draining:     n.ho.draining.Load(),
		InFlight:     n.inflight.Load(),
		PeerRequests: n.ho.hops.Load(),
	}
	for _, m := range n.members.Members() {
		if m.ID == n.cfg.ID && m.Draining {
			st.Draining = true
		}
	}
	if c, err := n.ho.served.GetMetricWithLabelValues("held"); err == nil {
		var m dto.Metric
		if c.Write(&m) == nil {
			st.PeeksHeld = int64(m.GetCounter().GetValue())
		}
	}
	return st
}

func (n *Node) handleDrainStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.drainState())
}

// adoptNear keeps a near copy as an ordinary entry once this node serves
// it as a member of R(k) (it became the owner: the owner drained or left).
// The copy came from R(k), so it is as good as the owner's; letting its
// short lease lapse would cost the origin a fetch. A purge applied since it
// was looked up wins.
func (n *Node) adoptNear(base string, h http.Header, e *httpcache.Entry) {
	since := n.store.PurgeSeq()
	if cur, ok := n.store.Get(base, h); !ok || cur != e {
		return
	}
	n.actedAsOwner()
	c := *e
	c.Near, c.Reserve = time.Time{}, false
	n.store.PutUnlessPurged(&c, since)
}

// handOver asks the new owner of every fresh object this node owned to
// take it now (bounded by handOverMax, handOverWorkers at a time, within
// ctx): a HEAD on a hop, which the new owner serves by filling the object
// from this node (a peek, or a fill while it still routes to this node).
// Objects nobody asks for during the drain are then not lost with it. An
// object of a tenant goes to its new owner in the tenant's set, the tenant
// being the one its key names (a path, or a host with --key-host: a tenant
// told by a header or a cookie is not in the key, and such objects follow
// the default tenant's ranking here; they still move by peeks when asked
// for during the drain).
func (n *Node) handOver(ctx context.Context) {
	now := n.cfg.Now()
	type item struct {
		key string
		to  route.Peer
	}
	var keys []item
	hos := map[string]*route.Handover{} // by tenant: at most the declared ones and the default
	n.store.Range(func(e *httpcache.Entry) bool {
		if e.Key != e.BaseKey || !e.Near.IsZero() || e.State(now, n.cfg.Prefresh) > httpcache.Prefresh {
			return true // variants, near copies and stale objects stay behind
		}
		tenant, ok := n.keyTenant(ctx, e.BaseKey)
		if !ok {
			return true // not a key a request can name again
		}
		ho := hos[tenant]
		if ho == nil {
			ho = n.router.HandoverFor(tenant)
			hos[tenant] = ho
		}
		to, ok := ho.Successor(httpcache.KeyHash(e.BaseKey))
		if !ok {
			return true // not ours: its owner still has it
		}
		if len(keys) == handOverMax {
			n.ho.handed.WithLabelValues("over_limit").Inc()
			return true
		}
		keys = append(keys, item{e.BaseKey, to})
		return true
	})
	work := make(chan item)
	var wg sync.WaitGroup
	for range min(handOverWorkers, len(keys)) {
		wg.Go(func() {
			for it := range work {
				if err := n.handOverKey(ctx, it.key, it.to); err != nil {
					n.ho.handed.WithLabelValues("error").Inc()
					n.cfg.Logger.Debug("drain: hand-over failed", "key", it.key, "err", err)
					continue
				}
				n.ho.handed.WithLabelValues("ok").Inc()
			}
		})
	}
send:
	for _, it := range keys {
		select {
		case work <- it:
		case <-ctx.Done():
			break send
		}
	}
	close(work)
	wg.Wait()
}

// keyTenant is the tenant a request for key resolves to (with no header
// or cookie: what the key names); ok is false when key is not one a
// request can name.
func (n *Node) keyTenant(ctx context.Context, key string) (string, bool) {
	if n.cfg.Tenants == nil {
		return "", true
	}
	req, err := n.requestForKey(ctx, key)
	if err != nil {
		return "", false
	}
	return n.tenantOf(req), true
}

// handOverKey has to, the new owner of key, fill it.
func (n *Node) handOverKey(ctx context.Context, key string, to route.Peer) error {
	req, err := n.requestForKey(ctx, key)
	if err != nil {
		return fmt.Errorf("hand over: %w", err)
	}
	req.Method = http.MethodHead
	req.Header.Set(purgeRevHeader, strconv.FormatInt(n.lastPurge.Load(), 10))
	resp, err := n.fills.Fetch(ctx, req, to.Addr)
	if err != nil {
		return fmt.Errorf("hand over %q to %s: %w", key, to.ID, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		return fmt.Errorf("hand over %q to %s: status %d", key, to.ID, resp.StatusCode)
	}
	return nil
}

// onDrainSet follows a drain set through the admin API: a drained node
// hands its objects over in the background (one hand-over at a time, owned
// by the node and bounded by the shutdown grace), an undrained one stops.
// Shutdown's drain stops it and runs its own.
func (n *Node) onDrainSet(draining bool) {
	n.ho.mu.Lock()
	defer n.ho.mu.Unlock()
	if !draining {
		if n.ho.run != nil {
			n.ho.run.cancel()
			n.ho.run = nil
		}
		return
	}
	if n.ho.run != nil {
		return // one is running
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownGrace)
	run := &handOverRun{cancel: cancel}
	n.ho.run = run
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer cancel()
		n.handOver(ctx)
		n.ho.mu.Lock()
		if n.ho.run == run {
			n.ho.run = nil
		}
		n.ho.mu.Unlock()
	}()
}
