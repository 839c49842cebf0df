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

const statusAbout = `Prints what one node's admin API knows: the members with their load as the
autopilot leader last heard it, the leader, and the hot objects with their
replicas and lease expiry. --json prints the same as one JSON object.`

// runStatus prints what one admin listener knows: the members, the
// autopilot leader, and the hot objects with their replicas.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("crowdpilot status", flag.ContinueOnError)
	admin := fs.String("admin", "127.0.0.1:9080", "admin address (host:port or URL) of any node")
	timeout := fs.Duration("timeout", 3*time.Second, "bound on each admin call")
	asJSON := fs.Bool("json", false, "print what the admin API answered, as one JSON object {cluster, hot}")
	if err := parseFlags(fs, args, stdout, "crowdpilot status [--admin host:port] [flags]", statusAbout); err != nil {
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
	rawCluster, err := getJSON(ctx, client, base+"/api/v1/cluster", &cl)
	if err != nil {
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
			Pin      int     `json:"pin"`
			Cap      *int    `json:"cap"`
			Replicas []struct {
				Node     string    `json:"node"`
				Expires  time.Time `json:"expires"`
				Released bool      `json:"released"`
			} `json:"replicas"`
		} `json:"hot"`
		Nodes []struct {
			Node      string        `json:"node"`
			CPU       float64       `json:"cpu"`
			CPULimit  float64       `json:"cpu_limit"`
			InFlight  int64         `json:"in_flight"`
			P99       time.Duration `json:"p99"`
			ErrorRate float64       `json:"error_rate"`
			Near      []struct {
				Key string `json:"key"`
			} `json:"near_copies"`
		} `json:"nodes"`
	}
	rawHot, hotErr := getJSON(ctx, client, base+"/api/v1/hot", &hot)

	if *asJSON {
		out := struct {
			Cluster  json.RawMessage `json:"cluster"`
			Hot      json.RawMessage `json:"hot"`
			HotError string          `json:"hot_error,omitempty"`
		}{Cluster: rawCluster, Hot: rawHot}
		if hotErr != nil {
			out.Hot, out.HotError = json.RawMessage("null"), hotErr.Error()
		}
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			fmt.Fprintf(stderr, "crowdpilot status: %v\n", err)
			return 1
		}
		return 0
	}

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
	fmt.Fprintf(tw, "MEMBER\tDATA\tADMIN\tZONE\tSTATE\tPURGE REV\tCPU USED/LIMIT (CORES)\tIN FLIGHT\tP99\tERRORS\n")
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
	// Released replicas are no longer renewed and serve until their lease
	// lapses: listed apart, without an expiry that reads like a renewal.
	// Near copies are the data plane's own: routers that keep a hot object
	// they do not own, under a lease of seconds (from their reports).
	near := map[string][]string{}
	for _, l := range hot.Nodes {
		for _, c := range l.Near {
			near[c.Key] = append(near[c.Key], l.Node)
		}
	}
	fmt.Fprintf(tw, "HOT OBJECT\tRATE/S\tOWNER\tREPLICAS\tLEASE EXPIRES IN\tRELEASED (LAPSING)\tNEAR COPIES\tPIN/CAP\n")
	now := time.Now()
	for _, h := range hot.Hot {
		var nodes, exp, released []string
		for _, r := range h.Replicas {
			if r.Released {
				released = append(released, r.Node)
				continue
			}
			nodes = append(nodes, r.Node)
			if r.Expires.IsZero() {
				exp = append(exp, "-")
			} else {
				exp = append(exp, max(r.Expires.Sub(now), 0).Round(time.Second).String())
			}
		}
		limits := "-"
		if h.Pin > 0 || h.Cap != nil {
			limits = fmt.Sprintf("%d/", h.Pin)
			if h.Cap != nil {
				limits += fmt.Sprint(*h.Cap)
			} else {
				limits += "-"
			}
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Key, h.Rate, h.Owner, orDash(strings.Join(nodes, ",")),
			orDash(strings.Join(exp, ",")), orDash(strings.Join(released, ",")), orDash(strings.Join(near[h.Key], ",")), limits)
	}
	tw.Flush()
	return 0
}

// getJSON GETs url, decodes the answer into out, and returns it raw.
func getJSON(ctx context.Context, c *http.Client, url string, out any) (json.RawMessage, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	return raw, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
