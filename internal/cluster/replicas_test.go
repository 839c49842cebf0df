package cluster

import (
	"context"
	"errors"
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
	tests := []struct {
		key  string
		hash uint64
		node string
		ok   bool
	}{
		{prefix + "00000000000000ab/n1", 0xab, "n1", true},
		{prefix + "ffffffffffffffff/n-2", 1<<64 - 1, "n-2", true},
		{prefix + "ab/n1", 0, "", false},                 // short hash
		{prefix + "00000000000000ag/n1", 0, "", false},   // not hex
		{prefix + "00000000000000ab/", 0, "", false},     // no node
		{prefix + "00000000000000ab/n1/x", 0, "", false}, // nested
		{prefix + "00000000000000ab", 0, "", false},      // no separator
		{"/crowdpilot/c2/replicas/00000000000000ab/n1", 0, "", false},
	}
	for _, tt := range tests {
		h, n, ok := parseReplicaKey(prefix, tt.key)
		if h != tt.hash || n != tt.node || ok != tt.ok {
			t.Errorf("parseReplicaKey(%q) = %x, %q, %v; want %x, %q, %v", tt.key, h, n, ok, tt.hash, tt.node, tt.ok)
		}
	}
}

func TestNewReplicaStoreValidates(t *testing.T) {
	c, err := NewClient(ClientConfig{Endpoints: []string{"127.0.0.1:1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tt := range []struct {
		c       *Client
		cluster string
	}{{nil, "c"}, {c, ""}, {c, "a/b"}} {
		if _, err := NewReplicaStore(tt.c, tt.cluster, nil, nil); err == nil {
			t.Errorf("NewReplicaStore(%v, %q) accepted", tt.c, tt.cluster)
		}
	}
}

// testLeaderFence puts a key standing for a leader's election key and
// returns its fence.
func testLeaderFence(t *testing.T, c *Client, name string) Fence {
	t.Helper()
	key := LeaderPrefix("test") + "/" + name
	resp, err := c.Put(t.Context(), key, name)
	if err != nil {
		t.Fatal(err)
	}
	return Fence{Key: key, Rev: resp.Header.Revision}
}

// liveLeases returns the leases etcd holds.
func liveLeases(t *testing.T, c *Client) int {
	t.Helper()
	resp, err := c.Leases(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return len(resp.Leases)
}

// TestReplicaStoreRegister: a replica is a sealed record under its own
// lease, written only while the fence holds and no record is there; a
// failed registration revokes its lease; renewal and time to live tell a
// lease that is gone.
func TestReplicaStoreRegister(t *testing.T) {
	t.Parallel()
	e := startEtcd(t, t.TempDir(), "", "")
	c := newTestClient(t, e)
	ctx := t.Context()
	recs, _ := newTestRecords(t, "secret", nil)
	s, err := NewReplicaStore(c, "test", recs, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	fence := testLeaderFence(t, c, "leader")
	since := time.Now().UTC().Truncate(time.Second)

	lease, err := s.Grant(ctx, 1500*time.Millisecond)
	if err != nil || lease.TTL != 2*time.Second {
		t.Fatalf("Grant(1.5s) = %+v, %v; want a TTL of 2s", lease, err)
	}
	rec := Replica{Key: "/k", Hash: 7, Node: "n1", Owner: "n0", Reason: "test", Since: since, TTL: lease.TTL}
	if err := s.Register(ctx, fence, lease.ID, rec); err != nil {
		t.Fatalf("Register: %v", err)
	}
	got, err := s.List(ctx)
	want := rec
	want.Lease = lease.ID
	if err != nil || len(got) != 1 || got[0] != want {
		t.Fatalf("List = %+v, %v; want [%+v]", got, err, want)
	}
	if reg, known := s.registered(ctx, s.Key(7, "n1"), lease.ID); !reg || !known {
		t.Errorf("registered(the record) = %v, %v", reg, known)
	}
	if reg, known := s.registered(ctx, s.Key(7, "n1"), lease.ID+1); reg || !known {
		t.Errorf("registered(under another lease) = %v, %v", reg, known)
	}

	// A second record at the same key, and one under a fence whose term
	// is over, are refused, and their leases revoked.
	for _, tt := range []struct {
		name  string
		fence Fence
		rec   Replica
		want  error
	}{
		{"exists", fence, rec, ErrReplicaExists},
		{"fenced", Fence{Key: fence.Key, Rev: fence.Rev - 1}, Replica{Key: "/j", Hash: 8, Node: "n1"}, ErrFenced},
		{"fence key gone", Fence{Key: fence.Key + "-gone", Rev: fence.Rev}, Replica{Key: "/j", Hash: 8, Node: "n1"}, ErrFenced},
	} {
		l, err := s.Grant(ctx, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Register(ctx, tt.fence, l.ID, tt.rec); !errors.Is(err, tt.want) {
			t.Errorf("%s: Register = %v, want %v", tt.name, err, tt.want)
		}
		if left, err := s.TimeToLive(ctx, l.ID); err != nil || left > 0 {
			t.Errorf("%s: lease after the refusal: %v left, %v; want it revoked", tt.name, left, err)
		}
	}
	if n := liveLeases(t, c); n != 1 {
		t.Errorf("leases = %d, want only the registered one", n)
	}

	ttl, err := s.Renew(ctx, lease.ID)
	if err != nil || ttl != 2*time.Second {
		t.Errorf("Renew = %v, %v", ttl, err)
	}
	if left, err := s.TimeToLive(ctx, lease.ID); err != nil || left <= 0 || left > 2*time.Second {
		t.Errorf("TimeToLive = %v, %v", left, err)
	}
	if err := s.Revoke(ctx, lease.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(ctx, lease.ID); err != nil {
		t.Errorf("Revoke of a lease already gone = %v", err)
	}
	if _, err := s.Renew(ctx, lease.ID); !errors.Is(err, ErrLeaseNotFound) {
		t.Errorf("Renew of a revoked lease = %v, want ErrLeaseNotFound", err)
	}
	if got, err := s.List(ctx); err != nil || len(got) != 0 {
		t.Errorf("List after the revoke = %+v, %v", got, err)
	}
}

// TestReplicaStoreIgnoresForgedRecords: a record without the cluster's MAC,
// a genuine one moved to another key, and an undecodable one are neither
// listed nor watched, and the forgeries are counted.
func TestReplicaStoreIgnoresForgedRecords(t *testing.T) {
	t.Parallel()
	e := startEtcd(t, t.TempDir(), "", "")
	c := newTestClient(t, e)
	ctx := t.Context()
	recs, _ := newTestRecords(t, "secret", nil)
	s, err := NewReplicaStore(c, "test", recs, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	fence := testLeaderFence(t, c, "leader")
	lease, err := s.Grant(ctx, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Register(ctx, fence, lease.ID, Replica{Key: "/k", Hash: 1, Node: "n1"}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex // guards view
	var view map[string]Replica
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Follow(wctx, func(v map[string]Replica) {
			mu.Lock()
			defer mu.Unlock()
			view = make(map[string]Replica, len(v))
			for k, r := range v {
				view[k] = r
			}
		}, testLogger(t))
	}()
	t.Cleanup(func() { cancel(); <-done })

	genuine, err := c.Get(ctx, s.Key(1, "n1"))
	if err != nil || len(genuine.Kvs) != 1 {
		t.Fatalf("get genuine: %v", err)
	}
	with := clientv3.WithLease(clientv3.LeaseID(lease.ID))
	for key, val := range map[string]string{
		s.Key(2, "evil"): `{"key":"/forged","owner":"n0","reason":"forged","ttl":2000000000}`,
		s.Key(1, "evil"): string(genuine.Kvs[0].Value), // moved
		s.Key(3, "n1"):   "not json",
	} {
		if _, err := c.Put(ctx, key, val, with); err != nil {
			t.Fatal(err)
		}
	}
	testwait.Eventually(t, 10*time.Second, "forgeries counted", func() bool {
		return counterValue(recs.rejected.WithLabelValues(KindReplica)) >= 3 // "not json" has no MAC either
	})
	got, err := s.List(ctx)
	if err != nil || len(got) != 1 || got[0].Node != "n1" || got[0].Hash != 1 {
		t.Errorf("List = %+v, %v; want the genuine record alone", got, err)
	}
	// A genuine record put after the forgeries: once the watch has it, it
	// has seen them too.
	if err := s.Register(ctx, fence, lease.ID, Replica{Key: "/m", Hash: 4, Node: "n2"}); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, 10*time.Second, "the later record watched", func() bool {
		mu.Lock()
		defer mu.Unlock()
		_, ok := view[s.Key(4, "n2")]
		return ok
	})
	mu.Lock()
	defer mu.Unlock()
	if _, ok := view[s.Key(1, "n1")]; !ok || len(view) != 2 {
		t.Errorf("watched view = %+v, want the two genuine records alone", view)
	}
}
