package main

import (
	"fmt"
	"maps"
	"math"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/load"
)

// prefreshShare is the share of the TTL at which crowdpilot refreshes a
// fresh entry in the background (the node's default), so one fetcher makes
// at most floor(window / (prefreshShare × TTL)) + 1 fetches in a window.
const prefreshShare = 0.9

// crowdFigures are one contender's figures for the bar: every
// second of the crowd, the first included, against its own baseline.
type crowdFigures struct {
	served      float64 // OK / scheduled over the crowd
	servedAll   float64 // OK / scheduled over the run
	baseP99     float64 // p99 of the before phase, ms
	firstP99    float64 // p99 of the crowd's first second, ms
	worstP99    float64 // highest per-second p99 in the crowd, ms
	worstAt     int     // that second, from crowd start
	hotCrowd    int     // origin fetches of the hot object planned in the crowd window
	hotRun      int     // ... from the start of this contender's load to its end
	hotOK       bool    // the origin's hot-fetch log was there
	perTTL      float64 // hotCrowd per TTL of crowd
	maxOneFetch int     // most fetches one fetcher refreshing at prefreshShare × TTL makes in the window
	lagP99      float64
	lagMax      float64
	notSent     int64 // the generator's own, whole run
	notSentCrow int64 // ... planned in the crowd
	behind      bool
	cpuS        float64 // CPU seconds the contender used during the load
	cpuPerReqUs float64 // ... per answered request, µs
	cpuOK       bool
	p99BySecond map[int]float64  // crowd second (from crowd start) -> p99 ms
	worstCPU    *cpuSecond       // the machine's, the contender's and the generator's CPU in the worst second
	worstSlow   map[string]int64 // answers over load.SlowAnswer in the worst second, by X-Served-By
	busiest     float64          // the machine's most cores used in one crowd second
}

// figures derives c's crowd figures; ok is false without a load report.
func (c *contender) figures(ttl time.Duration) (f crowdFigures, ok bool) {
	r := c.rep
	if r == nil {
		return f, false
	}
	for _, p := range r.Phases {
		switch p.Name {
		case "before":
			f.baseP99 = p.Latency.P99Ms
		case "during":
			f.served = p.Success
			f.notSentCrow = p.NotSent
		}
	}
	f.servedAll = r.Total.Success
	f.worstAt = -1
	f.p99BySecond = map[int]float64{}
	for _, s := range r.Series {
		if s.T < c.crowdFrom || s.T >= c.crowdTo || s.Latency.Count == 0 {
			continue
		}
		f.p99BySecond[s.T-c.crowdFrom] = s.Latency.P99Ms
		if s.T == c.crowdFrom {
			f.firstP99 = s.Latency.P99Ms
		}
		if s.Latency.P99Ms > f.worstP99 || f.worstAt < 0 {
			f.worstP99, f.worstAt, f.worstSlow = s.Latency.P99Ms, s.T-c.crowdFrom, s.SlowBy
		}
	}
	if c.hot != nil && c.clock != nil {
		f.hotOK = true
		from := c.clock.StartMs + int64(c.crowdFrom)*1000
		to := c.clock.StartMs + int64(c.crowdTo)*1000
		for _, t := range c.hot.TimesMs {
			if t >= c.clock.StartMs {
				f.hotRun++
			}
			if t >= from && t < to {
				f.hotCrowd++
			}
		}
	}
	crowd := time.Duration(c.crowdTo-c.crowdFrom) * time.Second
	if crowd > 0 {
		f.perTTL = float64(f.hotCrowd) * float64(ttl) / float64(crowd)
		f.maxOneFetch = int(math.Floor(float64(crowd)/(prefreshShare*float64(ttl)))) + 1
	}
	if ck := c.clock; ck != nil && ck.CPUBefore != nil && ck.CPUAfter != nil {
		f.cpuOK = true
		f.cpuS = *ck.CPUAfter - *ck.CPUBefore
		if r.Total.Answered > 0 {
			f.cpuPerReqUs = f.cpuS * 1e6 / float64(r.Total.Answered)
		}
	}
	for i := range c.cpuSecs {
		cs := &c.cpuSecs[i]
		if cs.T < c.crowdFrom || cs.T >= c.crowdTo {
			continue
		}
		f.busiest = max(f.busiest, cs.Machine)
		if cs.T == c.crowdFrom+f.worstAt {
			f.worstCPU = cs
		}
	}
	g := r.Generator
	f.lagP99, f.lagMax, f.notSent, f.behind = g.P99LagMs, g.MaxLagMs, g.NotSent, g.Behind
	return f, true
}

