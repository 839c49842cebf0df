package cluster

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestPurgeLog: entries are sealed records under keys named by their
// append time; a watch delivers them in revision order with the ones the
// cluster did not write failing to open (and counted), deletions by a
// compaction marked, and a position etcd compacted away reported.
func TestPurgeLog(t *testing.T) {
	t.Parallel()
	e := startEtcd(t, t.TempDir(), "", "")
	c := newTestClient(t, e)
	ctx := t.Context()
	recs, _ := newTestRecords(t, "secret", nil)
	l := NewPurgeLog(c, "test", recs)
	r := l.Reader()

	if rev, err := l.Latest(ctx); err != nil || rev != 0 {
		t.Fatalf("Latest of an empty log = %d, %v", rev, err)
	}
	start, err := r.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_700_000_000, 0)
	rev1, err := l.Append(ctx, t0, []byte(`{"kind":"tag","value":"a"}`))
	if err != nil {
		t.Fatal(err)
	}
	forged := l.Prefix() + "00000000000000000001-forged"
	if _, err := c.Put(ctx, forged, `{"kind":"all"}`); err != nil {
		t.Fatal(err)
	}
	rev3, err := l.Append(ctx, t0.Add(time.Hour), []byte(`{"kind":"tag","value":"b"}`))
	if err != nil {
		t.Fatal(err)
	}
	if latest, err := l.Latest(ctx); err != nil || latest != rev3 {
		t.Errorf("Latest = %d, %v; want %d", latest, err, rev3)
	}
	// Before t0 + 1m: the forged key (time 1ns) and the first entry.
	if n, err := l.CompactBefore(ctx, t0.Add(time.Minute)); err != nil || n != 2 {
		t.Errorf("CompactBefore = %d, %v; want 2 deleted", n, err)
	}

	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var got []string
	for ch := range r.Watch(wctx, start+1).Changes() {
		if ch.Err != nil || ch.CompactRevision != 0 {
			t.Fatalf("watch: %+v", ch)
		}
		for _, ev := range ch.Events {
			if ev.Deleted {
				got = append(got, "deleted "+strings.TrimPrefix(ev.Key, l.Prefix())[:20])
				continue
			}
			if raw, ok := ev.Open(); ok {
				got = append(got, string(raw))
			} else {
				got = append(got, "forged")
			}
		}
		if len(got) >= 5 {
			break
		}
	}
	want := []string{`{"kind":"tag","value":"a"}`, "forged", `{"kind":"tag","value":"b"}`, "deleted 00000000000000000001", "deleted 01700000000000000000"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("watched\n%q\nwant\n%q", got, want)
	}
	if v := counterValue(recs.rejected.WithLabelValues(KindPurge)); v != 1 {
		t.Errorf("rejected purge records = %v, want 1", v)
	}
	if rev1 <= start {
		t.Errorf("append revision %d not after the start %d", rev1, start)
	}

	// A position etcd compacted away is reported, and the watch ends.
	now, err := r.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Compact(ctx, now); err != nil {
		t.Fatal(err)
	}
	var compacted int64
	for ch := range r.Watch(wctx, start+1).Changes() {
		compacted = ch.CompactRevision
		break
	}
	if compacted != now {
		t.Errorf("watch from a compacted position: CompactRevision %d, want %d", compacted, now)
	}

	if n, err := l.CompactTo(ctx, 0); err != nil || n != 1 {
		t.Errorf("CompactTo(0) = %d, %v; want the one entry left deleted", n, err)
	}
}
