package cluster

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/testwait"
)

func TestTenantStore(t *testing.T) {
	t.Parallel()
	e := startEtcd(t, t.TempDir(), "", "")
	c := newTestClient(t, e)
	ctx := t.Context()
	s := NewTenantStore(c, "test", nil)

	if _, ok, err := s.Get(ctx, "news"); ok || err != nil {
		t.Fatalf("Get before any write = %v, %v", ok, err)
	}
	twelve := 12
	rec, err := s.Update(ctx, "news", func(r *TenantRecord) error {
		r.Size, r.Max, r.Reason = 6, &twelve, "operator"
		return nil
	})
	if err != nil || rec.Name != "news" || rec.Size != 6 {
		t.Fatalf("Update = %+v, %v", rec, err)
	}
	got, ok, err := s.Get(ctx, "news")
	if err != nil || !ok || got.Size != 6 || got.Max == nil || *got.Max != 12 || got.Min != nil {
		t.Fatalf("Get = %+v, %v, %v", got, ok, err)
	}

	// An edit that fails writes nothing.
	boom := errors.New("boom")
	if _, err := s.Update(ctx, "news", func(r *TenantRecord) error { r.Size = 99; return boom }); !errors.Is(err, boom) {
		t.Fatalf("failing edit: %v", err)
	}
	if got, _, _ := s.Get(ctx, "news"); got.Size != 6 {
		t.Fatalf("failing edit wrote size %d", got.Size)
	}

	// Concurrent increments all land (compare-and-swap on the revision).
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			_, err := s.Update(ctx, "news", func(r *TenantRecord) error { r.Size++; return nil })
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Update: %v", err)
		}
	}
	if got, _, _ := s.Get(ctx, "news"); got.Size != 10 {
		t.Fatalf("after 4 concurrent increments size = %d, want 10", got.Size)
	}

	// A fenced write from a term that is over fails and writes nothing.
	stale := Fence{Key: LeaderPrefix("test") + "/gone", Rev: 12345}
	if _, err := s.Update(ctx, "news", func(r *TenantRecord) error { r.Size = 3; return nil }, stale.Cmp()); !errors.Is(err, ErrTenantConflict) {
		t.Fatalf("stale fence: %v, want ErrTenantConflict", err)
	}
	if got, _, _ := s.Get(ctx, "news"); got.Size != 10 {
		t.Fatalf("stale fence wrote size %d", got.Size)
	}

	// Records whose name does not match their key are ignored.
	if _, err := c.Put(ctx, TenantsPrefix("test")+"evil", `{"name":"news","size":1}`); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, TenantsPrefix("test")+"junk", `not json`); err != nil {
		t.Fatal(err)
	}
	all, err := s.List(ctx)
	if err != nil || len(all) != 1 || all["news"].Size != 10 {
		t.Fatalf("List = %+v, %v", all, err)
	}
	if _, err := s.Update(ctx, "a/b", func(*TenantRecord) error { return nil }); err == nil {
		t.Error("Update of a name with / succeeded")
	}
	if err := s.Delete(ctx, "news"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Get(ctx, "news"); ok {
		t.Error("record still there after Delete")
	}
}

func TestTenantWatcher(t *testing.T) {
	t.Parallel()
	e := startEtcd(t, t.TempDir(), "", "")
	c := newTestClient(t, e)
	s := NewTenantStore(c, "test", nil)
	var mu sync.Mutex
	var view map[string]TenantRecord
	w := s.Watcher(func(v map[string]TenantRecord) { mu.Lock(); view = v; mu.Unlock() }, testLogger(t))
	r := testwait.Go(t, func(ctx context.Context) error { w.Run(ctx); return nil })
	defer r.Stop(t)
	size := func(name string) int {
		mu.Lock()
		defer mu.Unlock()
		return view[name].Size
	}
	for _, n := range []int{3, 6, 9} {
		if _, err := s.Update(t.Context(), "a", func(r *TenantRecord) error { r.Size = n; return nil }); err != nil {
			t.Fatal(err)
		}
		testwait.Eventually(t, 5*time.Second, "watcher sees the size", func() bool { return size("a") == n })
	}
	if err := s.Delete(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, 5*time.Second, "watcher sees the delete", func() bool {
		mu.Lock()
		defer mu.Unlock()
		_, ok := view["a"]
		return !ok
	})
}
