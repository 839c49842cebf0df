package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/crowdpilot/crowdpilot/internal/load"
)

// lagWarnMs is the generator's p99 send lag above which a row says the
// generator fell behind its schedule (the load generator warns at the same).
const lagWarnMs = 10

// Markers delimit the section this program owns in the results file; the
// rest of the file belongs to others and is kept byte for byte.
const (
	beginMarker = "<!-- testbed:begin -->"
	endMarker   = "<!-- testbed:end -->"
)

// originStats is the demo origin's GET /_stats.
type originStats struct {
	Fetches int64 `json:"fetches"`
	Shed    int64 `json:"shed"`
}

// meta is what the script records about one contender's run.
type meta struct {
	Name         string       `json:"name"`
	Label        string       `json:"label"`
	Status       string       `json:"status"` // ok, failed, pending
	Note         string       `json:"note"`
	Nodes        int          `json:"nodes"`
	PNG          string       `json:"png"`
	LoadExit     int          `json:"load_exit"`
	OriginBefore *originStats `json:"origin_before"`
	OriginAfter  *originStats `json:"origin_after"`
}

// contender is one contender's inputs and derived figures.
type contender struct {
	dir  string
	meta meta
	rep  *load.Report
	err  error // reading the report

	crowdFrom, crowdTo int // crowd window, whole seconds [from, to)
	runEnd             int

	overSecs   int // seconds of the crowd window over the objective
	recoverS   int // seconds from crowd start to the end of the last bad second
	recovered  bool
	neverOver  bool
	replicaSec *float64
	scaleOut   string
	scaleIn    string

	clock *clock    // when the load started, the load average around it
	hot   *hotStats // the origin's hot-object fetch times, up to this contender's end

	results   map[string]float64 // crowdpilot_requests_total by result, all nodes
	throttled float64            // seconds the nodes' cgroups were throttled
	periods   float64
	thrPeriod float64
	cpuSecs   []cpuSecond // cores used per second of the load
}

// clock is the script's clock.json for one contender.
type clock struct {
	StartMs       int64  `json:"start_ms"` // unix ms just before the load generator started
	LoadavgBefore string `json:"loadavg_before"`
	LoadavgAfter  string `json:"loadavg_after"`
	// CPU seconds used by the contender's processes (all its cgroups) just
	// before and after the load; nil from a script without them.
	CPUBefore *float64 `json:"cpu_s_before"`
	CPUAfter  *float64 `json:"cpu_s_after"`
}

type reportOpts struct {
	runDir, results string
	objective       time.Duration
	minSuccess      float64
	ttl             time.Duration // the origin's max-age
}

func runReport(args []string) int {
	fs := flag.NewFlagSet("testbed report", flag.ContinueOnError)
	var o reportOpts
	fs.StringVar(&o.runDir, "run-dir", "", "directory the run left its files in (required)")
	fs.StringVar(&o.results, "results", "", "markdown file whose testbed section to write (required)")
	fs.DurationVar(&o.objective, "objective", 100*time.Millisecond, "p99 objective per second")
	fs.Float64Var(&o.minSuccess, "min-success", 0.99, "least success rate of a second that meets the objective")
	fs.DurationVar(&o.ttl, "ttl", 5*time.Second, "the origin's max-age, against which hot-object fetches are counted")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.ttl <= 0 {
		fmt.Fprintf(os.Stderr, "testbed report: --ttl %v: want > 0\n", o.ttl)
		return 2
	}
	if o.runDir == "" || o.results == "" || fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "testbed report: --run-dir and --results are required, and nothing else")
		return 2
	}
	section, err := buildSection(o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testbed report: %v\n", err)
		return 1
	}
	if err := writeSection(o.results, section); err != nil {
		fmt.Fprintf(os.Stderr, "testbed report: %v\n", err)
		return 1
	}
	fmt.Print(section)
	return 0
}

