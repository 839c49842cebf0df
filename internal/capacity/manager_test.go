package capacity

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/crowdpilot/crowdpilot/internal/cluster"
	"github.com/crowdpilot/crowdpilot/internal/testwait"
)

// TestManagerWritesSizes: the manager's decisions land in etcd under the
// guard, a failed write backs the tenant off, and events and metrics say
// what happened.
func TestManagerWritesSizes(t *testing.T) {
	ctx := t.Context()
	e, err := cluster.StartEmbedded(ctx, cluster.EmbedConfig{Dir: t.TempDir(), NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	client, err := cluster.NewClient(cluster.ClientConfig{Endpoints: []string{e.ClientURL()}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	store := cluster.NewTenantStore(client, "test", nil)

	var mu sync.Mutex
	now := t0
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	tenants := func() []Tenant {
		rec, _, err := store.Get(ctx, "a")
		if err != nil {
			t.Error(err)
		}
		a := tenant("a", max(rec.Size, 3))
		return []Tenant{a}
	}
	running := false // Run's steps each advance the clock by a second
	reports := func() []Report {
		mu.Lock()
		if running {
			now = now.Add(time.Second)
		}
		mu.Unlock()
		return []Report{rep("a0", clock(), 0.95, share("a", 1))}
	}
	reg := prometheus.NewRegistry()
	m, err := NewManager(ManagerConfig{
		Policy: testConfig(), Store: store, Tenants: tenants, Reports: reports,
		Tick: 10 * time.Millisecond, MaxEvents: 4, Now: clock, Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	m.Step(ctx, p)
	if rec, _, _ := store.Get(ctx, "a"); rec.Size != 6 || rec.By != "capacity" || !strings.Contains(rec.Reason, "3 -> 6") {
		t.Fatalf("record after a hot step = %+v", rec)
	}
	if got := value(t, m.decisions.WithLabelValues("grow", "ok")); got != 1 {
		t.Errorf("grow ok = %v, want 1", got)
	}

	// A deposed leader's fence: the write fails and the tenant backs off.
	stale := cluster.Fence{Key: cluster.LeaderPrefix("test") + "/old", Rev: 99}.Cmp()
	advance(3 * time.Second)
	m.Step(ctx, p, stale)
	if rec, _, _ := store.Get(ctx, "a"); rec.Size != 6 {
		t.Fatalf("a fenced-out write landed: size %d", rec.Size)
	}
	evs := m.Events(10)
	last := evs[len(evs)-1]
	if last.Action != "grow" || !strings.Contains(last.Error, "guard failed") {
		t.Fatalf("last event %+v, want the failed grow", last)
	}
	if got := value(t, m.decisions.WithLabelValues("grow", "failed")); got != 1 {
		t.Errorf("grow failed = %v, want 1", got)
	}
	advance(time.Second) // within the 2s back-off
	m.Step(ctx, p)
	if rec, _, _ := store.Get(ctx, "a"); rec.Size != 6 {
		t.Errorf("grew during the back-off: size %d", rec.Size)
	}
	if got := value(t, m.alarms.WithLabelValues("blocked")); got != 1 {
		t.Errorf("blocked alarms = %v, want 1", got)
	}
	advance(time.Second)
	m.Step(ctx, p)
	if rec, _, _ := store.Get(ctx, "a"); rec.Size != 9 {
		t.Errorf("after the back-off: size %d, want 9", rec.Size)
	}
	if evs := m.Events(100); len(evs) != 4 {
		t.Errorf("events kept %d, want the bound 4", len(evs))
	}

	// Run stops on its context and clears the alarm gauges.
	mu.Lock()
	running = true
	mu.Unlock()
	// A live leader's fence: its key exists at the revision it names.
	fkey := cluster.LeaderPrefix("test") + "/current"
	put, err := client.Put(ctx, fkey, "leader")
	if err != nil {
		t.Fatal(err)
	}
	fence := cluster.Fence{Key: fkey, Rev: put.Header.Revision}
	r := testwait.Go(t, func(ctx context.Context) error {
		if err := m.Run(ctx, fence.Cmp()); !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	})
	testwait.Eventually(t, 5*time.Second, "Run steps", func() bool {
		return value(t, m.decisions.WithLabelValues("grow", "ok")) >= 3
	})
	r.Stop(t)
	if got := value(t, m.alarms.WithLabelValues("blocked")); got != 0 {
		t.Errorf("alarms after Run = %v, want 0", got)
	}
}

// value reads a counter or gauge.
func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}
