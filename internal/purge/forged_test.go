package purge

import (
	"context"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crowdpilot/crowdpilot/internal/cluster"
	"github.com/crowdpilot/crowdpilot/internal/testwait"
)

// TestFollowerIgnoresForgedEntries: with records sealed under the cluster
// secret, a purge-all entry written straight into etcd (no MAC, or a MAC
// under another secret) purges nothing and is counted; an entry the log
// appended is applied; one that opens but cannot be read still purges
// everything.
func TestFollowerIgnoresForgedEntries(t *testing.T) {
	te := startEtcd(t)
	c := te.client()
	reg := prometheus.NewRegistry()
	recs, err := cluster.NewRecords("secret", reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := cluster.NewRecords("another secret", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	f, _ := startFollower(t, FollowerConfig{Client: c, Applier: rec, Records: recs, Registerer: reg})
	testwait.Eventually(t, testTimeout, "start", func() bool { return f.Applied() > 0 })

	ctx := context.Background()
	forged := LogPrefix(testCluster) + "00000000000000000001-forged"
	if _, err := c.Put(ctx, forged, `{"kind":"all","at":"2026-01-01T00:00:00Z"}`); err != nil {
		t.Fatal(err)
	}
	otherKey := LogPrefix(testCluster) + "00000000000000000002-other"
	if _, err := c.Put(ctx, otherKey, string(other.Seal(otherKey, 0, []byte(`{"kind":"all","at":"2026-01-01T00:00:00Z"}`)))); err != nil {
		t.Fatal(err)
	}
	// Sealed by the cluster but unreadable: never skipped, purges everything.
	junk := LogPrefix(testCluster) + "00000000000000000003-junk"
	junkPut, err := c.Put(ctx, junk, string(recs.Seal(junk, 0, []byte(`{"kind":"frobnicate"}`))))
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewLog(c, testCluster, recs).Append(ctx, Request{Tag: "x"})
	if err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, testTimeout, "every entry seen", func() bool { return f.Applied() >= e.Rev })
	rec.mu.Lock()
	got := slices.Clone(rec.entries)
	rec.mu.Unlock()
	if len(got) != 2 || got[0].Rev != junkPut.Header.Revision || got[0].Kind != KindAll || got[1].Rev != e.Rev || got[1].Kind != KindTag || got[1].Value != "x" {
		t.Fatalf("applied %+v, want the sealed unreadable entry as an all-purge at %d, then the tag purge at %d, and nothing forged", got, junkPut.Header.Revision, e.Rev)
	}
	if n := rec.flushCount(); n != 0 {
		t.Errorf("%d flushes, want 0", n)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var rejected float64
	for _, mf := range mfs {
		if mf.GetName() != "crowdpilot_cluster_records_rejected_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" && l.GetValue() == cluster.KindPurge {
					rejected = m.GetCounter().GetValue()
				}
			}
		}
	}
	if rejected != 2 {
		t.Errorf(`records_rejected_total{kind="purge"} = %v, want 2`, rejected)
	}
}
