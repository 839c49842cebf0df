package node

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/demo"
	"github.com/crowdpilot/crowdpilot/internal/route"
)

// requestsServed is the node's crowdpilot_requests_total over all results.
func requestsServed(t *testing.T, nd *Node) float64 {
	t.Helper()
	mfs, err := nd.cfg.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "crowdpilot_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

// ownerOf splits the cluster for path into its owner and the routers, and
// counts the requests of a burst of n (tc.burst over all nodes) that go
// straight to the owner.
func (tc *testCluster) ownerOf(path string, n int) (owner *Node, routers []*Node, direct int) {
	o, _ := tc.nodes[0].router.Owner(tc.hashOf(path))
	for i, nd := range tc.nodes {
		if nd.ID() != o.ID {
			routers = append(routers, nd)
			continue
		}
		owner = nd
		for j := range n {
			if j%len(tc.nodes) == i {
				direct++
			}
		}
	}
	return owner, routers, direct
}

// TestRoutersCollapseAndKeepNearCopies: a cold stampede of 2,000 requests
// over 3 nodes reaches the owner as about one forward per router (not one
// per client), costs the origin one fetch, and leaves each router a near
// copy it serves itself; the near copies lapse once the crowd has gone, and
// a purge with wait reaches them like any other entry.
func TestRoutersCollapseAndKeepNearCopies(t *testing.T) {
	clock := newTestClock()
	tc := newTestCluster(t, 3, demo.Config{Latency: 200 * time.Millisecond, MaxAge: time.Minute, Now: clock.Now},
		func(c *Config) {
			c.Now = clock.Now
			c.DisableAutopilot = true // the data plane alone: no leased replicas
			c.OriginTimeout = burstOriginTimeout
		})
	const path = "/live/final"
	ownerNode, routers, direct := tc.ownerOf(path, 2000)
	owner := ownerNode.self
	before := requestsServed(t, ownerNode)

	replies := tc.burst(2000, path, all(3))
	near := 0
	for i, r := range replies {
		if r.err != nil || r.status != 200 {
			t.Fatalf("reply %d: status %d err %v, Cache-Status %q, body %q", i, r.status, r.err, cacheStatus(r.header), r.body)
		}
		if strings.Contains(cacheStatus(r.header), "detail=near") {
			near++
		}
	}
	if got := tc.origin.FetchesOf(path); got != 1 {
		t.Errorf("origin fetches = %d, want 1", got)
	}
	for _, nd := range tc.nodes {
		mfs, _ := nd.cfg.Registry.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "crowdpilot_requests_total" {
				for _, m := range mf.GetMetric() {
					if v := m.GetCounter().GetValue(); v > 0 {
						t.Logf("%s %s=%v", nd.ID(), m.GetLabel()[0].GetValue(), v)
					}
				}
			}
		}
	}
	forwards := requestsServed(t, ownerNode) - before - float64(direct)
	if forwards > float64(2*len(routers)) {
		t.Errorf("the owner got %.0f forwards from %d routers for one cold key, want about one per router", forwards, len(routers))
	}
	t.Logf("owner %s got %.0f forwards; %d of 2000 replies came from near copies", owner.ID, forwards, near)
	key := tc.key(path)
	for _, nd := range routers {
		if e, ok := nd.store.Get(key, nil); !ok || e.Near.IsZero() {
			t.Errorf("router %s holds no near copy after the stampede", nd.ID())
		}
		// Reported as its own kind (/api/v1/hot shows the reports).
		if nc := nd.nearCopies(clock.Now()); len(nc) != 1 || nc[0].Key != key {
			t.Errorf("router %s reports near copies %v, want %s", nd.ID(), nc, key)
		}
	}
	// A router serves its near copy itself.
	for _, nd := range routers {
		before := requestsServed(t, ownerNode)
		s, _, h, err := tc.get("http://" + nd.DataAddr() + path)
		if err != nil || s != 200 || !strings.Contains(cacheStatus(h), "detail=near") || h.Get("X-Served-By") != nd.ID() {
			t.Errorf("via %s: %d %v, Cache-Status %q, X-Served-By %q: want its near copy", nd.ID(), s, err, cacheStatus(h), h.Get("X-Served-By"))
		}
		if got := requestsServed(t, ownerNode) - before; got != 0 {
			t.Errorf("a near hit at %s cost the owner %.0f requests", nd.ID(), got)
		}
	}

	// The crowd leaves: once the lease (2s by default) has passed, the
	// near copies are gone by themselves, and a lone request is forwarded.
	clock.Advance(3 * time.Second)
	for _, nd := range routers {
		if _, ok := nd.store.Get(key, nil); ok {
			t.Errorf("router %s still holds its near copy after its lease", nd.ID())
		}
		if nc := nd.nearCopies(clock.Now()); len(nc) != 0 {
			t.Errorf("router %s still reports near copies %v after their lease", nd.ID(), nc)
		}
		s, _, h, err := tc.get("http://" + nd.DataAddr() + path)
		if err != nil || s != 200 || strings.Contains(cacheStatus(h), "detail=near") {
			t.Errorf("via %s after the crowd: %d %v, Cache-Status %q: want a forward", nd.ID(), s, err, cacheStatus(h))
		}
	}

	// Hot again, then purged with wait: no router serves the old copy.
	tc.burst(300, path, all(3))
	for _, nd := range routers {
		if e, ok := nd.store.Get(key, nil); !ok || e.Near.IsZero() {
			t.Fatalf("router %s holds no near copy after the second crowd", nd.ID())
		}
	}
	tc.origin.Update(path)
	code, out := tc.adminPost(0, "secret", fmt.Sprintf(`{"key": %q, "wait": "5s"}`, path))
	if code != 200 || out["complete"] != true {
		t.Fatalf("purge: %d %v", code, out)
	}
	for i := range tc.nodes {
		if v := tc.version(i, path); v != 1 {
			t.Errorf("via n%d after the acknowledged purge: version %d, want 1", i, v)
		}
	}
}

