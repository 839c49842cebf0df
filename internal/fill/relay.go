package fill

// Objects too large to store (issue 10, finding 9). The store cannot hold
// them, so the cache cannot answer a crowd for one from memory; but it can
// still send the origin one request for the whole crowd. The response is
// relayed: read once from upstream into a bounded window of the body, and
// copied from that window to every request that joined it.
//
// A request joins a relay while the relay still holds the first byte of
// the body: the requests that collapsed on the fetch that found the object
// too large, and every later request for the key (the same variant, not
// crossed by a purge) until the fastest reader has gone past the head
// (Config.RelayWindow, or what the fill had already read to learn the
// size, if more). A request that comes later starts the next relay. After
// the head the window slides: the relay reads upstream at most a window
// ahead of its slowest reader and drops what every reader has read.
//
// Readers share the pace of the slowest only within bounds: while the
// window is full, the readers holding it must move it by half a window
// every Config.RelayStall, or they are cut (their responses aborted,
// counted as shed "relay_lag"). A client that stops reading delays the
// others by at most RelayStall; one that trickles cannot slow them below
// half a window per RelayStall (512 KiB per 5s by default). A client that
// was cut can resume with a Range request, which passes through.
//
// Only what a shared cache could store is shared (private responses, and
// the other variants of a Vary, get fetches of their own), Set-Cookie only
// reaches the request that fetched it, and a Range or conditional request
// is passed through (a relay of the whole body cannot answer it). Every
// relay from the origin holds an origin permit until its body is read or
// abandoned: relays are under the origin limit like every fetch. Memory:
// each relay holds at most its window plus one read (32 KiB), or the
// head the fill read plus the window when the origin sent no length.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/httpcache"
)

const (
	// relayChunk is the most a relay reads from upstream at a time.
	relayChunk = 32 << 10
	// maxJoinable bounds the relays a Group keeps open for later requests
	// to join; beyond it a relay serves only the callers of its flight.
	maxJoinable = 1024
)

// Errors a relay's reader can end with.
var (
	errRelayLag    = errors.New("relay: reader fell a window behind the others and was cut")
	errRelayClosed = errors.New("relay: ended")
	errRelayIdle   = errors.New("relay: upstream sent nothing within the origin timeout")
)

// Stream is one caller's share of a response too large to store
// (Result.Stream).
type Stream struct {
	Status int
	// Header is the caller's own copy of the response's end-to-end fields,
	// as an Entry keeps them: Content-Length only when upstream sent one,
	// Set-Cookie only for the caller whose request fetched the response.
	Header http.Header
	// Tags are the response's purge tags (for a peer relaying it on).
	Tags []string
	// Age is the response's age when it arrived.
	Age time.Duration
	// Body is the body (http.NoBody for HEAD). The caller must close it; a
	// read error other than io.EOF means the response is cut short (the
	// upstream failed, or this reader fell too far behind).
	Body io.ReadCloser
}

// relay is one upstream response being read once for many readers.
type relay struct {
	g           *Group
	name        string           // the flight it is joinable under, "" if none
	meta        *httpcache.Entry // the response without its body: variant key, tags, age
	status      int
	header      http.Header // for the caller whose request fetched it
	shared      http.Header // for every other caller: without Set-Cookie
	shareable   bool        // other callers may be handed it (see Result.Shareable)
	since       uint64      // the store's purge sequence when the fetch was sent
	servedBy    string      // a peer's X-Served-By and Cache-Status (Via)
	cacheStatus []string
	max         int64 // bytes of body held at most: the window, or the head already read
	body        io.ReadCloser
	cancel      context.CancelCauseFunc // ends the upstream request

	mu       sync.Mutex                // guards everything below
	spans    []span                    // the body not yet read by every reader, up to pos
	pos      int64                     // bytes read from upstream
	joinable bool                      // the first byte is still held: new readers start there
	readers  map[*relayReader]struct{} // attached readers
	reading  bool                      // a reader is reading upstream, outside mu
	err      error                     // how upstream ended (io.EOF when whole), once it has
	released bool                      // upstream closed
	dead     bool                      // ended: nothing more is read or served
	wake     chan struct{}             // closed and replaced when pos, base, err or readers change
	// mark and markLow start a stall period: when a reader found the
	// window full, and the lowest reader offset then (see Read).
	mark    time.Time
	markLow int64
	idle    *time.Timer // ends a joinable relay that nobody reads
}

// span is a piece of the body starting at off. The last span may have
// spare capacity the upstream reader fills outside mu; bytes below len are
// never written again.
type span struct {
	off int64
	b   []byte
}

