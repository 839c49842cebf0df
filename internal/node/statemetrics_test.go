package node

import (
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/crowdpilot/crowdpilot/internal/autopilot"
	"github.com/crowdpilot/crowdpilot/internal/demo"
)

// gauge returns the value of the gauge name whose labels include want.
func gauge(t *testing.T, nd *Node, name string, want map[string]string) (float64, bool) {
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
			for k, v := range want {
				if !hasLabel(m, k, v) {
					continue metrics
				}
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// TestStateGauges: a joined node says it is ready, and exports its store
// bound, the replicas it holds, and the depth and bound of each bounded
// stage.
func TestStateGauges(t *testing.T) {
	tc := newTestCluster(t, 1, demo.Config{Latency: time.Millisecond, MaxAge: time.Hour}, func(c *Config) {
		c.StoreBytes = 48 << 20
	})
	nd := tc.nodes[0]
	eventually(t, 10*time.Second, func() string {
		if v, ok := gauge(t, nd, "crowdpilot_ready", nil); !ok || v != 1 {
			return "crowdpilot_ready is not 1"
		}
		return ""
	})
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"crowdpilot_store_max_bytes", nil, 48 << 20},
		{"crowdpilot_replicas_active", nil, 0},
		{"crowdpilot_queue_capacity", map[string]string{"stage": "invalidations"}, invalidatorMaxPending},
		{"crowdpilot_queue_capacity", map[string]string{"stage": "copies"}, autopilot.DefaultMaxCopies},
	} {
		if v, ok := gauge(t, nd, c.name, c.labels); !ok || v != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, v, ok, c.want)
		}
	}
	// Every bounded stage has a bound, and at rest nothing waits in it.
	for _, stage := range []string{"invalidations", "refreshes", "heat_reports", "copies"} {
		l := map[string]string{"stage": stage}
		c, okc := gauge(t, nd, "crowdpilot_queue_capacity", l)
		d, okd := gauge(t, nd, "crowdpilot_queue_depth", l)
		if !okc || !okd || c <= 0 || d != 0 {
			t.Errorf("stage %s: depth %v (present %v), capacity %v (present %v); want 0 of a positive bound", stage, d, okd, c, okc)
		}
	}
}

// TestReplicasActiveCountsWhatThisNodeHolds: crowdpilot_replicas_active
// follows the replica sets this node is a member of, and routing gets the
// sets.
func TestReplicasActiveCountsWhatThisNodeHolds(t *testing.T) {
	tc := newTestCluster(t, 1, demo.Config{Latency: time.Millisecond, MaxAge: time.Hour}, nil)
	nd := tc.nodes[0]
	for _, c := range []struct {
		sets map[uint64][]string
		want float64
	}{
		{map[uint64][]string{1: {"n0", "n1"}, 2: {"n1"}, 3: {"n0"}}, 2},
		{map[uint64][]string{2: {"n1"}}, 0},
		{nil, 0},
	} {
		nd.onReplicaSets(c.sets)
		if v, _ := gauge(t, nd, "crowdpilot_replicas_active", nil); v != c.want {
			t.Errorf("sets %v: crowdpilot_replicas_active = %v, want %v", c.sets, v, c.want)
		}
		// The router keeps the members it knows (here only n0).
		if got := nd.router.Replicas(3); len(got) != len(c.sets[3]) {
			t.Errorf("sets %v: router has %v for hash 3", c.sets, got)
		}
	}
}
