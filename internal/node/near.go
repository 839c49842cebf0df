package node

// The data plane's answer to a crowd: a router collapses its concurrent
// fetches of one key into one request to the key's replica set, and keeps a
// near copy of a key that is hot here, serving it itself. See "Two speeds"
// in DESIGN.md.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/autopilot"
	"github.com/crowdpilot/crowdpilot/internal/fill"
	"github.com/crowdpilot/crowdpilot/internal/heat"
	"github.com/crowdpilot/crowdpilot/internal/httpcache"
	"github.com/crowdpilot/crowdpilot/internal/route"
)

// Near-copy results, label values of crowdpilot_requests_total.
const (
	resNear = "near"     // answered from this router's near copy
	resPeer = "via_peer" // fetched from R(k) by this router, collapsed with its other requests for the key
	// answered from this router's reserve, stale within stale-while-revalidate, while it revalidates from R(k)
	resReserve = "reserve"
)

// NearCopyConfig configures the data plane's near copies.
type NearCopyConfig struct {
	// Disabled turns near copies off, as does a zero TTL or Share: routers
	// still collapse their fetches of one key into one request to R(k),
	// but keep nothing.
	Disabled bool
	// RPS is the request rate of one key at this node, over HeatWindow,
	// from which the node keeps a near copy of it. Zero means the default,
	// 20 (a rate of zero would make every key hot).
	RPS float64
	// TTL bounds a near copy's lease; it is also bounded by the object's
	// own freshness. Renewed from R(k) while the key stays hot. Default 2s;
	// 0 means no near copies.
	TTL time.Duration
	// Share is the part of StoreBytes near copies may use, in [0, 1].
	// Default 0.25; 0 means no near copies.
	Share float64
	// ReserveShare is the part of StoreBytes reserves may use, in [0, 1],
	// apart from Share: a router's copies of objects it relayed while they
	// were not hot, served only when stale within stale-while-revalidate
	// (see reserveUntil). Default 1/16; 0 means no reserves, as does
	// Disabled.
	ReserveShare float64
}

func (c NearCopyConfig) off() bool        { return c.Disabled || c.TTL == 0 || c.Share == 0 }
func (c NearCopyConfig) reserveOff() bool { return c.Disabled || c.ReserveShare == 0 }

// meterSlots sizes the near-copy meter: keys sharing a slot read hotter
// than they are, never cooler.
const meterSlots = 4096

func newMeter(cfg Config) (*heat.Meter, error) {
	return heat.NewMeter(meterSlots, cfg.HeatWindow, cfg.NearCopy.RPS)
}

// viaOK reports whether a request may share a router's fetch with others:
// nothing in it is personal (credentials, cookies) and it asks nothing of
// the cache that the owner should decide (request directives). Others are
// forwarded one by one, as they came.
func viaOK(r *http.Request) bool {
	h := r.Header
	return len(h["Authorization"]) == 0 && len(h["Cookie"]) == 0 &&
		len(h["Cache-Control"]) == 0 && len(h["Pragma"]) == 0 &&
		(r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0)
}

