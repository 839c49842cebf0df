package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
)

// scrapeResults reads crowdpilot_requests_total by result from each node's
// /metrics (node ID -> result -> count). A node that cannot be read is left
// out, and the report then shows no counts for it.
func scrapeResults(ctx context.Context, admins map[string]string) map[string]map[string]float64 {
	out := map[string]map[string]float64{}
	for id, a := range admins {
		m, err := scrapeOne(ctx, "http://"+a+"/metrics")
		if err != nil {
			slog.Warn("scrape", "node", id, "err", err)
			continue
		}
		out[id] = m
	}
	return out
}

func scrapeOne(ctx context.Context, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return parseResults(bufio.NewScanner(resp.Body))
}

// parseResults picks the crowdpilot_requests_total{result="..."} samples
// out of Prometheus text, and the owners' handoff peeks by result (as
// "peek <result>": a cold stampede's one origin fetch waits for them).
func parseResults(sc *bufio.Scanner) (map[string]float64, error) {
	prefixes := [...]struct{ prefix, name string }{
		{`crowdpilot_requests_total{result="`, ""},
		{`crowdpilot_handoff_peeks_total{result="`, "peek "},
	}
	m := map[string]float64{}
	for sc.Scan() {
		l := sc.Text()
		for _, p := range prefixes {
			rest, ok := strings.CutPrefix(l, p.prefix)
			if !ok {
				continue
			}
			name, val, ok := strings.Cut(rest, `"} `)
			if !ok {
				continue
			}
			v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
			if err != nil {
				continue
			}
			m[p.name+name] = v
		}
	}
	return m, sc.Err()
}

// diffResults is after minus before, keeping only the results that rose.
func diffResults(before, after map[string]map[string]float64) map[string]map[string]int {
	if len(after) == 0 {
		return nil
	}
	out := map[string]map[string]int{}
	for id, a := range after {
		d := map[string]int{}
		for k, v := range a {
			if n := int(v - before[id][k]); n != 0 {
				d[k] = n
			}
		}
		out[id] = d
	}
	return out
}

// traceProcess writes what the crowdpilot process did over the next second
// to path (`up` runs every node in one process, so any node's admin API
// sees them all): kind "trace" is a Go execution trace, "allocs" the
// allocations (a delta profile), "profile" a CPU profile.
func traceProcess(ctx context.Context, admins map[string]string, kind, path string) error {
	for _, a := range admins {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a+"/debug/pprof/"+kind+"?seconds=1", nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+benchToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", kind, resp.Status)
		}
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, resp.Body); err != nil {
			f.Close()
			return fmt.Errorf("%s: %w", kind, err)
		}
		return f.Close()
	}
	return fmt.Errorf("%s: no admin API", kind)
}

// cpuNanos is the CPU time, in nanoseconds, that the threads of every
// process in the process groups pgids (or, with pgids nil, of this
// process) have run for so far, from /proc/PID/task/TID/schedstat: a
// contender's work over one stampede is the rise across it. Threads that
// ended are not counted; the contenders' workers live as long as they do.
func cpuNanos(pgids []int) int64 {
	var pids []string
	if pgids == nil {
		pids = []string{"self"}
	} else {
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
			if err != nil {
				continue
			}
			// pid (comm) state ppid pgrp ...; comm may hold spaces.
			s := string(b)
			i := strings.LastIndexByte(s, ')')
			if i < 0 {
				continue
			}
			f := strings.Fields(s[i+1:])
			if len(f) < 3 {
				continue
			}
			g, _ := strconv.Atoi(f[2])
			if slices.Contains(pgids, g) {
				pids = append(pids, e.Name())
			}
		}
	}
	var total int64
	for _, p := range pids {
		tasks, _ := os.ReadDir("/proc/" + p + "/task")
		for _, t := range tasks {
			b, err := os.ReadFile("/proc/" + p + "/task/" + t.Name() + "/schedstat")
			if err != nil {
				continue
			}
			f := strings.Fields(string(b))
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				total += n
			}
		}
	}
	return total
}
