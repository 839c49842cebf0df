package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/capacity"
	"github.com/crowdpilot/crowdpilot/internal/cluster"
	"github.com/crowdpilot/crowdpilot/internal/demo"
	"github.com/crowdpilot/crowdpilot/internal/tenant"
	"github.com/crowdpilot/crowdpilot/internal/testwait"
)

func intp(v int) *int { return &v }

func TestEffectiveTenant(t *testing.T) {
	decl := tenant.Tenant{Name: "a", Min: intp(2), Max: intp(6), Labels: map[string]string{"hw": "x"}, Pin: []string{"n1"}}
	tests := []struct {
		name string
		rec  cluster.TenantRecord
		want string
	}{
		{"no record: min", cluster.TenantRecord{}, "size 2 min 2 max 6 labels map[hw:x] pin [n1]"},
		{"size", cluster.TenantRecord{Size: 4}, "size 4 min 2 max 6 labels map[hw:x] pin [n1]"},
		{"size clamped to max", cluster.TenantRecord{Size: 9}, "size 6 min 2 max 6 labels map[hw:x] pin [n1]"},
		{"min override lifts size", cluster.TenantRecord{Size: 2, Min: intp(3)}, "size 3 min 3 max 6 labels map[hw:x] pin [n1]"},
		{"max override", cluster.TenantRecord{Size: 6, Max: intp(5)}, "size 5 min 2 max 5 labels map[hw:x] pin [n1]"},
		{"isolation cleared", cluster.TenantRecord{Labels: &map[string]string{}, Pin: &[]string{}}, "size 2 min 2 max 6 labels map[] pin []"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := effective(decl, tt.rec)
			got := fmt.Sprintf("size %d min %d max %d labels %v pin %v", e.Size, e.Min, *e.Max, e.Labels, e.Pin)
			if got != tt.want {
				t.Errorf("effective = %s, want %s", got, tt.want)
			}
		})
	}
	noMax := tenant.Tenant{Name: "b"}
	if e := effective(noMax, cluster.TenantRecord{Size: 40}); e.Size != 40 || e.Max != nil || e.Min != tenant.DefaultMin {
		t.Errorf("no max: %+v", e)
	}
}

