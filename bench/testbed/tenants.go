package main

// The two-tenant scenario (bench/testbed.sh --tenants): a crowd on tenant
// A, steady traffic on tenant B, both through every node. tenants-poll
// records each second the node sets a node routes the tenants to;
// tenants-report turns the two load generators' JSON, that timeline and
// the capacity events into the "Two tenants" section of bench/RESULTS.md
// and one chart.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"

	"github.com/crowdpilot/crowdpilot/internal/load"
)

// The markers of the section tenants-report owns in the results file.
const (
	tenantsBegin = "<!-- tenants:begin -->"
	tenantsEnd   = "<!-- tenants:end -->"
)

// maxPolls bounds the timeline tenants-poll keeps (an hour of seconds).
const maxPolls = 3600

// tenantSample is one line of the timeline: when, each tenant's node set
// as the polled node routes it, each node's CPU so far (from /proc), and
// the CPU the autopilot leader last heard from each node (what the
// capacity manager judges).
type tenantSample struct {
	TMs   int64               `json:"t_ms"` // unix milliseconds
	Admin string              `json:"admin"`
	Nodes map[string][]string `json:"nodes"`
	// CPUS is each node's process CPU time so far, user plus system, in
	// seconds; absent for a node whose process could not be read.
	CPUS map[string]float64 `json:"cpu_s,omitempty"`
	// Reported is each node's CPU as a fraction of its limit in the
	// leader's latest heat report from it (GET /api/v1/hot).
	Reported map[string]float64 `json:"reported_cpu,omitempty"`
}

// runTenantsPoll is `testbed tenants-poll --admin A[,B...] --duration D
// --out FILE`: every --every, GET /api/v1/tenants from the first admin that
// answers, one JSON line per sample, until --duration has passed (or a
// signal). Samples no admin answered are skipped.
func runTenantsPoll(args []string) int {
	fs := flag.NewFlagSet("testbed tenants-poll", flag.ContinueOnError)
	admins := fs.String("admin", "", "comma-separated admin host:port to ask, in order (required)")
	every := fs.Duration("every", time.Second, "interval between samples")
	duration := fs.Duration("duration", 0, "how long to poll (required, at most 1h)")
	out := fs.String("out", "", "JSON lines file to write (required)")
	pidList := fs.String("pids", "", "comma-separated NODE=PID whose CPU to sample from /proc/PID/stat")
	clkTck := fs.Float64("clk-tck", 100, "clock ticks per second of /proc/PID/stat (getconf CLK_TCK)")
	eventsOut := fs.String("events-out", "", "JSON file for every capacity event seen in the polls of /api/v1/capacity/events (the leader keeps only its latest 200)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	pids := map[string]string{}
	for _, kv := range strings.Split(*pidList, ",") {
		if kv == "" {
			continue
		}
		id, pid, ok := strings.Cut(kv, "=")
		if !ok || id == "" || pid == "" {
			fmt.Fprintf(os.Stderr, "testbed tenants-poll: --pids %q: want NODE=PID,...\n", *pidList)
			return 2
		}
		pids[id] = pid
	}
	if *admins == "" || *out == "" || *duration <= 0 || *duration > time.Hour || *every <= 0 || fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "testbed tenants-poll: want --admin, --out and --duration in (0, 1h], --every > 0, and nothing else")
		return 2
	}
	f, err := os.Create(*out)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testbed tenants-poll: %v\n", err)
		return 1
	}
	defer f.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *duration)
	defer cancel()
	client := &http.Client{Timeout: min(*every, 2*time.Second)}
	enc := json.NewEncoder(f)
	tick := time.NewTicker(*every)
	defer tick.Stop()
	events := eventLog{seen: map[string]bool{}}
	for n := 0; n < maxPolls; n++ {
		if s, ok := pollTenants(ctx, client, strings.Split(*admins, ",")); ok {
			s.CPUS = procCPU(pids, *clkTck)
			if err := enc.Encode(s); err != nil {
				fmt.Fprintf(os.Stderr, "testbed tenants-poll: %v\n", err)
				return 1
			}
			if *eventsOut != "" {
				events.add(pollEvents(ctx, client, s.Admin))
			}
		}
		select {
		case <-ctx.Done():
			n = maxPolls
		case <-tick.C:
		}
	}
	if *eventsOut != "" {
		if err := writeFile(*eventsOut, func(w io.Writer) error {
			return json.NewEncoder(w).Encode(map[string]any{"events": events.list, "dropped": events.dropped})
		}); err != nil {
			fmt.Fprintf(os.Stderr, "testbed tenants-poll: %v\n", err)
			return 1
		}
	}
	return 0
}