// serveVia answers a request this node does not own: from its near copy
// when it holds a live one, otherwise by one fetch from R(k) shared with
// every concurrent request for the key here, kept as a near copy when the
// key is hot. It reports false when nothing was written (the object is too
// large to hold, or every member failed): the caller forwards as usual.
func (n *Node) serveVia(w http.ResponseWriter, r *http.Request, base string, hash uint64, plan route.Plan, hot bool, now time.Time) (string, bool) {
	e, ok := n.store.Get(base, r.Header)
	if ok && e.Reserve && now.Before(e.Near) && e.State(now, 1) == httpcache.StaleRevalidate {
		// The object just expired, and a crowd may be arriving for it: each
		// request here is answered from the reserve, as the owner would
		// answer it from its stale copy, while one refresh asks R(k).
		if !n.fill.Refreshing(e.Key, true) {
			n.fill.RefreshVia(r, base, e, n.viaUpstream(hash, plan), n.keepNear(hash))
		}
		n.writeEntry(w, r, e, now, []string{staleStatus(e, now, "reserve-stale")})
		return resReserve, true
	}
	if ok && !e.Near.IsZero() && !e.Reserve && now.Before(e.Near) {
		if hot && n.nearRenewDue(e, now) && !n.fill.Refreshing(e.Key, true) {
			n.fill.RefreshVia(r, base, e, n.viaUpstream(hash, plan), n.keepNear(hash))
		}
		detail := "near"
		if e.TTL(now) <= 0 {
			detail = "near-stale" // held while the owner revalidates (stale-while-revalidate)
		}
		n.writeEntry(w, r, e, now, nearStatus(e, now, detail))
		return resNear, true
	}
	var keep fill.Keep // decided when the response arrives: the crowd may have come meanwhile
	if !n.cfg.NearCopy.off() || !n.cfg.NearCopy.reserveOff() {
		keep = n.keepNear(hash)
	}
	res, err := n.fill.Via(r.Context(), r, base, n.viaUpstream(hash, plan), keep)
	if errors.Is(err, route.ErrPeerBusy) {
		return n.serveBusy(w, r, base, now), true
	}
	if errors.Is(err, errOwnerUnreachable) {
		return n.serveUnreachable(w, r, base, now), true
	}
	if err != nil {
		if !errors.Is(err, fill.ErrTooLarge) && r.Context().Err() == nil {
			n.cfg.Logger.Debug("fetch from the replica set failed; forwarding", "key", base, "err", err)
		}
		return "", false
	}
	if res.Stream != nil {
		// Too large to keep: relayed from R(k) to every request for it here.
		servedBy := n.servedBy
		if res.ServedBy != "" {
			servedBy = []string{res.ServedBy}
		}
		n.writeStream(w, r, res.Stream, append(slices.Clip(res.CacheStatus), relayStatus(res.Stream, res.Collapsed, "relay-peer")), servedBy)
		return resPeer, true
	}
	kept := res.Stored && !res.Entry.Reserve // a near copy; a reserve is not served fresh
	if kept {
		n.m.nearKept.Inc()
		n.nearKeys.note(base)
	}
	h := w.Header()
	status := "crowdpilot; fwd=miss; fwd-status=" + strconv.Itoa(res.Entry.Status) + "; detail=peer"
	switch {
	case kept:
		status = "crowdpilot; fwd=miss; fwd-status=" + strconv.Itoa(res.Entry.Status) + "; stored; ttl=" + secs(res.Entry.TTL(now)) + "; detail=near"
	case res.Collapsed:
		status += "; collapsed"
	}
	h["Cache-Status"] = append(slices.Clip(res.CacheStatus), status)
	servedBy := n.servedBy
	if !kept && res.ServedBy != "" {
		servedBy = []string{res.ServedBy} // the peer's store answered
	}
	h["X-Served-By"] = servedBy
	httpcache.ServeEntry(w, r, res.Entry, now)
	return resPeer, true
}

// nearRenewDue reports whether a hit on near copy e should renew it: past
// the prefresh point of its lease, so a key that stays hot never misses.
func (n *Node) nearRenewDue(e *httpcache.Entry, now time.Time) bool {
	lease := e.Near.Sub(e.ResponseTime)
	left := e.Near.Sub(now)
	return float64(left) <= float64(lease)*(1-n.cfg.Prefresh)
}

// keepNear is the lease of a near copy of hash, decided when the response
// arrives: while the key is hot here, until the object's freshness ends or
// the near-copy TTL passes, whichever is first; for a key that is not hot,
// a reserve (reserveUntil).
//
// A stale copy the owner serves within its stale-while-revalidate window
// (while it revalidates) is held too, but briefly: a quarter of the lease,
// within that window, so the crowd here neither waits on the owner nor
// sends it one request each while the owner's refresh lands, and the fresh
// copy replaces it at the first renewal after.
func (n *Node) keepNear(hash uint64) fill.Keep {
	return func(e *httpcache.Entry) (time.Time, bool) {
		now := n.cfg.Now()
		if e.Status != http.StatusOK {
			return time.Time{}, false
		}
		if n.cfg.NearCopy.off() || !n.meter.Hot(hash, now.UnixNano()) {
			return n.reserveUntil(e, now), true
		}
		ttl := e.TTL(now)
		if ttl > 0 {
			return now.Add(min(ttl, n.cfg.NearCopy.TTL)), false
		}
		if e.State(now, 1) != httpcache.StaleRevalidate {
			return time.Time{}, false
		}
		return now.Add(min(n.cfg.NearCopy.TTL/4, ttl+e.SWR)), false
	}
}

