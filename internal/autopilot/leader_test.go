package autopilot

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/crowdpilot/crowdpilot/internal/cluster"
	"github.com/crowdpilot/crowdpilot/internal/heat"

	"github.com/crowdpilot/crowdpilot/internal/testwait"
)

func TestNewLeaderValidates(t *testing.T) {
	c := deadClient(t)
	a, _ := newTestActuator(t, c, &fakeCopier{}, nil) // TTL 2s
	r, err := NewRegistry(RegistryConfig{Store: replicaStore(t, c, nil)})
	if err != nil {
		t.Fatal(err)
	}
	ok := LeaderConfig{
		Actuator: a, Registry: r,
		Owner: func(uint64) string { return "n0" }, Nodes: func() []NodeInfo { return nil },
	}
	tests := []struct {
		name   string
		mutate func(*LeaderConfig)
		ok     bool
	}{
		{"valid", func(*LeaderConfig) {}, true},
		{"no actuator", func(c *LeaderConfig) { c.Actuator = nil }, false},
		{"no registry", func(c *LeaderConfig) { c.Registry = nil }, false},
		{"no owner", func(c *LeaderConfig) { c.Owner = nil }, false},
		{"no nodes", func(c *LeaderConfig) { c.Nodes = nil }, false},
		{"policy ttl matches", func(c *LeaderConfig) { c.Policy.ReplicaTTL = 2 * time.Second }, true},
		{"policy ttl rounds up to it", func(c *LeaderConfig) { c.Policy.ReplicaTTL = 1500 * time.Millisecond }, true},
		{"policy ttl differs", func(c *LeaderConfig) { c.Policy.ReplicaTTL = 3 * time.Second }, false},
		{"bad policy", func(c *LeaderConfig) { c.Policy.MaxReplicas = -1 }, false},
		{"tick too long for ttl", func(c *LeaderConfig) { c.Tick = 500 * time.Millisecond }, false},
		{"tick fits", func(c *LeaderConfig) { c.Tick = 400 * time.Millisecond }, true},
		{"negative reports", func(c *LeaderConfig) { c.MaxReports = -1 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mutate(&cfg)
			if _, err := NewLeader(cfg); (err == nil) != tt.ok {
				t.Errorf("NewLeader err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
	l, err := NewLeader(ok)
	if err != nil {
		t.Fatal(err)
	}
	// A 2s lease TTL: ticks of 200ms, reports fresh for 1s.
	if l.tick != 200*time.Millisecond || l.PolicyConfig().ReplicaTTL != 2*time.Second || l.PolicyConfig().ReportMaxAge != time.Second {
		t.Errorf("defaults for a 2s ttl: tick %v, policy %+v", l.tick, l.PolicyConfig())
	}
}

// TestOffer: the latest report per node is kept, up to MaxReports nodes;
// reports from further nodes are dropped and counted.
func TestOffer(t *testing.T) {
	c := deadClient(t)
	a, _ := newTestActuator(t, c, &fakeCopier{}, nil)
	r, _ := NewRegistry(RegistryConfig{Store: replicaStore(t, c, nil)})
	reg := prometheus.NewRegistry()
	l, err := NewLeader(LeaderConfig{
		Actuator: a, Registry: r, Registerer: reg, MaxReports: 2,
		Owner: func(uint64) string { return "n0" }, Nodes: func() []NodeInfo { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	steps := []struct {
		node string
		at   time.Time
		want bool
	}{
		{"n1", now, true},
		{"n2", now, true},
		{"n3", now, false},                  // full
		{"n1", now.Add(time.Second), true},  // replaces
		{"n1", now.Add(-time.Second), true}, // older: accepted, not kept
		{"n4", now.Add(time.Second), false}, // still full
		{"n2", now.Add(2 * time.Second), true},
	}
	for i, s := range steps {
		if got := l.Offer(Report{Node: s.node, At: s.at}); got != s.want {
			t.Errorf("step %d: Offer(%s) = %v, want %v", i, s.node, got, s.want)
		}
	}
	if got := count(t, reg, "crowdpilot_autopilot_heat_reports_dropped_total"); got != 2 {
		t.Errorf("heat_reports_dropped_total = %v, want 2", got)
	}
	got := l.freshReports(now.Add(time.Second))
	if len(got) != 2 || got[0].Node != "n1" || !got[0].At.Equal(now.Add(time.Second)) || got[1].Node != "n2" {
		t.Errorf("reports = %+v", got)
	}
	// Stale reports are forgotten, freeing room.
	if got := l.freshReports(now.Add(10 * time.Second)); len(got) != 0 {
		t.Errorf("stale reports kept: %+v", got)
	}
	if !l.Offer(Report{Node: "n3", At: now}) {
		t.Error("Offer after the table emptied dropped")
	}
}

func TestEventRing(t *testing.T) {
	r := newEventRing(3)
	if got := r.last(0); len(got) != 0 {
		t.Fatalf("empty ring: %+v", got)
	}
	for i := range 5 {
		r.add(Event{Key: fmt.Sprint(i)})
	}
	keys := func(evs []Event) string {
		var s []string
		for _, e := range evs {
			s = append(s, e.Key)
		}
		return strings.Join(s, ",")
	}
	for n, want := range map[int]string{0: "4,3,2", 2: "4,3", 3: "4,3,2", 10: "4,3,2", -1: "4,3,2"} {
		if got := keys(r.last(n)); got != want {
			t.Errorf("last(%d) = %s, want %s", n, got, want)
		}
	}
	ev := eventOf(time.Unix(0, 0).UTC(), Action{Kind: ScaleIn, Key: "/k", Node: "n1", Reason: "r", Desired: 1, Current: 2}, fmt.Errorf("boom"))
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"time":"1970-01-01T00:00:00Z","key":"/k","action":"scale_in","node":"n1","reason":"r","desired":1,"current":2,"error":"boom"}`
	if string(b) != want {
		t.Errorf("event JSON = %s\nwant %s", b, want)
	}
}

// testNode is one node's autopilot side: registry, actuator and leader.
type testNode struct {
	id     string
	client *clientv3.Client
	reg    *watchedRegistry
	act    *Actuator
	leader *Leader
	copier *fakeCopier
	areg   *prometheus.Registry // actuator metrics
	lreg   *prometheus.Registry // leader metrics
}

var testNodes = []NodeInfo{{ID: "n0"}, {ID: "n1"}, {ID: "n2"}, {ID: "n3"}, {ID: "n4"}}

func newTestNode(t *testing.T, e *cluster.Embedded, id string) *testNode {
	t.Helper()
	n := &testNode{id: id, client: newTestClient(t, e), copier: &fakeCopier{}, lreg: prometheus.NewRegistry()}
	n.reg = startRegistry(t, n.client)
	n.act, n.areg = newTestActuator(t, n.client, n.copier, nil)
	l, err := NewLeader(LeaderConfig{
		Policy: Config{
			TargetRPS: 1000, MaxReplicas: 4,
			Cooldown: 300 * time.Millisecond, ScaleInHold: time.Second, MinInterval: 200 * time.Millisecond,
		},
		Actuator: n.act, Registry: n.reg.Registry,
		Tick:       100 * time.Millisecond,
		Owner:      func(uint64) string { return "n0" },
		Nodes:      func() []NodeInfo { return testNodes },
		Logger:     testLog(t),
		Registerer: n.lreg,
	})
	if err != nil {
		t.Fatalf("NewLeader: %v", err)
	}
	n.leader = l
	return n
}

// reporter offers reports from n0, n1 and n2, each seeing a third of the
// key's rate, to the leaders every 100ms, as nodes do.
type reporter struct {
	key  string
	rate atomic.Int64 // total requests/s
}

func startReporter(t *testing.T, key string, rate int64, leaders ...*Leader) *reporter {
	r := &reporter{key: key}
	r.rate.Store(rate)
	testwait.Go(t, func(ctx context.Context) error {
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for {
			for _, node := range []string{"n0", "n1", "n2"} {
				rep := Report{Node: node, At: time.Now(), P99: 5 * time.Millisecond, CPU: 0.25, InFlight: 7, Keys: []heat.KeyRate{
					{Key: key, Hash: keyHash(key), Rate: float64(r.rate.Load()) / 3},
				}}
				for _, l := range leaders {
					l.Offer(rep)
				}
			}
			select {
			case <-ctx.Done():
				return nil
			case <-tk.C:
			}
		}
	})
	return r
}

func replicaNodes(recs []Record) string {
	var nodes []string
	for _, r := range recs {
		nodes = append(nodes, r.Node)
	}
	slices.Sort(nodes)
	return strings.Join(nodes, ",")
}

// TestLeaderEndToEnd: a key at 10,000/s gets the replicas the target calls
// for within a few ticks; when the crowd leaves they are let go after the
// hold, expire, and their gauge series goes.
func TestLeaderEndToEnd(t *testing.T) {
	t.Parallel()
	e := startEtcd(t, t.TempDir(), "", "")
	n := newTestNode(t, e, "n0")
	fence := testFence(t, n.client, "leader")
	const key = "/live/score"
	hash := keyHash(key)
	rep := startReporter(t, key, 10000, n.leader)
	start := time.Now()
	testwait.Go(t, func(ctx context.Context) error { return n.leader.Run(ctx, fence) })

	// Desired: ceil(10000/1000) clamped to 4 members, so 3 replicas, never
	// on the owner n0.
	testwait.Eventually(t, testTimeout, "3 replicas registered and seen", func() bool {
		return len(n.reg.Records()) == 3
	})
	t.Logf("3 replicas registered and seen %v after the leader started", time.Since(start))
	recs := n.reg.Records()
	if nodes := replicaNodes(recs); strings.Contains(nodes, "n0") {
		t.Errorf("replica on the owner: %s", nodes)
	}
	if calls := n.copier.Calls(); len(calls) != 3 {
		t.Errorf("copies = %q, want 3", calls)
	}
	// Events are recorded once Apply returns, which may be after the
	// registry has seen the records.
	testwait.Eventually(t, testTimeout, "3 events", func() bool { return len(n.leader.Events(0)) >= 3 })
	evs := n.leader.Events(0)
	if len(evs) != 3 {
		t.Fatalf("events = %+v, want 3 scale-outs", evs)
	}
	// The rate in a reason is the sum of the reports the leader had at its
	// tick: on a busy machine one of the three may not have arrived yet
	// (6667/s), which still wants 4.
	for _, ev := range evs {
		if ev.Action != EventScaleOut || ev.Key != key || ev.Desired != 4 || ev.Error != "" ||
			!strings.HasPrefix(ev.Reason, "rate ") || !strings.Contains(ev.Reason, "/s > 1 × 1000/s high watermark; want 4") {
			t.Errorf("event = %+v", ev)
		}
	}
	testwait.Eventually(t, testTimeout, "replicas_active gauge at 3", func() bool {
		v, ok := metric(t, n.lreg, "crowdpilot_autopilot_replicas_active", "key", key)
		return ok && v == 3
	})
	hot := n.leader.Hot()
	if len(hot) != 1 || hot[0].Key != key || hot[0].Hash != hash || hot[0].Owner != "n0" || hot[0].Desired != 4 ||
		hot[0].Rate != 10000 || hot[0].P99 != 5*time.Millisecond || len(hot[0].Replicas) != 3 {
		t.Fatalf("hot = %+v", hot)
	}
	for _, r := range hot[0].Replicas {
		if left := time.Until(r.Expires); left <= 0 || left > n.act.TTL() || r.Released {
			t.Errorf("replica %+v: expiry %v away", r, left)
		}
	}
	loads := n.leader.Loads()
	if len(loads) != 3 {
		t.Fatalf("loads = %+v, want the 3 reporting nodes", loads)
	}
	for i, l := range loads {
		if want := fmt.Sprintf("n%d", i); l.Node != want || l.CPU != 0.25 || l.InFlight != 7 || l.P99 != 5*time.Millisecond {
			t.Errorf("load %d = %+v, want %s with cpu 0.25, 7 in flight, p99 5ms", i, l, want)
		}
	}
	if v, _ := metric(t, n.lreg, "crowdpilot_autopilot_leader"); v != 1 {
		t.Errorf("leader gauge = %v while leading", v)
	}

	// While the crowd stays, the same replicas are renewed past their TTL.
	leases := func() string {
		var ids []string
		for _, r := range n.reg.Records() {
			ids = append(ids, fmt.Sprintf("%s=%x", r.Node, r.Lease))
		}
		return strings.Join(ids, ",")
	}
	before := leases()
	testwait.Holds(t, 2*n.act.TTL(), "the same 3 replicas", func() bool {
		if now := leases(); now != before {
			t.Logf("leases %s, were %s", now, before)
			return false
		}
		return true
	})
	if got := count(t, n.areg, "crowdpilot_autopilot_lease_renewals_total"); got < 3 {
		t.Errorf("lease_renewals_total = %v, want >= 3", got)
	}

	// The crowd leaves: fresh reports at rate 0.
	rep.rate.Store(0)
	left := time.Now()
	testwait.Eventually(t, n.act.TTL()+3*time.Second, "replicas to expire", func() bool { return len(n.reg.Records()) == 0 })
	t.Logf("replicas gone %v after the crowd left (hold 1s, ttl %v)", time.Since(left), n.act.TTL())
	if d := time.Since(left); d < time.Second {
		t.Errorf("replicas gone after %v, before the 1s hold", d)
	}
	testwait.Eventually(t, testTimeout, "replicas_active series removed", func() bool {
		_, ok := metric(t, n.lreg, "crowdpilot_autopilot_replicas_active", "key", key)
		return !ok
	})
	ins := 0
	for _, ev := range n.leader.Events(0) {
		if ev.Action == EventScaleIn {
			ins++
			if ev.Desired != 1 || !strings.Contains(ev.Reason, "low watermark") {
				t.Errorf("scale-in event = %+v", ev)
			}
		}
	}
	if ins != 3 {
		t.Errorf("scale-in events = %d, want 3", ins)
	}
	if got := n.leader.Hot(); len(got) != 0 {
		t.Errorf("hot after the crowd left: %+v", got)
	}
}

// TestLeaderTakeover: when the leader goes, the next one adopts the replica
// leases and keeps them alive: the same leases outlive their TTL.
func TestLeaderTakeover(t *testing.T) {
	t.Parallel()
	e := startEtcd(t, t.TempDir(), "", "")
	const key = "/live/score"
	nodes := []*testNode{newTestNode(t, e, "a"), newTestNode(t, e, "b")}
	var elections []*testwait.Runner
	var mu sync.Mutex // guards leading
	leading := map[string]bool{}
	for _, n := range nodes {
		el, err := cluster.NewElection(cluster.ElectionConfig{
			Client: n.client, Cluster: testCluster, ID: n.id, TTL: cluster.MinTTL, Logger: testLog(t),
			OnElected: func(ctx context.Context, f cluster.Fence) {
				mu.Lock()
				leading[n.id] = true
				mu.Unlock()
				if err := n.leader.Run(ctx, f); err != nil {
					t.Errorf("%s: Run: %v", n.id, err)
				}
				mu.Lock()
				leading[n.id] = false
				mu.Unlock()
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		elections = append(elections, testwait.Go(t, el.Run))
	}
	startReporter(t, key, 10000, nodes[0].leader, nodes[1].leader)
	// leader returns the index of the one node leading, or -1.
	leader := func() int {
		mu.Lock()
		defer mu.Unlock()
		switch a, b := leading[nodes[0].id], leading[nodes[1].id]; {
		case a && !b:
			return 0
		case b && !a:
			return 1
		}
		return -1
	}
	testwait.Eventually(t, 10*time.Second, "a leader", func() bool { return leader() >= 0 })
	first := leader()
	old, next := nodes[first], nodes[1-first]
	testwait.Eventually(t, testTimeout, "3 replicas", func() bool { return len(next.reg.Records()) == 3 })
	leases := func() string {
		var ids []string
		for _, r := range next.reg.Records() {
			ids = append(ids, fmt.Sprintf("%s=%x", r.Node, r.Lease))
		}
		return strings.Join(ids, ",")
	}
	before := leases()

	elections[first].Stop(t) // the leader goes; the other is elected at once
	stopped := time.Now()
	testwait.Eventually(t, testTimeout, "the other node to lead", func() bool { return leader() == 1-first })
	t.Logf("takeover in %v", time.Since(stopped))
	if old.leader.Hot() != nil || old.leader.Loads() != nil {
		t.Error("deposed leader still shows hot objects")
	}
	if _, ok := metric(t, old.lreg, "crowdpilot_autopilot_replicas_active", "key", key); ok {
		t.Error("deposed leader still exports replicas_active")
	}
	oldRenewals := count(t, old.areg, "crowdpilot_autopilot_lease_renewals_total")

	// The same leases live on past twice their TTL: adopted and renewed.
	testwait.Holds(t, 2*next.act.TTL(), "the same replicas, under the same leases", func() bool {
		if now := leases(); now != before {
			t.Logf("leases %s, were %s; events %+v", now, before, next.leader.Events(0))
			return false
		}
		return true
	})
	if got := count(t, next.areg, "crowdpilot_autopilot_lease_renewals_total"); got < 3 {
		t.Errorf("new leader's lease_renewals_total = %v, want >= 3", got)
	}
	if got := count(t, old.areg, "crowdpilot_autopilot_lease_renewals_total"); got != oldRenewals {
		t.Errorf("deposed leader renewed %v times after it lost the election", got-oldRenewals)
	}
	if got := count(t, next.areg, "crowdpilot_autopilot_scale_out_total"); got != 0 {
		t.Errorf("new leader scaled out %v times; the replicas were there", got)
	}
	if got := count(t, next.lreg, "crowdpilot_autopilot_leader_changes_total"); got != 1 {
		t.Errorf("new leader's leader_changes_total = %v, want 1", got)
	}
	if v, ok := metric(t, next.lreg, "crowdpilot_autopilot_replicas_active", "key", key); !ok || v != 3 {
		t.Errorf("new leader's replicas_active = %v, %v; want 3", v, ok)
	}
}

// TestLeaderLimits: the operators' limits reach the policy's objects, and
// the hot view lists limited keys, even cold ones, with what they want
// within the limits.
func TestLeaderLimits(t *testing.T) {
	c := deadClient(t)
	a, _ := newTestActuator(t, c, &fakeCopier{}, nil)
	r, _ := NewRegistry(RegistryConfig{Store: replicaStore(t, c, nil)})
	one := 1
	limits := []KeyLimits{
		{Key: "/cold", Hash: hashOf("/cold"), Limits: Limits{Pin: 2}},
		{Key: "/hot", Hash: hashOf("/hot"), Limits: Limits{Cap: &one}},
		{Key: "/none", Hash: hashOf("/none")}, // zero: not a limit
	}
	l, err := NewLeader(LeaderConfig{
		Actuator: a, Registry: r, Limits: func() []KeyLimits { return limits },
		Owner: func(uint64) string { return "n0" }, Nodes: func() []NodeInfo { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	reports := []Report{{Node: "n1", At: now, Keys: []heat.KeyRate{{Key: "/hot", Hash: hashOf("/hot"), Rate: 50000}}}}
	objs, _ := l.objects(now, nil, reports, l.limits())
	got := map[string]Limits{}
	for _, o := range objs {
		got[o.Key] = o.Limits
	}
	if len(objs) != 2 || got["/cold"].Pin != 2 || got["/hot"].Cap == nil || *got["/hot"].Cap != 1 {
		t.Fatalf("objects = %+v, want /hot capped and /cold pinned", objs)
	}
	l.publish(objs, reports, nil)
	var view []string
	for _, h := range l.Hot() {
		cp := "-"
		if h.Cap != nil {
			cp = fmt.Sprint(*h.Cap)
		}
		view = append(view, fmt.Sprintf("%s pin %d cap %s desired %d", h.Key, h.Pin, cp, h.Desired))
	}
	if want := "[/hot pin 0 cap 1 desired 2 /cold pin 2 cap - desired 3]"; fmt.Sprint(view) != want {
		t.Errorf("hot view = %v, want %s", view, want)
	}
}
