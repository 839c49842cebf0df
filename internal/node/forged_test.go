package node

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/crowdpilot/crowdpilot/internal/cluster"
	"github.com/crowdpilot/crowdpilot/internal/demo"
	"github.com/crowdpilot/crowdpilot/internal/purge"
	"github.com/crowdpilot/crowdpilot/internal/tenant"
	"github.com/crowdpilot/crowdpilot/internal/testwait"
)

// Records written straight into etcd, as anyone with write access to it
// could (issue 10, finding 3), beyond member and replica records
// (records_test.go): each is ignored and counted by every node.

// waitRejected waits until every node counted at least one rejected
// record of kind.
func waitRejected(t *testing.T, kind string, nodes ...*Node) {
	t.Helper()
	eventually(t, 10*time.Second, func() string {
		for _, nd := range nodes {
			if v := counter(t, nd, "crowdpilot_cluster_records_rejected_total", map[string]string{"kind": kind}); v < 1 {
				return fmt.Sprintf("%s rejected %v %s records", nd.ID(), v, kind)
			}
		}
		return ""
	})
}

// TestForgedPurgeEntryIgnored: a purge-all entry written into the purge
// log without the cluster's MAC purges nothing on any node; the same entry
// sealed by the cluster purges (the control).
func TestForgedPurgeEntryIgnored(t *testing.T) {
	tc := newTestCluster(t, 2, demo.Config{Latency: time.Millisecond, MaxAge: time.Hour}, nil)
	const p = "/forged/purge"
	for i := range 2 {
		if v := tc.version(i, p); v != 0 {
			t.Fatalf("initial version %d", v)
		}
	}
	tc.origin.Update(p) // a refetch would now answer version 1
	c := plainClient(t, tc)
	key := purge.LogPrefix("default") + "00000000000000000001-forged"
	put, err := c.Put(t.Context(), key, `{"kind":"all","at":"2026-01-01T00:00:00Z"}`)
	if err != nil {
		t.Fatal(err)
	}
	waitRejected(t, cluster.KindPurge, tc.nodes...)
	eventually(t, 10*time.Second, func() string {
		for _, nd := range tc.nodes {
			if got := nd.follower.Applied(); got < put.Header.Revision {
				return fmt.Sprintf("%s followed the log to %d, want past the forged entry at %d", nd.ID(), got, put.Header.Revision)
			}
		}
		return ""
	})
	for i := range 2 {
		if v := tc.version(i, p); v != 0 {
			t.Fatalf("n%d serves version %d after the forged purge-all, want the cached 0", i, v)
		}
	}
	if got := tc.origin.FetchesOf(p); got != 1 {
		t.Errorf("origin fetched %s %d times, want 1", p, got)
	}

	// The control: the cluster's own purge-all does purge.
	e, err := purge.NewLog(c, "default", tc.nodes[0].records).Append(t.Context(), purge.Request{All: true})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() string {
		for _, nd := range tc.nodes {
			if got := nd.follower.Applied(); got < e.Rev {
				return fmt.Sprintf("%s at %d, want %d", nd.ID(), got, e.Rev)
			}
		}
		return ""
	})
	for i := range 2 {
		if v := tc.version(i, p); v != 1 {
			t.Fatalf("n%d serves version %d after the sealed purge-all, want 1", i, v)
		}
	}
}

