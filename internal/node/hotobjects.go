package node

// Per-object series for the hot set: the objects /api/v1/hot lists, at
// most maxHotObjectSeries of them per node, each with its request count and
// its origin fetches here. STYLE.md allows a per-object label only for such
// a bounded set, removed when the object cools.
//
// Nothing here runs per request. The request counts come from the heat
// tracker, which counts every request anyway; they are copied into the
// series once per heat report, when the leader's reply (or, on the leader,
// its own view) says which objects are hot. Origin fetches are counted by
// the fetch itself, and only for an object in the set: the way to the
// origin of such an object is a closure built when it joined, found with
// one atomic load and a map lookup, so the fill paths take no lock and
// allocate nothing for it.

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crowdpilot/crowdpilot/internal/autopilot"
	"github.com/crowdpilot/crowdpilot/internal/fill"
	"github.com/crowdpilot/crowdpilot/internal/heat"
)

// maxHotObjectSeries bounds the objects a node exports per-object series
// for. Hot objects beyond it are counted in
// crowdpilot_hot_objects_unexported_total.
const maxHotObjectSeries = 20

// hotSetMaxReports is how many report intervals a node keeps the hot set it
// last learned when its reports go unanswered (the leader is gone or
// changing): after that its per-object series are dropped, since nobody
// says which objects are hot.
const hotSetMaxReports = 5

// hotKey is one object of the hot set as the leader tells it to the nodes
// in its answer to a heat report, hottest first.
type hotKey struct {
	Key  string `json:"key"`
	Hash uint64 `json:"hash,string"`
}

// heatReply is the leader's answer to a heat report.
type heatReply struct {
	Hot []hotKey `json:"hot"`
}

// hotKeysOf returns the keys of the leader's hot view.
func hotKeysOf(hot []autopilot.HotObject) []hotKey {
	out := make([]hotKey, len(hot))
	for i, h := range hot {
		out[i] = hotKey{Key: h.Key, Hash: h.Hash}
	}
	return out
}

// hotObjects holds this node's per-object series. The zero value holds
// none and counts nothing (a node without the autopilot); init registers
// the series.
type hotObjects struct {
	// table maps the hash of each exported object to its counts. A table
	// is never written once published: refresh replaces it whole, so the
	// fill paths and the scrape read it without a lock.
	table atomic.Pointer[map[uint64]*hotObject]

	origin     func(*http.Request) (*http.Response, error) // the node's way to the origin
	openKeys   bool                                        // label keys unredacted (--admin-open-keys)
	reqDesc    *prometheus.Desc
	originDesc *prometheus.Desc
	unexported prometheus.Counter

	// Used by refresh and expire only, which the heat reporter calls.
	refused map[uint64]bool // hot objects left without series at the last refresh
	learned time.Time       // when the hot set was last learned
}

// hotObject is one exported object.
type hotObject struct {
	key, hash string        // label values; key redacted unless openKeys
	requests  atomic.Uint64 // requests counted since the object joined; written by refresh
	fetches   atomic.Uint64 // origin fetches since the object joined
	up        fill.Upstream // the origin, counted in fetches
	origin    func(*http.Request) (*http.Response, error)

	last    uint64 // the heat tracker's count at the last refresh; refresh only
	tracked bool   // whether the tracker held the key at the last refresh
}

// init registers the series on reg; origin sends a fill to the origin.
func (h *hotObjects) init(reg prometheus.Registerer, origin func(*http.Request) (*http.Response, error), openKeys bool) {
	labels := []string{"key", "hash"}
	h.origin, h.openKeys = origin, openKeys
	h.reqDesc = prometheus.NewDesc("crowdpilot_hot_object_requests_total",
		"Client requests that entered at this node for an object of the hot set (the objects /api/v1/hot lists; at most 20 per node), "+
			"wherever they were answered, counted while the object is in the set; copied from the node's heat tracker at each heat report. "+
			"Query values in key are redacted unless --admin-open-keys; hash is the hash /api/v1/hot shows. "+
			"An object's hit ratio across the cluster: 1 - sum by (key, hash) of the rate of crowdpilot_hot_object_origin_fetches_total over the same sum of this.",
		labels, nil)
	h.originDesc = prometheus.NewDesc("crowdpilot_hot_object_origin_fetches_total",
		"Fetches this node sent to the origin (fills, refreshes and revalidations; not those shed at the origin limit) for an object of the hot set, counted while the object is in the set.",
		labels, nil)
	h.unexported = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "crowdpilot_hot_objects_unexported_total",
		Help: "Objects of the hot set left without per-object series because this node exported 20 already; each counted once per stay in the set.",
	})
	reg.MustRegister(h, h.unexported, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "crowdpilot_hot_objects",
		Help: "Objects of the hot set this node exports per-object series for (at most 20).",
	}, func() float64 { return float64(len(h.objects())) }))
}