// TestAbortedResponsesGiveTheirSlotsBack: responses cut off mid-body (the
// origin drops the connection while an owner streams an object too large
// to cache, and the router forwarding it aborts in turn) leave neither the
// nodes' in-flight counts nor the router's per-peer count up: they used to,
// for good, which skewed power-of-two choices and at --max-inflight shed
// everything.
func TestAbortedResponsesGiveTheirSlotsBack(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(4<<20))
		w.Header().Set("Cache-Control", "max-age=60")
		w.WriteHeader(http.StatusOK)
		w.Write(make([]byte, 64<<10))
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close() // mid-body
		}
	}))
	defer origin.Close()
	tc := newTestCluster(t, 2, demo.Config{}, func(c *Config) {
		c.Origin = origin.URL
		c.MaxObjectBytes = 1 << 20
		c.DisableAutopilot = true
	})
	// A path the second node owns, asked of the first.
	router, owner := tc.nodes[0], tc.nodes[1]
	path := ""
	for i := 0; path == ""; i++ {
		p := fmt.Sprintf("/big/%d", i)
		if o, _ := router.router.Owner(tc.hashOf(p)); o.ID == owner.ID() {
			path = p
		}
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, "http://"+router.DataAddr()+path, nil)
			req.Header.Set("Cookie", "session=1") // not shared: forwarded as it came
			resp, err := tc.client.Do(req)
			if err != nil {
				return
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil && n == 4<<20 {
				t.Errorf("got the whole body, want it cut off")
			}
		}()
	}
	wg.Wait()
	eventually(t, 5*time.Second, func() string {
		if a, b, c := router.inflight.Load(), owner.inflight.Load(), router.router.InFlight(owner.ID()); a != 0 || b != 0 || c != 0 {
			return fmt.Sprintf("in flight: router %d, owner %d, router's forwards to the owner %d; want 0", a, b, c)
		}
		return ""
	})
}