// isCrowdpilot says whether a contender is one of crowdpilot's, held to the
// issue's bar; the others are the yardsticks.
func isCrowdpilot(name string) bool { return strings.HasPrefix(name, "crowdpilot") }

// verdict checks crowdpilot's figures against the bar: 100% served,
// every crowd second's p99 at most 2× its own baseline and no worse than
// each nginx contender's worst crowd second, and the hot object's origin
// fetches no more than one fetcher's. It lists what was missed.
func verdict(f crowdFigures, nginx map[string]crowdFigures) []string {
	var miss []string
	if f.served < 1 {
		miss = append(miss, fmt.Sprintf("served %s of the crowd, not 100%%", pct(f.served)))
	}
	if f.worstP99 > 2*f.baseP99 {
		miss = append(miss, fmt.Sprintf("worst crowd second p99 %s ms > 2× baseline (%s ms)", fmtMs(f.worstP99), fmtMs(2*f.baseP99)))
	}
	for _, name := range sortedKeys(nginx) {
		if n := nginx[name]; f.worstP99 > n.worstP99 {
			miss = append(miss, fmt.Sprintf("worst crowd second p99 %s ms > %s's %s ms", fmtMs(f.worstP99), name, fmtMs(n.worstP99)))
		}
	}
	for _, name := range sortedKeys(nginx) {
		if worse, of := worseSeconds(f, nginx[name]); worse > 0 {
			miss = append(miss, fmt.Sprintf("p99 above %s's in the same second in %d of %d crowd seconds", name, worse, of))
		}
	}
	if f.hotOK && f.hotCrowd > f.maxOneFetch {
		miss = append(miss, fmt.Sprintf("%d hot-object origin fetches in the crowd > %d (one fetcher's)", f.hotCrowd, f.maxOneFetch))
	}
	return miss
}

// worseSeconds counts the crowd seconds in which f's p99 was above n's in
// the same second, of the seconds both have.
func worseSeconds(f, n crowdFigures) (worse, of int) {
	for t, p := range f.p99BySecond {
		np, ok := n.p99BySecond[t]
		if !ok {
			continue
		}
		of++
		if p > np {
			worse++
		}
	}
	return worse, of
}

