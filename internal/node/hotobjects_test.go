package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crowdpilot/crowdpilot/internal/autopilot"
	"github.com/crowdpilot/crowdpilot/internal/demo"
	"github.com/crowdpilot/crowdpilot/internal/fill"
	"github.com/crowdpilot/crowdpilot/internal/heat"
	"github.com/crowdpilot/crowdpilot/internal/testwait"
)

// hotSeries returns the per-object series of reg by hash label:
// requests and origin fetches.
func hotSeries(t *testing.T, reg prometheus.Gatherer) map[string][2]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][2]float64{}
	for _, mf := range mfs {
		i := -1
		switch mf.GetName() {
		case "crowdpilot_hot_object_requests_total":
			i = 0
		case "crowdpilot_hot_object_origin_fetches_total":
			i = 1
		}
		if i < 0 {
			continue
		}
		for _, m := range mf.GetMetric() {
			var hash string
			for _, l := range m.GetLabel() {
				if l.GetName() == "hash" {
					hash = l.GetValue()
				}
			}
			v := out[hash]
			v[i] = m.GetCounter().GetValue()
			out[hash] = v
		}
	}
	return out
}

// hotLabels returns the key label of each per-object series by hash label.
func hotLabels(t *testing.T, reg prometheus.Gatherer) map[string]string {
	t.Helper()
	return keyLabels(t, reg, "crowdpilot_hot_object_requests_total")
}

// keyLabels maps the hash label of every series of the metric name to its
// key label.
func keyLabels(t *testing.T, reg prometheus.Gatherer, name string) map[string]string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var key, hash string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "key":
					key = l.GetValue()
				case "hash":
					hash = l.GetValue()
				}
			}
			out[hash] = key
		}
	}
	return out
}

func hk(i int) hotKey {
	return hotKey{Key: fmt.Sprintf("origin:80/obj/%d?token=secret%d", i, i), Hash: uint64(1000 + i)}
}

func hs(i int) string { return strconv.Itoa(1000 + i) }

