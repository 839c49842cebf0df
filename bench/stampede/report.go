package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// summarize fills r's latency percentiles (over every request, whatever it
// got) and its counts of statuses, cache outcomes and serving nodes.
func summarize(r *result, replies []reply) {
	r.Statuses, r.Cache, r.ServedBy = map[string]int{}, map[string]int{}, map[string]int{}
	lat := make([]time.Duration, 0, len(replies))
	for _, p := range replies {
		lat = append(lat, p.latency)
		if p.status == 0 {
			r.Statuses[p.err]++
			continue
		}
		r.Statuses[strconv.Itoa(p.status)]++
		r.Cache[p.cache]++
		if p.servedBy != "" {
			r.ServedBy[p.servedBy]++
		}
	}
	slices.Sort(lat)
	r.P50, r.P90, r.P99 = pct(lat, 0.50), pct(lat, 0.90), pct(lat, 0.99)
	if len(lat) > 0 {
		r.Max = ms(lat[len(lat)-1])
	}
}

// pct is the nearest-rank percentile of sorted, in milliseconds.
func pct(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return ms(sorted[max(i, 0)])
}

func ms(d time.Duration) float64 { return math.Round(float64(d.Microseconds())/100) / 10 }

// writeTables prints the Markdown tables for bench/RESULTS.md, then the
// cache outcomes of every stampede as evidence.
func writeTables(w io.Writer, all []result) {
	fmt.Fprintln(w, "Cold object (fetches: origin fetches of the object):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| run | contender | load avg | origin fetches | p50 ms | p90 ms | p99 ms | max ms | server CPU ms | client CPU ms | statuses |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range all {
		if r.Scenario == "cold" {
			fmt.Fprintf(w, "| %d | %s | %s | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %s |\n", r.Run, r.Contender, r.LoadAvg, r.Fetches, r.P50, r.P90, r.P99, r.Max, r.ServerCPU, r.ClientCPU, counts(r.Statuses))
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Expired object within the stale window (extra fetches: origin fetches after the warm fetch):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| run | contender | load avg | warm to release | extra fetches | p50 ms | p90 ms | p99 ms | max ms | server CPU ms | client CPU ms | statuses |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range all {
		if r.Scenario == "expired" {
			fmt.Fprintf(w, "| %d | %s | %s | %.1f s | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %s |\n", r.Run, r.Contender, r.LoadAvg, float64(r.StaleAgeMS)/1000, r.Fetches, r.P50, r.P90, r.P99, r.Max, r.ServerCPU, r.ClientCPU, counts(r.Statuses))
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Replies by cache outcome and serving node, and when origin requests arrived (ms after the release; c: conditional):")
	fmt.Fprintln(w)
	for _, r := range all {
		fmt.Fprintf(w, "- %s run %d %s: fetches %d, arrivals [%s]; cache: %s", r.Scenario, r.Run, r.Contender, r.Fetches, strings.Join(r.Arrivals, " "), counts(r.Cache))
		if len(r.ServedBy) > 0 {
			fmt.Fprintf(w, "; served by: %s", counts(r.ServedBy))
		}
		if len(r.NodeResults) > 0 {
			ids := make([]string, 0, len(r.NodeResults))
			for id := range r.NodeResults {
				ids = append(ids, id)
			}
			slices.Sort(ids)
			fmt.Fprint(w, "; requests by result per node:")
			for _, id := range ids {
				fmt.Fprintf(w, " %s {%s}", id, counts(r.NodeResults[id]))
			}
		}
		fmt.Fprintln(w)
	}
}

// counts renders m as "k1 × n1, k2 × n2", largest first.
func counts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if m[a] != m[b] {
			return m[b] - m[a]
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s × %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