// reserveUntil is the lease of a reserve of e, an object this router relays
// while it is not hot here: to the end of its stale-while-revalidate
// window, and nothing for an object without one, or one whose window ends
// more than maxReserveHold from now.
//
// A reserve is for the moment an object expires. Until then R(k) answers
// for it, as for any object this node does not own; once it is stale
// within its window, the owner itself would answer from its stale copy
// while it revalidates, and so does this router, from its reserve, while
// one refresh asks R(k) (never the origin). A crowd that arrives at expiry
// (a page everyone reloads at the minute) is then answered where it lands
// rather than queued at the owner, and the origin still pays one fetch.
func (n *Node) reserveUntil(e *httpcache.Entry, now time.Time) time.Time {
	if n.cfg.NearCopy.reserveOff() || e.SWR <= 0 {
		return time.Time{}
	}
	d := e.TTL(now) + e.SWR
	if d <= 0 || d > maxReserveHold {
		return time.Time{}
	}
	return now.Add(d)
}

// maxReserveHold bounds a reserve's lease: the reserve budget is a hard
// bound (a reserve beyond it is refused, not exchanged for another), so
// what fills it must free it within minutes.
const maxReserveHold = 10 * time.Minute

// viaUpstream asks the members of R(k) (k has hash) in the plan's order,
// each under the router's in-flight count and health, failing over to the
// next. Only the owner fetches from the origin, so when every member fails
// the owner is asked again (askOwnerAgain) rather than the origin: a slow
// answer on a busy machine proves nothing, and the owner may be fetching
// the object at this moment. Once this node's router suspects the owner
// (it refused a connection, or failed EjectAfter times in a row) the key
// has moved: to the next rendezvous candidate, which may be this node,
// which then fetches for itself. An owner that cannot be reached and is
// not suspected gives errOwnerUnreachable: the caller answers from what it
// holds, or a fast 503.
func (n *Node) viaUpstream(hash uint64, plan route.Plan) fill.Upstream {
	ts := slices.Clone(plan.Targets) // the flight outlives the caller's plan buffer
	members := ts[:len(plan.Members())]
	next := ts[len(members):]
	owner := plan.Owner
	return func(ctx context.Context, out *http.Request) (*http.Response, error) {
		// The member must have applied every purge we have before it may
		// hand us a copy; the header also asks for the object's tags.
		out.Header.Set(purgeRevHeader, strconv.FormatInt(n.lastPurge.Load(), 10))
		var last error
		for round := 1; ; round++ {
			resp, busy, err := n.askEach(ctx, out, members)
			if resp != nil || ctx.Err() != nil {
				return resp, err
			}
			if busy == len(members) {
				return nil, route.ErrPeerBusy // the router answers from what it holds, or 503
			}
			last = err
			if n.router.Suspected(owner.ID()) || !n.askOwnerAgain(round, err) {
				break
			}
		}
		if !n.router.Suspected(owner.ID()) {
			return nil, fmt.Errorf("%w: %s: %v", errOwnerUnreachable, owner.ID(), last)
		}
		if len(next) > 0 {
			resp, _, err := n.askEach(ctx, out, next)
			if resp != nil || ctx.Err() != nil {
				return resp, err
			}
			if !n.router.Suspected(next[0].ID()) {
				return nil, fmt.Errorf("%w: %s (after %s): %v", errOwnerUnreachable, next[0].ID(), owner.ID(), err)
			}
		}
		n.tookOver()
		n.cfg.Logger.Debug("the owner is suspected; fetching from the origin in its place", "path", out.URL.Path, "owner", owner.ID())
		out.Header.Del(purgeRevHeader)
		return n.fromOrigin(hash, out)
	}
}

