package autopilot

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/crowdpilot/crowdpilot/internal/cluster"
	"github.com/crowdpilot/crowdpilot/internal/testwait"
)

// TestReplicaRecordsAuthenticated: the actuator seals what it registers,
// and registries with the same secret route to it; a replica record
// written straight into etcd without the secret, or a genuine one moved
// to another key, is never routed to, is counted, and a new leader does
// not adopt (renew) it.
func TestReplicaRecordsAuthenticated(t *testing.T) {
	t.Parallel()
	e := startEtcd(t, t.TempDir(), "", "")
	c := newTestClient(t, e)
	reg := prometheus.NewRegistry()
	recs, err := cluster.NewRecords("secret", reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := startRegistryWith(t, newTestClient(t, e), recs)
	a, _ := newTestActuator(t, c, &fakeCopier{}, func(cfg *ActuatorConfig) { cfg.Store = replicaStore(t, c, recs) })
	fence := testFence(t, c, "leader")
	genuine := scaleOut("/genuine", "n1")
	if errs := a.Apply(t.Context(), fence, []Action{genuine}); errs[0] != nil {
		t.Fatalf("scale out: %v", errs[0])
	}
	testwait.Eventually(t, 5*time.Second, "genuine replica routed", func() bool { return w.set(genuine.Hash) == "[n1]" })

	lease, err := c.Grant(t.Context(), 30)
	if err != nil {
		t.Fatal(err)
	}
	forged := Record{Key: "/forged", Hash: keyHash("/forged"), Node: "evil"}
	putRecord(t, c, forged, clientv3.WithLease(lease.ID))
	got, err := c.Get(t.Context(), ReplicaKey(testCluster, genuine.Hash, "n1"))
	if err != nil || len(got.Kvs) != 1 {
		t.Fatalf("get genuine record: %v", err)
	}
	moved := ReplicaKey(testCluster, genuine.Hash, "evil")
	if _, err := c.Put(t.Context(), moved, string(got.Kvs[0].Value), clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, 5*time.Second, "both forgeries counted", func() bool {
		v, _ := metric(t, reg, "crowdpilot_cluster_records_rejected_total", "kind", "replica")
		return v >= 2
	})
	if s := w.set(forged.Hash); s != "[]" {
		t.Errorf("forged record routed: %s", s)
	}
	if s := w.set(genuine.Hash); s != "[n1]" {
		t.Errorf("moved record routed: %s, want [n1]", s)
	}

	// A new leader adopts only the genuine lease.
	b, _ := newTestActuator(t, c, &fakeCopier{}, func(cfg *ActuatorConfig) { cfg.Store = replicaStore(t, c, recs) })
	if err := b.Adopt(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := b.expiry(genuine.Hash, "n1"); !ok {
		t.Error("genuine replica not adopted")
	}
	if _, _, ok := b.expiry(forged.Hash, "evil"); ok {
		t.Error("forged replica adopted")
	}
	if _, _, ok := b.expiry(genuine.Hash, "evil"); ok {
		t.Error("moved replica adopted")
	}
}
