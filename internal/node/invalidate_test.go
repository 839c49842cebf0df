package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/crowdpilot/crowdpilot/internal/purge"
	"github.com/crowdpilot/crowdpilot/internal/route"
)

// purgeLogLen counts the entries in the cluster's purge log.
func (tc *testCluster) purgeLogLen() int64 {
	tc.t.Helper()
	nd := tc.nodes[0]
	resp, err := nd.etcd.Get(tc.t.Context(), purge.LogPrefix(nd.cfg.Cluster), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		tc.t.Fatal(err)
	}
	return resp.Count
}

func (tc *testCluster) send(method, url string) int {
	tc.t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	status, _, _ := tc.do(req)
	return status
}

// TestOnlyUnsafeMethodsInvalidate (issue 10, finding 5; RFC 9111 §4.4):
// OPTIONS (a CORS preflight) and the other registered safe methods pass
// through to the origin without touching the cache or the purge log; POST,
// PUT, PATCH, DELETE and methods whose safety is unknown ("including
// methods whose safety is unknown", §4.4) invalidate.
func TestOnlyUnsafeMethodsInvalidate(t *testing.T) {
	tc, eo := newEchoCluster(t, 3, nil)
	const path = "/inv/page"
	for i := range 3 {
		if s := tc.send(http.MethodGet, tc.url(i, path)); s != 200 {
			t.Fatalf("warm-up: %d", s)
		}
	}
	if got := eo.gets(path); got != 1 {
		t.Fatalf("origin GETs = %d after warm-up, want 1", got)
	}
	for _, m := range []string{http.MethodOptions, "PROPFIND", "REPORT", "SEARCH"} {
		for i := range 3 {
			if s := tc.send(m, tc.url(i, path)); s != 200 {
				t.Fatalf("%s on n%d: %d", m, i, s)
			}
		}
	}
	if got := eo.fetches(path); got != 1+12 {
		t.Fatalf("origin requests = %d, want the warm-up and 12 passed through", got)
	}
	for i := range 3 {
		if s := tc.send(http.MethodGet, tc.url(i, path)); s != 200 {
			t.Fatalf("GET: %d", s)
		}
	}
	if got := eo.gets(path); got != 1 {
		t.Errorf("origin GETs = %d after safe methods, want 1: they invalidated", got)
	}
	if got := tc.purgeLogLen(); got != 0 {
		t.Errorf("purge log has %d entries after safe methods, want 0", got)
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, "M-SEARCH", "FOO"} {
		before := eo.gets(path)
		if s := tc.send(m, tc.url(0, path)); s != 200 {
			t.Fatalf("%s: %d", m, s)
		}
		// Applied everywhere: every node's next GET misses once.
		eventually(t, 10*time.Second, func() string {
			if tc.send(http.MethodGet, tc.url(1, path)); eo.gets(path) == before {
				return m + " did not invalidate on the other nodes"
			}
			return ""
		})
	}
}

// TestPostFloodBoundsPurgeLog (issue 10, finding 5): 600 POSTs to 3 URLs,
// through all nodes, grow the purge log by at most one entry per URL and
// node per interval, not one per POST.
func TestPostFloodBoundsPurgeLog(t *testing.T) {
	tc, eo := newEchoCluster(t, 3, func(c *Config) { c.InvalidateInterval = time.Hour })
	const posts = 600
	var wg sync.WaitGroup
	work := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range work {
				tc.send(http.MethodPost, tc.url(i%3, fmt.Sprintf("/flood/%d", i%3)))
			}
		})
	}
	for i := range posts {
		work <- i
	}
	close(work)
	wg.Wait()
	if got := eo.fetches("/flood/0") + eo.fetches("/flood/1") + eo.fetches("/flood/2"); got != posts {
		t.Fatalf("origin got %d POSTs, want %d", got, posts)
	}
	eventually(t, 10*time.Second, func() string {
		if tc.purgeLogLen() == 0 {
			return "no invalidation logged"
		}
		return ""
	})
	// Within one interval each node logs each URL at most once.
	if got := tc.purgeLogLen(); got > 9 {
		t.Errorf("purge log grew by %d entries for %d POSTs to 3 URLs on 3 nodes, want at most 9", got, posts)
	}
}

