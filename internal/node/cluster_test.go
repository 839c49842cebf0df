package node

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/cluster"
	"github.com/crowdpilot/crowdpilot/internal/demo"
)

// testClock is a shared, manually advanced clock for cache freshness.
type testClock struct {
	mu sync.Mutex // guards now
	t  time.Time
}

func newTestClock() *testClock { return &testClock{t: time.Now()} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestOneOriginFetchPerObject: 1,000 concurrent requests for one cold key,
// spread across 3 nodes, cost the origin exactly one fetch; after expiry,
// within stale-while-revalidate, 1,000 more are answered from the cache at
// the cost of at most one more fetch.
//
// The data plane alone (routers' shared fetches and near copies): the
// autopilot, which would place leased replicas while the bursts run, is
// off here and tested on its own.
func TestOneOriginFetchPerObject(t *testing.T) {
	clock := newTestClock()
	tc := newTestCluster(t, 3, demo.Config{Latency: 100 * time.Millisecond, MaxAge: 5 * time.Second, Now: clock.Now},
		func(c *Config) {
			c.Now = clock.Now
			c.DisableAutopilot = true
			c.OriginTimeout = burstOriginTimeout
		})

	replies := tc.burst(1000, "/live/match-1", all(3))
	want := replies[0].body
	servedBy := map[string]int{}
	for i, r := range replies {
		if r.err != nil || r.status != 200 {
			t.Fatalf("reply %d: status %d err %v, Cache-Status %q, body %q", i, r.status, r.err, cacheStatus(r.header), r.body)
		}
		if r.body != want {
			t.Fatalf("reply %d body differs: %q vs %q", i, r.body, want)
		}
		if !strings.Contains(cacheStatus(r.header), "detail=near") {
			servedBy[r.header.Get("X-Served-By")]++ // the near copies aside
		}
	}
	if got := tc.origin.Fetches(); got != 1 {
		statuses := map[string]int{}
		for _, r := range replies {
			statuses[cacheStatus(r.header)]++
		}
		t.Fatalf("origin fetches = %d, want exactly 1; served by %v; statuses %v", got, servedBy, statuses)
	}
	if len(servedBy) != 1 {
		t.Errorf("served by %v, want only the owner (or routers' near copies)", servedBy)
	}

	// Expired (max-age 5s) but inside the default stale-while-revalidate
	// window (10s): everything is answered from the cache.
	clock.Advance(6 * time.Second)
	replies = tc.burst(1000, "/live/match-1", all(3))
	stale := 0
	for i, r := range replies {
		if r.err != nil || r.status != 200 {
			t.Fatalf("reply %d after expiry: status %d err %v, Cache-Status %q, body %q", i, r.status, r.err, cacheStatus(r.header), r.body)
		}
		cs := cacheStatus(r.header)
		if !strings.Contains(cs, "hit") {
			t.Fatalf("reply %d after expiry not from the cache: Cache-Status %q served by %s", i, cs, r.header.Get("X-Served-By"))
		}
		if strings.Contains(cs, "detail=stale") {
			stale++
		}
	}
	if stale == 0 {
		t.Errorf("no reply marked stale after expiry")
	}
	// The one background refresh lands; no more follow.
	eventually(t, 5*time.Second, func() string {
		if got := tc.origin.Fetches(); got != 2 {
			return fmt.Sprintf("origin fetches = %d, want 2", got)
		}
		return ""
	})
	if got := tc.origin.Fetches(); got > 2 {
		t.Fatalf("origin fetches = %d after the stale window, want at most 2", got)
	}
}

// TestOriginDown: cached keys keep being served stale (and say so); an
// uncached key fails fast with 503 and Retry-After: by the path that saw
// the origin fail, never by waiting out the origin timeout. Which path
// answered is in Cache-Status and crowdpilot_shed_total, so the check does
// not depend on how fast this machine is; a request that waited out an
// origin timeout would say origin-timeout (and one that hung would fail
// at the client's timeout).
func TestOriginDown(t *testing.T) {
	clock := newTestClock()
	tc := newTestCluster(t, 3, demo.Config{Latency: time.Millisecond, MaxAge: 5 * time.Second, Now: clock.Now},
		func(c *Config) { c.Now = clock.Now })
	for i := range 3 {
		if s, _, _, err := tc.get(tc.url(i, fmt.Sprintf("/obj/%d", i))); err != nil || s != 200 {
			t.Fatalf("warm-up: %d %v", s, err)
		}
	}
	// Past max-age and the stale-while-revalidate window: only
	// stale-if-error (default 1h) can serve now.
	clock.Advance(30 * time.Second)

	for _, tt := range []struct {
		name  string
		down  func()
		cause string // in the uncached key's Cache-Status: how the origin failed
	}{
		{"origin answers 503", func() { tc.origin.SetDown(true) }, "fwd-status=503"},
		{"origin refuses conn", func() { tc.srv.Close() }, "detail=origin-error"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.down()
			for i := range 3 {
				for _, via := range all(3) {
					s, b, h, err := tc.get(tc.url(via, fmt.Sprintf("/obj/%d", i)))
					if err != nil || s != 200 || !strings.HasPrefix(b, fmt.Sprintf("/obj/%d ", i)) {
						t.Fatalf("cached key %d via n%d: %d %q %v %v", i, via, s, b, err, h)
					}
					if cs := cacheStatus(h); !strings.Contains(cs, "stale") {
						t.Errorf("stale reply not marked: Cache-Status %q", cs)
					}
				}
			}
			s, _, h, err := tc.get(tc.url(0, "/never-cached"))
			if err != nil || s != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
				t.Fatalf("uncached key: status %d, Retry-After %q, err %v; want 503 with Retry-After", s, h.Get("Retry-After"), err)
			}
			cs := cacheStatus(h)
			if !strings.Contains(cs, tt.cause) || strings.Contains(cs, "origin-timeout") {
				t.Errorf("uncached key: Cache-Status %q, want the origin's failure (%s), not a timeout", cs, tt.cause)
			}
			for _, nd := range tc.nodes {
				if v := shedCount(t, nd, "origin_timeout"); v != 0 {
					t.Errorf("%s: %v requests waited out the origin timeout", nd.ID(), v)
				}
			}
		})
	}
}

