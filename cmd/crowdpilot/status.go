package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"
)

// runStatus prints what one admin listener knows: the members, the
// autopilot leader, and the hot objects with their replicas.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("crowdpilot status", flag.ContinueOnError)
	admin := fs.String("admin", "127.0.0.1:9080", "admin address (host:port or URL) of any node")
	timeout := fs.Duration("timeout", 3*time.Second, "bound on each admin call")
	if err := parseFlags(fs, args, stderr); err != nil {
		return badInput(stderr, "status", err)
	}
	base := strings.TrimSuffix(*admin, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	client := &http.Client{Timeout: *timeout}

	var cl struct {
		Self    string `json:"self"`
		Members []struct {
			ID, Addr, Admin, Zone, State string
			PurgeRev                     int64 `json:"purge_rev"`
		} `json:"members"`
	}
	if err := getJSON(ctx, client, base+"/api/v1/cluster", &cl); err != nil {
		fmt.Fprintf(stderr, "crowdpilot status: %v\n", err)
		return 1
	}
	var hot struct {
		Leader string `json:"leader"`
		Hot    []struct {
			Key      string  `json:"key"`
			Rate     float64 `json:"rate"`
			Owner    string  `json:"owner"`
			Desired  int     `json:"desired"`
			Replicas []struct {
				Node    string    `json:"node"`
				Expires time.Time `json:"expires"`
			} `json:"replicas"`
		} `json:"hot"`
		Nodes []struct {
			Node      string        `json:"node"`
			CPU       float64       `json:"cpu"`
			CPULimit  float64       `json:"cpu_limit"`
			InFlight  int64         `json:"in_flight"`
			P99       time.Duration `json:"p99"`
			ErrorRate float64       `json:"error_rate"`
		} `json:"nodes"`
	}
	hotErr := getJSON(ctx, client, base+"/api/v1/hot", &hot)

	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	// Load as the leader last heard it from each node: what placement used.
	load := make(map[string]string, len(hot.Nodes))
	for _, l := range hot.Nodes {
		cpu := "-" // not measured: the node shares its process (up)
		if l.CPU > 0 {
			cpu = fmt.Sprintf("%.2f/%.2f", l.CPU, l.CPULimit)
		}
		load[l.Node] = fmt.Sprintf("%s\t%d\t%v\t%.1f%%", cpu, l.InFlight, l.P99, 100*l.ErrorRate)
	}
	fmt.Fprintf(tw, "MEMBER\tDATA\tADMIN\tZONE\tSTATE\tPURGE REV\tCPU\tIN FLIGHT\tP99\tERRORS\n")
	for _, m := range cl.Members {
		id := m.ID
		if id == hot.Leader {
			id += " (leader)"
		}
		l, ok := load[m.ID]
		if !ok {
			l = "-\t-\t-\t-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", id, m.Addr, m.Admin, orDash(m.Zone), m.State, m.PurgeRev, l)
	}
	tw.Flush()
	fmt.Fprintln(stdout)
	if hotErr != nil {
		fmt.Fprintf(stdout, "hot objects: unavailable (%v)\n", hotErr)
		return 0
	}
	if len(hot.Hot) == 0 {
		fmt.Fprintln(stdout, "hot objects: none")
		return 0
	}
	fmt.Fprintf(tw, "HOT OBJECT\tRATE/S\tOWNER\tREPLICAS\tLEASE EXPIRES IN\n")
	now := time.Now()
	for _, h := range hot.Hot {
		var nodes, exp []string
		for _, r := range h.Replicas {
			nodes = append(nodes, r.Node)
			exp = append(exp, r.Expires.Sub(now).Round(time.Second).String())
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\n", h.Key, h.Rate, h.Owner, orDash(strings.Join(nodes, ",")), orDash(strings.Join(exp, ",")))
	}
	tw.Flush()
	return 0
}

func getJSON(ctx context.Context, c *http.Client, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(out); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
