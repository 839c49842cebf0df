package purge

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/crowdpilot/crowdpilot/internal/testwait"
)

const testTimeout = 30 * time.Second

// appendMany appends n purges from several goroutines, interleaved with
// unrelated writes, and returns the committed entries sorted by Rev.
func appendMany(t *testing.T, l *Log, c *clientv3.Client, n int) []Entry {
	t.Helper()
	const writers = 4
	var mu sync.Mutex
	var all []Entry
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := w; i < n; i += writers {
				var r Request
				switch i % 4 {
				case 0:
					r = Request{Key: fmt.Sprintf("http://example.com/a/%d", i)}
				case 1:
					r = Request{Tag: fmt.Sprintf("match-%d", i), Soft: true}
				case 2:
					r = Request{Prefix: fmt.Sprintf("/news/%d/", i)}
				default:
					r = Request{All: true}
				}
				e, err := l.Append(context.Background(), r)
				if err != nil {
					t.Errorf("append %d: %v", i, err)
					return
				}
				if _, err := c.Put(context.Background(), "/crowdpilot/t/other", "noise"); err != nil {
					t.Errorf("noise: %v", err)
				}
				mu.Lock()
				all = append(all, e)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.SortFunc(all, func(a, b Entry) int { return int(a.Rev - b.Rev) })
	return all
}

func entryRevs(es []Entry) []int64 {
	revs := make([]int64, len(es))
	for i, e := range es {
		revs[i] = e.Rev
	}
	return revs
}

func TestFollowersApplyEveryEntryInOrder(t *testing.T) {
	te := startEtcd(t)
	c := te.client()
	l := NewLog(c, testCluster, nil)

	var recs [3]*recorder
	var fs [3]*Follower
	for i := range recs {
		recs[i] = &recorder{}
		fs[i], _ = startFollower(t, FollowerConfig{Client: te.client(), Applier: recs[i]})
	}
	for i, f := range fs {
		testwait.Eventually(t, testTimeout, fmt.Sprintf("follower %d to start", i), func() bool { return f.Applied() > 0 })
	}

	want := appendMany(t, l, c, 400)
	last := want[len(want)-1].Rev
	for i, f := range fs {
		testwait.Eventually(t, testTimeout, fmt.Sprintf("follower %d to apply rev %d", i, last), func() bool { return f.Applied() >= last })
		recs[i].mu.Lock()
		got := slices.Clone(recs[i].entries)
		recs[i].mu.Unlock()
		if len(got) != len(want) {
			t.Fatalf("follower %d applied %d entries, want %d", i, len(got), len(want))
		}
		for j := range want {
			g, w := got[j], want[j]
			if g.Rev != w.Rev || g.Kind != w.Kind || g.Value != w.Value || g.Soft != w.Soft || !g.At.Equal(w.At) {
				t.Fatalf("follower %d entry %d = %+v, want %+v", i, j, g, w)
			}
		}
		if n := recs[i].flushCount(); n != 0 {
			t.Errorf("follower %d flushed %d times", i, n)
		}
	}

	// Writes outside the log: etcd's progress notifications carry the
	// followers' position past them (nothing else advances Applied without
	// a purge).
	resp, err := c.Put(context.Background(), "/crowdpilot/t/other", "last")
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range fs {
		testwait.Eventually(t, testTimeout, fmt.Sprintf("follower %d to confirm rev %d by progress", i, resp.Header.Revision),
			func() bool { return f.Applied() >= resp.Header.Revision })
		if !f.Connected() {
			t.Errorf("follower %d not Connected", i)
		}
	}
}

func TestFollowerResumesWithExactlyTheMissedEntries(t *testing.T) {
	te := startEtcd(t)
	c := te.client()
	l := NewLog(c, testCluster, nil)

	rec1 := &recorder{}
	f1, stop1 := startFollower(t, FollowerConfig{Client: c, Applier: rec1})
	testwait.Eventually(t, testTimeout, "follower to start", func() bool { return f1.Applied() > 0 })
	first := appendMany(t, l, c, 60)
	testwait.Eventually(t, testTimeout, "first batch applied", func() bool { return f1.Applied() >= first[len(first)-1].Rev })
	stop1()
	pos := f1.Applied()

	// While it is away: more purges, and the log compacted by age so that
	// some of the missed entries' keys are gone. etcd's history still has
	// them, and the follower must still apply them.
	missed := appendMany(t, l, c, 60)
	l.now = func() time.Time { return time.Now().Add(time.Hour) }
	n, err := l.Compact(context.Background(), 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if n != 120 {
		t.Fatalf("Compact deleted %d keys, want 120", n)
	}
	if got := logCount(t, c); got != 0 {
		t.Fatalf("log holds %d keys after compaction, want 0", got)
	}

	rec2 := &recorder{}
	f2, _ := startFollower(t, FollowerConfig{Client: c, Applier: rec2, StartRev: pos})
	later, err := l.Append(context.Background(), Request{Tag: "after"})
	if err != nil {
		t.Fatal(err)
	}
	want := append(entryRevs(missed), later.Rev)
	testwait.Eventually(t, testTimeout, "restarted follower to catch up", func() bool { return f2.Applied() >= later.Rev })
	if got := rec2.revs(); !slices.Equal(got, want) {
		t.Fatalf("restarted follower applied %v,\nwant exactly %v", got, want)
	}
	all := append(rec1.revs(), rec2.revs()...)
	if wantAll := append(entryRevs(first), want...); !slices.Equal(all, wantAll) {
		t.Fatalf("across the restart applied %v,\nwant %v", all, wantAll)
	}
	if rec2.flushCount() != 0 {
		t.Fatal("restarted follower flushed although nothing was compacted from etcd's history")
	}
}

func TestFollowerFlushesWhenItsPositionIsCompacted(t *testing.T) {
	te := startEtcd(t)
	c := te.client()
	l := NewLog(c, testCluster, nil)

	// live keeps following through the compaction and must not flush.
	live := &recorder{}
	fLive, _ := startFollower(t, FollowerConfig{Client: c, Applier: live})
	testwait.Eventually(t, testTimeout, "live follower to start", func() bool { return fLive.Applied() > 0 })

	behind := &recorder{}
	fBehind, stop := startFollower(t, FollowerConfig{Client: c, Applier: behind})
	testwait.Eventually(t, testTimeout, "follower to start", func() bool { return fBehind.Applied() > 0 })
	stop()
	pos := fBehind.Applied()

	skipped := appendMany(t, l, c, 20)
	// "Kept up" means applied everything before the compaction. A watcher
	// still behind when etcd compacts (its events queued under load) is
	// canceled with ErrCompacted and rightly flushes too.
	lastSkipped := slices.Max(entryRevs(skipped))
	testwait.Eventually(t, testTimeout, "live follower to keep up", func() bool { return live.has(lastSkipped) })
	if _, err := l.Compact(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	resp, err := c.Put(context.Background(), "/crowdpilot/t/other", "x") // overwrite
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Compact(context.Background(), resp.Header.Revision); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	var published []int64
	var pmu sync.Mutex
	f, _ := startFollower(t, FollowerConfig{Client: c, Applier: behind, StartRev: pos, Registerer: reg,
		OnApplied: func(rev int64) { pmu.Lock(); published = append(published, rev); pmu.Unlock() }})
	testwait.Eventually(t, testTimeout, "flush, published", func() bool {
		pmu.Lock()
		defer pmu.Unlock()
		return len(published) > 0 && published[len(published)-1] >= resp.Header.Revision
	})
	if n := behind.flushCount(); n != 1 || f.Applied() < resp.Header.Revision {
		t.Errorf("after compaction: %d flushes, applied %d; want 1 flush, applied >= %d", n, f.Applied(), resp.Header.Revision)
	}
	if got := metricValue(t, f.m.flushes); got != 1 {
		t.Errorf("crowdpilot_purge_compaction_flushes_total = %v, want 1", got)
	}

	// It keeps following.
	e, err := l.Append(context.Background(), Request{Key: "/after-compaction"})
	if err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, testTimeout, "purge after the flush", func() bool { return behind.has(e.Rev) })
	if got := behind.revs(); !slices.Equal(got, []int64{e.Rev}) {
		t.Errorf("after the flush applied %v, want just [%d]", got, e.Rev)
	}
	testwait.Eventually(t, testTimeout, "live follower", func() bool { return live.has(e.Rev) })
	if got, want := live.revs(), append(entryRevs(skipped), e.Rev); !slices.Equal(got, want) {
		t.Errorf("live follower applied %v, want %v", got, want)
	}
	if live.flushCount() != 0 {
		t.Error("a follower that kept up flushed")
	}
}

func TestFollowerConnectedTracksEtcd(t *testing.T) {
	te := startEtcd(t)
	c := te.client()
	rec := &recorder{}
	const maxDisconnect = 300 * time.Millisecond
	f, _ := startFollower(t, FollowerConfig{Client: c, Applier: rec, MaxDisconnect: maxDisconnect})
	if f.Connected() {
		t.Fatal("Connected before Run reached etcd")
	}
	testwait.Eventually(t, testTimeout, "Connected", f.Connected)
	// Idle cluster (no writes, so etcd sends no progress to a watch that
	// starts past its revision): contact must still be renewed, again and
	// again, over several MaxDisconnects.
	for range 12 {
		since := time.Now()
		testwait.Eventually(t, testTimeout, "contact renewed on an idle cluster", func() bool { return f.contact.Load() >= since.UnixNano() })
		if !f.Connected() {
			t.Fatal("lost Connected on an idle, healthy cluster")
		}
	}

	// etcd's graceful stop waits for open watch streams for several
	// seconds; Connected must turn false MaxDisconnect after the last
	// contact, not when the stop completes.
	stopping := time.Now()
	stopped := make(chan struct{})
	go func() { te.stop(); close(stopped) }()
	testwait.Eventually(t, testTimeout, "Connected to turn false with etcd down", func() bool { return !f.Connected() })
	last := time.Unix(0, f.contact.Load())
	if d := time.Since(last); d < maxDisconnect {
		t.Errorf("Connected false %s after the last contact, before MaxDisconnect %s", d, maxDisconnect)
	}
	t.Logf("Connected false %s after etcd began stopping (last contact %s after)", time.Since(stopping), last.Sub(stopping))
	<-stopped
	te.start()
	restarted := time.Now()
	testwait.Eventually(t, testTimeout, "Connected again after etcd returned", f.Connected)
	t.Logf("Connected again %s after etcd restarted", time.Since(restarted))
	l := NewLog(te.client(), testCluster, nil)
	e, err := l.Append(context.Background(), Request{Tag: "back"})
	if err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, testTimeout, "purge after reconnect", func() bool { return rec.has(e.Rev) })
}

func TestFollowerPurgesEverythingForAnUnreadableEntry(t *testing.T) {
	te := startEtcd(t)
	c := te.client()
	rec := &recorder{}
	reg := prometheus.NewRegistry()
	f, _ := startFollower(t, FollowerConfig{Client: c, Applier: rec, Registerer: reg})
	testwait.Eventually(t, testTimeout, "start", func() bool { return f.Applied() > 0 })
	resp, err := c.Put(context.Background(), LogPrefix(testCluster)+"garbage", `{"kind":"frobnicate"}`)
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewLog(c, testCluster, nil).Append(context.Background(), Request{Tag: "x"})
	if err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, testTimeout, "both entries", func() bool { return f.Applied() >= e.Rev })
	rec.mu.Lock()
	got := slices.Clone(rec.entries)
	rec.mu.Unlock()
	if len(got) != 2 || got[0].Rev != resp.Header.Revision || got[0].Kind != KindAll || got[1].Rev != e.Rev || got[1].Kind != KindTag {
		t.Fatalf("applied %+v, want an all-purge at %d then the tag purge at %d", got, resp.Header.Revision, e.Rev)
	}
	if v := metricValue(t, f.m.applied[KindAll]); v != 1 {
		t.Errorf(`applied_total{kind="all"} = %v, want 1`, v)
	}
	if v := metricValue(t, f.m.applied[KindTag]); v != 1 {
		t.Errorf(`applied_total{kind="tag"} = %v, want 1`, v)
	}
	gm := gathered(t, reg)
	if h := gm["crowdpilot_purge_lag_seconds"]; h == nil || h.GetHistogram().GetSampleCount() != 1 {
		t.Errorf("lag histogram = %v, want one sample (the unreadable entry has no commit time)", h)
	}
	if g := gm["crowdpilot_purge_connected"]; g == nil || g.GetGauge().GetValue() != 1 {
		t.Errorf("crowdpilot_purge_connected = %v, want 1", g)
	}
	if g := gm["crowdpilot_purge_applied_revision"]; g == nil || int64(g.GetGauge().GetValue()) != f.Applied() {
		t.Errorf("crowdpilot_purge_applied_revision = %v, want %d", g, f.Applied())
	}
}