// shedCount is the node's crowdpilot_shed_total for reason.
func shedCount(t *testing.T, nd *Node, reason string) float64 {
	t.Helper()
	return counter(t, nd, "crowdpilot_shed_total", map[string]string{"reason": reason})
}

// TestNodeKilledMidLoad: a node whose process dies (listeners closed, no
// deregistration) costs zero failed requests on the surviving nodes.
func TestNodeKilledMidLoad(t *testing.T) {
	tc := newTestCluster(t, 3, demo.Config{Latency: time.Millisecond, Capacity: 64}, nil)
	var failures, total atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				via := 1 + (w+i)%2 // survivors only: n1, n2
				path := fmt.Sprintf("/obj/%d", (w*1000+i)%200)
				s, body, h, err := tc.get(tc.url(via, path))
				total.Add(1)
				if err != nil || s != 200 {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("GET %s via n%d: status %d err %v Cache-Status %q body %q",
						path, via, s, err, h.Get("Cache-Status"), body))
				}
			}
		}()
	}
	eventually(t, 10*time.Second, func() string {
		if total.Load() < 300 {
			return "load not under way"
		}
		return ""
	})
	tc.nodes[0].crash()
	before := total.Load()
	// Keep the load on until the survivors have dropped the dead node.
	tc.waitMembers(2, tc.nodes[1], tc.nodes[2])
	eventually(t, 10*time.Second, func() string {
		if total.Load() < before+300 {
			return "load after the crash too small"
		}
		return ""
	})
	close(stop)
	wg.Wait()
	if f := failures.Load(); f != 0 {
		t.Fatalf("%d of %d requests failed after a node died; first: %v", f, total.Load(), firstErr.Load())
	}
	t.Logf("%d requests, 0 failed", total.Load())
}

// TestEtcdOutage: with etcd stopped nodes keep serving with the membership
// they last saw; when etcd returns, membership converges again.
func TestEtcdOutage(t *testing.T) {
	tc := newTestCluster(t, 3, demo.Config{Latency: time.Millisecond}, nil)
	clientAddr := strings.TrimPrefix(tc.etcd.ClientURL(), "http://")
	peerAddr := strings.TrimPrefix(tc.etcd.PeerURL(), "http://")
	dir := tc.dir
	tc.etcd.Close()

	for i := range 30 {
		s, _, _, err := tc.get(tc.url(i%3, fmt.Sprintf("/obj/%d", i)))
		if err != nil || s != 200 {
			t.Fatalf("request %d with etcd down: %d %v", i, s, err)
		}
	}
	for _, nd := range tc.nodes {
		if got := len(nd.router.Peers()); got != 3 {
			t.Fatalf("node %s forgot its peers while etcd was down: sees %d", nd.ID(), got)
		}
	}

	etcd, err := cluster.StartEmbedded(t.Context(), cluster.EmbedConfig{Dir: dir, ClientAddr: clientAddr, PeerAddr: peerAddr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(etcd.Close)
	// Converged: every node's record is back in etcd and every node sees all.
	tc.waitMembers(3, tc.nodes...)
	eventually(t, 15*time.Second, func() string {
		for _, nd := range tc.nodes {
			ms := nd.members.Members()
			if len(ms) != 3 {
				return fmt.Sprintf("%s sees %d members", nd.ID(), len(ms))
			}
		}
		return ""
	})
	// A node that joins now is seen by everyone: watches work again.
	tc.nodes[2].Shutdown(context.Background())
	tc.waitMembers(2, tc.nodes[0], tc.nodes[1])
}
