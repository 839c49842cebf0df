package main

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestPct(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 100; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		q    float64
		want float64
	}{{0.5, 50}, {0.9, 90}, {0.99, 99}, {1, 100}, {0, 1}} {
		if got := pct(lat, tc.q); got != tc.want {
			t.Errorf("pct(1..100 ms, %v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := pct(nil, 0.5); got != 0 {
		t.Errorf("pct(nil) = %v, want 0", got)
	}
}

func TestCacheLabel(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    http.Header
		want string
	}{
		{"crowdpilot, ttl masked", http.Header{"Cache-Status": {"crowdpilot; hit; ttl=12; detail=stale", "crowdpilot; fwd=miss; fwd-status=200; detail=peer"}},
			"crowdpilot; hit; ttl=N; detail=stale, crowdpilot; fwd=miss; fwd-status=200; detail=peer"},
		{"nginx", http.Header{"X-Cache": {"UPDATING"}}, "nginx UPDATING"},
		{"varnish hit", http.Header{"X-Varnish": {"32770 3"}}, "varnish hit"},
		{"varnish miss", http.Header{"X-Varnish": {"32770"}}, "varnish miss"},
		{"none", http.Header{}, "-"},
	} {
		if got := cacheLabel(tc.h); got != tc.want {
			t.Errorf("%s: cacheLabel = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	var r result
	summarize(&r, []reply{
		{status: 200, latency: 10 * time.Millisecond, cache: "a", servedBy: "n0"},
		{status: 200, latency: 30 * time.Millisecond, cache: "a", servedBy: "n1"},
		{status: 503, latency: 20 * time.Millisecond, cache: "b"},
		{err: "read eof", latency: 40 * time.Millisecond},
	})
	if r.Statuses["200"] != 2 || r.Statuses["503"] != 1 || r.Statuses["read eof"] != 1 {
		t.Errorf("statuses = %v", r.Statuses)
	}
	if r.Cache["a"] != 2 || r.Cache["b"] != 1 || len(r.ServedBy) != 2 {
		t.Errorf("cache = %v, served by = %v", r.Cache, r.ServedBy)
	}
	if r.P50 != 20 || r.Max != 40 {
		t.Errorf("p50 = %v, max = %v, want 20 and 40", r.P50, r.Max)
	}
	if got := counts(r.Statuses); got != "200 × 2, 503 × 1, read eof × 1" {
		t.Errorf("counts = %q", got)
	}
}

func TestParseResults(t *testing.T) {
	text := `# HELP crowdpilot_requests_total Data requests by result
# TYPE crowdpilot_requests_total counter
crowdpilot_requests_total{result="hit"} 12
crowdpilot_requests_total{result="via_peer"} 3
crowdpilot_inflight_requests 1
crowdpilot_handoff_peeks_total{result="skipped"} 4
`
	m, err := parseResults(bufio.NewScanner(strings.NewReader(text)))
	if err != nil || m["hit"] != 12 || m["via_peer"] != 3 || m["peek skipped"] != 4 || len(m) != 3 {
		t.Fatalf("parseResults = %v, %v", m, err)
	}
	d := diffResults(map[string]map[string]float64{"n0": {"hit": 2, "via_peer": 3}}, map[string]map[string]float64{"n0": m})
	if len(d["n0"]) != 2 || d["n0"]["hit"] != 10 || d["n0"]["peek skipped"] != 4 {
		t.Errorf("diffResults = %v", d)
	}
}