// TestHotObjectsBounded: at most maxHotObjectSeries objects get series,
// an exported object keeps its series while it stays hot, those left over
// are counted once per stay, series go when their object leaves the set
// (or the set is not heard of for too long), and keys are redacted.
func TestHotObjectsBounded(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	var h hotObjects
	h.init(reg, func(*http.Request) (*http.Response, error) { return nil, errors.New("no origin here") }, false)
	t0 := time.Unix(1000, 0)

	var hot []hotKey
	for i := range maxHotObjectSeries + 5 {
		hot = append(hot, hk(i))
	}
	// Two keys that differ only in a query value redact to one label:
	// the hash label keeps their series apart.
	twin := hotKey{Key: "origin:80/obj/0?token=other", Hash: 999}
	hot = append([]hotKey{twin}, hot...)
	h.refresh(hot, nil, t0)
	got := hotSeries(t, reg)
	if len(got) != maxHotObjectSeries {
		t.Fatalf("%d objects exported, want %d", len(got), maxHotObjectSeries)
	}
	labels := hotLabels(t, reg)
	if labels["999"] != "origin:80/obj/0?token=REDACTED" || labels[hs(0)] != labels["999"] {
		t.Errorf("labels %q and %q, want both origin:80/obj/0?token=REDACTED", labels["999"], labels[hs(0)])
	}
	for i := maxHotObjectSeries - 1; i < len(hot)-1; i++ {
		if _, ok := got[hs(i)]; ok {
			t.Errorf("object %d (rank %d) exported beyond the cap", i, i+1)
		}
	}
	if v := sampleValue(t, reg, "crowdpilot_hot_objects_unexported_total"); v != 6 {
		t.Errorf("unexported = %v, want 6", v)
	}
	h.refresh(hot, nil, t0.Add(time.Second))
	if v := sampleValue(t, reg, "crowdpilot_hot_objects_unexported_total"); v != 6 {
		t.Errorf("unexported = %v after the same set again, want still 6 (counted once per stay)", v)
	}

	// A new object hotter than all: no slot, since the exported ones are
	// still hot; it gets one as soon as one of them cools.
	hotter := hk(100)
	hot = append([]hotKey{hotter}, hot...)
	h.refresh(hot, nil, t0.Add(2*time.Second))
	if _, ok := hotSeries(t, reg)[hs(100)]; ok {
		t.Error("a newcomer took the slot of an object still hot")
	}
	if v := sampleValue(t, reg, "crowdpilot_hot_objects_unexported_total"); v != 7 {
		t.Errorf("unexported = %v, want 7", v)
	}
	cooled := hot[:0:0]
	for _, k := range hot {
		if k.Hash != hk(3).Hash {
			cooled = append(cooled, k)
		}
	}
	h.refresh(cooled, nil, t0.Add(3*time.Second))
	got = hotSeries(t, reg)
	if _, ok := got[hs(3)]; ok {
		t.Error("object 3 left the hot set but keeps its series")
	}
	if _, ok := got[hs(100)]; !ok || len(got) != maxHotObjectSeries {
		t.Errorf("after object 3 cooled: newcomer exported %v, %d objects; want it in and %d", ok, len(got), maxHotObjectSeries)
	}

	// Not heard of for longer than the max age: every series goes.
	h.expire(t0.Add(3*time.Second+time.Minute), time.Minute)
	if len(hotSeries(t, reg)) == 0 {
		t.Fatal("series dropped at exactly the max age")
	}
	h.expire(t0.Add(3*time.Second+time.Minute+time.Nanosecond), time.Minute)
	if got := hotSeries(t, reg); len(got) != 0 {
		t.Errorf("%d objects still exported after the hot set went unheard past its max age", len(got))
	}
	if v := sampleValue(t, reg, "crowdpilot_hot_objects"); v != 0 {
		t.Errorf("crowdpilot_hot_objects = %v, want 0", v)
	}
}

// sampleValue returns the value of the unlabelled counter or gauge name.
func sampleValue(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			return m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no %s", name)
	return 0
}

