package main

import (
	"bufio"
	"context"
	"log/slog"
	"net/http"
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
// out of Prometheus text.
func parseResults(sc *bufio.Scanner) (map[string]float64, error) {
	const prefix = `crowdpilot_requests_total{result="`
	m := map[string]float64{}
	for sc.Scan() {
		l := sc.Text()
		rest, ok := strings.CutPrefix(l, prefix)
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
		m[name] = v
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
