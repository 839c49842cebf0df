// Package fill fetches objects into the store: from the origin (only on the
// owner) or from a peer (replicas), collapsing concurrent fetches of one key
// into one, refreshing in the background, and failing fast when the origin is
// saturated.
package fill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/failsafe-go/failsafe-go/adaptivelimiter"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/crowdpilot/crowdpilot/internal/httpcache"
	"github.com/crowdpilot/crowdpilot/internal/route"
)

// Errors a fetch can end with. Callers serve stale content when they have it
// and otherwise answer 503 with Retry-After.
var (
	// ErrShed means the origin limit was full: the fetch was not attempted.
	ErrShed = errors.New("origin concurrency limit reached")
	// ErrTooLarge means the object exceeds the maximum object size and the
	// caller's request cannot share its relay (it has a Range or a
	// conditional): it must be streamed through uncached.
	ErrTooLarge = errors.New("object larger than the maximum object size")
)

// Config configures a Group. Zero fields mean the documented defaults.
type Config struct {
	// Origin is the base URL of the origin. Required.
	Origin *url.URL
	// RequestHost sends every upstream request with the Host of the request
	// it fills (the site it is keyed under, for a virtual-hosted origin),
	// still to Origin. False: the Host is Origin's.
	RequestHost bool
	// Store receives what is fetched. Required.
	Store *httpcache.Store
	// Defaults are the node's freshness defaults: its opt-in default TTL
	// and grace windows. The zero value is RFC 9111 strict (freshness and
	// stale permission only from the responses).
	Defaults httpcache.Defaults
	// Timeout bounds one origin fetch from dial to the last body byte, so an
	// origin that trickles bytes cannot hold a fetch open. Default 2.5s.
	Timeout time.Duration
	// MaxObjectBytes is the largest body stored; larger ones are relayed
	// (Result.Stream). Default 8 MiB.
	MaxObjectBytes int64
	// RelayWindow is how much of a relayed body is held in memory: the
	// head a later request can still join at, then how far the relay reads
	// ahead of its slowest reader. Default 1 MiB; at least 64 KiB.
	RelayWindow int64
	// RelayStall bounds how long a relay's readers wait on its slowest:
	// while the window is full they must move it by half a window every
	// RelayStall, or the readers holding it are cut (shed "relay_lag"). A
	// relay open for joining that nobody reads for RelayStall ends.
	// Default 5s.
	RelayStall time.Duration
	// MinLimit, MaxLimit and InitialLimit bound the adaptive origin
	// concurrency limit. Defaults 1, 64 and 16.
	MinLimit, MaxLimit, InitialLimit uint
	// LimitWait is how long a fetch that finds the origin limit full may
	// wait for a permit, in a queue of at most four times the limit, before
	// it is shed (ErrShed). It absorbs a burst of distinct misses (a page's
	// assets, a test suite) without letting a queue drown the origin: the
	// adaptive limit still falls when the origin slows. Zero: shed at once.
	LimitWait time.Duration
	// RefreshWorkers bounds concurrent background refreshes. Default 32.
	RefreshWorkers int
	// Transport reaches the origin. Nil means a pooled http.Transport
	// that keeps one spare connection to Origin dialled ahead (spare.go).
	Transport http.RoundTripper
	// NoSpareConn turns the spare origin connection off.
	NoSpareConn bool
	// Shed is called with a fixed reason whenever work is dropped. Nil = no-op.
	Shed func(reason string)
	// Registerer receives the origin metrics. Nil means none.
	Registerer prometheus.Registerer
	// Logger receives fetch errors at debug level. Nil means discard.
	Logger *slog.Logger
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() error {
	if c.Origin == nil || c.Origin.Host == "" {
		return errors.New("fill: origin URL required")
	}
	if c.Store == nil {
		return errors.New("fill: store required")
	}
	if c.Timeout <= 0 {
		c.Timeout = 2500 * time.Millisecond
	}
	if c.MaxObjectBytes <= 0 {
		c.MaxObjectBytes = 8 << 20
	}
	if c.RelayWindow == 0 {
		c.RelayWindow = 1 << 20
	}
	if c.RelayWindow < 2*relayChunk {
		return fmt.Errorf("fill: relay window %d must be at least %d bytes", c.RelayWindow, 2*relayChunk)
	}
	if c.RelayStall <= 0 {
		c.RelayStall = 5 * time.Second
	}
	if c.MinLimit == 0 {
		c.MinLimit = 1
	}
	if c.MaxLimit == 0 {
		c.MaxLimit = 64
	}
	if c.InitialLimit == 0 {
		c.InitialLimit = min(16, c.MaxLimit)
	}
	if c.MinLimit > c.InitialLimit || c.InitialLimit > c.MaxLimit {
		return fmt.Errorf("fill: origin limits must satisfy min %d <= initial %d <= max %d", c.MinLimit, c.InitialLimit, c.MaxLimit)
	}
	if c.RefreshWorkers <= 0 {
		c.RefreshWorkers = 32
	}
	if c.Shed == nil {
		c.Shed = func(string) {}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Group fetches objects, one fetch per key at a time.
type Group struct {
	cfg     Config
	rt      http.RoundTripper
	sf      singleflight.Group
	limit   adaptivelimiter.AdaptiveLimiter[any]
	refresh chan struct{} // semaphore: one token per running background refresh
	// renewing holds the flights a background refresh runs (at most
	// RefreshWorkers), so that the hits of a refresh window ask once,
	// not once each.
	renewing sync.Map // flight name → struct{}
	m        metrics

	ctx    context.Context // cancelled by Close; parents background refreshes
	cancel context.CancelFunc
	wg     sync.WaitGroup // background refreshes

	spare *spareDialer // the origin transport's, unless Config.Transport or NoSpareConn

	relayMu    sync.Mutex          // guards joinable and relaysLive
	joinable   map[string]*relay   // by flight: relays a new request may join; at most maxJoinable
	relaysLive map[*relay]struct{} // every relay not yet ended, for Close
}

// New validates cfg and returns a Group.
func New(cfg Config) (*Group, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	g := &Group{
		cfg:        cfg,
		rt:         cfg.Transport,
		refresh:    make(chan struct{}, cfg.RefreshWorkers),
		joinable:   make(map[string]*relay),
		relaysLive: make(map[*relay]struct{}),
		limit:      newLimit(cfg),
	}
	g.m = newMetrics(cfg.Registerer, g.limit)
	if g.rt == nil {
		dial := (&net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext
		if !cfg.NoSpareConn {
			g.spare = newSpareDialer(dial, originAddr(cfg.Origin), cfg.Timeout, cfg.Now, g.m.spares)
			dial = g.spare.DialContext
		}
		g.rt = &http.Transport{
			Proxy:                 nil,
			DialContext:           dial,
			MaxIdleConns:          256,
			MaxIdleConnsPerHost:   int(cfg.MaxLimit),
			MaxConnsPerHost:       int(cfg.MaxLimit), // as the limit: a bound even if permits leak
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: cfg.Timeout,
			DisableCompression:    true,
		}
	}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	if g.spare != nil {
		g.spare.start()
	}
	g.rt = reusedRetry{rt: g.rt, retried: g.m.fetches.WithLabelValues("retried").Inc}
	return g, nil
}

// Close stops background refreshes and waits for them, and cuts every
// relay still running.
func (g *Group) Close() {
	g.cancel()
	g.wg.Wait()
	g.closeRelays()
	if g.spare != nil {
		g.spare.close()
	}
	if tr, ok := g.rt.(reusedRetry).rt.(*http.Transport); ok && g.cfg.Transport == nil {
		tr.CloseIdleConnections()
	}
}

// Upstream performs one fetch for the Group. Nil means the origin, through
// the origin limit; replicas pass one that asks the owner.
type Upstream func(ctx context.Context, out *http.Request) (*http.Response, error)

// Result is what a fetch produced.
type Result struct {
	// Entry is the response: stored (Stored true), revalidated, or an
	// uncacheable response that only the leader may serve. Nil when
	// Stream is set.
	Entry *httpcache.Entry
	// Stream is set instead of Entry when the object is larger than
	// MaxObjectBytes: the caller's share of the one upstream response
	// relayed to every caller that joined it (relay.go). The caller must
	// close Stream.Body.
	Stream *Stream
	// Stored is true when Entry went into the store.
	Stored bool
	// Revalidated is true when the origin answered 304 to a conditional fetch.
	Revalidated bool
	// Collapsed is true for callers that waited on another caller's fetch.
	Collapsed bool
	// Shareable is true when Entry may be handed to every caller that
	// waited on the fetch, stored or not: a shared cache could store it,
	// or it is an error answer that carries no one's private data.
	Shareable bool
	// ServedBy and CacheStatus are the X-Served-By and Cache-Status of a
	// peer's response (Via), which the entry does not keep.
	ServedBy    string
	CacheStatus []string

	since  uint64 // the store's purge sequence when the fetch was sent
	relay  *relay // the flight's relay, before relayed makes it the caller's Stream
	joined bool   // the flight joined a relay another flight started
}

// Keep decides, for a router's fetch (Via), whether a response is kept in
// the store as a near copy (or, with reserve, a reserve: Entry.Reserve) and
// until when; the zero time keeps nothing.
type Keep func(e *httpcache.Entry) (until time.Time, reserve bool)

// call is one fetch as a flight runs it.
type call struct {
	r     *http.Request
	base  string
	stale *httpcache.Entry
	up    Upstream
	via   bool // a router's fetch from R(k): stored only as keep says
	keep  Keep
	solo  bool // a fetch no other caller may share (FetchOnce)
}

// Fetch returns the object for r, fetching it once however many callers ask
// at the same time. stale is the entry already held, if any: it makes the
// fetch conditional. A collapsed caller never receives a response the store
// refused (private or uncacheable): it gets one fetch of its own instead.
func (g *Group) Fetch(ctx context.Context, r *http.Request, base string, stale *httpcache.Entry, up Upstream) (Result, error) {
	return g.collapsed(ctx, call{r: r, base: base, stale: stale, up: up})
}

// Via is a router's fetch of an object it does not own: from its replica
// set through up (never nil), with every concurrent caller for the key at
// this node sharing one request, so a cold crowd costs the replica set one
// request per router rather than one per client. The response is handed to
// every waiter when it is shareable, stored or not, and kept in the store
// (a near copy, Entry.Near) only when keep says until when.
func (g *Group) Via(ctx context.Context, r *http.Request, base string, up Upstream, keep Keep) (Result, error) {
	return g.collapsed(ctx, call{r: r, base: base, up: up, via: true, keep: keep})
}

func (g *Group) collapsed(ctx context.Context, c call) (Result, error) {
	return g.collapsedAt(ctx, c, 0)
}

// collapsedAt is collapsed, for the attempt'th time (relayed retries once).
func (g *Group) collapsedAt(ctx context.Context, c call, attempt int) (Result, error) {
	key := c.base
	if c.stale != nil {
		key = c.stale.Key
	} else {
		// When the store knows the object varies, collapse on the variant
		// at once: a request arriving while its variant fills joins that
		// fill instead of leading a flight of its own on the base key.
		key = g.cfg.Store.VariantOf(c.base, c.r.Header)
	}
	res, err := g.do(ctx, flightOf(key, c.via), c)
	if err != nil {
		return res, err
	}
	if res.relay != nil {
		return g.relayed(ctx, c, res, attempt)
	}
	if !res.Collapsed {
		return res, nil
	}
	// The shared response may not be ours to serve.
	if !res.Stored && !(c.via && res.Shareable) {
		// Uncacheable (private, no-store, ...): one fetch of our own.
		return g.once(ctx, c)
	}
	if vkey := httpcache.VariantKey(c.base, res.Entry.Vary, c.r.Header); res.Entry.Key != vkey {
		// Another variant: fetch again, collapsed on ours.
		c.stale = nil
		return g.do(ctx, flightOf(vkey, c.via), c)
	}
	// The leader's Set-Cookie was for the leader's client only.
	res.Entry = res.Entry.Shareable()
	return res, nil
}

// flightOf names the flight for a key: a router's fetches from R(k) and this
// node's own fills never share one.
func flightOf(key string, via bool) string {
	if via {
		return "via\x00" + key
	}
	return key
}

// FetchOnce fetches without collapsing (requests that must not share, such
// as those bearing Authorization). The response is still stored when the
// store may keep it.
func (g *Group) FetchOnce(ctx context.Context, r *http.Request, base string, up Upstream) (Result, error) {
	return g.once(ctx, call{r: r, base: base, up: up})
}

func (g *Group) once(ctx context.Context, c call) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	c.stale = nil
	c.solo = true
	res, err := g.fetch(ctx, c)
	if err == nil && res.relay != nil {
		return g.relayed(ctx, c, res, 1)
	}
	return res, err
}

// do joins (or leads) the flight for key. Purges and writes to other objects
// never disturb it: only a purge that matches the object, applied after the
// flight sent its request but before this caller arrived, makes the caller
// start a flight of its own (it must not be handed a copy older than a purge
// it could have seen), and the store refuses the old response
// (PutUnlessPurged).
func (g *Group) do(ctx context.Context, flight string, c call) (Result, error) {
	for attempt := 0; ; attempt++ {
		arrived := g.cfg.Store.PurgeSeq()
		res, err := g.join(ctx, flight, c)
		e := res.Entry
		if res.relay != nil {
			e = res.relay.meta
		}
		if err != nil || !res.Collapsed || e == nil || attempt > 0 ||
			!g.cfg.Store.PurgedBetween(e, res.since, arrived) {
			return res, err
		}
		// The flight we joined predates a purge of its object that we
		// arrived after: one more flight, which starts after the purge.
		g.m.fetches.WithLabelValues("purged_in_flight").Inc()
	}
}

func (g *Group) join(ctx context.Context, flight string, c call) (Result, error) {
	leader := false
	ch := g.sf.DoChan(flight, func() (any, error) {
		leader = true
		// A flight that just ended may have stored what we missed between
		// our store lookup and joining: look again before fetching. A
		// router's fetch takes only a near copy, and a node's own fill (an
		// owner's, a replica's) never settles for one: it lapses in seconds.
		since := g.cfg.Store.PurgeSeq()
		if e, ok := g.cfg.Store.Get(c.base, c.r.Header); ok && e != c.stale && e.TTL(g.cfg.Now()) > 0 && settles(c.via, e) {
			return Result{Entry: e, Stored: true, Shareable: true, since: since}, nil
		}
		// An object too large to store that is being relayed now: join it.
		if rl := g.joinRelay(c); rl != nil {
			return Result{relay: rl, joined: true, Shareable: true, since: rl.since}, nil
		}
		// The fetch belongs to every waiter, not to the first client: it
		// runs detached from any one request, bounded by its own timeout.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.cfg.Timeout)
		defer cancel()
		return g.fetch(fctx, c)
	})
	select {
	case <-ctx.Done():
		return Result{}, ctx.Err()
	case out := <-ch:
		res, _ := out.Val.(Result)
		res.Collapsed = !leader || res.joined
		return res, out.Err
	}
}

// settles reports whether a flight may answer with e, found in the store
// after its callers missed: a router's fetch takes a near copy (a reserve
// is never served fresh), a node's own fill only an ordinary entry.
func settles(via bool, e *httpcache.Entry) bool {
	if via {
		return !e.Near.IsZero() && !e.Reserve
	}
	return e.Near.IsZero()
}

// Refresh starts a background, collapsed refresh of stale's key unless the
// refresh pool is full, in which case the refresh is dropped and counted.
func (g *Group) Refresh(r *http.Request, base string, stale *httpcache.Entry, up Upstream) {
	g.refreshCall(call{r: r, base: base, stale: stale, up: up})
}

// RefreshVia renews a near copy from the replica set (up) in the
// background, collapsed with the router's other fetches of the key, unless
// the refresh pool is full (dropped and counted).
func (g *Group) RefreshVia(r *http.Request, base string, near *httpcache.Entry, up Upstream, keep Keep) {
	g.refreshCall(call{r: r, base: base, stale: near, up: up, via: true, keep: keep})
}

// Refreshing reports whether a background refresh of key runs (via: a
// router's renewal of its near copy): a caller on the serving path checks
// it before building the refresh's arguments. Lock-free.
func (g *Group) Refreshing(key string, via bool) bool {
	_, ok := g.renewing.Load(flightOf(key, via))
	return ok
}

func (g *Group) refreshCall(c call) {
	key := c.stale.Key
	flight := flightOf(key, c.via)
	if g.Refreshing(key, c.via) {
		return // already on its way
	}
	select {
	case g.refresh <- struct{}{}:
	default:
		g.cfg.Shed("refresh_pool")
		return
	}
	if _, running := g.renewing.LoadOrStore(flight, struct{}{}); running {
		<-g.refresh // another hit started it meanwhile
		return
	}
	g.m.refreshes.Inc()
	c.r = c.r.Clone(g.ctx)
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer func() { g.renewing.Delete(flight); <-g.refresh }()
		if _, err := g.do(g.ctx, flight, c); err != nil {
			g.cfg.Logger.Debug("background refresh failed", "key", key, "err", err)
		}
	}()
}

// fetch performs one upstream request and stores what may be stored.
func (g *Group) fetch(ctx context.Context, c call) (Result, error) {
	// The request lives as long as ctx, unless its response is handed to a
	// relay, which outlives the fetch.
	// ctx's cause (a deadline is DeadlineExceeded) is the request's error.
	rctx, rcancel := context.WithCancelCause(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { rcancel(context.Cause(ctx)) })
	relayed := false
	defer func() {
		if !relayed {
			stop()
			rcancel(context.Canceled)
		}
	}()
	out, err := g.outbound(rctx, c.r, c.stale)
	if err != nil {
		return Result{}, err
	}
	since := g.cfg.Store.PurgeSeq()
	reqTime := g.cfg.Now()
	var resp *http.Response
	if c.up != nil {
		resp, err = c.up(rctx, out)
	} else {
		resp, err = g.Origin(out)
	}
	if err != nil {
		return Result{}, err
	}
	defer func() {
		if !relayed {
			resp.Body.Close()
		}
	}()
	res := Result{since: since}
	if c.via {
		res.ServedBy = resp.Header.Get("X-Served-By")
		res.CacheStatus = resp.Header.Values("Cache-Status")
	}

	if resp.StatusCode == http.StatusNotModified && c.stale != nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		e := c.stale.Revalidated(resp.Header, reqTime, g.cfg.Now(), g.cfg.Defaults)
		res.Entry, res.Revalidated, res.Shareable = e, true, true
		e.Near, e.Reserve = time.Time{}, false // an owner's or replica's fill makes an ordinary entry
		if c.via {
			// A near copy renewed: a new lease, or none.
			if c.keep != nil {
				e.Near, e.Reserve = c.keep(e)
			}
			if e.Near.IsZero() {
				return res, nil
			}
		}
		res.Stored = g.put(e, since)
		return res, nil
	}
	// Too large to store: relayed to every caller that joins, read once.
	toRelay := func(head []byte) (Result, error) {
		g.m.fetches.WithLabelValues("too_large").Inc()
		if !stop() {
			return Result{}, fmt.Errorf("fetch %s: %w", out.URL.Path, ctx.Err())
		}
		relayed = true
		res.relay = g.newRelay(c, out, resp, head, since, reqTime, rcancel)
		res.Shareable = res.relay.shareable
		return res, nil
	}
	if resp.ContentLength > g.cfg.MaxObjectBytes {
		return toRelay(nil)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, g.cfg.MaxObjectBytes+1))
	if err != nil {
		// A truncated or trickling body is never stored.
		g.m.fetches.WithLabelValues("body_error").Inc()
		return Result{}, fmt.Errorf("read body of %s: %w", out.URL.Path, err)
	}
	if int64(len(body)) > g.cfg.MaxObjectBytes {
		return toRelay(body)
	}
	// The entry is built for the request that was sent (always GET), so a
	// HEAD from the client still stores the full object.
	e := httpcache.NewEntry(c.base, "", out, resp.StatusCode, resp.Header, body, reqTime, g.cfg.Now(), g.cfg.Defaults)
	e.Key = httpcache.VariantKey(c.base, e.Vary, c.r.Header) // not yet shared: still ours to finish
	res.Entry = e
	storable, _ := httpcache.Storable(out, resp.StatusCode, resp.Header)
	res.Shareable = storable || (c.via && IsErrorStatus(resp.StatusCode) && !private(resp.Header))
	switch {
	case !storable:
	case IsErrorStatus(resp.StatusCode) && c.stale != nil && c.stale.State(g.cfg.Now(), 1) <= httpcache.StaleError:
		// An error never replaces a copy that stale-if-error may still
		// serve in its place (RFC 5861 §4).
	case !c.via:
		res.Stored = g.put(e, since)
	case c.keep != nil:
		if until, reserve := c.keep(e); !until.IsZero() {
			e.Near, e.Reserve = until, reserve // still ours alone: not yet stored or shared
			res.Stored = g.put(e, since)
		}
	}
	return res, nil
}

