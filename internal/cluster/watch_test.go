package cluster

import (
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// TestPrefixWatcherReloadsAfterCompaction: a watch resuming from a compacted
// revision asks for a reload, and the reload sees the current state.
func TestPrefixWatcherReloadsAfterCompaction(t *testing.T) {
	t.Parallel()
	e := startEtcd(t, t.TempDir(), "", "")
	c := newTestClient(t, e)
	ctx := t.Context()
	prefix := MembersPrefix("test")
	w := PrefixWatcher[string]{
		Client:   c,
		Prefix:   prefix,
		Decode:   func(kv *mvccpb.KeyValue) (string, bool) { return string(kv.Value), string(kv.Value) != "bad" },
		OnChange: func(map[string]string) {},
	}
	var last int64
	for _, kv := range [][2]string{{"n7", "a"}, {"n8", "b"}, {"n9", "bad"}, {"n7", "c"}} {
		resp, err := c.Put(ctx, prefix+kv[0], kv[1])
		if err != nil {
			t.Fatal(err)
		}
		last = resp.Header.Revision
	}
	if _, err := c.Compact(ctx, last); err != nil {
		t.Fatal(err)
	}
	next, _, err := w.watch(ctx, map[string]string{}, 1)
	if next != 0 || err == nil {
		t.Fatalf("watch from a compacted revision = %d, %v; want 0 and an error", next, err)
	}
	view, next, err := w.load(ctx)
	if err != nil || len(view) != 2 || view[prefix+"n7"] != "c" || view[prefix+"n8"] != "b" || next != last+1 {
		t.Fatalf("load = %v, %d, %v", view, next, err)
	}
}
