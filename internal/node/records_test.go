package node

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/crowdpilot/crowdpilot/internal/autopilot"
	"github.com/crowdpilot/crowdpilot/internal/cluster"
	"github.com/crowdpilot/crowdpilot/internal/demo"
	"github.com/crowdpilot/crowdpilot/internal/httpcache"
)

// counter is the value of counter name with labels on nd's registry.
func counter(t *testing.T, nd *Node, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := nd.cfg.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				if !hasLabel(m, k, v) {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// attacker is an HTTP server that counts what reaches it: where a forged
// member record points.
type attacker struct {
	addr string
	hits atomic.Int64
	auth atomic.Int64 // requests that carried an Authorization header
}

func startAttacker(t *testing.T) *attacker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &attacker{addr: ln.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.hits.Add(1)
		if r.Header.Get("Authorization") != "" {
			a.auth.Add(1)
		}
		w.Write([]byte("evil"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return a
}

// plainClient is an etcd client as anyone with access to etcd has one.
func plainClient(t *testing.T, tc *testCluster) *clientv3.Client {
	t.Helper()
	c, err := cluster.NewClient(cluster.ClientConfig{Endpoints: []string{tc.etcd.ClientURL()}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestForgedMemberRecordIgnored: a member record written straight into
// etcd (the attack of issue 10, finding 3) is not routed to by any node,
// is counted on each, and a genuine node still joins.
func TestForgedMemberRecordIgnored(t *testing.T) {
	tc := newTestCluster(t, 2, demo.Config{}, nil)
	evil := startAttacker(t)
	c := plainClient(t, tc)
	lease, err := c.Grant(t.Context(), 60)
	if err != nil {
		t.Fatal(err)
	}
	forged, _ := json.Marshal(cluster.Member{ID: "evil", Addr: evil.addr, Admin: evil.addr})
	if _, err := c.Put(t.Context(), cluster.MembersPrefix("default")+"evil", string(forged), clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	rejected := map[string]string{"kind": "member"}
	eventually(t, 10*time.Second, func() string {
		for _, nd := range tc.nodes {
			if v := counter(t, nd, "crowdpilot_cluster_records_rejected_total", rejected); v < 1 {
				return fmt.Sprintf("%s rejected %v member records", nd.ID(), v)
			}
		}
		return ""
	})
	nd := tc.addNode("n2", nil)
	tc.waitMembers(3, tc.nodes...)
	if v := counter(t, nd, "crowdpilot_cluster_records_rejected_total", rejected); v < 1 {
		t.Errorf("a node that joined after the forgery rejected %v member records, want it counted", v)
	}
	for _, nd := range tc.nodes {
		for _, p := range nd.router.Peers() {
			if p.ID == "evil" {
				t.Fatalf("%s routes to the forged member", nd.ID())
			}
		}
	}
	// Keys spread over every member by rendezvous hashing: with the
	// forged member listed, about a quarter would go to it.
	for i := range 40 {
		status, body, _, err := tc.get(tc.url(i%3, fmt.Sprintf("/forged-%d", i)))
		if err != nil || status != http.StatusOK || body == "evil" {
			t.Fatalf("GET /forged-%d: %d %q %v", i, status, body, err)
		}
	}
	if n := evil.hits.Load(); n != 0 {
		t.Errorf("the forged member's address got %d requests", n)
	}
}

// TestForgedReplicaRecordIgnored: a replica record written straight into
// etcd is not routed to and is counted; the same record sealed with the
// cluster secret is (the control).
func TestForgedReplicaRecordIgnored(t *testing.T) {
	tc := newTestCluster(t, 2, demo.Config{}, func(c *Config) { c.DisableAutopilot = true })
	c := plainClient(t, tc)
	key := tc.key("/replica-forged")
	hash := httpcache.KeyHash(key)
	owner, _ := tc.nodes[0].router.Owner(hash)
	other := "n0"
	if owner.ID == "n0" {
		other = "n1"
	}
	lease, err := c.Grant(t.Context(), 60)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := json.Marshal(autopilot.Record{Key: key, Owner: owner.ID, Reason: "forged", Since: time.Now(), TTL: time.Minute})
	rkey := autopilot.ReplicaKey("default", hash, other)
	if _, err := c.Put(t.Context(), rkey, string(rec), clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() string {
		for _, nd := range tc.nodes {
			if v := counter(t, nd, "crowdpilot_cluster_records_rejected_total", map[string]string{"kind": "replica"}); v < 1 {
				return fmt.Sprintf("%s rejected %v replica records", nd.ID(), v)
			}
		}
		return ""
	})
	for _, nd := range tc.nodes {
		if r := nd.router.Replicas(hash); len(r) != 0 {
			t.Fatalf("%s routes to forged replicas %v", nd.ID(), r)
		}
	}
	sealed := tc.nodes[0].records.Seal(rkey, int64(lease.ID), rec)
	if _, err := c.Put(t.Context(), rkey, string(sealed), clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() string {
		for _, nd := range tc.nodes {
			if r := nd.router.Replicas(hash); len(r) != 1 || r[0] != other {
				return fmt.Sprintf("%s routes to replicas %v, want [%s]", nd.ID(), r, other)
			}
		}
		return ""
	})
}