// TestTenantsAdmin: an operator's PUT reaches etcd, every node's router
// gives the tenant that many nodes, bad input changes nothing, and the
// token is required.
func TestTenantsAdmin(t *testing.T) {
	decl, err := tenant.Parse([]byte(`
tenants:
  a: {hosts: [a.example], min: 1, max: 3}
  b: {hosts: [b.example]}
`))
	if err != nil {
		t.Fatal(err)
	}
	tc := newTestCluster(t, 4, demo.Config{Latency: time.Millisecond}, func(c *Config) { c.Tenants = decl })
	setSize := func(tenant string, want int) func() string {
		return func() string {
			for _, nd := range tc.nodes {
				if got, _ := nd.router.TenantPeers(tenant); len(got) != want {
					return fmt.Sprintf("%s routes %s to %v, want %d nodes", nd.ID(), tenant, got, want)
				}
			}
			return ""
		}
	}
	// Declared tenants start at their min; b's default min is 3.
	eventually(t, 10*time.Second, setSize("a", 1))
	eventually(t, 10*time.Second, setSize("b", 3))

	put := func(token, body string) (int, string) {
		return tc.call(http.MethodPut, tc.admin(0, "/api/v1/tenants/a"), token, body)
	}
	if code, body := put("", `{"size": 2}`); code != http.StatusUnauthorized {
		t.Fatalf("PUT without token = %d %s", code, body)
	}
	code, body := put("secret", `{"size": 3, "hold": true, "reason": "ticket sale"}`)
	if code != http.StatusOK || !strings.Contains(body, `"size": 3`) {
		t.Fatalf("PUT size 3 = %d %s", code, body)
	}
	eventually(t, 10*time.Second, setSize("a", 3))

	for _, bad := range []struct{ body, want string }{
		{`{"size": 0}`, "at least 1"},
		{`{"size": 4}`, "above max 3"},
		{`{"max": 0}`, "below min"},
		{`{"min": 0}`, "at least 1"},
		{`{"sise": 2}`, "unknown field"},
		{`{}`, "no field"},
		{`not json`, "JSON object"},
		{`{"pin": ["n1"], "exclude": ["n1"]}`, "both pinned and excluded"},
		{`{"size": null}`, "hold needs a size"},
	} {
		code, body := put("secret", bad.body)
		if code != http.StatusBadRequest || !strings.Contains(body, bad.want) {
			t.Errorf("PUT %s = %d %s, want 400 about %q", bad.body, code, body, bad.want)
		}
	}
	if code, _ := tc.call(http.MethodPut, tc.admin(1, "/api/v1/tenants/zzz"), "secret", `{"size": 1}`); code != http.StatusNotFound {
		t.Errorf("PUT of an undeclared tenant = %d, want 404", code)
	}
	// Nothing the bad requests sent was written.
	rec, ok, err := cluster.NewTenantStore(tc.nodes[0].etcd, tc.nodes[0].cfg.Cluster, tc.nodes[0].records).Get(t.Context(), "a")
	if err != nil || !ok || rec.Size != 3 || !rec.Hold || rec.Reason != "ticket sale" || rec.Pin != nil || rec.Max != nil {
		t.Fatalf("record after bad requests = %+v, %v, %v", rec, ok, err)
	}

	// Another node answers GET with the same set it routes by.
	code, body = tc.call(http.MethodGet, tc.admin(2, "/api/v1/tenants/a"), "", "")
	var v struct {
		Size  int      `json:"size"`
		Hold  bool     `json:"hold"`
		Nodes []string `json:"nodes"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &v) != nil || v.Size != 3 || !v.Hold || len(v.Nodes) != 3 {
		t.Fatalf("GET a = %d %s", code, body)
	}
	want, _ := tc.nodes[2].router.TenantPeers("a")
	if !slices.Equal(v.Nodes, want) {
		t.Errorf("GET nodes %v, router %v", v.Nodes, want)
	}
	code, body = tc.call(http.MethodGet, tc.admin(1, "/api/v1/tenants"), "", "")
	if code != http.StatusOK || !strings.Contains(body, `"name": "a"`) || !strings.Contains(body, `"name": "b"`) {
		t.Errorf("GET /api/v1/tenants = %d %s", code, body)
	}
	if code, _ := tc.call(http.MethodGet, tc.admin(1, "/api/v1/tenants/zzz"), "", ""); code != http.StatusNotFound {
		t.Errorf("GET of an undeclared tenant = %d, want 404", code)
	}

	// Exclude a member of the set: the set moves off it on every node.
	victim := want[0]
	code, body = put("secret", fmt.Sprintf(`{"exclude": [%q]}`, victim))
	if code != http.StatusOK {
		t.Fatalf("PUT exclude = %d %s", code, body)
	}
	eventually(t, 10*time.Second, func() string {
		for _, nd := range tc.nodes {
			if got, _ := nd.router.TenantPeers("a"); slices.Contains(got, victim) || len(got) != 3 {
				return fmt.Sprintf("%s routes a to %v, want 3 nodes without %s", nd.ID(), got, victim)
			}
		}
		return ""
	})
	// Lowering the max below the size carries the size down.
	if code, body := put("secret", `{"max": 2}`); code != http.StatusOK || !strings.Contains(body, `"size": 2`) {
		t.Fatalf("PUT max 2 = %d %s", code, body)
	}
	eventually(t, 10*time.Second, setSize("a", 2))
	// null clears the override: back to the declaration.
	if code, body := put("secret", `{"exclude": null, "hold": false, "size": null, "max": null}`); code != http.StatusOK {
		t.Fatalf("PUT clear = %d %s", code, body)
	}
	eventually(t, 10*time.Second, setSize("a", 1))
}

// TestNoTenantsNoTenantState: without --tenants the node neither watches
// tenant records nor answers for tenants.
func TestNoTenantsNoTenantState(t *testing.T) {
	tc := newTestCluster(t, 1, demo.Config{Latency: time.Millisecond}, nil)
	code, body := tc.call(http.MethodGet, tc.admin(0, "/api/v1/tenants"), "", "")
	if code != http.StatusOK || !strings.Contains(body, `"tenants": []`) {
		t.Errorf("GET /api/v1/tenants = %d %s", code, body)
	}
	if code, _ := tc.call(http.MethodPut, tc.admin(0, "/api/v1/tenants/a"), "secret", `{"size": 1}`); code != http.StatusNotFound {
		t.Errorf("PUT without tenants = %d, want 404", code)
	}
}

// TestCapacityManagerOnLeader: the autopilot leader runs the capacity
// manager, which gives a cold tenant's nodes back down to its min (under
// the fence, in etcd) and every router follows; its events reach any node.
func TestCapacityManagerOnLeader(t *testing.T) {
	decl, err := tenant.Parse([]byte("tenants: {a: {hosts: [a.example], min: 1}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	pc := capacity.DefaultConfig()
	pc.ShrinkHold, pc.ShrinkInterval, pc.Cooldown = 0, 0, 0
	tc := newTestCluster(t, 3, demo.Config{Latency: time.Millisecond}, func(c *Config) {
		c.Tenants, c.Capacity = decl, &pc
	})
	eventually(t, 10*time.Second, func() string {
		for _, nd := range tc.nodes {
			if nd.ap.election.IsLeader() {
				return ""
			}
		}
		return "no leader yet"
	})
	// An operator gives tenant a three nodes without holding the size.
	if code, body := tc.call(http.MethodPut, tc.admin(0, "/api/v1/tenants/a"), "secret", `{"size": 3}`); code != http.StatusOK {
		t.Fatalf("PUT = %d %s", code, body)
	}
	// Nodes report no CPU here (one process) and shed nothing: a is cold,
	// and the leader steps it down to its min.
	store := cluster.NewTenantStore(tc.nodes[0].etcd, tc.nodes[0].cfg.Cluster, tc.nodes[0].records)
	eventually(t, 20*time.Second, func() string {
		rec, _, err := store.Get(t.Context(), "a")
		if err != nil || rec.Size != 1 || rec.By != "capacity" {
			return fmt.Sprintf("record %+v, %v; want size 1 by the capacity manager", rec, err)
		}
		for _, nd := range tc.nodes {
			if got, _ := nd.router.TenantPeers("a"); len(got) != 1 {
				return fmt.Sprintf("%s routes a to %v", nd.ID(), got)
			}
		}
		return ""
	})
	for i := range tc.nodes {
		code, body := tc.call(http.MethodGet, tc.admin(i, "/api/v1/capacity/events"), "", "")
		if code != http.StatusOK || !strings.Contains(body, `"action": "shrink"`) || !strings.Contains(body, "cold") ||
			!strings.Contains(body, `"action": "operator"`) {
			t.Errorf("node %d: GET /api/v1/capacity/events = %d %s", i, code, body)
		}
	}
	code, body := tc.call(http.MethodGet, tc.admin(0, "/metrics"), "", "")
	if code != http.StatusOK || !strings.Contains(body, `crowdpilot_tenant_nodes{tenant="a"} 1`) {
		t.Errorf("metrics: no crowdpilot_tenant_nodes for a at 1")
	}
	// A held size stays.
	if code, body := tc.call(http.MethodPut, tc.admin(1, "/api/v1/tenants/a"), "secret", `{"size": 2, "hold": true}`); code != http.StatusOK {
		t.Fatalf("PUT hold = %d %s", code, body)
	}
	eventually(t, 10*time.Second, func() string {
		if got, _ := tc.nodes[2].router.TenantPeers("a"); len(got) != 2 {
			return fmt.Sprintf("n2 routes a to %v, want 2 nodes", got)
		}
		return ""
	})
	testwait.Holds(t, 2*time.Second, "the held size", func() bool {
		rec, _, err := store.Get(t.Context(), "a")
		return err == nil && rec.Size == 2 && rec.Hold
	})
}

// TestTenantIsolationOnLabels: a tenant isolated on a label uses only the
// nodes started with it (--labels), on every router, and an operator can
// lift or change the isolation.
func TestTenantIsolationOnLabels(t *testing.T) {
	decl, err := tenant.Parse([]byte(`
tenants:
  whale: {hosts: [whale.example], min: 2, labels: {hw: dedicated}}
  small: {hosts: [small.example], min: 2}
`))
	if err != nil {
		t.Fatal(err)
	}
	tc := newTestCluster(t, 5, demo.Config{Latency: time.Millisecond}, func(c *Config) {
		c.Tenants, c.DisableAutopilot = decl, true
		if c.ID == "n3" || c.ID == "n4" {
			c.Labels = map[string]string{"hw": "dedicated"}
		}
	})
	routes := func(tenant string, want func([]string) bool) func() string {
		return func() string {
			for _, nd := range tc.nodes {
				if got, _ := nd.router.TenantPeers(tenant); !want(got) {
					return fmt.Sprintf("%s routes %s to %v", nd.ID(), tenant, got)
				}
			}
			return ""
		}
	}
	eventually(t, 10*time.Second, routes("whale", func(got []string) bool { return slices.Equal(got, []string{"n3", "n4"}) }))
	// The operator moves the whale to other hardware: no node has it yet,
	// so it falls back to every node (and says so).
	if code, body := tc.call(http.MethodPut, tc.admin(0, "/api/v1/tenants/whale"), "secret", `{"labels": {"hw": "gpu"}}`); code != http.StatusOK {
		t.Fatalf("PUT labels = %d %s", code, body)
	}
	eventually(t, 10*time.Second, routes("whale", func(got []string) bool { return len(got) == 5 }))
	if _, body := tc.call(http.MethodGet, tc.admin(1, "/api/v1/tenants/whale"), "", ""); !strings.Contains(body, `"fallback": true`) {
		t.Errorf("GET whale: %s, want fallback", body)
	}
	// Lifting the isolation: any two nodes.
	if code, body := tc.call(http.MethodPut, tc.admin(0, "/api/v1/tenants/whale"), "secret", `{"labels": {}}`); code != http.StatusOK {
		t.Fatalf("PUT labels {} = %d %s", code, body)
	}
	eventually(t, 10*time.Second, routes("whale", func(got []string) bool { return len(got) == 2 }))
}

// TestCapacityGrowsHotTenant: a crowd on tenant a makes a's nodes shed;
// their tenant load reports name a, the leader grows a's set on the
// schedule, b's set does not move, and after the crowd a goes back to its
// min.
func TestCapacityGrowsHotTenant(t *testing.T) {
	decl, err := tenant.Parse([]byte(`
tenants:
  a: {hosts: [a.example], min: 2}
  b: {hosts: [b.example], min: 2}
`))
	if err != nil {
		t.Fatal(err)
	}
	pc := capacity.DefaultConfig()
	pc.GrowInterval, pc.NodeAskInterval, pc.Cooldown = 500*time.Millisecond, 200*time.Millisecond, 0
	pc.ShrinkHold, pc.ShrinkInterval = 2*time.Second, 500*time.Millisecond
	tc := newTestCluster(t, 5, demo.Config{Latency: 100 * time.Millisecond, Capacity: 64}, func(c *Config) {
		c.Tenants, c.Capacity, c.MaxInflight = decl, &pc, 4
	})
	eventually(t, 10*time.Second, func() string {
		for _, nd := range tc.nodes {
			if a, _ := nd.router.TenantPeers("a"); len(a) != 2 {
				return fmt.Sprintf("%s routes a to %v", nd.ID(), a)
			}
		}
		return ""
	})
	setA, _ := tc.nodes[0].router.TenantPeers("a")
	setB, _ := tc.nodes[0].router.TenantPeers("b")
	entry := map[string]int{}
	for i, nd := range tc.nodes {
		entry[nd.ID()] = i
	}
	// The crowd: uncacheable paths (each a new key) for a, at a's two
	// entry nodes, far more at once than their 4 in-flight slots.
	crowd := testwait.Go(t, func(ctx context.Context) error {
		var wg sync.WaitGroup
		for w := range 24 {
			wg.Go(func() {
				for i := 0; ctx.Err() == nil; i++ {
					url := tc.url(entry[setA[w%2]], fmt.Sprintf("/crowd/%d/%d?nocache", w, i))
					req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
					req.Host = "a.example"
					if resp, err := tc.client.Do(req); err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}
			})
		}
		wg.Wait()
		return nil
	})
	store := cluster.NewTenantStore(tc.nodes[0].etcd, tc.nodes[0].cfg.Cluster, tc.nodes[0].records)
	eventually(t, 20*time.Second, func() string {
		rec, _, err := store.Get(t.Context(), "a")
		if err != nil || rec.Size < 3 || rec.By != "capacity" || !strings.Contains(rec.Reason, "shedding") {
			return fmt.Sprintf("a's record %+v, %v; want grown by the capacity manager on shedding", rec, err)
		}
		return ""
	})
	crowd.Stop(t)
	for _, nd := range tc.nodes {
		if got, _ := nd.router.TenantPeers("b"); !slices.Equal(got, setB) {
			t.Errorf("%s: b's set moved %v -> %v", nd.ID(), setB, got)
		}
	}
	if rec, _, _ := store.Get(t.Context(), "b"); rec.Size != 0 {
		t.Errorf("b's record %+v, want none", rec)
	}
	// After the crowd a is cold and goes back to its min.
	eventually(t, 20*time.Second, func() string {
		rec, _, err := store.Get(t.Context(), "a")
		if err != nil || rec.Size != 2 {
			return fmt.Sprintf("a's record %+v, %v; want back at 2", rec, err)
		}
		return ""
	})
	code, body := tc.call(http.MethodGet, tc.admin(3, "/api/v1/capacity/events"), "", "")
	if code != http.StatusOK || !strings.Contains(body, `"action": "grow"`) || !strings.Contains(body, `"action": "shrink"`) {
		t.Errorf("events = %d %s", code, body)
	}
}

// TestTenantKeysOwnedWithinTheirSet: with two tenants of 3 nodes each on a
// 6-node cluster, every object of a tenant is owned, filled and served
// within the tenant's own set, whichever node the request enters at, and
// still costs the origin one fetch.
func TestTenantKeysOwnedWithinTheirSet(t *testing.T) {
	decl, err := tenant.Parse([]byte(`
tenants:
  a: {paths: [/a/], min: 3}
  b: {paths: [/b/], min: 3}
`))
	if err != nil {
		t.Fatal(err)
	}
	tc := newTestCluster(t, 6, demo.Config{Latency: time.Millisecond, MaxAge: time.Minute}, func(c *Config) {
		c.Tenants = decl
		c.DisableAutopilot = true  // no leased replicas
		c.NearCopy.Disabled = true // no near copies: every answer comes from the owner's store
	})
	sets := map[string][]string{}
	eventually(t, 10*time.Second, func() string {
		for _, name := range []string{"a", "b"} {
			for _, nd := range tc.nodes {
				if s, _ := nd.router.TenantPeers(name); len(s) != 3 {
					return fmt.Sprintf("%s routes %s to %v", nd.ID(), name, s)
				}
			}
			sets[name], _ = tc.nodes[0].router.TenantPeers(name)
		}
		return ""
	})
	for _, name := range []string{"a", "b"} {
		for obj := range 20 {
			path := fmt.Sprintf("/%s/obj-%d", name, obj)
			for i := range tc.nodes {
				s, _, h, err := tc.get(tc.url(i, path))
				if err != nil || s != 200 {
					t.Fatalf("%s via n%d: %d %v", path, i, s, err)
				}
				if by := h.Get("X-Served-By"); !slices.Contains(sets[name], by) {
					t.Errorf("%s via n%d served by %s, outside tenant %s's set %v", path, i, by, name, sets[name])
				}
			}
			if got := tc.origin.FetchesOf(path); got != 1 {
				t.Errorf("%s: %d origin fetches over 6 entry nodes, want 1", path, got)
			}
		}
	}
}