// metricValue reads a counter or gauge.
func metricValue(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

// gathered returns the registry's unlabelled series, by name.
func gathered(t *testing.T, reg *prometheus.Registry) map[string]*dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.Metric{}
	for _, mf := range mfs {
		if len(mf.GetMetric()) == 1 {
			out[mf.GetName()] = mf.GetMetric()[0]
		}
	}
	return out
}

func TestNewFollowerValidatesConfig(t *testing.T) {
	te := startEtcd(t)
	c := te.client()
	ok := FollowerConfig{Client: c, Cluster: "x", Applier: &recorder{}}
	for _, tc := range []struct {
		name string
		mod  func(*FollowerConfig)
	}{
		{"no client", func(c *FollowerConfig) { c.Client = nil }},
		{"no cluster", func(c *FollowerConfig) { c.Cluster = "" }},
		{"no applier", func(c *FollowerConfig) { c.Applier = nil }},
		{"negative start", func(c *FollowerConfig) { c.StartRev = -1 }},
		{"negative disconnect", func(c *FollowerConfig) { c.MaxDisconnect = -time.Second }},
	} {
		cfg := ok
		tc.mod(&cfg)
		if _, err := NewFollower(cfg); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	reg := prometheus.NewRegistry()
	cfg := ok
	cfg.Registerer = reg
	f, err := NewFollower(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if f.cfg.MaxDisconnect != DefaultMaxDisconnect || f.interval != time.Second {
		t.Errorf("defaults: MaxDisconnect %s, interval %s", f.cfg.MaxDisconnect, f.interval)
	}
	if _, err := NewFollower(cfg); err == nil {
		t.Error("second follower on the same registry: no error")
	}
}

func TestFollowerFlushesWhenEtcdRevisionWentBackwards(t *testing.T) {
	te := startEtcd(t)
	c := te.client()
	rec := &recorder{}
	// A position from a previous etcd (restored from an older backup, or
	// recreated): purges at revisions up to it in this etcd are new.
	f, _ := startFollower(t, FollowerConfig{Client: c, Applier: rec, StartRev: 1_000_000})
	testwait.Eventually(t, testTimeout, "flush", func() bool { return rec.flushCount() == 1 && f.Applied() < 1_000_000 })
	e, err := NewLog(c, testCluster, nil).Append(context.Background(), Request{Tag: "x"})
	if err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, testTimeout, "purge applied", func() bool { return rec.has(e.Rev) })
}

func TestRunRefusesToRunTwice(t *testing.T) {
	te := startEtcd(t)
	f, _ := startFollower(t, FollowerConfig{Client: te.client(), Applier: &recorder{}})
	testwait.Eventually(t, testTimeout, "start", func() bool { return f.Applied() > 0 })
	if err := f.Run(context.Background()); err == nil {
		t.Fatal("second concurrent Run: no error")
	}
}