// TestForgedTenantRecordIgnored: a tenant record written into etcd
// without the cluster's MAC changes no node's routing of the tenant.
func TestForgedTenantRecordIgnored(t *testing.T) {
	decl, err := tenant.Parse([]byte("tenants:\n  a: {hosts: [a.example], min: 1, max: 3}\n"))
	if err != nil {
		t.Fatal(err)
	}
	tc := newTestCluster(t, 3, demo.Config{Latency: time.Millisecond}, func(c *Config) {
		c.Tenants = decl
		c.DisableAutopilot = true // no capacity manager: only records change the set
	})
	peersOf := func(nd *Node) string { got, _ := nd.router.TenantPeers("a"); return fmt.Sprint(got) }
	before := peersOf(tc.nodes[0])
	eventually(t, 10*time.Second, func() string {
		for _, nd := range tc.nodes {
			if got, _ := nd.router.TenantPeers("a"); len(got) != 1 || peersOf(nd) != before {
				return fmt.Sprintf("%s routes a to %v, want one node, %s", nd.ID(), got, before)
			}
		}
		return ""
	})
	c := plainClient(t, tc)
	forged, _ := json.Marshal(cluster.TenantRecord{Name: "a", Size: 3, Hold: true, Reason: "forged"})
	if _, err := c.Put(t.Context(), cluster.TenantsPrefix("default")+"a", string(forged)); err != nil {
		t.Fatal(err)
	}
	waitRejected(t, cluster.KindTenant, tc.nodes...)
	for _, nd := range tc.nodes {
		if got := peersOf(nd); got != before {
			t.Errorf("%s routes a to %s after the forged record, want %s", nd.ID(), got, before)
		}
	}
	code, body := tc.call("GET", tc.admin(1, "/api/v1/tenants/a"), "secret", "")
	if code != 200 || strings.Contains(body, "forged") {
		t.Errorf("GET /api/v1/tenants/a = %d %s, want the forged record not shown", code, body)
	}
}

// TestForgedObjectPinIgnored: a pin written into etcd without the
// cluster's MAC is neither listed nor read by the autopilot leader.
func TestForgedObjectPinIgnored(t *testing.T) {
	tc := newTestCluster(t, 2, demo.Config{Latency: time.Millisecond}, nil)
	key := tc.key("/forged/pin")
	set, _ := json.Marshal(cluster.ObjectSetting{Key: key, Pin: 1, Reason: "forged"})
	c := plainClient(t, tc)
	ek := fmt.Sprintf("%s%016x", cluster.ObjectsPrefix("default"), tc.hashOf("/forged/pin"))
	if _, err := c.Put(t.Context(), ek, string(set)); err != nil {
		t.Fatal(err)
	}
	waitRejected(t, cluster.KindObject, tc.nodes...)
	for i, nd := range tc.nodes {
		if got := tc.objects(i); len(got) != 0 {
			t.Errorf("%s lists object settings %v, want none", nd.ID(), got)
		}
		if got := nd.objectLimits(); len(got) != 0 {
			t.Errorf("%s's autopilot reads limits %+v, want none", nd.ID(), got)
		}
	}
}

// TestForgedLeaderKeyIgnored: an election key written into etcd without
// the cluster's MAC, older than every genuine candidate once they have all
// restarted, neither holds the election nor gets the heat reports.
func TestForgedLeaderKeyIgnored(t *testing.T) {
	tc := newTestCluster(t, 1, demo.Config{}, func(c *Config) { c.ReportInterval = 50 * time.Millisecond })
	testwait.Eventually(t, 10*time.Second, "n0 leads", tc.nodes[0].ap.election.IsLeader)
	evil := startAttacker(t)
	c := plainClient(t, tc)
	lease, err := c.Grant(t.Context(), 600)
	if err != nil {
		t.Fatal(err)
	}
	forged := fmt.Sprintf(`{"id":"evil","value":%q}`, evil.addr)
	if _, err := c.Put(t.Context(), cluster.LeaderPrefix("default")+"/forged", forged, clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	// n1's candidate key is newer than the forgery; once n0 leaves, the
	// forgery is the oldest key under the election prefix.
	n1 := tc.addNode("n1", func(c *Config) { c.ReportInterval = 50 * time.Millisecond })
	tc.waitMembers(2, tc.nodes...)
	sctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := tc.nodes[0].Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, 15*time.Second, "n1 leads past the forged key", n1.ap.election.IsLeader)
	waitRejected(t, cluster.KindLeader, n1)
	if id, _, err := n1.ap.election.Leader(t.Context()); err != nil || id != "n1" {
		t.Errorf("n1 names the leader %q (%v), want itself", id, err)
	}
	if n := evil.hits.Load(); n != 0 {
		t.Errorf("the forged leader's address got %d requests", n)
	}
}
