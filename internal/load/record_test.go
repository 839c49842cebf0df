package load

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestClassifyCacheStatus(t *testing.T) {
	for _, tc := range []struct {
		values []string
		want   cacheClass
	}{
		{nil, cacheNone},
		{[]string{""}, cacheNone},
		{[]string{"crowdpilot; hit"}, cacheHit},
		{[]string{"crowdpilot; hit; ttl=30"}, cacheHit},
		{[]string{"crowdpilot; hit; ttl=-5"}, cacheStale},
		{[]string{"crowdpilot; hit; fwd=stale"}, cacheStale},
		{[]string{"crowdpilot; hit; stale"}, cacheStale},
		{[]string{"crowdpilot; fwd=miss; stored"}, cacheMiss},
		{[]string{"crowdpilot; fwd=stale; fwd-status=200"}, cacheMiss},
		{[]string{"crowdpilot; collapsed"}, cacheOther},
		{[]string{"node-b; hit, node-a; fwd=request"}, cacheHit}, // forwarded to the node holding it
		{[]string{"node-b; fwd=miss", "node-a; fwd=request"}, cacheMiss},
		{[]string{"origin-cdn; fwd=uri-miss, node-a; hit"}, cacheHit},
		{[]string{"Node; HIT"}, cacheHit},
	} {
		if got := classifyCacheStatus(tc.values); got != tc.want {
			t.Errorf("classifyCacheStatus(%q) = %d, want %d", tc.values, got, tc.want)
		}
	}
}

func TestParseMetrics(t *testing.T) {
	const text = `# HELP crowdpilot_origin_fetches_total Origin fetches.
# TYPE crowdpilot_origin_fetches_total counter
crowdpilot_origin_fetches_total{result="ok"} 40
crowdpilot_origin_fetches_total{result="error"} 2
# TYPE crowdpilot_autopilot_replicas_active gauge
crowdpilot_autopilot_replicas_active{key="news.example/live/match-1"} 4
crowdpilot_autopilot_replicas_active{key="news.example/live/match-10"} 9
crowdpilot_autopilot_replicas_active{key="/live/other"} 2
# TYPE go_goroutines gauge
go_goroutines 12
`
	for _, tc := range []struct {
		name string
		text string
		hot  []string
		want scrape
		bad  bool
	}{
		{"hot object", text, []string{"/live/match-1"}, scrape{fetches: 42, hasFetches: true, replicas: 4, hasReplicas: true}, false},
		{"two hot objects", text, []string{"/live/match-1", "/live/other"}, scrape{fetches: 42, hasFetches: true, replicas: 6, hasReplicas: true}, false},
		{"no hot: all", text, nil, scrape{fetches: 42, hasFetches: true, replicas: 15, hasReplicas: true}, false},
		{"absent", "go_goroutines 3\n", nil, scrape{}, false},
		{"unlabelled replicas", "crowdpilot_autopilot_replicas_active 5\n", []string{"/x"}, scrape{replicas: 5, hasReplicas: true}, false},
		{"garbage", "{{{ not metrics\n", nil, scrape{}, true},
	} {
		got, err := parseMetrics(strings.NewReader(tc.text), tc.hot)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("%s: parseMetrics = %+v, %v; want %+v (error %v)", tc.name, got, err, tc.want, tc.bad)
		}
	}
}

func TestMetricsURL(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:9000":                "http://127.0.0.1:9000/metrics",
		"http://127.0.0.1:9000/":        "http://127.0.0.1:9000/metrics",
		"https://n1:9000/metrics":       "https://n1:9000/metrics",
		"http://n1:9000/admin/metrics/": "http://n1:9000/admin/metrics",
	} {
		if got := metricsURL(in); got != want {
			t.Errorf("metricsURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRecorderSeconds checks attribution to planned seconds and phases, the
// release of per-second histograms, and the X-Served-By bound.
func TestRecorderSeconds(t *testing.T) {
	s := time.Second
	ms := time.Millisecond
	r := newRecorder(Schedule{Base: 10, Duration: 3 * s, Crowd: Crowd{Multiplier: 2, Start: s, Hold: s}})
	r.dispatch(100*ms, false)
	r.dispatch(200*ms, true)
	r.dispatch(1100*ms, false) // closes second 0, whose request is still out
	if r.secs[0].pending != 1 || r.secs[0].Latency.Count != 0 {
		t.Fatalf("second 0 final while a request is out: %+v", r.secs[0])
	}
	r.done(outcome{at: 100 * ms, status: 200, latency: 1500 * ms, servedBy: "a", cache: cacheHit, newConn: true})
	if r.secs[0].hist != nil || r.secs[0].Latency.Count != 1 {
		t.Fatalf("second 0 not final after its last request: %+v", r.secs[0].Second)
	}
	r.done(outcome{at: 1100 * ms, status: 503, latency: 10 * ms})
	for i := range maxServedBy + 5 {
		r.dispatch(2100*ms, false)
		r.done(outcome{at: 2100 * ms, timeout: i == 0, status: 200 * min(i, 1), servedBy: strings.Repeat("n", i+1)})
	}
	series, phases, total := r.finish(3 * s)
	if len(series) != 3 || len(phases) != 3 {
		t.Fatalf("%d seconds, %d phases", len(series), len(phases))
	}
	if c := series[0].Counts; c.Scheduled != 2 || c.Sent != 1 || c.OK != 1 || c.NotSent != 1 {
		t.Errorf("second 0: %+v", c)
	}
	if l := series[0].Latency; l.P99Ms < 1490 || l.P99Ms > 1510 {
		t.Errorf("second 0 latency %+v, want 1.5 s", l)
	}
	if e := phases[1].Errors; phases[1].Name != "during" || e.Status5xx != 1 || e.Status503 != 1 || e.Total() != 1 {
		t.Errorf("during: %+v", phases[1])
	}
	if sb := series[0].SlowBy; len(sb) != 1 || sb["a"] != 1 {
		t.Errorf("second 0 slow by %v, want a: 1 (1.5 s)", sb)
	}
	if sa := series[0].SlowAt; len(sa) != 10 || sa[1] != 1 || slices.Max(sa) != 1 {
		t.Errorf("second 0 slow at %v, want one in its second tenth (planned at 100ms)", sa)
	}
	if s := series[0]; s.NewConns != 1 || s.SlowNewConns != 1 || series[1].NewConns != 0 {
		t.Errorf("new connections %d (slow %d) in second 0, %d in second 1; want 1 (1) and 0", s.NewConns, s.SlowNewConns, series[1].NewConns)
	}
	if sa := series[1].SlowAt; sa != nil {
		t.Errorf("second 1 slow at %v, want nil (10ms is not slow)", sa)
	}
	if sb := series[2].SlowBy; len(sb) != 0 {
		t.Errorf("second 2 slow by %v, want none (every answer at once)", sb)
	}
	if sb := series[2].ServedBy; len(sb) != maxServedBy+1 || sb[servedByOverflow] != 5 {
		t.Errorf("served by has %d values, overflow %d; want %d and 5", len(sb), sb[servedByOverflow], maxServedBy+1)
	}
	if total.Scheduled != 3+maxServedBy+5 || total.Errors.Timeout != 1 || total.Answered != total.Sent-1 {
		t.Errorf("total %+v", total.Counts)
	}
	if got, want := series[1].Planned, 20.0; got != want {
		t.Errorf("second 1 planned %v, want %v", got, want)
	}
}
