package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/crowdpilot/crowdpilot/internal/autopilot"
	"github.com/crowdpilot/crowdpilot/internal/cluster"
	"github.com/crowdpilot/crowdpilot/internal/demo"
)

// adminPost sends a purge request to node i's admin listener.
func (tc *testCluster) adminPost(i int, token, body string) (int, map[string]any) {
	tc.t.Helper()
	return tc.adminPostTo(tc.nodes[i].AdminAddr(), token, body)
}

// adminPostTo sends a purge request to an admin address.
func (tc *testCluster) adminPostTo(addr, token, body string) (int, map[string]any) {
	tc.t.Helper()
	req, err := http.NewRequest("POST", "http://"+addr+"/api/v1/purge", strings.NewReader(body))
	if err != nil {
		tc.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := tc.client.Do(req)
	if err != nil {
		tc.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// version reads the object's version as served through node i.
func (tc *testCluster) version(i int, path string) int {
	tc.t.Helper()
	s, b, _, err := tc.get(tc.url(i, path))
	if err != nil || s != 200 {
		tc.t.Fatalf("GET %s via n%d: %d %v", path, i, s, err)
	}
	v, ok := parseVersion(b)
	if !ok {
		tc.t.Fatalf("no version in %q", b)
	}
	return v
}

func parseVersion(body string) (int, bool) {
	i := strings.Index(body, "version=")
	if i < 0 {
		return 0, false
	}
	var v int
	_, err := fmt.Sscanf(body[i:], "version=%d", &v)
	return v, err == nil
}

// TestPurgeTagWaitsForEveryNode: a tag purge with wait returns once every
// node applied it, and no node serves the old body afterwards.
func TestPurgeTagWaitsForEveryNode(t *testing.T) {
	tc := newTestCluster(t, 3, demo.Config{Latency: time.Millisecond, MaxAge: time.Hour}, nil)
	paths := []string{"/live/match-1", "/live/ticker", "/live/blog"}
	for _, p := range paths {
		for i := range 3 {
			if v := tc.version(i, p); v != 0 {
				t.Fatalf("initial version %d", v)
			}
		}
		tc.origin.Update(p)
	}
	// Cached for an hour: still version 0 everywhere.
	for _, p := range paths {
		if v := tc.version(1, p); v != 0 {
			t.Fatalf("%s served version %d before the purge, want the cached 0", p, v)
		}
	}
	code, out := tc.adminPost(2, "secret", `{"tag": "live", "wait": "5s"}`)
	if code != 200 || out["complete"] != true {
		t.Fatalf("purge: %d %v", code, out)
	}
	if applied, _ := out["applied"].([]any); len(applied) != 3 {
		t.Fatalf("applied on %v, want all 3 nodes", out["applied"])
	}
	for _, p := range paths {
		for i := range 3 {
			if v := tc.version(i, p); v != 1 {
				t.Errorf("%s via n%d: version %d after the acknowledged purge, want 1", p, i, v)
			}
		}
	}
}

// TestUnsafeMethodInvalidatesEverywhere: a POST through a node that does
// not own the URL invalidates the owner's copy too (RFC 9111 §4.4).
func TestUnsafeMethodInvalidatesEverywhere(t *testing.T) {
	tc := newTestCluster(t, 3, demo.Config{Latency: time.Millisecond, MaxAge: time.Hour}, nil)
	const p = "/live/score"
	if v := tc.version(0, p); v != 0 {
		t.Fatal(v)
	}
	tc.origin.Update(p)
	for i := range 3 {
		resp, err := tc.client.Post(tc.url(i, p), "text/plain", strings.NewReader("goal"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("POST via n%d: %d", i, resp.StatusCode)
		}
	}
	eventually(t, 5*time.Second, func() string {
		for i := range 3 {
			if v := tc.version(i, p); v != 1 {
				return fmt.Sprintf("n%d still serves version %d", i, v)
			}
		}
		return ""
	})
}

// TestPurgeBadInput: refused requests change nothing.
func TestPurgeBadInput(t *testing.T) {
	tc := newTestCluster(t, 2, demo.Config{Latency: time.Millisecond, MaxAge: time.Hour}, nil)
	const p = "/live/x"
	tc.version(0, p)
	tc.origin.Update(p)
	before := tc.nodes[0].follower.Applied()
	tests := []struct {
		name, token, body string
		want              int
	}{
		{"no token", "", `{"tag":"live"}`, 401},
		{"wrong token", "nope", `{"tag":"live"}`, 401},
		{"malformed", "secret", `{"tag":`, 400},
		{"two targets", "secret", `{"tag":"live","all":true}`, 400},
		{"unknown field", "secret", `{"tags":"live"}`, 400},
		{"bad wait", "secret", `{"tag":"live","wait":"forever"}`, 400},
		{"oversized", "secret", `{"tag":"` + strings.Repeat("x", 64<<10) + `"}`, 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := tc.adminPost(0, tt.token, tt.body)
			if code != tt.want || out["error"] == nil {
				t.Errorf("status %d body %v, want %d with an error message", code, out, tt.want)
			}
		})
	}
	if got := tc.nodes[0].follower.Applied(); got != before {
		t.Errorf("applied revision moved from %d to %d", before, got)
	}
	if v := tc.version(1, p); v != 0 {
		t.Errorf("cached copy was purged by a refused request: version %d", v)
	}
}

// TestPurgeReachesReplicas: with one object held by a replica (registered
// directly, as the actuator would), an acknowledged purge leaves no node —
// owner, replica or router — serving the old body, and the replica refills
// from the owner, not from the origin.
func TestPurgeReachesReplicas(t *testing.T) {
	tc := newTestCluster(t, 3, demo.Config{Latency: time.Millisecond, MaxAge: time.Hour}, func(c *Config) {
		c.DisableAutopilot = true // the replica below is the only one
	})
	const p = "/live/match-1234"
	hash := tc.hashOf(p)
	owner, _ := tc.nodes[0].router.Owner(hash)
	var replica string
	for _, nd := range tc.nodes {
		if nd.ID() != owner.ID {
			replica = nd.ID()
			break
		}
	}
	cli, err := cluster.NewClient(cluster.ClientConfig{Endpoints: []string{tc.etcd.ClientURL()}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	lease, err := cli.Grant(t.Context(), 60)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := json.Marshal(autopilot.Record{Key: tc.key(p), Owner: owner.ID, Reason: "test", Since: time.Now(), TTL: time.Minute})
	rkey := autopilot.ReplicaKey("default", hash, replica)
	sealed := tc.nodes[0].records.Seal(rkey, int64(lease.ID), rec) // as the leader writes it
	if _, err := cli.Put(t.Context(), rkey, string(sealed), clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() string {
		for _, nd := range tc.nodes {
			if r := nd.router.Replicas(hash); len(r) != 1 || r[0] != replica {
				return fmt.Sprintf("%s routes to replicas %v", nd.ID(), r)
			}
		}
		return ""
	})
	// Warm every member of R(k): requests entering at each node.
	servedBy := map[string]bool{}
	for range 40 {
		for i := range 3 {
			_, _, h, err := tc.get(tc.url(i, p))
			if err != nil {
				t.Fatal(err)
			}
			servedBy[h.Get("X-Served-By")] = true
		}
	}
	if !servedBy[replica] || !servedBy[owner.ID] {
		t.Fatalf("served by %v, want the owner %s and the replica %s", servedBy, owner.ID, replica)
	}
	if got := tc.origin.FetchesOf(p); got != 1 {
		t.Fatalf("origin fetched %s %d times, want 1 (the replica fills from the owner)", p, got)
	}
	tc.origin.Update(p)
	code, out := tc.adminPost(0, "secret", `{"tag": "live", "wait": "5s"}`)
	if code != 200 || out["complete"] != true {
		t.Fatalf("purge: %d %v", code, out)
	}
	for range 20 {
		for i := range 3 {
			_, b, h, err := tc.get(tc.url(i, p))
			if err != nil {
				t.Fatal(err)
			}
			if v, _ := parseVersion(b); v != 1 {
				t.Fatalf("via n%d, served by %s: version %d after the acknowledged purge, want 1", i, h.Get("X-Served-By"), v)
			}
		}
	}
}

// TestCutOffNodeStopsTrustingItsCache: with etcd (and so the purge log)
// unreachable for longer than the bound, cached entries are served only as
// stale while they are revalidated, so a purge the node may have missed
// cannot hide for a whole TTL.
func TestCutOffNodeStopsTrustingItsCache(t *testing.T) {
	clock := newTestClock()
	tc := newTestCluster(t, 1, demo.Config{Latency: time.Millisecond, MaxAge: time.Hour, Now: clock.Now}, func(c *Config) {
		c.PurgeMaxDisconnect = 2 * time.Second
		c.Now = clock.Now
	})
	const p = "/live/cut-off"
	if v := tc.version(0, p); v != 0 {
		t.Fatal(v)
	}
	tc.etcd.Close()
	tc.origin.Update(p) // a purge for this would be lost: etcd is gone
	// Within the bound the node still trusts its copy.
	if _, _, h, _ := tc.get(tc.url(0, p)); strings.Contains(cacheStatus(h), "stale") {
		t.Fatalf("served stale while still within the bound: %q", cacheStatus(h))
	}
	clock.Advance(3 * time.Second)
	eventually(t, 10*time.Second, func() string {
		if tc.nodes[0].follower.Connected() {
			return "follower still reports a connection"
		}
		return ""
	})
	_, b, h, err := tc.get(tc.url(0, p))
	if err != nil || !strings.Contains(cacheStatus(h), "detail=stale") {
		t.Fatalf("cut off past the bound: Cache-Status %q (body %q, err %v), want a stale answer", cacheStatus(h), b, err)
	}
	// The refresh it started brings the new version without any purge.
	eventually(t, 5*time.Second, func() string {
		if v := tc.version(0, p); v != 1 {
			return fmt.Sprintf("still version %d", v)
		}
		return ""
	})
}

// TestUnrelatedPurgesLeaveACrowdAlone: while tag purges of other tags run
// at 100/s and POSTs to other URLs at 500/s, a cold crowd of 1,000
// concurrent requests still costs the origin exactly one fetch, and every
// request is answered with the object (issue 9: one node-wide purge epoch
// used to throw away every fill in flight, and the crowd got 503s).
func TestUnrelatedPurgesLeaveACrowdAlone(t *testing.T) {
	tc := newTestCluster(t, 3, demo.Config{Latency: 300 * time.Millisecond, MaxAge: time.Minute, Capacity: 4096},
		func(c *Config) { c.OriginTimeout = burstOriginTimeout })
	ctx, cancel := context.WithCancel(t.Context())
	var bg sync.WaitGroup
	var purges, posts atomic.Int64
	slots := make(chan struct{}, 256) // bounds the background requests in flight
	every := func(d time.Duration, f func(i int)) {
		bg.Add(1)
		go func() {
			defer bg.Done()
			tick := time.NewTicker(d)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				select {
				case slots <- struct{}{}:
				default:
					continue // the machine is behind; skip a beat
				}
				bg.Add(1)
				go func() {
					defer bg.Done()
					defer func() { <-slots }()
					f(i)
				}()
			}
		}()
	}
	every(10*time.Millisecond, func(i int) {
		if code, _ := tc.adminPost(i%3, "secret", fmt.Sprintf(`{"tag": "other-%d"}`, i)); code == 200 {
			purges.Add(1)
		}
	})
	every(2*time.Millisecond, func(i int) {
		resp, err := tc.client.Post(tc.url(i%3, fmt.Sprintf("/write/%d", i%50)), "text/plain", strings.NewReader("x"))
		if err == nil {
			resp.Body.Close()
			posts.Add(1)
		}
	})
	// Let the background traffic reach every node's purge log first.
	eventually(t, 10*time.Second, func() string {
		if purges.Load() < 5 || posts.Load() < 20 {
			return fmt.Sprintf("%d purges and %d POSTs so far", purges.Load(), posts.Load())
		}
		return ""
	})
	replies := tc.burst(1000, "/live/cold", all(3))
	cancel()
	bg.Wait()
	codes := map[int]int{}
	for _, r := range replies {
		codes[r.status]++
	}
	if codes[200] != 1000 {
		t.Errorf("replies by status %v, want 1000 × 200", codes)
	}
	if got := tc.origin.FetchesOf("/live/cold"); got != 1 {
		t.Errorf("origin fetches of the cold object = %d, want exactly 1 (%d unrelated purges, %d POSTs ran alongside)", got, purges.Load(), posts.Load())
	}
	t.Logf("%d unrelated tag purges and %d POSTs to other URLs ran alongside the crowd", purges.Load(), posts.Load())
}