func sortedKeys(m map[string]crowdFigures) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// writeCrowdTable writes the per-contender table of the crowd's seconds,
// the hot object's origin fetches and the generator's own failures, then
// each crowdpilot contender's verdict against the bar.
func writeCrowdTable(w func(string, ...any), cs []*contender, o reportOpts) {
	figs := map[string]crowdFigures{}
	nginx := map[string]crowdFigures{}
	for _, c := range cs {
		if f, ok := c.figures(o.ttl); ok {
			figs[c.meta.Name] = f
			if !isCrowdpilot(c.meta.Name) {
				nginx[c.meta.Name] = f
			}
		}
	}
	if len(figs) == 0 {
		return
	}
	ttl := o.ttl.String()
	w("Every second of the crowd (the first included), the hot object's origin fetches (TTL %s) and the generator's own failures:\n\n", ttl)
	w("| contender | served, crowd / run | baseline p99 | first crowd second p99 | worst crowd second p99 (at +s) | worst / baseline | hot-object origin fetches: crowd (per TTL) / run | generator: send lag p99 / max, not sent (crowd / run) | contender CPU s in the load (µs per answer) | cores in the worst second: machine / contender / generator (machine's busiest crowd second) | answers over %v in the worst second, by node | load average before → after |\n", load.SlowAnswer)
	w("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range cs {
		f, ok := figs[c.meta.Name]
		if !ok {
			continue
		}
		ratio := "–"
		if f.baseP99 > 0 {
			ratio = fmt.Sprintf("%.1f×", f.worstP99/f.baseP99)
		}
		hot := "?"
		if f.hotOK {
			hot = fmt.Sprintf("%d (%.2f) / %d", f.hotCrowd, f.perTTL, f.hotRun)
		}
		gen := fmt.Sprintf("%s / %s ms, %d / %d", fmtMs(f.lagP99), fmtMs(f.lagMax), f.notSentCrow, f.notSent)
		if f.behind {
			gen += " (behind)"
		}
		cpu := "?"
		if f.cpuOK {
			cpu = fmt.Sprintf("%.1f (%.0f)", f.cpuS, f.cpuPerReqUs)
		}
		cores := "?"
		if wc := f.worstCPU; wc != nil {
			cores = fmt.Sprintf("%.2f / %.2f / %.2f (%.2f)", wc.Machine, wc.Contender, wc.Generator, f.busiest)
			if wc.Steal >= 0.05 {
				cores += fmt.Sprintf(", host steal %.2f", wc.Steal)
			}
		}
		la := "?"
		if c.clock != nil {
			la = c.clock.LoadavgBefore + " → " + c.clock.LoadavgAfter
		}
		w("| %s | %s / %s | %s ms | %s ms | %s ms (+%d) | %s | %s | %s | %s | %s | %s | %s |\n", c.meta.Name,
			pct(f.served), pct(f.servedAll), fmtMs(f.baseP99), fmtMs(f.firstP99), fmtMs(f.worstP99), f.worstAt,
			ratio, hot, gen, cpu, cores, fmtSlowBy(f.worstSlow), la)
	}
	w("\n")
	for _, c := range cs {
		f, ok := figs[c.meta.Name]
		if !ok || !isCrowdpilot(c.meta.Name) {
			continue
		}
		if miss := verdict(f, nginx); len(miss) == 0 {
			w("- **%s meets the bar** in this run.\n", c.meta.Name)
		} else {
			w("- **%s misses the bar**: %s.\n", c.meta.Name, strings.Join(miss, "; "))
		}
	}
	w("\nThe bar (issue 8): served 100%% of the crowd; p99 in every crowd second at most 2× the contender's own baseline p99 and no worse than each nginx contender's worst crowd second (the verdict also counts the crowd seconds in which the p99 was above that nginx's in the same second); hot-object origin fetches in the crowd no more than one fetcher refreshing at %.0f%% of the TTL makes (⌊crowd / (%.1f × TTL)⌋ + 1). *served* is OK (status < 400) / scheduled, the generator's not-sent included. Hot-object origin fetches are the origin's own log of 200s and 304s for the hot path, by arrival time, in the crowd window of this contender's load (±0.1 s: the window starts from the script's clock just before the generator starts); *per TTL* is that count × TTL / crowd length. *Contender CPU* is user + system time of the contender's processes (`/proc/PID/stat` of every process in its cgroups, all threads) over the load, divided by the requests it answered. *Cores* are CPU used in one second (the script's `cpu-seconds.tsv`, sampled once a second from the generator's start): the whole machine from `/proc/stat` (%d cores in all), the contender's processes, and the generator; a slow second with the machine near its core count was the machine's, one with the contender near its quota the contender's; *host steal* (shown from 0.05 core) is CPU the hypervisor gave other guests in that second, a slow second with it was the host's. *Answers over %v by node* are the generator's count of slow answers in the worst second by `X-Served-By`: slow on every node at once points at the machine or the generator, slow on a few nodes at those nodes. *Load average* is `/proc/loadavg` just before and after this contender's load: the machine is shared.\n\n", 100*prefreshShare, prefreshShare, runtime.NumCPU(), load.SlowAnswer)
}

// fmtSlowBy is "n0 8, n2 23" in node order, or "none": a slow second
// whose answers were slow on every node at once was the machine's or the
// generator's, one slow on some nodes theirs.
func fmtSlowBy(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// cpuSecond is one line of the script's cpu-seconds.tsv: the cores used in
// second T of the load (from the generator's start).
type cpuSecond struct {
	T                             int
	Machine, Contender, Generator float64
	Steal                         float64 // cores the hypervisor gave other guests (0 in older files)
}

// readCPUSeconds reads dir/cpu-seconds.tsv; a run without one (an older
// script) gives nil.
func readCPUSeconds(dir string) []cpuSecond {
	lines, err := readLines(filepath.Join(dir, "cpu-seconds.tsv"))
	if err != nil {
		return nil
	}
	var out []cpuSecond
	for _, l := range lines {
		var s cpuSecond
		if n, _ := fmt.Sscanf(l, "%d\t%g\t%g\t%g", &s.T, &s.Machine, &s.Contender, &s.Generator); n == 4 {
			// Columns 5-7 (softirq, harness other, throttled) are for
			// reading by hand; the eighth is the host's steal.
			if f := strings.Split(l, "\t"); len(f) >= 8 {
				s.Steal, _ = strconv.ParseFloat(f[7], 64)
			}
			out = append(out, s)
		}
	}
	return out
}
