package node

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/demo"
	"github.com/crowdpilot/crowdpilot/internal/tenant"
)

// tenantHandoffCluster is a 6-node cluster where every handoff object
// (/obj/...) is tenant a's, a starting at min nodes: no autopilot (sizes
// change only as the test sets them, and no leased replicas) and no near
// copies (every request for a key reaches its owner in a's set).
func tenantHandoffCluster(t *testing.T, min int) *testCluster {
	t.Helper()
	decl, err := tenant.Parse(fmt.Appendf(nil, "tenants:\n  a: {paths: [/obj], min: %d}\n  b: {paths: [/b], min: 2}\n", min))
	if err != nil {
		t.Fatal(err)
	}
	tc := newTestCluster(t, 6, demo.Config{Latency: time.Millisecond, MaxAge: 300 * time.Second}, func(c *Config) {
		c.Tenants, c.DisableAutopilot, c.NearCopy.Disabled = decl, true, true
	})
	tc.waitTenantSet("a", min, tc.nodes...)
	return tc
}

// waitTenantSet waits until every given node routes tenant to the same
// set of want nodes, and returns it.
func (tc *testCluster) waitTenantSet(tenant string, want int, nodes ...*Node) []string {
	tc.t.Helper()
	return tc.waitTenantSetWithout(tenant, want, "", nodes...)
}

// waitTenantSetWithout is waitTenantSet for a set that must not hold the
// node gone ("" : any): until every node has seen a drain, some still
// route to the set from before it, which has the right size too.
func (tc *testCluster) waitTenantSetWithout(tenant string, want int, gone string, nodes ...*Node) []string {
	tc.t.Helper()
	var set []string
	eventually(tc.t, 15*time.Second, func() string {
		set, _ = nodes[0].router.TenantPeers(tenant)
		for _, nd := range nodes {
			if got, _ := nd.router.TenantPeers(tenant); len(got) != want || !slices.Equal(got, set) || gone != "" && slices.Contains(got, gone) {
				return fmt.Sprintf("%s routes %s to %v, want %d nodes without %q (as %s: %v)", nd.ID(), tenant, got, want, gone, nodes[0].ID(), set)
			}
		}
		return ""
	})
	return set
}

// ownsIn reports whether nd owns handoff object i within tenant's set as
// the router via routes it.
func ownsIn(t *testing.T, via *Node, tenant string, nd *Node, i int) bool {
	_, hash := objectHash(t, nd, i)
	o, _ := via.router.OwnerFor(tenant, hash)
	return o.ID == nd.ID()
}

// TestTenantGrowCostsNoOriginFetch: a tenant's set growing from K to K+1
// under load moves the keys the new node wins to it, filled from their
// previous owners: the origin sees no fetch for the 60 fresh objects, no
// request fails, and the new node serves every key it won.
func TestTenantGrowCostsNoOriginFetch(t *testing.T) {
	tc := tenantHandoffCluster(t, 2)
	before := tc.waitTenantSet("a", 2, tc.nodes...)
	tc.warm()
	l := tc.load(all(6))
	l.more(t, 300)

	// The size record the capacity manager writes, written by hand.
	if code, body := tc.call(http.MethodPut, tc.admin(0, "/api/v1/tenants/a"), "secret", `{"size": 3, "hold": true}`); code != http.StatusOK {
		t.Fatalf("PUT size 3 = %d %s", code, body)
	}
	after := tc.waitTenantSet("a", 3, tc.nodes...)
	var added []string
	for _, id := range after {
		if !slices.Contains(before, id) {
			added = append(added, id)
		}
	}
	if len(added) != 1 {
		t.Fatalf("set %v -> %v: want one node added", before, after)
	}
	nd := tc.nodeByID(added[0])
	l.more(t, 20*handoffObjects)
	l.end(t)

	if got := tc.origin.Fetches() - handoffObjects; got != 0 {
		t.Fatalf("growing tenant a cost %d origin fetches for fresh objects, want 0 (peeks of %s: %v)", got, nd.ID(), peekCounts(nd))
	}
	won := 0
	for i := range handoffObjects {
		if !ownsIn(t, tc.nodes[0], "a", nd, i) {
			continue
		}
		won++
		base, _ := objectHash(t, nd, i)
		if _, ok := nd.store.Get(base, http.Header{}); !ok {
			t.Errorf("%s owns %s but does not hold it", nd.ID(), base)
		}
		path := fmt.Sprintf("/obj/%d", i)
		if s, _, h, err := tc.get(tc.url(i%6, path)); err != nil || s != 200 || h.Get("X-Served-By") != nd.ID() {
			t.Errorf("%s via n%d: %d %v, served by %q, want the new owner %s", path, i%6, s, err, h.Get("X-Served-By"), nd.ID())
		}
	}
	t.Logf("set %v -> %v: %s won %d of %d keys; peeks %v", before, after, nd.ID(), won, handoffObjects, peekCounts(nd))
	if won == 0 {
		t.Fatalf("the new node won no key")
	}
	// Each key it won came from another node (no origin fetch, above),
	// mostly by its own peeks; under load a key can also reach it another
	// way first (a router's fill through it during the change), so the
	// peeks are not counted exactly.
	if held := counterValue(nd.ho.peeks.WithLabelValues("held")); held < 1 || int(held) > won {
		t.Errorf("%s filled %v keys from a previous owner by peeks, want 1 to the %d it won", nd.ID(), held, won)
	}
	if got := tc.origin.Fetches() - handoffObjects; got != 0 {
		t.Errorf("the checks cost %d origin fetches", got)
	}
}

