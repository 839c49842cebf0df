package main

import (
	"bytes"
	"image/png"
	"strings"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/load"
)

func TestStatCPU(t *testing.T) {
	// comm with a space and a parenthesis; utime 250, stime 50 ticks.
	line := "4242 (crowd pilot) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 12 0 1000 0 0"
	if got, ok := statCPU(line, 100); !ok || got != 3 {
		t.Errorf("statCPU = %v, %v; want 3 s", got, ok)
	}
	if _, ok := statCPU("garbage", 100); ok {
		t.Error("statCPU accepted a line without fields")
	}
}

// TestTenantsReport: the section names B's phases, the node set changes,
// the per-node CPU shares and the repeats; the chart is a PNG.
func TestTenantsReport(t *testing.T) {
	rep := func(rate float64, crowd string, p99 [3]float64) *load.Report {
		r := &load.Report{Config: load.ReportConfig{Rate: rate, Crowd: crowd, DurationS: 6}}
		for i, n := range []string{"before", "during", "after"} {
			p := load.Phase{Name: n, FromS: float64(2 * i), ToS: float64(2*i + 2), Success: 1}
			p.Latency.P99Ms = p99[i]
			r.Phases = append(r.Phases, p)
		}
		for s := range 6 {
			sec := load.Second{T: s}
			sec.OK = int64(rate)
			sec.Latency = load.Latency{Count: 10, P99Ms: p99[s/2]}
			r.Series = append(r.Series, sec)
		}
		return r
	}
	const start = int64(1_000_000)
	r := &tenantRun{
		a: rep(100, "20x@2s+2s", [3]float64{2, 40, 3}), b: rep(200, "1x@2s+2s", [3]float64{1.5, 7.25, 1.75}),
		startA: start, startB: start + 4, quota: 0.5,
		fetchesBefore: &fetchStats{Objects: 10, Fetches: 10}, fetchesAfter: &fetchStats{Objects: 30, Fetches: 32, Repeats: 2},
	}
	for i := range 7 {
		nodes := map[string][]string{"a": {"n0", "n1"}, "b": {"n1", "n2"}}
		if i >= 3 {
			nodes["a"] = []string{"n0", "n1", "n2"}
		}
		// n0 uses 0.25 core (50% of 0.5) throughout.
		r.timeline = append(r.timeline, tenantSample{TMs: start + int64(i)*1000, Nodes: nodes,
			CPUS: map[string]float64{"n0": 0.25 * float64(i)}, Reported: map[string]float64{"n0": 0.4}})
	}
	r.events = []capacityEvent{{Time: time.UnixMilli(start + 2500), Tenant: "a", Action: "grow", From: 2, To: 3, Reason: "n0 asked for a"},
		{Time: time.UnixMilli(start + 2600), Action: "alarm", Alarm: "saturated", Reason: "n0 is hot"},
		{Time: time.UnixMilli(start + 2700), Action: "alarm_cleared", Alarm: "saturated", Reason: "cleared"},
		{Time: time.UnixMilli(start + 2800), Action: "alarm", Alarm: "saturated", Reason: "n0 is hot"}}
	sec := r.section(t.TempDir(), "tenants.png")
	for _, want := range []string{
		tenantsBegin, "## Two tenants: a crowd on one, steady traffic on the other", tenantsEnd,
		"| B (steady) | 200/s, steady;", "1.50 / 7.25 / 1.75",
		"tenant a: 0 s: 2 (n0 n1) → 3 s: 3 (n0 n1 n2)", "tenant b: 0 s: 2 (n1 n2)\n",
		"**22 fetches, of 20 objects not fetched before, 2 repeats**",
		"| n0 | 50% | 50% (50%) | 50% (50%) | 40% (40%) | 40% (40%) |",
		"| 2.5 s | a | grow | 2 → 3 | n0 asked for a |",
		"within 4 ms of start skew",
		"Alarms in the same events: `saturated` raised 2 times, cleared 1 (all",
	} {
		if !strings.Contains(sec, want) {
			t.Errorf("section lacks %q:\n%s", want, sec)
		}
	}
	var buf bytes.Buffer
	if err := r.writePNG(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := png.Decode(&buf); err != nil {
		t.Errorf("chart is not a PNG: %v", err)
	}
}