// newRelay takes over resp (and head, the part of its body already read)
// for c's flight. cancel ends resp's request. The relay is registered for
// later callers to join when others may share it and c may share at all.
func (g *Group) newRelay(c call, out *http.Request, resp *http.Response, head []byte, since uint64, reqTime time.Time, cancel context.CancelCauseFunc) *relay {
	meta := httpcache.NewEntry(c.base, "", out, resp.StatusCode, resp.Header, nil, reqTime, g.cfg.Now(), g.cfg.Defaults)
	meta.Key = httpcache.VariantKey(c.base, meta.Vary, c.r.Header)
	h := meta.Header.Clone()
	delete(h, "Content-Length")
	if resp.ContentLength >= 0 {
		h["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
	}
	shared := h
	if _, ok := h["Set-Cookie"]; ok {
		shared = h.Clone()
		delete(shared, "Set-Cookie")
	}
	storable, _ := httpcache.Storable(out, resp.StatusCode, resp.Header)
	rl := &relay{
		g:         g,
		meta:      meta,
		status:    resp.StatusCode,
		header:    h,
		shared:    shared,
		shareable: !c.solo && (storable || (c.via && IsErrorStatus(resp.StatusCode) && !private(resp.Header))),
		since:     since,
		max:       max(g.cfg.RelayWindow, int64(len(head))+relayChunk),
		body:      resp.Body,
		cancel:    cancel,
		pos:       int64(len(head)),
		joinable:  true,
		readers:   make(map[*relayReader]struct{}),
		wake:      make(chan struct{}),
	}
	if c.via {
		rl.servedBy = resp.Header.Get("X-Served-By")
		rl.cacheStatus = resp.Header.Values("Cache-Status")
	}
	if len(head) > 0 {
		rl.spans = []span{{off: 0, b: head}}
	}
	rl.idle = time.AfterFunc(g.cfg.RelayStall, rl.idleOut) // until its first reader
	g.m.relays.Inc()
	g.relayMu.Lock()
	g.relaysLive[rl] = struct{}{}
	if rl.shareable && len(g.joinable) < maxJoinable {
		rl.name = flightOf(c.base, c.via)
		g.joinable[rl.name] = rl
	}
	g.relayMu.Unlock()
	return rl
}

// joinRelay returns the relay c may join instead of fetching: one open for
// c's key and variant that no purge of the object has crossed since.
func (g *Group) joinRelay(c call) *relay {
	g.relayMu.Lock()
	rl := g.joinable[flightOf(c.base, c.via)]
	g.relayMu.Unlock()
	if rl == nil || httpcache.VariantKey(c.base, rl.meta.Vary, c.r.Header) != rl.meta.Key ||
		g.cfg.Store.PurgedBetween(rl.meta, rl.since, g.cfg.Store.PurgeSeq()) {
		return nil
	}
	return rl
}

// stream attaches a reader for one caller (own: the caller whose request
// fetched the response; head: a HEAD, which reads no body). It reports
// false when the relay no longer holds the first byte.
func (rl *relay) stream(head, own bool) (*Stream, bool) {
	s := &Stream{Status: rl.status, Header: rl.shared.Clone(), Tags: rl.meta.Tags, Age: rl.meta.Age(rl.g.cfg.Now()), Body: http.NoBody}
	if own {
		s.Header = rl.header.Clone()
	}
	if head {
		return s, true // nothing held for it
	}
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if !rl.joinable {
		return nil, false
	}
	rd := &relayReader{rl: rl}
	rl.readers[rd] = struct{}{}
	rl.idle.Stop()
	rl.g.m.relayReaders.Inc()
	rl.g.m.relayReading.Inc()
	s.Body = rd
	return s, true
}

// relayed turns a flight's relayed result into c's own Stream. A caller
// whose request has a Range or a conditional gets ErrTooLarge (a relay of
// the whole body cannot answer it: the caller passes it through); one that
// may not share the response, or that comes after the relay moved past
// its first byte, fetches again.
func (g *Group) relayed(ctx context.Context, c call, res Result, attempt int) (Result, error) {
	rl := res.relay
	res.relay = nil
	own := !res.Collapsed
	head := c.r.Method == http.MethodHead
	if !plain(c.r) {
		if own {
			rl.abandon() // unless someone joined already: the pass-through needs the origin slot
		}
		return Result{}, ErrTooLarge
	}
	if !own && (!rl.shareable || httpcache.VariantKey(c.base, rl.meta.Vary, c.r.Header) != rl.meta.Key) {
		return g.once(ctx, c) // someone else's private response, or another variant
	}
	s, ok := rl.stream(head, own)
	switch {
	case ok && own && head:
		rl.abandon() // a HEAD needs no body, unless someone joined already
	case ok:
	case c.solo:
		return Result{}, fmt.Errorf("fetch %s: %w", c.base, errRelayClosed)
	case attempt > 0:
		return g.once(ctx, c)
	default:
		return g.collapsedAt(ctx, c, attempt+1) // too late for this one: the next relay
	}
	res.Stream = s
	res.ServedBy, res.CacheStatus = rl.servedBy, rl.cacheStatus
	res.Shareable = rl.shareable
	return res, nil
}

// plain reports whether r asks for the whole representation, without
// conditionals or ranges.
func plain(r *http.Request) bool {
	for _, k := range [...]string{"Range", "If-Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since"} {
		if _, ok := r.Header[k]; ok {
			return false
		}
	}
	return true
}

// closeRelays ends every relay (Close).
func (g *Group) closeRelays() {
	g.relayMu.Lock()
	live := make([]*relay, 0, len(g.relaysLive))
	for rl := range g.relaysLive {
		live = append(live, rl)
	}
	g.relayMu.Unlock()
	for _, rl := range live {
		rl.abort()
	}
}
