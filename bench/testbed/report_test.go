package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/load"
)

func TestWriteSectionKeepsOthers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "RESULTS.md")
	sec := func(body string) string { return beginMarker + "\n" + body + "\n" + endMarker + "\n" }

	if err := writeSection(path, sec("one")); err != nil {
		t.Fatal(err)
	}
	other := "# Benchmark results\n\n## Hit path\n\nkeep me\n\n"
	data, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(data), "# Benchmark results\n\n", other, 1)+"\n## Later\n\nkeep me too\n"), 0o644)

	if err := writeSection(path, sec("two")); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	s := string(got)
	for _, want := range []string{"## Hit path\n\nkeep me\n", "## Later\n\nkeep me too\n", "two"} {
		if !strings.Contains(s, want) {
			t.Errorf("missing %q in:\n%s", want, s)
		}
	}
	if strings.Contains(s, "one") || strings.Count(s, beginMarker) != 1 {
		t.Errorf("old section not replaced exactly once:\n%s", s)
	}

	os.WriteFile(path, []byte("# x\n\n"+beginMarker+"\nhalf\n"), 0o644)
	if err := writeSection(path, sec("three")); err == nil {
		t.Error("a file with only the begin marker was overwritten")
	}
}

func TestDerive(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	// 10 s: crowd over [2, 6); p99 bad in seconds 2, 3 and 6; replicas 0
	// before, 2 from second 3, back to 0 at second 8.
	p99 := []float64{50, 50, 900, 300, 40, 40, 150, 40, 40, 40}
	reps := []*float64{f(0), f(0), f(0), f(2), f(2), f(2), f(2), f(2), f(0), f(0)}
	var series []load.Second
	for i := range p99 {
		s := load.Second{T: i, Replicas: reps[i]}
		s.Scheduled, s.Sent, s.OK = 100, 100, 100
		s.Latency = load.Latency{Count: 100, P99Ms: p99[i]}
		series = append(series, s)
	}
	c := &contender{rep: &load.Report{
		Phases: []load.Phase{{Name: "before", ToS: 2}, {Name: "during", FromS: 2, ToS: 6}, {Name: "after", FromS: 6, ToS: 10}},
		Total:  load.Phase{Cluster: &load.Cluster{ReplicaSeconds: 10}},
		Series: series,
	}}
	c.derive(reportOpts{objective: 100 * time.Millisecond, minSuccess: 0.99})
	if !c.recovered || c.recoverS != 5 || c.overSecs != 2 {
		t.Errorf("recovery: recovered %v after %d s, %d bad crowd seconds; want 5 s (end of second 6), 2", c.recovered, c.recoverS, c.overSecs)
	}
	if c.scaleOut != "+2 s" || c.scaleIn != "2 s" {
		t.Errorf("scale out %q, in %q; want +2 s, 2 s", c.scaleOut, c.scaleIn)
	}

	// A second with fast errors is not good.
	c.rep.Series[9].OK = 50
	c.overSecs, c.recoverS, c.recovered, c.neverOver = 0, 0, false, false
	c.derive(reportOpts{objective: 100 * time.Millisecond, minSuccess: 0.99})
	if c.recovered {
		t.Errorf("recovered although the last second failed half its requests")
	}
}