func (h *hotObjects) objects() map[uint64]*hotObject {
	if t := h.table.Load(); t != nil {
		return *t
	}
	return nil
}

// upstream is the way to the origin for a fill of hash: nil (the fill
// takes its own way) unless the object is exported, whose fetches it counts.
func (h *hotObjects) upstream(hash uint64) fill.Upstream {
	if o := h.lookup(hash); o != nil {
		return o.up
	}
	return nil
}

// lookup returns the exported object with hash, or nil.
func (h *hotObjects) lookup(hash uint64) *hotObject { return h.objects()[hash] }

func (o *hotObject) fetch(out *http.Request) (*http.Response, error) {
	resp, err := o.origin(out)
	if !errors.Is(err, fill.ErrShed) {
		o.fetches.Add(1)
	}
	return resp, err
}

// refresh makes hot (hottest first) the exported set and copies the
// tracker's counts (tracked: every key it holds) into the series. An
// exported object keeps its series while it stays hot; free slots go to
// the hottest of the others, and those left over are counted once each.
// A key that stays at the edge of the cap therefore does not flap in and
// out, and an object's series never starts over while it is hot.
func (h *hotObjects) refresh(hot []hotKey, tracked []heat.KeyRate, now time.Time) {
	h.learned = now
	old := h.objects()
	in := make(map[uint64]bool, len(hot))
	for _, k := range hot {
		in[k.Hash] = true
	}
	next := make(map[uint64]*hotObject, min(len(hot), maxHotObjectSeries))
	for hash, o := range old {
		if in[hash] {
			next[hash] = o
		}
	}
	joined := map[uint64]bool{}
	refused := map[uint64]bool{}
	for _, k := range hot {
		if next[k.Hash] != nil {
			continue
		}
		if len(next) >= maxHotObjectSeries {
			if !h.refused[k.Hash] {
				h.unexported.Inc()
			}
			refused[k.Hash] = true
			continue
		}
		next[k.Hash] = h.newObject(k)
		joined[k.Hash] = true
	}
	h.refused = refused

	seen := make(map[uint64]bool, len(next))
	for _, kr := range tracked {
		o := next[kr.Hash]
		if o == nil {
			continue
		}
		seen[kr.Hash] = true
		switch {
		case joined[kr.Hash]:
			// Counted from now on: what came before was not in the set.
		case !o.tracked:
			o.requests.Add(kr.Count) // readmitted since: all of it is new
		case kr.Count >= o.last:
			o.requests.Add(kr.Count - o.last)
		default:
			o.requests.Add(kr.Count) // evicted and readmitted between two refreshes
		}
		o.last, o.tracked = kr.Count, true
	}
	for hash, o := range next {
		if !seen[hash] {
			o.last, o.tracked = 0, false // not tracked here (now): no requests since
		}
	}
	h.table.Store(&next)
}

// expire drops every series when the hot set was last learned more than
// maxAge before now.
func (h *hotObjects) expire(now time.Time, maxAge time.Duration) {
	if len(h.objects()) > 0 && now.Sub(h.learned) > maxAge {
		h.refresh(nil, nil, now)
	}
}

func (h *hotObjects) newObject(k hotKey) *hotObject {
	label := k.Key
	if !h.openKeys {
		label = redactQuery(label)
	}
	o := &hotObject{key: label, hash: strconv.FormatUint(k.Hash, 10), origin: h.origin}
	o.up = func(_ context.Context, out *http.Request) (*http.Response, error) { return o.fetch(out) }
	return o
}

// Describe and Collect make hotObjects a prometheus.Collector: the series
// are exactly the table's, so an object that leaves it has none.
func (h *hotObjects) Describe(ch chan<- *prometheus.Desc) {
	ch <- h.reqDesc
	ch <- h.originDesc
}

func (h *hotObjects) Collect(ch chan<- prometheus.Metric) {
	for _, o := range h.objects() {
		ch <- prometheus.MustNewConstMetric(h.reqDesc, prometheus.CounterValue, float64(o.requests.Load()), o.key, o.hash)
		ch <- prometheus.MustNewConstMetric(h.originDesc, prometheus.CounterValue, float64(o.fetches.Load()), o.key, o.hash)
	}
}