// askOwnerAgain says whether a fill whose round-th attempt at the owner
// (round 1 is the first) failed with err asks it once more, rather than
// give up on an owner that is not suspected. A slow failure (a dial or
// header timeout) may be a busy machine and an owner still at work on the
// object: slowOwnerRounds in all, then a 503 rather than a second origin
// fetch. A fast one (refused, reset, closed) is an owner going away: a
// node killed mid-exchange cuts the exchanges in flight and the
// connections in its accept queue before its port refuses. It is asked
// until this fill's own failures put it under suspicion (EjectAfter in a
// row), and the key then moves; the failures of those few milliseconds
// cost no client a 503.
func (n *Node) askOwnerAgain(round int, err error) bool {
	if route.IsSlowFailure(err) {
		return round < slowOwnerRounds
	}
	return round < n.router.EjectAfter()
}

// slowOwnerRounds is how many slow failures a fill takes from an owner
// that is not suspected before it gives up (askOwnerAgain).
const slowOwnerRounds = 2

// errOwnerUnreachable: the key's owner (or the node it moved to) could not
// be reached, and is not suspected, so it may still be fetching: nobody
// else asks the origin.
var errOwnerUnreachable = errors.New("the key's owner is unreachable")

// askEach asks the targets in order, each under the router's in-flight
// count and health, until one answers; busy counts those at their limit,
// err is the last failure.
func (n *Node) askEach(ctx context.Context, out *http.Request, ts []route.Target) (resp *http.Response, busy int, err error) {
	for _, t := range ts {
		done, aerr := n.router.Admit(ctx, t)
		if aerr != nil {
			if errors.Is(aerr, route.ErrPeerBusy) {
				n.m.shed("peer_limit")
				busy++
				continue
			}
			return nil, busy, aerr
		}
		resp, err = n.fwd.Fetch(ctx, out, t.Addr())
		if err == nil {
			resp.Body = &doneBody{ReadCloser: resp.Body, done: done}
			return resp, busy, nil
		}
		if ctx.Err() != nil {
			done(nil)
			return nil, busy, err
		}
		n.m.failovers.Inc()
		if done(err) {
			n.cfg.Logger.Warn("peer suspected: forwards skip it for a while", "peer", t.ID(), "err", err)
		} else {
			n.cfg.Logger.Debug("fetch from a member failed, failing over", "peer", t.ID(), "err", err)
		}
	}
	return nil, busy, err
}

// doneBody ends a forward's in-flight count when its body is closed.
type doneBody struct {
	io.ReadCloser
	done func(error) bool
	once bool
}

func (b *doneBody) Close() error {
	err := b.ReadCloser.Close()
	if !b.once {
		b.once = true
		b.done(nil)
	}
	return err
}

// maxNearKeys bounds the near copies a node lists in its reports.
const maxNearKeys = 64

// nearKeys remembers the keys this node has kept near copies of, for
// reports and operators; the store is the truth about whether a copy is
// still held and until when.
type nearKeys struct {
	mu   sync.Mutex          // guards keys
	keys map[string]struct{} // at most maxNearKeys
}

func (k *nearKeys) note(key string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.keys == nil {
		k.keys = make(map[string]struct{})
	}
	if len(k.keys) < maxNearKeys {
		k.keys[key] = struct{}{}
	}
}

// nearCopies lists the near copies this node holds now, forgetting keys
// whose copy has lapsed or been purged.
func (n *Node) nearCopies(now time.Time) []autopilot.NearCopy {
	k := &n.nearKeys
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []autopilot.NearCopy
	for key := range k.keys {
		e, ok := n.store.Get(key, nil)
		if !ok || e.Near.IsZero() || !now.Before(e.Near) {
			delete(k.keys, key)
			continue
		}
		out = append(out, autopilot.NearCopy{Key: key, Expires: e.Near})
	}
	slices.SortFunc(out, func(a, b autopilot.NearCopy) int { return a.Expires.Compare(b.Expires) })
	return out
}