func TestCrowdFiguresAndVerdict(t *testing.T) {
	// 10 s: crowd over [2, 6); the first crowd second is the worst.
	p99 := []float64{20, 20, 90, 30, 25, 25, 20, 20, 20, 20}
	var series []load.Second
	for i := range p99 {
		s := load.Second{T: i}
		s.Scheduled, s.Sent, s.OK = 100, 100, 100
		s.Latency = load.Latency{Count: 100, P99Ms: p99[i]}
		if i == 2 {
			s.SlowBy = map[string]int64{"n2": 23, "n0": 8}
		}
		series = append(series, s)
	}
	cpu0, cpu1 := 1.5, 5.5
	before := load.Phase{Name: "before", ToS: 2, Latency: load.Latency{Count: 200, P99Ms: 20}}
	during := load.Phase{Name: "during", FromS: 2, ToS: 6, Success: 1}
	c := &contender{
		meta: meta{Name: "crowdpilot-off"},
		rep: &load.Report{Phases: []load.Phase{before, during, {Name: "after", FromS: 6, ToS: 10}}, Series: series,
			Total: load.Phase{Counts: load.Counts{Answered: 1000}}},
		clock: &clock{StartMs: 1000, CPUBefore: &cpu0, CPUAfter: &cpu1},
		// Hot fetches: one before the crowd, three in it, one after.
		hot: &hotStats{TimesMs: []int64{500, 1100, 3000, 4000, 6999, 7000}},
	}
	c.dir = t.TempDir()
	// Second 2 has the script's later columns, through steal; the others
	// are an older script's four.
	tsv := "t_s\tmachine_cores\tcontender_cores\tgenerator_cores\n1\t1.90\t0.30\t0.40\n2\t1.20\t0.80\t0.30\t0.10\t0.02\t0.0\t0.25\n3\t1.95\t0.90\t0.35\n6\t2.00\t0.10\t0.10\n"
	if err := os.WriteFile(filepath.Join(c.dir, "cpu-seconds.tsv"), []byte(tsv), 0o644); err != nil {
		t.Fatal(err)
	}
	c.cpuSecs = readCPUSeconds(c.dir)
	c.derive(reportOpts{objective: 100 * time.Millisecond, minSuccess: 0.99})
	f, ok := c.figures(2 * time.Second)
	if !ok {
		t.Fatal("no figures")
	}
	if f.firstP99 != 90 || f.worstP99 != 90 || f.worstAt != 0 || f.baseP99 != 20 {
		t.Errorf("first %v worst %v at +%d base %v; want 90, 90 at +0, 20", f.firstP99, f.worstP99, f.worstAt, f.baseP99)
	}
	// The worst second is the crowd's first (load second 2); the busiest
	// crowd second is 3 (seconds 1 and 6 are outside the crowd).
	if wc := f.worstCPU; wc == nil || *wc != (cpuSecond{T: 2, Machine: 1.2, Contender: 0.8, Generator: 0.3, Steal: 0.25}) || f.busiest != 1.95 {
		t.Errorf("worst second's cores %+v, busiest %v; want second 2 (1.2 / 0.8 / 0.3, steal 0.25), 1.95", f.worstCPU, f.busiest)
	}
	if got := fmtSlowBy(f.worstSlow); got != "n0 8, n2 23" {
		t.Errorf("worst second's slow answers %q, want %q", got, "n0 8, n2 23")
	}
	if got := fmtSlowBy(nil); got != "none" {
		t.Errorf("no slow answers: %q, want none", got)
	}
	if f.hotCrowd != 3 || f.hotRun != 5 || f.perTTL != 1.5 || f.maxOneFetch != 3 {
		t.Errorf("hot crowd %d run %d per TTL %v one fetcher %d; want 3, 5, 1.5, 3", f.hotCrowd, f.hotRun, f.perTTL, f.maxOneFetch)
	}
	miss := verdict(f, map[string]crowdFigures{"nginx": {worstP99: 100}})
	if len(miss) != 1 || !strings.Contains(miss[0], "2× baseline") {
		t.Errorf("verdict %q; want only the 2× baseline miss", miss)
	}
	f.worstP99 = 40
	if miss := verdict(f, map[string]crowdFigures{"nginx": {worstP99: 30}}); len(miss) != 1 || !strings.Contains(miss[0], "nginx's") {
		t.Errorf("verdict %q; want only the nginx miss", miss)
	}
	n := crowdFigures{worstP99: 100, p99BySecond: map[int]float64{0: 100, 1: 20, 2: 40, 3: 10}}
	if worse, of := worseSeconds(f, n); worse != 2 || of != 4 {
		t.Errorf("worse in %d of %d seconds; want 2 of 4 (seconds 1 and 3)", worse, of)
	}
	if f.cpuS != 4 || f.cpuPerReqUs != 4e6/1000 {
		t.Errorf("cpu %v s, %v µs per answer; want 4 s, 4000 µs", f.cpuS, f.cpuPerReqUs)
	}
	f.hotCrowd, f.served = 4, 0.99
	if miss := verdict(f, map[string]crowdFigures{"nginx": {worstP99: 50}}); len(miss) != 2 {
		t.Errorf("verdict %q; want the served and the fetches misses", miss)
	}
}
