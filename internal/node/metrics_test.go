package node

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/demo"
)

// TestMetricsExposeTheNamedSeries: the series the issues name are on
// /metrics, with the counts a few requests produce.
func TestMetricsExposeTheNamedSeries(t *testing.T) {
	tc := newTestCluster(t, 2, demo.Config{Latency: time.Millisecond, MaxAge: time.Hour}, nil)
	for i := range 4 {
		if s, _, _, err := tc.get(tc.url(i%2, "/obj/1")); err != nil || s != 200 {
			t.Fatal(s, err)
		}
	}
	var text string
	eventually(t, 10*time.Second, func() string {
		var b strings.Builder
		for _, nd := range tc.nodes {
			resp, err := tc.client.Get("http://" + nd.AdminAddr() + "/metrics")
			if err != nil {
				return err.Error()
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			b.Write(body)
		}
		text = b.String()
		for _, name := range []string{
			"crowdpilot_requests_total{result=\"hit\"}",
			"crowdpilot_requests_total{result=\"miss\"}",
			"crowdpilot_request_duration_seconds_bucket",
			"crowdpilot_origin_fetches_total{result=\"2xx\"} 1",
			"crowdpilot_origin_limit",
			"crowdpilot_forward_failovers_total",
			"crowdpilot_store_bytes",
			"crowdpilot_store_entries",
			"crowdpilot_inflight_requests",
			"crowdpilot_purge_lag_seconds",
			"crowdpilot_autopilot_scale_out_total",
			"crowdpilot_autopilot_heat_reports_dropped_total",
		} {
			if !strings.Contains(text, name) {
				return "missing " + name
			}
		}
		return ""
	})
}

// TestMaxInflightSheds: past the in-flight bound a request gets a fast 503
// with Retry-After, counted as shed.
func TestMaxInflightSheds(t *testing.T) {
	tc := newTestCluster(t, 1, demo.Config{Latency: 2 * time.Second, MaxAge: time.Hour}, func(c *Config) {
		c.MaxInflight = 1
		c.OriginTimeout = 5 * time.Second
	})
	go tc.get(tc.url(0, "/slow")) // holds the only slot while the origin works
	eventually(t, 5*time.Second, func() string {
		if tc.nodes[0].inflight.Load() < 1 {
			return "first request not in flight"
		}
		return ""
	})
	resp, err := tc.client.Get(tc.url(0, "/other"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d Retry-After %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}