// TestHotObjectsCounts: request counts follow the heat tracker's from the
// refresh an object joined at (through evictions), and origin fetches are
// counted for an exported object only, shed ones not at all.
func TestHotObjectsCounts(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	var h hotObjects
	shed := false
	sent := 0
	h.init(reg, func(*http.Request) (*http.Response, error) {
		if shed {
			return nil, fill.ErrShed
		}
		sent++
		return nil, errors.New("origin answered nothing")
	}, true)
	a, b := hk(1), hk(2)
	now := time.Unix(1000, 0)
	step := func(hot []hotKey, tracked ...heat.KeyRate) map[string][2]float64 {
		now = now.Add(time.Second)
		h.refresh(hot, tracked, now)
		return hotSeries(t, reg)
	}
	kr := func(k hotKey, count uint64) heat.KeyRate { return heat.KeyRate{Key: k.Key, Hash: k.Hash, Count: count} }

	for i, tt := range []struct {
		hot     []hotKey
		tracked []heat.KeyRate
		want    float64 // requests of a
	}{
		{[]hotKey{a}, []heat.KeyRate{kr(a, 40)}, 0},                           // joins: what came before is not counted
		{[]hotKey{a}, []heat.KeyRate{kr(a, 47)}, 7},                           // 7 more
		{[]hotKey{a}, []heat.KeyRate{kr(a, 3)}, 10},                           // evicted and readmitted: 3 new
		{[]hotKey{a}, nil, 10},                                                // evicted
		{[]hotKey{a}, []heat.KeyRate{kr(a, 60), kr(b, 9)}, 70},                // readmitted: all 60 are new
		{[]hotKey{a, b}, []heat.KeyRate{kr(a, 60), kr(b, 12)}, 70},            // b joins
		{[]hotKey{b, a}, []heat.KeyRate{kr(b, 20), kr(a, 61)}, 71},            // order changes nothing
		{[]hotKey{a, b}, []heat.KeyRate{kr(a, 61), kr(hk(3), 99)}, 71},        // others are ignored
		{[]hotKey{a, b}, []heat.KeyRate{kr(a, 61), kr(b, 21)}, 71},            // b untracked in between: all 21 new
		{[]hotKey{a, b}, []heat.KeyRate{kr(a, 1<<40), kr(b, 21)}, 1<<40 + 10}, // big counts stay exact
	} {
		got := step(tt.hot, tt.tracked...)
		if got[hs(1)][0] != tt.want {
			t.Errorf("step %d: requests of a = %v, want %v", i, got[hs(1)][0], tt.want)
		}
	}
	if got := hotSeries(t, reg)[hs(2)][0]; got != 8+21 {
		t.Errorf("requests of b = %v, want 29 (joined at 12, then 20, untracked, 21)", got)
	}
	if labels := hotLabels(t, reg); labels[hs(1)] != a.Key {
		t.Errorf("open keys: label %q, want %q", labels[hs(1)], a.Key)
	}

	fetch := func(hash uint64) {
		out, _ := http.NewRequest(http.MethodGet, "http://origin/obj", nil)
		up := h.upstream(hash)
		if up == nil {
			t.Fatalf("object %d exported without a counting upstream", hash)
		}
		up(context.Background(), out)
	}
	if h.upstream(hk(3).Hash) != nil {
		t.Error("an object outside the set has a counting upstream: the fill's own way (nil) is cheaper")
	}
	fetch(a.Hash)
	fetch(a.Hash)
	fetch(b.Hash)
	shed = true
	fetch(a.Hash) // shed at the origin limit: not a fetch
	shed = false
	if _, err := h.lookup(b.Hash).fetch(&http.Request{}); err == nil {
		t.Fatal("the origin's error was lost")
	}
	got := hotSeries(t, reg)
	if got[hs(1)][1] != 2 || got[hs(2)][1] != 2 || sent != 4 {
		t.Errorf("origin fetches a %v b %v (sent %d), want 2 and 2 (4)", got[hs(1)][1], got[hs(2)][1], sent)
	}
	// a leaves and comes back: a new series, counted from zero.
	step([]hotKey{b})
	step([]hotKey{a, b}, kr(a, 5))
	if got := hotSeries(t, reg)[hs(1)]; got != [2]float64{0, 0} {
		t.Errorf("a back in the set: %v, want a new series at 0", got)
	}
}