// private reports whether a response says it is for one client only.
func private(h http.Header) bool {
	cc := httpcache.ParseCacheControl(h)
	return cc.Private || cc.NoStore
}

// put stores e unless a purge that matches it was applied since its fetch
// was sent (since): the response may predate what the purge was for.
func (g *Group) put(e *httpcache.Entry, since uint64) bool {
	return g.cfg.Store.PutUnlessPurged(e, since) // counted there when refused
}

// newLimit is the adaptive origin limit, queueing briefly when LimitWait
// allows it.
func newLimit(cfg Config) adaptivelimiter.AdaptiveLimiter[any] {
	b := adaptivelimiter.NewBuilder[any]().WithLimits(cfg.MinLimit, cfg.MaxLimit, cfg.InitialLimit)
	if cfg.LimitWait > 0 {
		b = b.WithQueueing(2, 4).WithMaxWaitTime(cfg.LimitWait)
	}
	return b.Build()
}

// permit takes an origin permit: at once, or within LimitWait when the
// limit is full. False means shed.
func (g *Group) permit(ctx context.Context) (adaptivelimiter.Permit, bool) {
	if p, ok := g.limit.TryAcquirePermit(); ok || g.cfg.LimitWait <= 0 {
		return p, ok
	}
	p, err := g.limit.AcquirePermitWithMaxWait(ctx, g.cfg.LimitWait)
	return p, err == nil
}

