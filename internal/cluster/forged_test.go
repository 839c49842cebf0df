package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/crowdpilot/crowdpilot/internal/testwait"
)

// Records the cluster did not write, put straight into etcd the way anyone
// with write access to it could: each store ignores them and counts them.

// TestElectionIgnoresForgedCandidates: a candidate key written before any
// node campaigns (so it is the oldest) neither holds the election nor is
// named as the leader; overwriting the leader's key makes it step down
// rather than leave nodes disagreeing on who leads.
func TestElectionIgnoresForgedCandidates(t *testing.T) {
	e := startEtcd(t, t.TempDir(), "", "")
	c := newTestClient(t, e)
	recs, _ := newTestRecords(t, "secret", nil)
	lease, err := c.Grant(t.Context(), 600)
	if err != nil {
		t.Fatal(err)
	}
	forged, _ := json.Marshal(leaderRecord{ID: "evil", Value: "203.0.113.7:9080"})
	evilKey := fmt.Sprintf("%s/%x", LeaderPrefix("test"), int64(lease.ID))
	if _, err := c.Put(t.Context(), evilKey, string(forged), clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}

	a := newSealedCandidate(t, e, "a", recs)
	f1 := recv(t, a.terms, "a to lead past the forged candidate")
	id, val, err := a.el.Leader(t.Context())
	if err != nil || id != "a" || val != "a-admin" {
		t.Fatalf("Leader() = %q, %q, %v; want a (the forged key is older)", id, val, err)
	}
	if got := counterValue(recs.rejected.WithLabelValues(KindLeader)); got < 1 {
		t.Errorf("rejected{leader} = %v, want the forged candidate counted", got)
	}

	// A second genuine candidate waits for a, not for the forgery.
	b := newSealedCandidate(t, e, "b", recs)
	// b's key must be in etcd before a's is overwritten, or a (stepping
	// down and campaigning again) may get in ahead of it.
	testwait.Eventually(t, 10*time.Second, "b campaigning (3 candidate keys)", func() bool {
		resp, err := c.Get(t.Context(), LeaderPrefix("test")+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		return err == nil && resp.Count == 3
	})
	if _, err := c.Put(t.Context(), f1.Key, string(forged), clientv3.WithIgnoreLease()); err != nil {
		t.Fatal(err)
	}
	recv(t, a.ended, "a to step down once its key is overwritten")
	recv(t, b.terms, "b to lead")
	if id, _, err := b.el.Leader(t.Context()); err != nil || id != "b" {
		t.Fatalf("Leader() after a stepped down = %q, %v; want b", id, err)
	}
}

// TestTenantStoreIgnoresForgedRecords: a tenant record without a valid MAC
// is not returned by Get, List or the watcher, and the next update
// replaces it with a sealed one.
func TestTenantStoreIgnoresForgedRecords(t *testing.T) {
	e := startEtcd(t, t.TempDir(), "", "")
	c := newTestClient(t, e)
	recs, _ := newTestRecords(t, "secret", nil)
	other, _ := newTestRecords(t, "another secret", nil)
	s := NewTenantStore(c, "test", recs)
	ctx := t.Context()
	var mu sync.Mutex
	var view map[string]TenantRecord
	loaded := false
	w := s.Watcher(func(v map[string]TenantRecord) { mu.Lock(); view, loaded = v, true; mu.Unlock() }, testLogger(t))
	r := testwait.Go(t, func(ctx context.Context) error { w.Run(ctx); return nil })
	defer r.Stop(t)

	rec := []byte(`{"name":"news","size":1,"pin":["evil"]}`)
	if _, err := c.Put(ctx, TenantsPrefix("test")+"news", string(rec)); err != nil {
		t.Fatal(err)
	}
	key := TenantsPrefix("test") + "sports"
	if _, err := c.Put(ctx, key, string(other.Seal(key, 0, []byte(`{"name":"sports","size":9}`)))); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, 5*time.Second, "both forgeries counted", func() bool {
		return counterValue(recs.rejected.WithLabelValues(KindTenant)) >= 2
	})
	mu.Lock()
	if !loaded || len(view) != 0 {
		t.Errorf("watcher view %+v (loaded %v), want empty", view, loaded)
	}
	mu.Unlock()
	if got, ok, err := s.Get(ctx, "news"); err != nil || ok || got.Size != 0 || got.Pin != nil {
		t.Errorf("Get(news) = %+v, %v, %v; want none", got, ok, err)
	}
	if all, err := s.List(ctx); err != nil || len(all) != 0 {
		t.Errorf("List = %+v, %v; want none", all, err)
	}

	// The cluster's own write replaces the forgery and is seen.
	if _, err := s.Update(ctx, "news", func(r *TenantRecord) error { r.Size = 4; return nil }); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := s.Get(ctx, "news"); err != nil || !ok || got.Size != 4 || got.Pin != nil {
		t.Fatalf("Get(news) after update = %+v, %v, %v; want size 4, no pin", got, ok, err)
	}
	testwait.Eventually(t, 5*time.Second, "watcher sees the sealed record", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return view["news"].Size == 4 && len(view) == 1
	})
}

// TestObjectStoreIgnoresForgedSettings: a pin without a valid MAC is not
// listed or watched, and an update replaces it.
func TestObjectStoreIgnoresForgedSettings(t *testing.T) {
	e := startEtcd(t, t.TempDir(), "", "")
	c := newTestClient(t, e)
	recs, _ := newTestRecords(t, "secret", nil)
	s, err := NewObjectStore(c, "test", fnvHash, 10, recs)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var mu sync.Mutex
	var view map[uint64]ObjectSetting
	w := s.Watcher(func(v map[uint64]ObjectSetting) { mu.Lock(); view = v; mu.Unlock() }, testLogger(t))
	r := testwait.Go(t, func(ctx context.Context) error { w.Run(ctx); return nil })
	defer r.Stop(t)

	const key = "origin.example/live/match-1"
	ek := fmt.Sprintf("%s%016x", ObjectsPrefix("test"), fnvHash(key))
	if _, err := c.Put(ctx, ek, fmt.Sprintf(`{"key":%q,"pin":5}`, key)); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, 5*time.Second, "forgery counted", func() bool {
		return counterValue(recs.rejected.WithLabelValues(KindObject)) >= 1
	})
	mu.Lock()
	if len(view) != 0 {
		t.Errorf("watcher view %+v, want empty", view)
	}
	mu.Unlock()
	if got, ok, err := s.Get(ctx, key); err != nil || ok || got.Pin != 0 {
		t.Errorf("Get = %+v, %v, %v; want none", got, ok, err)
	}
	if all, err := s.List(ctx); err != nil || len(all) != 0 {
		t.Errorf("List = %+v, %v; want none", all, err)
	}
	if _, err := s.Update(ctx, key, func(o *ObjectSetting) error { o.Pin = 1; return nil }); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, 5*time.Second, "watcher sees the sealed pin", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(view) == 1 && view[fnvHash(key)].Pin == 1
	})
}