// TestLocationInvalidated (issue 10, finding 5; RFC 9111 §4.4): a
// successful POST also invalidates the Location and Content-Location of
// its response when they are this origin's URLs, and never another host's.
func TestLocationInvalidated(t *testing.T) {
	tc, eo := newEchoCluster(t, 1, nil)
	for _, p := range []string{"/items/42", "/items/43", "/other"} {
		tc.send(http.MethodGet, tc.url(0, p))
	}
	post := "/items?location=" + url.QueryEscape("/items/42") +
		"&content-location=" + url.QueryEscape("http://"+tc.oaddr+"/items/43")
	if s := tc.send(http.MethodPost, tc.url(0, post)); s != 200 {
		t.Fatalf("POST: %d", s)
	}
	evil := "/items?location=" + url.QueryEscape("http://evil.example/other")
	tc.send(http.MethodPost, tc.url(0, evil))
	for _, p := range []string{"/items/42", "/items/43", "/other"} {
		tc.send(http.MethodGet, tc.url(0, p))
	}
	if got := eo.gets("/items/42"); got != 2 {
		t.Errorf("Location /items/42: %d origin GETs, want 2 (invalidated)", got)
	}
	if got := eo.gets("/items/43"); got != 2 {
		t.Errorf("Content-Location (absolute, same origin) /items/43: %d origin GETs, want 2 (invalidated)", got)
	}
	if got := eo.gets("/other"); got != 1 {
		t.Errorf("another host's Location invalidated /other: %d origin GETs, want 1", got)
	}
}

// TestInvalidatorCoalesces is the pure logic, on a fake clock: one entry
// per URL per interval, a bounded pending set that degrades to one soft
// purge-all, and failed appends retried rather than lost.
func TestInvalidatorCoalesces(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var got []purge.Request
		fail := false
		var sheds []string
		v := newInvalidator(time.Second, func(_ context.Context, r purge.Request) error {
			mu.Lock()
			defer mu.Unlock()
			if fail {
				return errors.New("etcd down")
			}
			got = append(got, r)
			return nil
		}, func(s string) { sheds = append(sheds, s) }, slog.New(slog.DiscardHandler))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); v.run(ctx) }()
		count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }

		v.add("/a")
		synctest.Wait()
		if count() != 1 {
			t.Fatalf("first invalidation: %d appends, want 1 at once", count())
		}
		for range 1000 {
			v.add("/a")
		}
		synctest.Wait()
		if count() != 1 {
			t.Fatalf("within the interval: %d appends, want still 1", count())
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if count() != 2 {
			t.Fatalf("after the interval: %d appends, want 2 (the flood coalesced into one)", count())
		}

		// Overflow: more distinct paths than fit, while the loop waits out
		// its interval, become one soft purge-all next to the first batch.
		time.Sleep(time.Second)
		v.add("/x")
		synctest.Wait()
		for i := range invalidatorMaxPending + 10 {
			v.add(fmt.Sprintf("/p/%d", i))
		}
		time.Sleep(time.Second)
		synctest.Wait()
		mu.Lock()
		last := got[len(got)-1]
		n := len(got)
		mu.Unlock()
		if n != 3+invalidatorBatch+1 || !last.All || !last.Soft {
			t.Fatalf("overflow: %d appends (last %+v), want %d keys then one soft purge-all", n, last, invalidatorBatch)
		}
		if len(sheds) == 0 || sheds[0] != "invalidate_overflow" {
			t.Errorf("overflow not counted: %v", sheds)
		}
		// Drain the rest: one batch per interval.
		rounds := (invalidatorMaxPending - invalidatorBatch + invalidatorBatch - 1) / invalidatorBatch
		time.Sleep(time.Duration(rounds) * time.Second)
		synctest.Wait()
		if c := count(); c != 3+invalidatorMaxPending+1 {
			t.Fatalf("after draining: %d appends, want %d", c, 3+invalidatorMaxPending+1)
		}

		// etcd down: kept and retried, not lost.
		time.Sleep(time.Second)
		mu.Lock()
		fail = true
		mu.Unlock()
		v.add("/late")
		synctest.Wait()
		mu.Lock()
		fail = false
		mu.Unlock()
		time.Sleep(time.Second)
		synctest.Wait()
		mu.Lock()
		last = got[len(got)-1]
		mu.Unlock()
		if last.Key != "/late" {
			t.Errorf("a failed append was not retried: last %+v", last)
		}
		cancel()
		<-done
	})
}