// maxEvents bounds the capacity events tenants-poll keeps.
const maxEvents = 20000

// eventLog is the capacity events seen so far, each once.
type eventLog struct {
	seen    map[string]bool
	list    []capacityEvent
	dropped int
}

func (l *eventLog) add(evs []capacityEvent) {
	for _, e := range evs {
		k := fmt.Sprintf("%d|%s|%s|%s|%s|%d|%d|%s", e.Time.UnixNano(), e.Tenant, e.Node, e.Action, e.Alarm, e.From, e.To, e.Reason)
		if l.seen[k] {
			continue
		}
		if len(l.list) == maxEvents {
			l.dropped++
			continue
		}
		l.seen[k] = true
		l.list = append(l.list, e)
	}
}

// pollEvents is the leader's latest capacity events (any node proxies).
func pollEvents(ctx context.Context, client *http.Client, admin string) []capacityEvent {
	var v struct {
		Events []capacityEvent `json:"events"`
	}
	if !getJSON(ctx, client, "http://"+admin+"/api/v1/capacity/events", 4<<20, &v) {
		return nil
	}
	return v.Events
}

// getJSON decodes the 200 answer of a GET of url (at most limit bytes)
// into v, reporting whether it could.
func getJSON(ctx context.Context, client *http.Client, url string, limit int64, v any) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return json.NewDecoder(io.LimitReader(resp.Body, limit)).Decode(v) == nil && resp.StatusCode == http.StatusOK
}

// pollTenants asks the admins in order for /api/v1/tenants.
func pollTenants(ctx context.Context, client *http.Client, admins []string) (tenantSample, bool) {
	for _, a := range admins {
		var v struct {
			Tenants []struct {
				Name  string   `json:"name"`
				Nodes []string `json:"nodes"`
			} `json:"tenants"`
		}
		if !getJSON(ctx, client, "http://"+a+"/api/v1/tenants", 1<<20, &v) {
			continue
		}
		s := tenantSample{TMs: time.Now().UnixMilli(), Admin: a, Nodes: map[string][]string{}}
		for _, t := range v.Tenants {
			s.Nodes[t.Name] = t.Nodes
		}
		s.Reported = reportedCPU(ctx, client, a)
		return s, true
	}
	return tenantSample{}, false
}

// reportedCPU is the leader's view of each node's CPU, as a fraction of
// its limit (GET /api/v1/hot, which any node proxies to the leader).
func reportedCPU(ctx context.Context, client *http.Client, admin string) map[string]float64 {
	var v struct {
		Nodes []struct {
			Node     string  `json:"node"`
			CPU      float64 `json:"cpu"`
			CPULimit float64 `json:"cpu_limit"`
		} `json:"nodes"`
	}
	if !getJSON(ctx, client, "http://"+admin+"/api/v1/hot", 4<<20, &v) {
		return nil
	}
	out := map[string]float64{}
	for _, n := range v.Nodes {
		if n.CPULimit > 0 {
			out[n.Node] = n.CPU / n.CPULimit
		}
	}
	return out
}

// procCPU reads each process's user plus system time from /proc/PID/stat.
func procCPU(pids map[string]string, clkTck float64) map[string]float64 {
	if len(pids) == 0 {
		return nil
	}
	out := map[string]float64{}
	for id, pid := range pids {
		b, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			continue
		}
		if v, ok := statCPU(string(b), clkTck); ok {
			out[id] = v
		}
	}
	return out
}

