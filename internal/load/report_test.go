package load

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestSummarySeparatesGeneratorFromCluster checks that the summary and the
// JSON name the requests the generator never sent (its in-flight bound) as
// its own, apart from what the cluster failed.
func TestSummarySeparatesGeneratorFromCluster(t *testing.T) {
	tot := Phase{Name: "total", To: 40 * time.Second, Counts: Counts{
		Scheduled: 200000, NotSent: 51117, Sent: 148883, Answered: 148800, OK: 147000,
		Errors: Errors{Status5xx: 1800, Status503: 1700, Timeout: 80, Transport: 3},
	}}
	tot.seconds()
	rep := &Report{Phases: []Phase{tot}, Total: tot, Generator: GeneratorStats{NotSent: 51117, MaxInflight: 10000, P99LagMs: 0.4, MaxLagMs: 2}}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	out := table.String()
	for _, want := range []string{
		"generator (this process, not the cluster): 51117 of 200000 scheduled requests not sent because --max-inflight 10000 requests were still outstanding",
		"cluster (answers to the 148883 requests sent): 147000 ok (98.74%); failed: 1800 5xx (1700 of them 503), 0 4xx, 80 timeouts, 3 connection errors",
		"not sent", "ok/sent", "98.74%",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "shed") || strings.Contains(out, "73.50%") {
		t.Errorf("summary still calls the generator's own bound shedding, or shows the end-to-end rate as success:\n%s", out)
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"not_sent": 51117`, `"cluster_errors": {`, `"cluster_success_rate": 0.987`, `"max_inflight": 10000`} {
		if !strings.Contains(js.String(), want) {
			t.Errorf("JSON lacks %s:\n%s", want, js.String())
		}
	}
	if strings.Contains(js.String(), `"shed"`) {
		t.Errorf("JSON still has shed:\n%s", js.String())
	}
}
