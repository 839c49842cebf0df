package autopilot

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/crowdpilot/crowdpilot/internal/cluster"

	"github.com/crowdpilot/crowdpilot/internal/testwait"
)

// testCluster names the cluster in etcd tests; each test has its own server.
const testCluster = "test"

// testTimeout bounds waits for something that must happen, not how fast:
// long enough for -race on a busy machine, so only a thing that never
// happens fails.
const testTimeout = 30 * time.Second

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// startEtcd starts an embedded server in dir and closes it at cleanup.
func startEtcd(t *testing.T, dir, clientAddr, peerAddr string) *cluster.Embedded {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	e, err := cluster.StartEmbedded(ctx, cluster.EmbedConfig{Dir: dir, ClientAddr: clientAddr, PeerAddr: peerAddr, NoFsync: true, Logger: testLog(t)})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

func newTestClient(t *testing.T, e *cluster.Embedded) *clientv3.Client {
	t.Helper()
	c, err := cluster.NewClient(cluster.ClientConfig{Endpoints: []string{e.ClientURL()}}, testLog(t))
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// deadClient is a client of nothing, for tests that make no calls.
func deadClient(t *testing.T) *clientv3.Client {
	t.Helper()
	c, err := cluster.NewClient(cluster.ClientConfig{Endpoints: []string{"127.0.0.1:1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func hostPort(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("parse %q: %v", rawURL, err)
	}
	return u.Host
}

// replicaStore is a replica store of the test cluster on c, opening and
// sealing records with recs (nil: neither).
func replicaStore(t *testing.T, c *clientv3.Client, recs *cluster.Records) *cluster.ReplicaStore {
	t.Helper()
	s, err := cluster.NewReplicaStore(c, testCluster, recs, testLog(t))
	if err != nil {
		t.Fatalf("NewReplicaStore: %v", err)
	}
	return s
}

// testFence writes a key standing for a leader's election key and returns
// its fence.
func testFence(t *testing.T, c *clientv3.Client, name string) cluster.Fence {
	t.Helper()
	key := cluster.LeaderPrefix(testCluster) + "/" + name
	resp, err := c.Put(t.Context(), key, name)
	if err != nil {
		t.Fatalf("put fence key: %v", err)
	}
	return cluster.Fence{Key: key, Rev: resp.Header.Revision}
}

// fakeCopier records copies and fails those fail says to.
type fakeCopier struct {
	mu    sync.Mutex // guards calls and fail
	calls []string   // "node key"
	fail  func(node, key string) error
}

func (f *fakeCopier) Copy(ctx context.Context, node, key, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, node+" "+key)
	if f.fail != nil {
		return f.fail(node, key)
	}
	return ctx.Err()
}

func (f *fakeCopier) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// watchedRegistry runs a Registry on its own client and keeps the last
// sets OnChange gave.
type watchedRegistry struct {
	*Registry
	run  *testwait.Runner
	mu   sync.Mutex // guards sets
	sets map[uint64][]string
}

func startRegistry(t *testing.T, c *clientv3.Client) *watchedRegistry {
	t.Helper()
	return startRegistryWith(t, c, nil)
}

// startRegistryWith is startRegistry opening records with recs.
func startRegistryWith(t *testing.T, c *clientv3.Client, recs *cluster.Records) *watchedRegistry {
	t.Helper()
	w := &watchedRegistry{}
	r, err := NewRegistry(RegistryConfig{
		Store: replicaStore(t, c, recs), Logger: testLog(t),
		OnChange: func(sets map[uint64][]string) {
			w.mu.Lock()
			w.sets = sets
			w.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatalf("NewRegistry: %v", err)
	}
	w.Registry = r
	w.run = testwait.Go(t, r.Run)
	testwait.Eventually(t, 10*time.Second, "registry loaded", r.Loaded)
	return w
}

// set returns the replica nodes OnChange last gave for hash, joined.
func (w *watchedRegistry) set(hash uint64) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return fmt.Sprint(w.sets[hash])
}

func newTestActuator(t *testing.T, c *clientv3.Client, copier Copier, mod func(*ActuatorConfig)) (*Actuator, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := ActuatorConfig{
		Store: replicaStore(t, c, nil), TTL: 2 * time.Second, Copier: copier,
		Logger: testLog(t), Registerer: reg,
		Owner: func(uint64) string { return "n0" },
	}
	if mod != nil {
		mod(&cfg)
	}
	a, err := NewActuator(cfg)
	if err != nil {
		t.Fatalf("NewActuator: %v", err)
	}
	return a, reg
}

// metric returns the value of the series of name with labels (name=value
// pairs), and whether it exists.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue(), true
			case m.Gauge != nil:
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

func count(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	v, _ := metric(t, reg, name)
	return v
}

// recordsIn reads the replica records from etcd: every key under the
// prefix must be a record.
func recordsIn(t *testing.T, c *clientv3.Client) []Record {
	t.Helper()
	out, err := replicaStore(t, c, nil).List(t.Context())
	if err != nil {
		t.Fatalf("list records: %v", err)
	}
	resp, err := c.Get(t.Context(), ReplicasPrefix(testCluster), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatalf("count records: %v", err)
	}
	if resp.Count != int64(len(out)) {
		t.Fatalf("%d keys under %s, %d of them records", resp.Count, ReplicasPrefix(testCluster), len(out))
	}
	return out
}

func leaseCount(t *testing.T, c *clientv3.Client) int {
	t.Helper()
	resp, err := c.Leases(t.Context())
	if err != nil {
		t.Fatalf("leases: %v", err)
	}
	return len(resp.Leases)
}