func buildSection(o reportOpts) (string, error) {
	names, err := readLines(filepath.Join(o.runDir, "contenders.txt"))
	if err != nil {
		return "", err
	}
	resultsDir, err := filepath.Abs(filepath.Dir(o.results))
	if err != nil {
		return "", err
	}
	var cs []*contender
	for _, n := range names {
		c := &contender{dir: filepath.Join(o.runDir, n)}
		if err := readJSON(filepath.Join(c.dir, "meta.json"), &c.meta); err != nil {
			return "", err
		}
		if c.meta.Status == "ok" || c.meta.Status == "failed" {
			var r load.Report
			if err := readJSON(filepath.Join(c.dir, "load.json"), &r); err != nil {
				c.err = err
			} else {
				c.rep = &r
				c.derive(o)
			}
		}
		var ck clock
		if readJSON(filepath.Join(c.dir, "clock.json"), &ck) == nil {
			c.clock = &ck
		}
		var hs hotStats
		if readJSON(filepath.Join(c.dir, "hot-fetches.json"), &hs) == nil {
			c.hot = &hs
		}
		c.readMetrics()
		c.readCPUStat()
		c.cpuSecs = readCPUSeconds(c.dir)
		cs = append(cs, c)
	}

	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("%s\n## Testbed: flash crowd\n\n", beginMarker)
	w("Made by `bench/testbed.sh` (the script and `bench/testbed/` are the whole harness). Exact command, from the repository root:\n\n")
	cmd, _ := os.ReadFile(filepath.Join(o.runDir, "command.txt"))
	w("```sh\n%s\n```\n\n", strings.TrimSpace(string(cmd)))
	facts, _ := readLines(filepath.Join(o.runDir, "facts.txt"))
	for _, f := range facts {
		k, v, ok := strings.Cut(f, "\t")
		if !ok {
			continue
		}
		w("- **%s:** %s\n", k, v)
	}
	w("\n")

	obj := fmtDur(o.objective)
	w("| contender | success before / during / after | p50 ms b / d / a | p99 ms b / d / a | p99.9 ms b / d / a | p99 back under %s (seconds over, of the crowd's) | origin fetches (shed) | replica-seconds | scale out / back in | generator lag p99 |\n", obj)
	w("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range cs {
		w("%s\n", c.row())
	}
	w("\n")
	var behind []string
	for _, c := range cs {
		if c.rep != nil && c.rep.Generator.P99LagMs > lagWarnMs {
			behind = append(behind, "*"+c.meta.Label+"*")
		}
	}
	if len(behind) > 0 {
		w("**Caution:** in this run the load generator fell behind its schedule for %s (see *generator lag*): outside the caps, it did not get the CPU it needed, because the contender drowned (thousands of requests in flight) or because other work loaded the machine. Those rows' latencies include that lag. The per-node CPU throttling below tells the two apart: a contender that was not throttled was slowed by the machine, not by its own caps.\n\n", strings.Join(behind, " and "))
	}

	writeCrowdTable(w, cs, o)

	w("Definitions (all per contender, from its own run):\n\n")
	w("- *before / during / after* are the load generator's phases: requests belong to the phase in which they were **planned** (open loop), and latency runs from the planned send time, so a stalled server cannot hide behind fewer requests. Every scheduled request counts; a request shed at the generator's in-flight cap, a timeout, a transport error or any status ≥ 400 is a failure. Success = OK (status < 400) / scheduled.\n")
	w("- *p99 back under %s*: a second is *good* when the p99 of the requests planned in it is ≤ %s **and** its success rate is ≥ %s (so fast errors do not count as recovery). The figure is the time from crowd start to the end of the last second that was not good, looking from crowd start to the end of the run; `0 s` means no second was bad. `not by the end` means the last second of the run was bad. In brackets: bad seconds among the crowd's seconds.\n", obj, obj, pct(o.minSuccess))
	w("- *origin fetches*: increase of the demo origin's own `GET /_stats` `fetches` over the contender's run (includes the generator's one probe per target; the same counter for every contender). *shed*: requests the origin refused with 503 because its queue was full.\n")
	w("- *replica-seconds*: sum over the run's seconds of `crowdpilot_autopilot_replicas_active` for the hot object, summed over the nodes' `/metrics` as the generator scraped them each second (`replica_seconds` in the load JSON). crowdpilot with the autopilot only.\n")
	w("- *scale out / back in*: from the same per-second series: seconds from crowd start until the replica count first rose above its value in the last second before the crowd; seconds from crowd end until it was back at that value for good (±1 s: one scrape a second).\n")
	w("- *generator lag*: p99 of how late the generator sent requests against its schedule. It is included in the latencies; above %d ms the row says *behind*: the generator, outside the caps, was short of CPU, which happens when a contender drowns (thousands of requests in flight) or when other work loads the machine.\n\n", lagWarnMs)

	w("Per-contender detail (*answered during the crowd* is the share of the crowd's answers by the node or instance that sent them, from the `X-Served-By` header, so it shows whether the hot object was served by one node or spread over several; requests by result are the nodes' `crowdpilot_requests_total` summed; cache status is what the client saw in `Cache-Status`; throttled is from the node cgroups' `cpu.stat`):\n\n")
	w("| contender | answered during the crowd, by `X-Served-By` | requests by result (nodes) | cache status seen by client: hit / stale / miss / other | CPU throttled (periods, time) | chart |\n")
	w("|---|---|---|---|---|---|\n")
	for _, c := range cs {
		w("%s\n", c.detailRow(resultsDir))
	}
	w("\n")
	for _, c := range cs {
		if c.rep == nil || c.meta.PNG == "" {
			continue
		}
		if _, err := os.Stat(c.meta.PNG); err != nil {
			continue
		}
		w("![%s](%s)\n\n", c.meta.Label, relPath(resultsDir, c.meta.PNG))
	}
	notes, _ := os.ReadFile(filepath.Join(o.runDir, "notes.md"))
	if s := strings.TrimSpace(string(notes)); s != "" {
		w("%s\n\n", s)
	}
	w("%s\n", endMarker)
	return b.String(), nil
}

