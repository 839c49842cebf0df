package autopilot

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/crowdpilot/crowdpilot/internal/testwait"
)

func TestReplicaKey(t *testing.T) {
	prefix := ReplicasPrefix("c1")
	if prefix != "/crowdpilot/c1/replicas/" {
		t.Fatalf("ReplicasPrefix = %q", prefix)
	}
	if got := ReplicaKey("c1", 0xab, "n1"); got != prefix+"00000000000000ab/n1" {
		t.Fatalf("ReplicaKey = %q", got)
	}
}

func TestNewRegistryValidates(t *testing.T) {
	if _, err := NewRegistry(RegistryConfig{}); err == nil {
		t.Error("NewRegistry without a Store accepted")
	}
	if _, err := NewRegistry(RegistryConfig{Store: replicaStore(t, deadClient(t), nil)}); err != nil {
		t.Errorf("NewRegistry: %v", err)
	}
}

func putRecord(t *testing.T, c *clientv3.Client, rec Record, opts ...clientv3.OpOption) {
	t.Helper()
	val := `{"key":"` + rec.Key + `","owner":"n0","reason":"test","ttl":2000000000}`
	if _, err := c.Put(t.Context(), ReplicaKey(testCluster, rec.Hash, rec.Node), val, opts...); err != nil {
		t.Fatalf("put record: %v", err)
	}
}

// TestRegistryWatch: puts, deletes and bad records reach Records and
// OnChange, sorted.
func TestRegistryWatch(t *testing.T) {
	t.Parallel()
	e := startEtcd(t, t.TempDir(), "", "")
	w := startRegistry(t, newTestClient(t, e))
	c := newTestClient(t, e)
	if got := w.Records(); len(got) != 0 {
		t.Fatalf("empty etcd: records %+v", got)
	}
	putRecord(t, c, Record{Key: "/b", Hash: 2, Node: "n2"})
	putRecord(t, c, Record{Key: "/b", Hash: 2, Node: "n1"})
	putRecord(t, c, Record{Key: "/a", Hash: 1, Node: "n3"})
	if _, err := c.Put(t.Context(), ReplicasPrefix(testCluster)+"0000000000000003/n1", "not json"); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, 5*time.Second, "three records", func() bool { return len(w.Records()) == 3 && w.set(2) == "[n1 n2]" })
	got := w.Records()
	order := []string{got[0].Node, got[1].Node, got[2].Node}
	if !slices.Equal(order, []string{"n3", "n1", "n2"}) || got[0].Key != "/a" || got[1].Hash != 2 || got[1].TTL != 2*time.Second {
		t.Fatalf("records = %+v", got)
	}
	if w.set(1) != "[n3]" || w.set(3) != "[]" {
		t.Fatalf("sets: 1=%s 3=%s", w.set(1), w.set(3))
	}
	if _, err := c.Delete(t.Context(), ReplicaKey(testCluster, 2, "n1")); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, 5*time.Second, "delete seen", func() bool { return w.set(2) == "[n2]" && len(w.Records()) == 2 })

	if err := w.Run(t.Context()); err == nil {
		t.Error("second Run succeeded")
	}
}

// TestRegistryKeepsViewWhileEtcdIsDown: losing etcd changes nothing in the
// view; after a restart the watch resumes.
func TestRegistryKeepsViewWhileEtcdIsDown(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e1 := startEtcd(t, dir, "", "")
	clientAddr, peerAddr := hostPort(t, e1.ClientURL()), hostPort(t, e1.PeerURL())
	rc := newTestClient(t, e1)
	w := startRegistry(t, rc)
	putRecord(t, newTestClient(t, e1), Record{Key: "/a", Hash: 1, Node: "n1"})
	testwait.Eventually(t, 5*time.Second, "record seen", func() bool { return w.set(1) == "[n1]" })

	// Close waits out the registry's open watch stream (several seconds).
	e1.Close()
	testwait.Holds(t, 1500*time.Millisecond, "view while etcd is down", func() bool {
		return len(w.Records()) == 1 && w.set(1) == "[n1]"
	})

	e2 := startEtcd(t, dir, clientAddr, peerAddr)
	start := time.Now()
	t.Cleanup(func() { w.run.Stop(t) }) // before e2 closes, so it does not wait out the watch
	putRecord(t, newTestClient(t, e2), Record{Key: "/a", Hash: 1, Node: "n2"})
	testwait.Eventually(t, 15*time.Second, "watch resumed after restart", func() bool { return w.set(1) == "[n1 n2]" })
	t.Logf("watch resumed %v after restart", time.Since(start))
}

// TestRegistryRetriesWhileEtcdIsDown: with no etcd, Run retries the load
// with backoff, publishes nothing, and still stops on cancel.
func TestRegistryRetriesWhileEtcdIsDown(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	r, err := NewRegistry(RegistryConfig{
		Store:    replicaStore(t, deadClient(t), nil),
		Logger:   slog.New(slog.NewTextHandler(&logs, nil)),
		OnChange: func(map[uint64][]string) { t.Error("OnChange without etcd") },
	})
	if err != nil {
		t.Fatal(err)
	}
	run := testwait.Go(t, r.Run)
	testwait.Eventually(t, 3*etcdOpTimeout+2*time.Second, "two failed loads", func() bool {
		return strings.Count(logs.String(), "load failed; retrying") >= 2
	})
	if r.Loaded() || r.Records() != nil {
		t.Errorf("loaded %v, records %+v without etcd", r.Loaded(), r.Records())
	}
	run.Stop(t)
}

// etcdOpTimeout is the bound cluster puts on each call to etcd.
const etcdOpTimeout = 2 * time.Second

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
