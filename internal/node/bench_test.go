package node

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/demo"
	"github.com/crowdpilot/crowdpilot/internal/httpcache"
)

// discardWriter is a ResponseWriter that keeps nothing, so a benchmark
// measures the handler rather than a recorder.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// benchMaxAge outlasts any benchmark run and is as short as a hot object's
// lifetime usually is: its Cache-Status and Age fields are the shared ones
// (hitStatuses), as in a crowd.
const benchMaxAge = 10 * time.Minute

// benchHit measures serving one cached 1 KiB object through node i's
// handler, for requests entering at node i.
func benchHit(b *testing.B, nodes, via int, tweak func(*Config)) {
	tc := newTestCluster(b, nodes, demo.Config{Latency: time.Millisecond, MaxAge: benchMaxAge, BodyBytes: 1024}, tweak)
	const path = "/obj/1"
	if s, _, _, err := tc.get(tc.url(via, path)); err != nil || s != 200 {
		b.Fatalf("warm-up: %d %v", s, err)
	}
	runHits(b, tc.nodes[via], path, func(http.Header) {})
}

// runHits serves path through nd's handler in parallel, b.N times in all,
// handing each response's headers to check.
func runHits(b *testing.B, nd *Node, path string, check func(http.Header)) {
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest(http.MethodGet, "http://"+nd.DataAddr()+path, nil)
		w := &discardWriter{h: make(http.Header, 8)}
		for pb.Next() {
			clear(w.h)
			nd.ServeHTTP(w, req)
			check(w.h)
		}
	})
}

// BenchmarkHitLocal: the owner serves a fresh hit from its own store, with
// heat tracking on (the default).
func BenchmarkHitLocal(b *testing.B) {
	benchHit(b, 1, 0, nil)
}

// BenchmarkHitLocalNoHeat is BenchmarkHitLocal with the autopilot (and so
// heat tracking) off: the pair measures what tracking costs the hit path.
func BenchmarkHitLocalNoHeat(b *testing.B) {
	benchHit(b, 1, 0, func(c *Config) { c.DisableAutopilot = true })
}

// BenchmarkHitForwarded: a router forwards to the owner over loopback HTTP
// and copies the hit back.
func BenchmarkHitForwarded(b *testing.B) {
	// The autopilot is off: this hot key would otherwise gain a replica on
	// the router node, which then serves it locally.
	benchRouter(b, func(c *Config) { c.NearCopy.TTL = 0 }, false) // no near copies: every request is a forward
}

// BenchmarkHitNear: a router serves its near copy of a hot key it does not
// own, as it does in a crowd.
func BenchmarkHitNear(b *testing.B) {
	benchRouter(b, nil, true)
}

// benchRouter serves a key the router (node 1) does not own, through it;
// near says whether the router's own near copy should answer.
func benchRouter(b *testing.B, tweak func(*Config), near bool) {
	tc := newTestCluster(b, 2, demo.Config{Latency: time.Millisecond, MaxAge: benchMaxAge, BodyBytes: 1024}, func(c *Config) {
		c.DisableAutopilot = true
		if tweak != nil {
			tweak(c)
		}
	})
	// A path the second node does not own, so requests entering there are
	// forwarded.
	var path string
	for i := 0; ; i++ {
		path = "/obj/" + strconv.Itoa(i)
		kr, _ := http.NewRequest(http.MethodGet, "http://x"+path, nil)
		base, _ := tc.nodes[1].baseKey(kr)
		if o, _ := tc.nodes[1].router.Owner(httpcache.KeyHash(base)); o.ID == tc.nodes[0].ID() {
			break
		}
	}
	if s, _, h, err := tc.get(tc.url(1, path)); err != nil || s != 200 || h.Get("X-Served-By") != tc.nodes[0].ID() {
		b.Fatalf("warm-up: %d %v served by %q", s, err, h.Get("X-Served-By"))
	}
	want := tc.nodes[0].ID()
	if near {
		want = tc.nodes[1].ID()
		for range 50 { // make it hot there
			tc.get(tc.url(1, path))
		}
	}
	var other atomic.Int64
	runHits(b, tc.nodes[1], path, func(h http.Header) {
		if h.Get("X-Served-By") != want {
			other.Add(1)
		}
	})
	if l := other.Load(); l > int64(b.N/100) {
		b.Fatalf("%d of %d requests were not served by %s", l, b.N, want)
	}
}