// TestTenantDrainCostsNoOriginFetch: a member of a tenant's set drained
// (through the admin API, or by SIGTERM, under load or idle) leaves the
// set, another node takes its place, and the new owners of its keys fill
// them from it: no origin fetch for the fresh objects and no failed
// request.
func TestTenantDrainCostsNoOriginFetch(t *testing.T) {
	for _, tt := range []struct {
		name string
		api  bool // drained through POST /api/v1/drain; else Shutdown
		idle bool // no load: only the drain's hand-over moves the keys
	}{
		{name: "api", api: true},
		{name: "shutdown"},
		{name: "idle shutdown", idle: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tc := tenantHandoffCluster(t, 3)
			set := tc.waitTenantSet("a", 3, tc.nodes...)
			tc.warm()
			victim := tc.nodeByID(set[1])
			owned := 0
			for i := range handoffObjects {
				if ownsIn(t, tc.nodes[0], "a", victim, i) {
					owned++
				}
			}
			var rest []int
			var others []*Node
			for i, nd := range tc.nodes {
				if nd != victim {
					rest = append(rest, i)
					others = append(others, nd)
				}
			}
			var l *loadRun
			if !tt.idle {
				l = tc.load(rest) // the victim's keys reach it by forwards
				l.more(t, 300)
			}
			if tt.api {
				if code, body := tc.call(http.MethodPost, tc.admin(rest[0], "/api/v1/drain"), "secret", fmt.Sprintf(`{"node": %q}`, victim.ID())); code != http.StatusOK {
					t.Fatalf("drain %s = %d %s", victim.ID(), code, body)
				}
			} else if err := victim.Shutdown(context.Background()); err != nil {
				t.Fatalf("shutdown: %v", err)
			}
			after := tc.waitTenantSetWithout("a", 3, victim.ID(), others...)
			if slices.Contains(after, victim.ID()) {
				t.Fatalf("a's set %v still holds the drained %s", after, victim.ID())
			}
			if tt.api || tt.idle {
				// It handed every object it owned in a's set to the new
				// owner (Shutdown's drain has returned already).
				eventually(t, 10*time.Second, func() string {
					if got := counterValue(victim.ho.handed.WithLabelValues("ok")); int(got) != owned {
						return fmt.Sprintf("handed over %v objects (errors %v), want the %d it owned in a's set", got,
							counterValue(victim.ho.handed.WithLabelValues("error")), owned)
					}
					return ""
				})
			}
			if tt.idle {
				for i := range handoffObjects {
					path := fmt.Sprintf("/obj/%d", i)
					if s, _, _, err := tc.get(tc.url(rest[i%len(rest)], path)); err != nil || s != 200 {
						t.Fatalf("%s after the shutdown: %d %v", path, s, err)
					}
				}
			} else {
				l.more(t, 20*handoffObjects)
				l.end(t)
			}
			if got := tc.origin.Fetches() - handoffObjects; got != 0 {
				t.Fatalf("draining %s (set %v -> %v) cost %d origin fetches for fresh objects, want 0", victim.ID(), set, after, got)
			}
			if !tt.api {
				if q := counterValue(victim.ho.drains.WithLabelValues("quiet")); q != 1 {
					t.Errorf("drain did not end quiet: quiet=%v bound=%v", q, counterValue(victim.ho.drains.WithLabelValues("bound")))
				}
			}
			t.Logf("set %v -> %v; %s owned %d keys, handed %v over, answered %v peeks with a copy", set, after, victim.ID(), owned,
				counterValue(victim.ho.handed.WithLabelValues("ok")), counterValue(victim.ho.served.WithLabelValues("held")))
		})
	}
}

// TestTenantExcludeCostsNoOriginFetch: an operator excluding a member of a
// tenant's set under load moves its keys to the set's other nodes and the
// one that enters; the excluded node stays up (not draining) and only the
// router's memory of the set as it was names it: the new owners fill from
// it, with no origin fetch for the fresh objects and no failed request.
func TestTenantExcludeCostsNoOriginFetch(t *testing.T) {
	tc := tenantHandoffCluster(t, 3)
	set := tc.waitTenantSet("a", 3, tc.nodes...)
	tc.warm()
	l := tc.load(all(6))
	l.more(t, 300)

	out := tc.nodeByID(set[0])
	if code, body := tc.call(http.MethodPut, tc.admin(0, "/api/v1/tenants/a"), "secret", fmt.Sprintf(`{"exclude": [%q]}`, out.ID())); code != http.StatusOK {
		t.Fatalf("PUT exclude = %d %s", code, body)
	}
	eventually(t, 15*time.Second, func() string {
		for _, nd := range tc.nodes {
			if got, _ := nd.router.TenantPeers("a"); len(got) != 3 || slices.Contains(got, out.ID()) {
				return fmt.Sprintf("%s routes a to %v, want 3 nodes without %s", nd.ID(), got, out.ID())
			}
		}
		return ""
	})
	after, _ := tc.nodes[0].router.TenantPeers("a")
	l.more(t, 20*handoffObjects)
	l.end(t)
	if got := tc.origin.Fetches() - handoffObjects; got != 0 {
		t.Fatalf("excluding %s (set %v -> %v) cost %d origin fetches for fresh objects, want 0", out.ID(), set, after, got)
	}
	held := counterValue(out.ho.served.WithLabelValues("held"))
	t.Logf("set %v -> %v; the excluded %s answered %v peeks with a copy", set, after, out.ID(), held)
	if held == 0 {
		t.Errorf("the excluded node answered no peek with a copy")
	}
}