// derive computes the crowd-relative figures from the per-second series.
func (c *contender) derive(o reportOpts) {
	r := c.rep
	c.runEnd = len(r.Series)
	for _, p := range r.Phases {
		if p.Name == "during" {
			c.crowdFrom, c.crowdTo = int(math.Round(p.FromS)), int(math.Round(p.ToS))
		}
	}
	if c.crowdTo == 0 {
		c.crowdFrom, c.crowdTo = 0, c.runEnd
	}
	good := func(s load.Second) bool {
		return s.Latency.Count > 0 && s.Latency.P99Ms <= float64(o.objective)/float64(time.Millisecond) && s.SuccessRate() >= o.minSuccess
	}
	lastBad := -1
	for _, s := range r.Series {
		if s.T < c.crowdFrom {
			continue
		}
		if !good(s) {
			lastBad = s.T
			if s.T < c.crowdTo {
				c.overSecs++
			}
		}
	}
	switch {
	case lastBad < 0:
		c.neverOver, c.recovered = true, true
	case lastBad >= c.runEnd-1:
		c.recoverS = c.runEnd - c.crowdFrom
	default:
		c.recovered = true
		c.recoverS = lastBad + 1 - c.crowdFrom
	}

	// Replicas.
	var have bool
	for _, s := range r.Series {
		if s.Replicas != nil {
			have = true
		}
	}
	if !have {
		c.scaleOut, c.scaleIn = "—", "—"
		return
	}
	if r.Total.Cluster != nil {
		v := r.Total.Cluster.ReplicaSeconds
		c.replicaSec = &v
	}
	rep := func(s load.Second) float64 {
		if s.Replicas == nil {
			return 0
		}
		return *s.Replicas
	}
	base := 0.0
	for _, s := range r.Series {
		if s.T < c.crowdFrom && s.Replicas != nil {
			base = *s.Replicas
		}
	}
	out := -1
	for _, s := range r.Series {
		if s.T >= c.crowdFrom && rep(s) > base {
			out = s.T + 1 - c.crowdFrom
			break
		}
	}
	if out < 0 {
		c.scaleOut, c.scaleIn = "no scale-out", "—"
		return
	}
	c.scaleOut = fmt.Sprintf("+%d s", out)
	lastHigh := -1
	for _, s := range r.Series {
		if s.T >= c.crowdTo && rep(s) > base {
			lastHigh = s.T
		}
	}
	switch {
	case lastHigh < 0:
		c.scaleIn = "0 s (by crowd end)"
	case lastHigh >= c.runEnd-1:
		c.scaleIn = fmt.Sprintf("not within %d s (%s at end)", c.runEnd-c.crowdTo, fmtNum(rep(r.Series[c.runEnd-1])))
	default:
		c.scaleIn = fmt.Sprintf("%d s", lastHigh+1-c.crowdTo)
	}
}