// TestUnsafeInvalidatesReplicaSetFirst (RFC 9111 §4.4; issue 9: the same
// answer every run): a successful unsafe request is answered only once the
// key's replica set has dropped the key, so the client's next GET, through
// the same router or another, misses, whether or not the purge log has
// reached the owner. The log is held back here (one append per hour, the
// first spent on another URL), so only the peer invalidation can drop the
// owner's copy; a safe method drops nothing.
func TestUnsafeInvalidatesReplicaSetFirst(t *testing.T) {
	tc, eo := newEchoCluster(t, 3, func(c *Config) { c.InvalidateInterval = time.Hour })
	for _, tt := range []struct {
		name    string
		method  string
		via     int // the node that takes the write (the GETs go through node 0)
		dropped bool
	}{
		{"POST through the same router", http.MethodPost, 0, true},
		{"DELETE through another router", http.MethodDelete, 1, true},
		{"unknown method M-SEARCH", "M-SEARCH", 0, true},
		{"OPTIONS is safe", http.MethodOptions, 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path, _ := tc.pathOwnedElsewhere(0, "/ryw/"+strings.ReplaceAll(tt.name, " ", "-")+"/")
			// The one append the interval allows goes to another URL first.
			if s := tc.send(http.MethodPost, tc.url(0, path+"-spent")); s != 200 {
				t.Fatalf("POST elsewhere: %d", s)
			}
			tc.send(http.MethodGet, tc.url(0, path))
			tc.send(http.MethodGet, tc.url(0, path))
			if got := eo.gets(path); got != 1 {
				t.Fatalf("warm-up: %d origin GETs, want 1 (the second from the owner's copy)", got)
			}
			if s := tc.send(tt.method, tc.url(tt.via, path)); s != 200 {
				t.Fatalf("%s: %d", tt.method, s)
			}
			tc.send(http.MethodGet, tc.url(0, path))
			want := 1
			if tt.dropped {
				want = 2
			}
			if got := eo.gets(path); got != want {
				t.Errorf("GET right after %s: %d origin GETs in all, want %d", tt.method, got, want)
			}
		})
	}
	sent := 0.0
	for _, nd := range tc.nodes {
		sent += counterValue(nd.m.peerInvalidations.WithLabelValues("sent", "dropped"))
	}
	if sent == 0 {
		t.Error("crowdpilot_peer_invalidations_total{direction=sent,result=dropped} stayed 0")
	}
}

// TestPeerInvalidationProof: a peer invalidation is honoured only with a
// hop proof made for it (method INVALIDATE and the key): a client's
// invalidation mark, a GET's captured proof with the mark added, and an
// invalidation's proof without the mark are all served as a client's GET,
// and the owner's copy stays.
func TestPeerInvalidationProof(t *testing.T) {
	tc, eo := newEchoCluster(t, 3, nil)
	path, owner := tc.pathOwnedElsewhere(0, "/inv-proof/")
	own := tc.nodes[owner]
	tc.send(http.MethodGet, tc.url(owner, path))
	req, _ := http.NewRequest(http.MethodGet, tc.url(owner, path), nil)
	key, err := own.baseKey(req)
	if err != nil {
		t.Fatal(err)
	}
	send := func(mark bool, proof string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, tc.url(owner, path), nil)
		if mark {
			req.Header.Set(invalidateHeader, "1")
		}
		if proof != "" {
			req.Header.Set(route.HopHeader, proof)
		}
		status, _, _ := tc.do(req)
		return status
	}
	for _, tt := range []struct {
		name  string
		mark  bool
		proof string
	}{
		{"a client's mark", true, ""},
		{"a GET's proof with the mark", true, own.hop.proof(http.MethodGet, key, time.Now())},
		{"an invalidation's proof without the mark", false, own.hop.proof(invalidateMethod, key, time.Now())},
		{"an invalidation's proof for another key", true, own.hop.proof(invalidateMethod, key+"x", time.Now())},
	} {
		if s := send(tt.mark, tt.proof); s != http.StatusOK {
			t.Errorf("%s: status %d, want 200 (served as a client's GET)", tt.name, s)
		}
		if got := eo.gets(path); got != 1 {
			t.Fatalf("%s: the owner's copy was dropped (%d origin GETs)", tt.name, got)
		}
	}
	if s := send(true, own.hop.proof(invalidateMethod, key, time.Now())); s != http.StatusNoContent {
		t.Fatalf("a real invalidation: status %d, want 204", s)
	}
	tc.send(http.MethodGet, tc.url(owner, path))
	if got := eo.gets(path); got != 2 {
		t.Errorf("after a real invalidation: %d origin GETs, want 2", got)
	}
}