// statCPU is utime + stime of a /proc/PID/stat line, in seconds (fields 14
// and 15; the command, field 2, may hold spaces and parentheses).
func statCPU(stat string, clkTck float64) (float64, bool) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(stat[i+1:]) // field 3 on
	if len(f) < 13 {
		return 0, false
	}
	var ut, st float64
	if _, err := fmt.Sscan(f[11], &ut); err != nil {
		return 0, false
	}
	if _, err := fmt.Sscan(f[12], &st); err != nil {
		return 0, false
	}
	return (ut + st) / clkTck, true
}

// capacityEvent is one entry of /api/v1/capacity/events (capacity.Event).
type capacityEvent struct {
	Time   time.Time `json:"time"`
	Tenant string    `json:"tenant"`
	Node   string    `json:"node"`
	Action string    `json:"action"`
	Alarm  string    `json:"alarm"`
	From   int       `json:"from"`
	To     int       `json:"to"`
	Reason string    `json:"reason"`
	Error  string    `json:"error"`
}

// tenantRun is what the report reads from a run directory.
type tenantRun struct {
	a, b     *load.Report
	startA   int64 // unix ms just before each generator started
	startB   int64
	timeline []tenantSample
	events   []capacityEvent
	// The origin's fetch counts when the measured run started (after the
	// warm-up) and when it ended; nil when missing.
	fetchesBefore, fetchesAfter *fetchStats
	quota                       float64 // cores per node; 0: unknown
	// peeks sums the nodes' crowdpilot_handoff_peeks_total by result at the
	// end of the run (warm handoff: warm-up and run); nil without metrics.
	peeks map[string]float64
}

// counterSums sums a counter family over the metrics files in dir, by the
// value of label.
func counterSums(dir, family, label string) map[string]float64 {
	files, _ := filepath.Glob(filepath.Join(dir, "metrics", "*.txt"))
	var out map[string]float64
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		tp := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := tp.TextToMetricFamilies(bytes.NewReader(data))
		if err != nil || fams[family] == nil {
			continue
		}
		for _, m := range fams[family].GetMetric() {
			v := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == label {
					v = l.GetValue()
				}
			}
			if out == nil {
				out = map[string]float64{}
			}
			out[v] += m.GetCounter().GetValue()
		}
	}
	return out
}

// cpuPoint is each node's CPU over one interval between two samples, as a
// share of its quota: measured from /proc, and as the leader last heard it
// at the interval's end.
type cpuPoint struct {
	atS      float64 // the interval's end, seconds since A's start
	measured map[string]float64
	reported map[string]float64
}

// cpuSeries is the timeline's CPU, interval by interval.
func (r *tenantRun) cpuSeries() []cpuPoint {
	if r.quota <= 0 {
		return nil
	}
	var out []cpuPoint
	for i := 1; i < len(r.timeline); i++ {
		a, b := r.timeline[i-1], r.timeline[i]
		dt := float64(b.TMs-a.TMs) / 1000
		if dt <= 0 {
			continue
		}
		p := cpuPoint{atS: float64(b.TMs-r.startA) / 1000, measured: map[string]float64{}, reported: b.Reported}
		for id, v := range b.CPUS {
			if u, ok := a.CPUS[id]; ok {
				p.measured[id] = (v - u) / dt / r.quota
			}
		}
		out = append(out, p)
	}
	return out
}

// crowdWindow is A's crowd phase on A's clock, in seconds.
func (r *tenantRun) crowdWindow() (from, to float64) {
	if p, ok := phase(r.a, "during"); ok {
		return p.FromS, p.ToS
	}
	return 0, 0
}