// Origin sends out to the origin through the adaptive limit. A full limit
// sheds (ErrShed) unless a permit frees within LimitWait: a long queue is
// what drowns an origin.
func (g *Group) Origin(out *http.Request) (*http.Response, error) {
	permit, ok := g.permit(out.Context())
	if !ok {
		g.cfg.Shed("origin_limit")
		g.m.fetches.WithLabelValues("shed").Inc()
		return nil, ErrShed
	}
	start := g.cfg.Now()
	if g.cfg.Logger.Enabled(out.Context(), slog.LevelDebug) { // the header lookups cost even when nothing logs
		g.cfg.Logger.Debug("origin fetch", "path", out.URL.Path, "conditional", out.Header.Get("If-None-Match") != "" || out.Header.Get("If-Modified-Since") != "")
	}
	route.StripInternal(out.Header) // the cluster's headers never reach the origin
	resp, err := g.rt.RoundTrip(out)
	if err != nil {
		permit.Drop()
		g.m.fetches.WithLabelValues("error").Inc()
		return nil, fmt.Errorf("fetch %s from origin: %w", out.URL.Path, err)
	}
	route.StripInternal(resp.Header) // nor come back from it to be stored
	g.m.fetches.WithLabelValues(statusClass(resp.StatusCode)).Inc()
	g.m.latency.Observe(g.cfg.Now().Sub(start).Seconds())
	// The permit is held until the body is read: that is the origin's work.
	resp.Body = &permitBody{ReadCloser: resp.Body, permit: permit}
	return resp, nil
}