func (c *contender) row() string {
	label := c.meta.Label
	if c.meta.Nodes > 0 {
		label += fmt.Sprintf(" (%d×)", c.meta.Nodes)
	}
	if c.meta.Status == "pending" || c.rep == nil {
		why := c.meta.Note
		if c.rep == nil && c.err != nil && why == "" {
			why = c.err.Error()
		}
		status := c.meta.Status
		if status == "ok" {
			status = "no data"
		}
		return fmt.Sprintf("| %s | **%s**: %s | | | | | | | | |", label, status, mdEscape(why))
	}
	ph := map[string]load.Phase{}
	for _, p := range c.rep.Phases {
		ph[p.Name] = p
	}
	tri := func(f func(load.Phase) string) string {
		var parts []string
		for _, n := range []string{"before", "during", "after"} {
			if p, ok := ph[n]; ok {
				parts = append(parts, f(p))
			} else {
				parts = append(parts, "–")
			}
		}
		return strings.Join(parts, " / ")
	}
	lat := func(get func(load.Latency) float64) func(load.Phase) string {
		return func(p load.Phase) string {
			if p.Latency.Count == 0 {
				return "–"
			}
			return fmtMs(get(p.Latency))
		}
	}
	var rec string
	switch {
	case c.neverOver:
		rec = "0 s"
	case c.recovered:
		rec = fmt.Sprintf("%d s", c.recoverS)
	default:
		rec = "not by the end"
	}
	rec += fmt.Sprintf(" (%d/%d)", c.overSecs, c.crowdTo-c.crowdFrom)
	fetches := "?"
	if c.meta.OriginBefore != nil && c.meta.OriginAfter != nil {
		fetches = fmt.Sprintf("%d (%d)", c.meta.OriginAfter.Fetches-c.meta.OriginBefore.Fetches, c.meta.OriginAfter.Shed-c.meta.OriginBefore.Shed)
	}
	repS := "—"
	if c.replicaSec != nil {
		repS = fmtNum(*c.replicaSec)
	}
	scale := "—"
	if c.scaleOut != "—" {
		scale = c.scaleOut + " / " + c.scaleIn
	}
	if c.meta.Status == "failed" {
		label += " **(failed: " + mdEscape(c.meta.Note) + ")**"
	}
	if c.rep.Interrupted {
		label += " (interrupted)"
	}
	lag := fmtMs(c.rep.Generator.P99LagMs) + " ms"
	if c.rep.Generator.P99LagMs > lagWarnMs {
		lag += " (behind)"
	}
	return fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |",
		label,
		tri(func(p load.Phase) string { return pct(p.Success) }),
		tri(lat(func(l load.Latency) float64 { return l.P50Ms })),
		tri(lat(func(l load.Latency) float64 { return l.P99Ms })),
		tri(lat(func(l load.Latency) float64 { return l.P999Ms })),
		rec, fetches, repS, scale, lag)
}

func (c *contender) detailRow(resultsDir string) string {
	res := "—"
	if len(c.results) > 0 {
		keys := make([]string, 0, len(c.results))
		for k := range c.results {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return c.results[keys[i]] > c.results[keys[j]] })
		var parts []string
		for _, k := range keys {
			if c.results[k] > 0 {
				parts = append(parts, fmt.Sprintf("%s %s", k, fmtNum(c.results[k])))
			}
		}
		res = strings.Join(parts, ", ")
	}
	cache := "—"
	if c.rep != nil {
		var cc load.CacheCounts
		for _, s := range c.rep.Series {
			cc.Hit += s.Cache.Hit
			cc.Stale += s.Cache.Stale
			cc.Miss += s.Cache.Miss
			cc.Other += s.Cache.Other
		}
		cache = fmt.Sprintf("%d / %d / %d / %d", cc.Hit, cc.Stale, cc.Miss, cc.Other)
	}
	served := "—"
	if c.rep != nil {
		by := map[string]int64{}
		var total int64
		for _, s := range c.rep.Series {
			if s.T < c.crowdFrom || s.T >= c.crowdTo {
				continue
			}
			for k, v := range s.ServedBy {
				by[k] += v
				total += v
			}
		}
		if total > 0 {
			keys := make([]string, 0, len(by))
			for k := range by {
				keys = append(keys, k)
			}
			sort.Slice(keys, func(i, j int) bool {
				return by[keys[i]] > by[keys[j]] || by[keys[i]] == by[keys[j]] && keys[i] < keys[j]
			})
			var parts []string
			for _, k := range keys {
				share := 100 * float64(by[k]) / float64(total)
				if share < 0.5 {
					parts = append(parts, k+" <1%")
				} else {
					parts = append(parts, fmt.Sprintf("%s %.0f%%", k, share))
				}
			}
			served = strings.Join(parts, ", ")
		}
	}
	thr := "—"
	if c.periods > 0 {
		thr = fmt.Sprintf("%s of %s periods, %.1f s", fmtNum(c.thrPeriod), fmtNum(c.periods), c.throttled)
	}
	chart := "—"
	if c.rep != nil && c.meta.PNG != "" {
		if _, err := os.Stat(c.meta.PNG); err == nil {
			chart = fmt.Sprintf("[%s](%s)", filepath.Base(c.meta.PNG), relPath(resultsDir, c.meta.PNG))
		}
	}
	return fmt.Sprintf("| %s | %s | %s | %s | %s | %s |", c.meta.Label, served, res, cache, thr, chart)
}