func readTenantRun(dir string) (*tenantRun, error) {
	r := &tenantRun{a: &load.Report{}, b: &load.Report{}}
	if err := readJSON(filepath.Join(dir, "a", "load.json"), r.a); err != nil {
		return nil, fmt.Errorf("tenant A's load: %w", err)
	}
	if err := readJSON(filepath.Join(dir, "b", "load.json"), r.b); err != nil {
		return nil, fmt.Errorf("tenant B's load: %w", err)
	}
	var ck struct {
		A int64 `json:"start_a_ms"`
		B int64 `json:"start_b_ms"`
	}
	if err := readJSON(filepath.Join(dir, "clock.json"), &ck); err != nil {
		return nil, err
	}
	r.startA, r.startB = ck.A, ck.B
	lines, err := readLines(filepath.Join(dir, "tenants.jsonl"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for _, l := range lines {
		var s tenantSample
		if json.Unmarshal([]byte(l), &s) == nil {
			r.timeline = append(r.timeline, s)
		}
	}
	var fb, fa fetchStats
	if readJSON(filepath.Join(dir, "fetches-before.json"), &fb) == nil && readJSON(filepath.Join(dir, "fetches-after.json"), &fa) == nil {
		r.fetchesBefore, r.fetchesAfter = &fb, &fa
	}
	r.peeks = counterSums(dir, "crowdpilot_handoff_peeks_total", "result")
	var ev struct {
		Events []capacityEvent `json:"events"`
	}
	if readJSON(filepath.Join(dir, "capacity-events.json"), &ev) == nil {
		r.events = ev.Events
		slices.SortStableFunc(r.events, func(x, y capacityEvent) int { return x.Time.Compare(y.Time) })
	}
	return r, nil
}

// sizeChange is a tenant's set changing at a time since A's start.
type sizeChange struct {
	atS   float64
	nodes []string
}

// changes is tenant's set over the timeline: its first sample, then each
// change.
func (r *tenantRun) changes(tenant string) []sizeChange {
	var out []sizeChange
	for _, s := range r.timeline {
		set, ok := s.Nodes[tenant]
		if !ok {
			continue
		}
		if len(out) == 0 || !slices.Equal(out[len(out)-1].nodes, set) {
			out = append(out, sizeChange{atS: float64(s.TMs-r.startA) / 1000, nodes: set})
		}
	}
	return out
}

func runTenantsReport(args []string) int {
	fs := flag.NewFlagSet("testbed tenants-report", flag.ContinueOnError)
	dir := fs.String("run-dir", "", "directory the run left its files in (required)")
	results := fs.String("results", "", "markdown file whose two-tenant section to write (required)")
	chart := fs.String("chart", "", "PNG to draw (required)")
	quota := fs.Float64("quota", 0, "each node's CPU quota in cores, for the CPU shares (0: not shown)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" || *results == "" || *chart == "" || fs.NArg() > 0 || *quota < 0 {
		fmt.Fprintln(os.Stderr, "testbed tenants-report: --run-dir, --results and --chart are required, --quota is >= 0, and nothing else")
		return 2
	}
	r, err := readTenantRun(*dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testbed tenants-report: %v\n", err)
		return 1
	}
	r.quota = *quota
	if err := writeFile(*chart, r.writePNG); err != nil {
		fmt.Fprintf(os.Stderr, "testbed tenants-report: chart: %v\n", err)
		return 1
	}
	resultsDir, _ := filepath.Abs(filepath.Dir(*results))
	section := r.section(*dir, relPath(resultsDir, *chart))
	if err := writeMarked(*results, section, tenantsBegin, tenantsEnd); err != nil {
		fmt.Fprintf(os.Stderr, "testbed tenants-report: %v\n", err)
		return 1
	}
	fmt.Print(section)
	return 0
}

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// phase returns the report's phase of that name (before, during, after).
func phase(r *load.Report, name string) (load.Phase, bool) {
	for _, p := range r.Phases {
		if p.Name == name {
			return p, true
		}
	}
	return load.Phase{}, false
}

// bda formats f of the before, during and after phases.
func bda(r *load.Report, f func(load.Phase) string) string {
	var parts []string
	for _, n := range []string{"before", "during", "after"} {
		if p, ok := phase(r, n); ok {
			parts = append(parts, f(p))
		} else {
			parts = append(parts, "—")
		}
	}
	return strings.Join(parts, " / ")
}

func (r *tenantRun) section(dir, chart string) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("%s\n## Two tenants: a crowd on one, steady traffic on the other\n\n", tenantsBegin)
	w("Made by `bench/testbed.sh --tenants` (the script and `bench/testbed/` are the whole harness). Exact command, from the repository root:\n\n")
	cmd, _ := os.ReadFile(filepath.Join(dir, "command.txt"))
	w("```sh\n%s\n```\n\n", strings.TrimSpace(string(cmd)))
	facts, _ := readLines(filepath.Join(dir, "facts.txt"))
	for _, f := range facts {
		if k, v, ok := strings.Cut(f, "\t"); ok {
			w("- **%s:** %s\n", k, v)
		}
	}
	w("\n")
	w("Phases are tenant A's crowd schedule (B's generator runs the same schedule at multiplier 1, so its before / during / after are the same seconds, within %d ms of start skew).\n\n", abs(r.startB-r.startA))
	w("| tenant | requests | success before / during / after | p50 ms b / d / a | p99 ms b / d / a | p99.9 ms b / d / a | failures (5xx, timeouts, transport) | generator lag p99 |\n")
	w("|---|---|---|---|---|---|---|---|\n")
	for _, t := range []struct {
		name string
		rep  *load.Report
	}{{"A (crowd)", r.a}, {"B (steady)", r.b}} {
		rep := t.rep
		crowd := "steady"
		if rep.Config.Crowd != "" && !strings.HasPrefix(rep.Config.Crowd, "1x") {
			crowd = "crowd " + rep.Config.Crowd
		}
		e := rep.Total.Errors
		w("| %s | %g/s, %s; %d sent | %s | %s | %s | %s | %d (%d, %d, %d) | %s ms |\n", t.name, rep.Config.Rate, crowd, rep.Total.Sent,
			bda(rep, func(p load.Phase) string { return pct(p.Success) }),
			bda(rep, func(p load.Phase) string { return fmtMs(p.Latency.P50Ms) }),
			bda(rep, func(p load.Phase) string { return fmtMs(p.Latency.P99Ms) }),
			bda(rep, func(p load.Phase) string { return fmtMs(p.Latency.P999Ms) }),
			e.Total(), e.Status5xx, e.Timeout, e.Transport, fmtMs(rep.Generator.P99LagMs))
	}
	w("\n")
	if fb, fa := r.fetchesBefore, r.fetchesAfter; fb != nil && fa != nil {
		w("Origin, over the measured run (from the origin's own count per object, host and path): **%d fetches, of %d objects not fetched before, %d repeats** (fetches of an object already fetched, in the warm-up or the run; %d in the warm-up).", fa.Fetches-fb.Fetches, fa.Objects-fb.Objects, fa.Repeats-fb.Repeats, fb.Repeats)
		if fa.Dropped > 0 {
			w(" %d fetches were of objects past the count's bound and are not told apart.", fa.Dropped)
		}
		w(" The objects' max-age is longer than the warm-up and the run together, so a repeat is a fetch the cluster should not have made: a copy lost when ownership moved, or a miss not collapsed.")
		if r.peeks != nil {
			w(" Warm handoff (the nodes' `crowdpilot_handoff_peeks_total`, warm-up included): %.0f misses of new owners filled from a previous owner, %.0f peeks found nothing, %.0f failed.", r.peeks["held"], r.peeks["not_held"], r.peeks["error"])
		}
		w("\n\n")
	}
	if cs := r.cpuSeries(); len(cs) > 0 {
		from, to := r.crowdWindow()
		w("CPU of each node as a share of its %g-core quota, per phase of A's crowd: measured from `/proc/PID/stat` between two samples (mean, and the busiest interval), and as the autopilot leader last heard it from the node's heat reports (what the capacity manager judges: hot at 80%%, cool under 50%%; mean and highest of the once-a-second looks):\n\n", r.quota)
		w("| node | measured before | measured during (max) | measured after (max) | leader's view during (max) | leader's view after (max) |\n|---|---|---|---|---|---|\n")
		ids := map[string]bool{}
		for _, p := range cs {
			for id := range p.measured {
				ids[id] = true
			}
		}
		for _, id := range slices.Sorted(maps.Keys(ids)) {
			type acc struct {
				sum, max float64
				n        int
			}
			var m, rep [3]acc
			for _, p := range cs {
				ph := 0
				switch {
				case p.atS > to:
					ph = 2
				case p.atS > from:
					ph = 1
				}
				if v, ok := p.measured[id]; ok {
					m[ph].sum += v
					m[ph].max = max(m[ph].max, v)
					m[ph].n++
				}
				if v, ok := p.reported[id]; ok {
					rep[ph].sum += v
					rep[ph].max = max(rep[ph].max, v)
					rep[ph].n++
				}
			}
			f := func(a acc, withMax bool) string {
				if a.n == 0 {
					return "—"
				}
				if withMax {
					return fmt.Sprintf("%s (%s)", pct0(a.sum/float64(a.n)), pct0(a.max))
				}
				return pct0(a.sum / float64(a.n))
			}
			w("| %s | %s | %s | %s | %s | %s |\n", id, f(m[0], false), f(m[1], true), f(m[2], true), f(rep[1], true), f(rep[2], true))
		}
		w("\n")
	}
	w("Node sets over time (seconds since A's generator started, from `GET /api/v1/tenants` once a second):\n\n")
	for _, name := range []string{"a", "b"} {
		ch := r.changes(name)
		if len(ch) == 0 {
			w("- tenant %s: no sample\n", name)
			continue
		}
		var parts []string
		for _, c := range ch {
			parts = append(parts, fmt.Sprintf("%.0f s: %d (%s)", c.atS, len(c.nodes), strings.Join(c.nodes, " ")))
		}
		w("- tenant %s: %s\n", name, strings.Join(parts, " → "))
	}
	w("\n")
	if len(r.events) > 0 {
		alarms := map[string]*[2]int{} // by alarm: raised, cleared
		var changes []capacityEvent
		for _, e := range r.events {
			if strings.HasPrefix(e.Action, "alarm") {
				c := alarms[e.Alarm]
				if c == nil {
					c = &[2]int{}
					alarms[e.Alarm] = c
				}
				if e.Action == "alarm_cleared" {
					c[1]++
				} else {
					c[0]++
				}
				continue
			}
			changes = append(changes, e)
		}
		w("Capacity decisions (the leader's `GET /api/v1/capacity/events`, polled once a second; time since A's generator started):\n\n")
		w("| t | tenant | action | size | reason |\n|---|---|---|---|---|\n")
		if len(changes) == 0 {
			w("| — | | | | no size change |\n")
		}
		shown := 0
		for _, e := range changes {
			if shown == 40 {
				w("| … | | | | %d more in `capacity-events.json` |\n", len(changes)-shown)
				break
			}
			size := ""
			if e.From != 0 || e.To != 0 {
				size = fmt.Sprintf("%d → %d", e.From, e.To)
			}
			what := e.Action
			if e.Alarm != "" {
				what += " " + e.Alarm
			}
			reason := e.Reason
			if e.Error != "" {
				reason += " (error: " + e.Error + ")"
			}
			w("| %.1f s | %s | %s | %s | %s |\n", float64(e.Time.UnixMilli()-r.startA)/1000, e.Tenant, what, size, mdEscape(reason))
			shown++
		}
		w("\n")
		if len(alarms) > 0 {
			var parts []string
			for _, k := range slices.Sorted(maps.Keys(alarms)) {
				parts = append(parts, fmt.Sprintf("`%s` raised %d times, cleared %d", k, alarms[k][0], alarms[k][1]))
			}
			w("Alarms in the same events: %s (all in `capacity-events.json`).\n\n", strings.Join(parts, "; "))
		}
	}
	w("![two tenants](%s)\n\n", chart)
	notes, _ := os.ReadFile(filepath.Join(dir, "notes.md"))
	if len(notes) > 0 {
		w("%s\n", strings.TrimSpace(string(notes)))
	}
	w("%s\n", tenantsEnd)
	return b.String()
}

func pct0(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) }

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// writePNG draws three panels on A's clock: both tenants' answered
// requests/s, their p99 per second (log scale), and their node counts.
func (r *tenantRun) writePNG(w io.Writer) error {
	shift := float64(r.startB-r.startA) / 1000 // B's seconds on A's clock
	pts := func(rep *load.Report, off float64, f func(load.Second) (float64, bool)) plotter.XYs {
		var out plotter.XYs
		for _, s := range rep.Series {
			if v, ok := f(s); ok {
				out = append(out, plotter.XY{X: float64(s.T) + 0.5 + off, Y: v})
			}
		}
		return out
	}
	ok := func(s load.Second) (float64, bool) { return float64(s.OK), true }
	p99 := func(s load.Second) (float64, bool) { return s.Latency.P99Ms, s.Latency.Count > 0 }
	end := r.a.Config.DurationS
	sizes := func(tenant string) plotter.XYs { // a step line, within the run
		var out plotter.XYs
		for _, s := range r.timeline {
			set, ok := s.Nodes[tenant]
			x := float64(s.TMs-r.startA) / 1000
			if !ok || x < 0 || x > end {
				continue
			}
			if n := len(out); n > 0 && out[n-1].Y != float64(len(set)) {
				out = append(out, plotter.XY{X: x, Y: out[n-1].Y})
			}
			out = append(out, plotter.XY{X: x, Y: float64(len(set))})
		}
		return out
	}
	panels := []struct {
		title, unit string
		log         bool
		lines       []any
	}{
		{fmt.Sprintf("answered requests (A: %g/s, crowd %s; B: %g/s steady)", r.a.Config.Rate, r.a.Config.Crowd, r.b.Config.Rate), "req/s", false,
			[]any{"A ok", pts(r.a, 0, ok), "B ok", pts(r.b, shift, ok)}},
		{"p99 latency by planned send second", "ms", true,
			[]any{"A p99", pts(r.a, 0, p99), "B p99", pts(r.b, shift, p99)}},
		{"capacity: nodes in each tenant's set", "nodes", false,
			[]any{"A nodes", sizes("a"), "B nodes", sizes("b")}},
	}
	if cs := r.cpuSeries(); len(cs) > 0 {
		var busiest, mean, seen plotter.XYs
		for _, p := range cs {
			if p.atS < 0 || p.atS > end || len(p.measured) == 0 {
				continue
			}
			hi, sum := 0.0, 0.0
			for _, v := range p.measured {
				hi, sum = max(hi, v), sum+v
			}
			busiest = append(busiest, plotter.XY{X: p.atS, Y: 100 * hi})
			mean = append(mean, plotter.XY{X: p.atS, Y: 100 * sum / float64(len(p.measured))})
			if len(p.reported) > 0 {
				hi := 0.0
				for _, v := range p.reported {
					hi = max(hi, v)
				}
				seen = append(seen, plotter.XY{X: p.atS, Y: 100 * hi})
			}
		}
		panels = append(panels, struct {
			title, unit string
			log         bool
			lines       []any
		}{fmt.Sprintf("CPU, %% of each node's %g-core quota (axis cut at 300%%)", r.quota), "%", false,
			[]any{"measured: busiest node", busiest, "measured: mean of nodes", mean, "leader's view: busiest node", seen}})
	}
	var plots [][]*plot.Plot
	for _, p := range panels {
		pl := plot.New()
		pl.Title.Text = p.title
		pl.Y.Label.Text = p.unit
		pl.X.Label.Text = "seconds"
		pl.X.Min, pl.X.Max = 0, end
		pl.Legend.Top = true
		var args []any
		for i := 0; i < len(p.lines); i += 2 {
			if xy := p.lines[i+1].(plotter.XYs); len(xy) > 0 {
				args = append(args, p.lines[i], xy)
			}
		}
		if len(args) > 0 {
			if err := plotutil.AddLines(pl, args...); err != nil {
				return fmt.Errorf("chart %s: %w", p.title, err)
			}
		}
		switch {
		case p.log && len(args) > 0:
			pl.Y.Min, pl.Y.Max = max(pl.Y.Min/2, 0.01), pl.Y.Max*2
			pl.Y.Scale = plot.LogScale{}
			pl.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		case p.unit == "%":
			// Short report windows can read several times the quota:
			// clipped, so that the rest stays readable.
			pl.Y.Min, pl.Y.Max = 0, min(max(pl.Y.Max*1.1, 100), 300)
		default:
			pl.Y.Min, pl.Y.Max = 0, max(pl.Y.Max*1.1, 1)
		}
		plots = append(plots, []*plot.Plot{pl})
	}
	return load.WritePlots(w, plots)
}