// TestOwnerAtItsLimitShedsFast: when forwards to a member pile up (here a
// slow origin behind it, and requests that cannot share a forward), the
// router's adaptive limit for that member fills and further requests are
// answered at once (503 with Retry-After, or what the router holds),
// instead of queueing behind it, failing over in a cascade, or fetching
// from the origin themselves; the member is not ejected for it.
func TestOwnerAtItsLimitShedsFast(t *testing.T) {
	tc := newTestCluster(t, 2, demo.Config{Latency: 2 * time.Second, MaxAge: time.Minute, Capacity: 256}, func(c *Config) {
		c.PeerLimit = route.PeerLimit{Min: 2, Initial: 2, Max: 2, MaxWait: 20 * time.Millisecond}
		c.DisableAutopilot = true
	})
	router, owner := tc.nodes[0], tc.nodes[1]
	var paths []string
	for i := 0; len(paths) < 40; i++ {
		p := fmt.Sprintf("/cold/%d", i)
		if o, _ := router.router.Owner(tc.hashOf(p)); o.ID == owner.ID() {
			paths = append(paths, p)
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[string]int{}
	for _, p := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, "http://"+router.DataAddr()+p, nil)
			req.Header.Set("Cookie", "session=1") // each its own forward
			resp, err := tc.client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			k := strconv.Itoa(resp.StatusCode)
			if resp.StatusCode == http.StatusServiceUnavailable {
				if resp.Header.Get("Retry-After") == "" {
					t.Error("503 without Retry-After")
				}
				k += " " + cacheStatus(resp.Header)
			}
			mu.Lock()
			codes[k]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	shed := codes["503 crowdpilot; fwd=miss; detail=peer-busy"]
	if shed < 30 || codes["200"]+shed != len(paths) {
		t.Errorf("replies %v: want most shed as peer-busy and the rest served", codes)
	}
	if router.router.Suspected(owner.ID()) {
		t.Error("the owner was ejected for being at its limit")
	}
	if got := tc.origin.Fetches(); got > int64(codes["200"]) {
		t.Errorf("origin fetches %d > replies served %d: the router fetched for itself", got, codes["200"])
	}
	t.Logf("replies %v", codes)
}

// TestExpiredStampedeStaysAtTheRouters: a crowd for an object just past its
// freshness, within stale-while-revalidate, reaches the owner as about one
// forward per router, and the origin pays at most one more fetch. A router
// that relayed the object before answers the crowd from its reserve at
// once; one that did not holds the owner's stale copy as a brief near copy
// while the owner revalidates.
func TestExpiredStampedeStaysAtTheRouters(t *testing.T) {
	for _, tt := range []struct {
		name     string
		reserves bool
	}{{"from reserves", true}, {"from near copies of the owner's stale copy", false}} {
		t.Run(tt.name, func(t *testing.T) { testExpiredStampede(t, tt.reserves) })
	}
}

func testExpiredStampede(t *testing.T, reserves bool) {
	clock := newTestClock()
	tc := newTestCluster(t, 3, demo.Config{Latency: 50 * time.Millisecond, MaxAge: 2 * time.Second, Now: clock.Now},
		func(c *Config) {
			c.Now = clock.Now
			c.DisableAutopilot = true
			c.OriginTimeout = burstOriginTimeout
			if !reserves {
				c.NearCopy.ReserveShare = 0
			}
		})
	const path = "/live/expiring"
	for i := range 3 {
		if s, _, _, err := tc.get(tc.url(i, path)); err != nil || s != 200 {
			t.Fatalf("warm-up via n%d: %d %v", i, s, err)
		}
	}
	ownerNode, routers, direct := tc.ownerOf(path, 1500)
	for _, nd := range routers {
		e, ok := nd.store.Get(tc.key(path), nil)
		if held := ok && e.Reserve; held != reserves {
			t.Fatalf("router %s holds a reserve after relaying the object: %v, want %v", nd.ID(), held, reserves)
		}
	}
	clock.Advance(3 * time.Second) // stale, within the default 10s grace
	before := requestsServed(t, ownerNode)
	replies := tc.burst(1500, path, all(3))
	nearStale, fromReserve := 0, 0
	for i, r := range replies {
		if r.err != nil || r.status != 200 {
			t.Fatalf("reply %d: %d %v, Cache-Status %q, body %q", i, r.status, r.err, cacheStatus(r.header), r.body)
		}
		switch cs := cacheStatus(r.header); {
		case strings.Contains(cs, "detail=near-stale"):
			nearStale++
		case strings.Contains(cs, "detail=reserve-stale"):
			fromReserve++
		}
	}
	forwards := requestsServed(t, ownerNode) - before - float64(direct)
	// Collapsed, a router's thousand requests cost it one forward per
	// flight; on a busy machine a flight's answer can come back before the
	// router counts the key hot (see below), and its next arrivals start
	// another flight. Uncollapsed, they would cost about a thousand.
	if forwards > 6 {
		t.Errorf("the owner got %.0f forwards from 2 routers for one expired key, want about one per router", forwards)
	}
	// With reserves, the routers answer the crowd themselves from the
	// first request: from the reserve until its refresh from the owner
	// lands, then from the near copy it leaves (the key is hot by then),
	// unless the refresh came back before the router counted the key hot
	// (a busy machine), when the router forwards until it does.
	if routed := len(replies) - direct; reserves && (fromReserve == 0 || fromReserve+nearStale < routed/2) {
		t.Errorf("the routers answered %d of their %d requests from reserves and %d from near copies, want most of them there", fromReserve, routed, nearStale)
	}
	if !reserves && fromReserve != 0 {
		t.Errorf("%d replies from reserves with reserves off", fromReserve)
	}
	// Each router now holds a near copy: the owner's stale one, under a
	// brief lease.
	// Whether the burst's one shared fetch kept it depends on how many of
	// the burst the router had counted when the answer came back (on a
	// busy machine, sometimes fewer than make the key hot); the key is
	// hot now, so the next fetch keeps it, and later requests are answered
	// from it.
	for _, nd := range routers {
		var cs string
		for range 3 {
			_, _, h, err := tc.get("http://" + nd.DataAddr() + path)
			if err != nil {
				t.Fatal(err)
			}
			cs = cacheStatus(h)
		}
		// The copy is the stale one, or already the owner's refreshed one
		// if the router renewed it from there.
		if e, ok := nd.store.Get(tc.key(path), nil); !ok || e.Near.IsZero() || e.Reserve || !strings.Contains(cs, "detail=near") {
			t.Errorf("router %s holds no near copy of the object (last reply: %q)", nd.ID(), cs)
		}
	}
	eventually(t, 5*time.Second, func() string {
		if got := tc.origin.FetchesOf(path); got != 2 {
			return fmt.Sprintf("origin fetches = %d, want 2 (the warm-up and one refresh)", got)
		}
		return ""
	})
	t.Logf("%.0f forwards to the owner; %d replies from reserves, %d from near copies of the stale object", forwards, fromReserve, nearStale)
}

// TestReservesArePurged: a purge with wait reaches the reserves a router
// keeps of what it relayed, like every other entry: after it, the router
// never answers the expired object's crowd from the purged copy.
func TestReservesArePurged(t *testing.T) {
	clock := newTestClock()
	tc := newTestCluster(t, 3, demo.Config{MaxAge: 2 * time.Second, Now: clock.Now},
		func(c *Config) { c.Now = clock.Now; c.DisableAutopilot = true })
	const path = "/live/purged"
	_, routers, _ := tc.ownerOf(path, 0)
	for i := range 3 {
		if v := tc.version(i, path); v != 0 {
			t.Fatalf("warm-up via n%d: version %d", i, v)
		}
	}
	for _, nd := range routers {
		if e, ok := nd.store.Get(tc.key(path), nil); !ok || !e.Reserve {
			t.Fatalf("router %s holds no reserve of the object it relayed", nd.ID())
		}
	}
	tc.origin.Update(path)
	code, out := tc.adminPost(0, "secret", fmt.Sprintf(`{"key": %q, "wait": "5s"}`, path))
	if code != 200 || out["complete"] != true {
		t.Fatalf("purge: %d %v", code, out)
	}
	clock.Advance(3 * time.Second) // would be served from a reserve now
	for _, nd := range routers {
		s, body, h, err := tc.get("http://" + nd.DataAddr() + path)
		if err != nil || s != 200 || strings.Contains(cacheStatus(h), "reserve") {
			t.Errorf("via %s after the purge: %d %v, Cache-Status %q", nd.ID(), s, err, cacheStatus(h))
		}
		if v, _ := parseVersion(body); v != 1 {
			t.Errorf("via %s after the acknowledged purge: body %q, want version 1", nd.ID(), body)
		}
	}
}
