package cluster

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/testwait"
)

func fnvHash(key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	return h.Sum64()
}

func newObjectStore(t *testing.T, max int) (*ObjectStore, *Embedded) {
	t.Helper()
	e := startEtcd(t, t.TempDir(), "", "")
	s, err := NewObjectStore(newTestClient(t, e), "test", fnvHash, max, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, e
}

func TestObjectStore(t *testing.T) {
	t.Parallel()
	s, e := newObjectStore(t, 3)
	ctx := t.Context()
	const key = "origin.example/live/match-1"

	if _, ok, err := s.Get(ctx, key); ok || err != nil {
		t.Fatalf("Get before any write = %v, %v", ok, err)
	}
	set, err := s.Update(ctx, key, func(o *ObjectSetting) error { o.Pin, o.Reason = 2, "sale"; return nil })
	if err != nil || set.Key != key || set.Hash != fnvHash(key) || set.Pin != 2 {
		t.Fatalf("Update = %+v, %v", set, err)
	}
	one := 1
	if _, err := s.Update(ctx, key, func(o *ObjectSetting) error { o.Cap = &one; return nil }); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.Get(ctx, key)
	if err != nil || !ok || got.Pin != 2 || got.Cap == nil || *got.Cap != 1 || got.Reason != "sale" {
		t.Fatalf("Get = %+v, %v, %v", got, ok, err)
	}

	// An edit that fails writes nothing.
	boom := errors.New("boom")
	if _, err := s.Update(ctx, key, func(o *ObjectSetting) error { o.Pin = 7; return boom }); !errors.Is(err, boom) {
		t.Fatalf("failing edit: %v", err)
	}
	if got, _, _ := s.Get(ctx, key); got.Pin != 2 {
		t.Fatalf("failing edit wrote pin %d", got.Pin)
	}

	// The bound: a fourth setting is refused, changing a held one is not.
	for i := range 2 {
		if _, err := s.Update(ctx, fmt.Sprintf("o/k%d", i), func(o *ObjectSetting) error { o.Pin = 1; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Update(ctx, "o/k9", func(o *ObjectSetting) error { o.Pin = 1; return nil }); !errors.Is(err, ErrObjectsFull) || !strings.Contains(err.Error(), "3 of 3") {
		t.Fatalf("a setting beyond the bound: %v, want ErrObjectsFull", err)
	}
	if _, ok, _ := s.Get(ctx, "o/k9"); ok {
		t.Fatal("the refused setting was written")
	}
	if _, err := s.Update(ctx, key, func(o *ObjectSetting) error { o.Pin = 3; return nil }); err != nil {
		t.Fatalf("changing a held setting at the bound: %v", err)
	}

	// Edited to zero: deleted, and room for another.
	if set, err := s.Update(ctx, key, func(o *ObjectSetting) error { o.Pin, o.Cap = 0, nil; return nil }); err != nil || !set.IsZero() {
		t.Fatalf("edit to zero = %+v, %v", set, err)
	}
	if _, ok, _ := s.Get(ctx, key); ok {
		t.Fatal("a zero setting is still stored")
	}
	if _, err := s.Update(ctx, "o/k9", func(o *ObjectSetting) error { o.Pin = 1; return nil }); err != nil {
		t.Fatalf("after a clear: %v", err)
	}

	// Records that do not hash to their etcd key, or out of range, are
	// ignored.
	c := newTestClient(t, e)
	bad := map[string]string{
		fmt.Sprintf("%016x", fnvHash("other")):   `{"key":"evil","pin":1}`,
		fmt.Sprintf("%016x", fnvHash("neg")):     `{"key":"neg","pin":-1}`,
		fmt.Sprintf("%016x", fnvHash("negcap")):  `{"key":"negcap","cap":-2}`,
		fmt.Sprintf("%016x", fnvHash("nothing")): `{"key":"nothing"}`,
		"zz":                                     `{"key":"zz","pin":1}`,
		fmt.Sprintf("%016x", fnvHash("junk")):    `not json`,
	}
	for k, v := range bad {
		if _, err := c.Put(ctx, ObjectsPrefix("test")+k, v); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range all {
		keys = append(keys, o.Key)
	}
	if fmt.Sprint(keys) != "[o/k0 o/k1 o/k9]" {
		t.Fatalf("List = %v, want the three good settings by key", keys)
	}
	if existed, err := s.Delete(ctx, "o/k0"); err != nil || !existed {
		t.Fatalf("Delete = %v, %v", existed, err)
	}
	if existed, err := s.Delete(ctx, "o/k0"); err != nil || existed {
		t.Fatalf("second Delete = %v, %v", existed, err)
	}
	if _, err := s.Update(ctx, "", func(*ObjectSetting) error { return nil }); err == nil {
		t.Error("Update of an empty key succeeded")
	}
	if _, err := s.Update(ctx, strings.Repeat("x", MaxObjectKeyBytes+1), func(*ObjectSetting) error { return nil }); err == nil {
		t.Error("Update of an oversized key succeeded")
	}
}

// TestObjectStoreBoundConcurrent: creates racing for the last places never
// exceed the bound.
func TestObjectStoreBoundConcurrent(t *testing.T) {
	t.Parallel()
	s, _ := newObjectStore(t, 5)
	var wg sync.WaitGroup
	var mu sync.Mutex // guards ok
	ok := 0
	for i := range 12 {
		wg.Go(func() {
			_, err := s.Update(t.Context(), fmt.Sprintf("k%d", i), func(o *ObjectSetting) error { o.Pin = 1; return nil })
			switch {
			case err == nil:
				mu.Lock()
				ok++
				mu.Unlock()
			case errors.Is(err, ErrObjectsFull), errors.Is(err, ErrObjectConflict):
			default:
				t.Errorf("create k%d: %v", i, err)
			}
		})
	}
	wg.Wait()
	all, err := s.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(all) > 5 || len(all) != ok {
		t.Fatalf("%d settings stored, %d creates succeeded; want the same, at most 5", len(all), ok)
	}
}

func TestObjectWatcher(t *testing.T) {
	t.Parallel()
	s, _ := newObjectStore(t, 10)
	var mu sync.Mutex
	var view map[uint64]ObjectSetting
	w := s.Watcher(func(v map[uint64]ObjectSetting) { mu.Lock(); view = v; mu.Unlock() }, testLogger(t))
	r := testwait.Go(t, func(ctx context.Context) error { w.Run(ctx); return nil })
	defer r.Stop(t)
	pin := func() int {
		mu.Lock()
		defer mu.Unlock()
		return view[fnvHash("k")].Pin
	}
	for _, n := range []int{1, 3} {
		if _, err := s.Update(t.Context(), "k", func(o *ObjectSetting) error { o.Pin = n; return nil }); err != nil {
			t.Fatal(err)
		}
		testwait.Eventually(t, 5*time.Second, "watcher sees the pin", func() bool { return pin() == n })
	}
	if _, err := s.Delete(t.Context(), "k"); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, 5*time.Second, "watcher sees the delete", func() bool {
		mu.Lock()
		defer mu.Unlock()
		_, ok := view[fnvHash("k")]
		return !ok
	})
}