type permitBody struct {
	io.ReadCloser
	permit adaptivelimiter.Permit
	once   sync.Once
}

func (b *permitBody) Close() error {
	b.once.Do(b.permit.Record)
	return b.ReadCloser.Close()
}

// outbound builds the upstream request: always GET (HEAD is served from the
// full object), without the client's conditionals and ranges (the cache
// answers those itself), with our own validators when revalidating.
func (g *Group) outbound(ctx context.Context, r *http.Request, stale *httpcache.Entry) (*http.Request, error) {
	u := *g.cfg.Origin
	u.Path = singleJoin(g.cfg.Origin.Path, r.URL.Path)
	u.RawPath = singleJoin(g.cfg.Origin.EscapedPath(), r.URL.EscapedPath()) // "%2F" stays "%2F"
	u.RawQuery = r.URL.RawQuery
	out, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("build origin request: %w", err)
	}
	if g.cfg.RequestHost {
		out.Host = r.Host
	}
	CopyEndToEnd(out.Header, r.Header)
	// A client's Cache-Control and Pragma are its own: the fetch may be
	// shared, and what it stores is for every waiter (issue 10).
	for _, k := range []string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range", "Range", "Cache-Control", "Pragma"} {
		out.Header.Del(k)
	}
	if stale != nil {
		if stale.ETag != "" {
			out.Header.Set("If-None-Match", stale.ETag)
		}
		if stale.LastModified != "" {
			out.Header.Set("If-Modified-Since", stale.LastModified)
		}
	}
	out.Header.Add("Via", "1.1 crowdpilot")
	out.Header.Set("Surrogate-Capability", httpcache.SurrogateCapability) // never a client's
	return out, nil
}

// CopyEndToEnd copies the end-to-end fields of src into dst (hop-by-hop
// fields and those named by Connection are left out).
func CopyEndToEnd(dst, src http.Header) {
	for k, vv := range src {
		switch k {
		case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
			"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
			continue
		}
		dst[k] = append([]string(nil), vv...)
	}
	for _, c := range src.Values("Connection") {
		for _, f := range strings.Split(c, ",") {
			dst.Del(strings.TrimSpace(f))
		}
	}
}

func singleJoin(a, b string) string {
	switch {
	case a == "" || a == "/":
		return b
	case a[len(a)-1] == '/' && len(b) > 0 && b[0] == '/':
		return a + b[1:]
	}
	return a + b
}

func statusClass(code int) string {
	if code == http.StatusNotModified {
		return "not_modified"
	}
	return strconv.Itoa(code/100) + "xx"
}

// IsErrorStatus reports the statuses RFC 5861 calls errors for
// stale-if-error.
func IsErrorStatus(code int) bool {
	switch code {
	case 500, 502, 503, 504:
		return true
	}
	return false
}