// TestHotObjectSeriesOnRealNodes drives a key hot on a real cluster: every
// node exports its series, the router counts exactly the requests that
// entered there, the origin fetches the series count are exactly those the
// origin saw (after the key turned hot: a purge), and once the crowd leaves
// the series are gone from every node.
func TestHotObjectSeriesOnRealNodes(t *testing.T) {
	tc := newTestCluster(t, 3, demo.Config{Latency: time.Millisecond, MaxAge: time.Hour}, func(c *Config) {
		// Hot from 5 requests/s; one member per object, so no leased
		// replicas hold the key in the hot set after the crowd.
		c.Autopilot = autopilot.Config{TargetRPS: 100, LowWatermark: 0.05, MaxReplicas: 1}
		c.ReportInterval = 100 * time.Millisecond
		c.IgnoreClientRevalidate = false // a client's no-cache revalidates
	})
	// A key owned by n2, entering at n0 (counted exactly) and n1 (the
	// crowd that keeps it hot).
	var path, objPath string
	for i := 0; ; i++ {
		objPath = fmt.Sprintf("/live/score-%d", i)
		path = objPath + "?token=abc"
		if o, _ := tc.nodes[0].router.Owner(tc.hashOf(path)); o.ID == "n2" {
			break
		}
	}
	hash := strconv.FormatUint(tc.hashOf(path), 10)
	exported := func(i int) (v [2]float64, ok bool) {
		v, ok = hotSeries(t, tc.nodes[i].cfg.Registry)[hash]
		return v, ok
	}

	c := tc.startCrowd(path, func() []int { return []int{1} }, 2)
	endCrowd := sync.OnceFunc(c.end)
	t.Cleanup(endCrowd)
	testwait.Eventually(t, 30*time.Second, "the key's series on every node", func() bool {
		for i := range tc.nodes {
			if _, ok := exported(i); !ok {
				return false
			}
		}
		return true
	})
	want := tc.key(objPath) + "?token=" + redactedValue
	for i, nd := range tc.nodes {
		if got := hotLabels(t, nd.cfg.Registry)[hash]; got != want {
			t.Errorf("n%d: key label %q, want %q", i, got, want)
		}
	}
	if v, _ := exported(0); v[0] != 0 {
		t.Fatalf("n0 counts %v requests before any entered there", v[0])
	}

	// Exactly the requests that enter at n0, wherever they are answered.
	const m = 50
	for range m {
		if s, _, _, err := tc.get(tc.url(0, path)); err != nil || s != 200 {
			t.Fatalf("GET via n0: %d %v", s, err)
		}
	}
	testwait.Eventually(t, 30*time.Second, fmt.Sprintf("n0 counting its %d requests", m), func() bool {
		v, ok := exported(0)
		if ok && v[0] > m {
			t.Fatalf("n0 counts %v requests, %d entered there", v[0], m)
		}
		return ok && v[0] == m
	})
	testwait.Eventually(t, 30*time.Second, "n1, where the crowd enters, counting requests", func() bool {
		v, _ := exported(1)
		return v[0] > 0
	})

	// The origin fetched the object once, before it was hot: no fetch in
	// the series yet. A purge makes the owner fetch again, and the series
	// count exactly what the origin saw since.
	originSince := func() float64 { return float64(tc.origin.FetchesOf(objPath) - 1) }
	if got := originSince(); got != 0 {
		t.Fatalf("origin fetched %v more times while the object was cached for an hour", got)
	}
	for i := range tc.nodes {
		if v, _ := exported(i); v[1] != 0 {
			t.Fatalf("n%d counts %v origin fetches, the origin saw none since the key turned hot", i, v[1])
		}
	}
	for range 2 {
		before := originSince()
		if code, out := tc.adminPost(0, "secret", fmt.Sprintf(`{"key": %q, "wait": "5s"}`, path)); code != http.StatusOK {
			t.Fatalf("purge: %d %v", code, out)
		}
		testwait.Eventually(t, 30*time.Second, "the owner's origin fetches matching the origin's", func() bool {
			o := originSince()
			v, _ := exported(2)
			return o > before && v[1] == o
		})
	}
	// A client's revalidation at the owner goes to the origin by the
	// other way there (a fill of an entry held, not a miss).
	before := originSince()
	for range 3 {
		if r := tc.getWith(2, path, "Cache-Control", "no-cache"); r.status != 200 {
			t.Fatalf("revalidating GET via n2: %d", r.status)
		}
	}
	testwait.Eventually(t, 30*time.Second, "the owner counting the revalidations", func() bool {
		o := originSince()
		v, _ := exported(2)
		return o >= before+3 && v[1] == o
	})
	for i := range 2 {
		if v, _ := exported(i); v[1] != 0 {
			t.Errorf("n%d, not the owner, counts %v origin fetches", i, v[1])
		}
	}

	endCrowd()
	testwait.Eventually(t, 30*time.Second, "the key's series gone from every node after the crowd", func() bool {
		for i := range tc.nodes {
			if _, ok := exported(i); ok {
				return false
			}
		}
		return true
	})
	for i, nd := range tc.nodes {
		if v, ok := gauge(t, nd, "crowdpilot_hot_objects", nil); !ok || v != 0 {
			t.Errorf("n%d: crowdpilot_hot_objects %v (exported %v), want 0", i, v, ok)
		}
	}
}
