package purge

import (
	"context"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestCompactToBoundsSize: the log keeps only its newest entries, however
// recent the older ones are (issue 10, finding 5: nothing a client sends
// grows etcd without bound).
func TestCompactToBoundsSize(t *testing.T) {
	te := startEtcd(t)
	c := te.client()
	l := NewLog(c, testCluster, nil)
	ctx := context.Background()
	var last []Entry
	for i := range 30 {
		e, err := l.Append(ctx, Request{Key: "/k/" + string(rune('a'+i))})
		if err != nil {
			t.Fatal(err)
		}
		last = append(last, e)
	}
	n, err := l.CompactTo(ctx, 10)
	if err != nil || n != 20 {
		t.Fatalf("CompactTo(10) = %d, %v; want 20 deleted", n, err)
	}
	resp, err := c.Get(ctx, LogPrefix(testCluster), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 10 {
		t.Fatalf("%d entries left, want 10", len(resp.Kvs))
	}
	for i, kv := range resp.Kvs {
		e, err := decodeEntry(kv.ModRevision, kv.Value)
		if err != nil || e.Value != last[20+i].Value {
			t.Errorf("entry %d left = %q (%v), want the newest ones (%q)", i, e.Value, err, last[20+i].Value)
		}
	}
	if n, err := l.CompactTo(ctx, 10); err != nil || n != 0 {
		t.Errorf("second CompactTo(10) = %d, %v; want 0", n, err)
	}
	if n, err := l.CompactTo(ctx, 0); err != nil || n != 10 {
		t.Errorf("CompactTo(0) = %d, %v; want 10: zero means zero", n, err)
	}
}
