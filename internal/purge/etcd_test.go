package purge

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/crowdpilot/crowdpilot/internal/cluster"
)

const testCluster = "t"

// testEtcd is an embedded single-member etcd on free loopback ports that a
// test can stop and start again on the same ports and data.
type testEtcd struct {
	t                    testing.TB
	dir                  string
	clientAddr, peerAddr string
	mu                   sync.Mutex // guards e
	e                    *cluster.Embedded
}

func startEtcd(t testing.TB) *testEtcd {
	t.Helper()
	te := &testEtcd{t: t, dir: t.TempDir()}
	te.start()
	u, _ := url.Parse(te.e.ClientURL())
	p, _ := url.Parse(te.e.PeerURL())
	te.clientAddr, te.peerAddr = u.Host, p.Host
	t.Cleanup(te.stop)
	return te
}

func (te *testEtcd) start() {
	te.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := cluster.StartEmbedded(ctx, cluster.EmbedConfig{
		Dir: te.dir, ClientAddr: te.clientAddr, PeerAddr: te.peerAddr,
		CompactionRetention: -1, // tests compact by hand
		NoFsync:             true,
	})
	if err != nil {
		te.t.Fatalf("start etcd: %v", err)
	}
	te.mu.Lock()
	te.e = e
	te.mu.Unlock()
}

func (te *testEtcd) stop() {
	te.mu.Lock()
	defer te.mu.Unlock()
	if te.e != nil {
		te.e.Close()
		te.e = nil
	}
}

// client returns a new client, closed at the end of the test.
func (te *testEtcd) client() *clientv3.Client {
	te.t.Helper()
	c, err := cluster.NewClient(cluster.ClientConfig{Endpoints: []string{"http://" + te.clientAddr}}, nil)
	if err != nil {
		te.t.Fatal(err)
	}
	te.t.Cleanup(func() { c.Close() })
	return c
}

// recorder is an Applier that remembers what it was asked to do.
type recorder struct {
	mu      sync.Mutex // guards the fields below
	entries []Entry
	applied []time.Time // when each entry was applied
	flushes int
}

func (r *recorder) ApplyPurge(e Entry) {
	now := time.Now()
	r.mu.Lock()
	r.entries = append(r.entries, e)
	r.applied = append(r.applied, now)
	r.mu.Unlock()
}

func (r *recorder) Flush() {
	r.mu.Lock()
	r.flushes++
	r.mu.Unlock()
}

func (r *recorder) revs() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	revs := make([]int64, len(r.entries))
	for i, e := range r.entries {
		revs[i] = e.Rev
	}
	return revs
}

func (r *recorder) flushCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.flushes
}

func (r *recorder) has(rev int64) bool { return slices.Contains(r.revs(), rev) }

// startFollower runs a follower until the end of the test (or until the
// returned stop is called, which waits for Run to return).
func startFollower(t testing.TB, cfg FollowerConfig) (*Follower, func()) {
	t.Helper()
	if cfg.Cluster == "" {
		cfg.Cluster = testCluster
	}
	f, err := NewFollower(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return f, stop
}

// publishTo returns an OnApplied that writes PurgeRev into id's member record.
func publishTo(t testing.TB, c *clientv3.Client, id string) func(int64) {
	return func(rev int64) {
		b, _ := json.Marshal(cluster.Member{ID: id, Addr: id + ":80", PurgeRev: rev})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := c.Put(ctx, cluster.MembersPrefix(testCluster)+id, string(b)); err != nil {
			t.Errorf("publish %s rev %d: %v", id, rev, err)
		}
	}
}

// etcdMembers reads the member records straight from etcd.
func etcdMembers(t testing.TB, c *clientv3.Client) func() []cluster.Member {
	return func() []cluster.Member {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := c.Get(ctx, cluster.MembersPrefix(testCluster), clientv3.WithPrefix())
		if err != nil {
			t.Errorf("read members: %v", err)
			return nil
		}
		var ms []cluster.Member
		for _, kv := range resp.Kvs {
			var m cluster.Member
			if err := json.Unmarshal(kv.Value, &m); err != nil {
				t.Errorf("member %s: %v", kv.Key, err)
			}
			ms = append(ms, m)
		}
		return ms
	}
}

// logCount returns how many keys the purge log holds.
func logCount(t testing.TB, c *clientv3.Client) int64 {
	t.Helper()
	resp, err := c.Get(context.Background(), LogPrefix(testCluster), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}