// readMetrics sums crowdpilot_requests_total by result over the nodes'
// final /metrics snapshots.
func (c *contender) readMetrics() {
	files, _ := filepath.Glob(filepath.Join(c.dir, "metrics", "*.txt"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(bytes.NewReader(data))
		if err != nil {
			continue
		}
		fam := fams["crowdpilot_requests_total"]
		if fam == nil {
			continue
		}
		for _, m := range fam.GetMetric() {
			res := "?"
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" {
					res = l.GetValue()
				}
			}
			if c.results == nil {
				c.results = map[string]float64{}
			}
			c.results[res] += m.GetCounter().GetValue()
		}
	}
}

// readCPUStat sums the nodes' cgroup cpu.stat throttling figures (v1:
// throttled_time in ns; v2: throttled_usec).
func (c *contender) readCPUStat() {
	files, _ := filepath.Glob(filepath.Join(c.dir, "cpustat", "*.txt"))
	for _, f := range files {
		lines, err := readLines(f)
		if err != nil {
			continue
		}
		for _, l := range lines {
			k, v, ok := strings.Cut(l, " ")
			if !ok {
				continue
			}
			n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				continue
			}
			switch k {
			case "nr_periods":
				c.periods += n
			case "nr_throttled":
				c.thrPeriod += n
			case "throttled_time":
				c.throttled += n / 1e9
			case "throttled_usec":
				c.throttled += n / 1e6
			}
		}
	}
}

// writeSection replaces the marked section of path, or appends it, keeping
// everything else. The file is replaced by rename so a reader never sees
// half of it.
func writeSection(path, section string) error {
	return writeMarked(path, section, beginMarker, endMarker)
}

// writeMarked is writeSection for the section between the markers begin
// and end.
func writeMarked(path, section, beginMarker, endMarker string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var out string
	s := string(old)
	i, j := strings.Index(s, beginMarker), strings.Index(s, endMarker)
	switch {
	case len(old) == 0:
		out = "# Benchmark results\n\n" + section
	case i >= 0 && j > i:
		out = s[:i] + strings.TrimSuffix(section, "\n") + s[j+len(endMarker):]
	case i >= 0 || j >= 0:
		return fmt.Errorf("%s: only one of the testbed markers is present; fix the file by hand", path)
	default:
		out = strings.TrimRight(s, "\n") + "\n\n" + section
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".results-*.md")
	if err != nil {
		return err
	}
	if _, err := io.WriteString(tmp, out); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	os.Chmod(tmp.Name(), 0o644)
	return os.Rename(tmp.Name(), path)
}

func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimRight(sc.Text(), "\r"); l != "" {
			out = append(out, l)
		}
	}
	return out, sc.Err()
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func relPath(base, target string) string {
	abs, err := filepath.Abs(target)
	if err != nil {
		return target
	}
	if r, err := filepath.Rel(base, abs); err == nil {
		return filepath.ToSlash(r)
	}
	return target
}

func pct(f float64) string {
	switch {
	case f >= 1:
		return "100%"
	case f >= 0.9999:
		return "99.99%"
	case f >= 0.1:
		return strconv.FormatFloat(100*f, 'f', 2, 64) + "%"
	default:
		return strconv.FormatFloat(100*f, 'f', 1, 64) + "%"
	}
}

func fmtMs(v float64) string {
	switch {
	case v < 10:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case v < 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
}

func fmtNum(v float64) string {
	if v == math.Trunc(v) {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

func fmtDur(d time.Duration) string {
	if d%time.Millisecond == 0 && d < time.Second*10 {
		return fmt.Sprintf("%d ms", d/time.Millisecond)
	}
	return d.String()
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
