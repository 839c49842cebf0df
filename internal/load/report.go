package load

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// ReportConfig records what was run.
type ReportConfig struct {
	Targets     []string `json:"targets"`
	Rate        float64  `json:"rate"`
	DurationS   float64  `json:"duration_s"`
	Crowd       string   `json:"crowd,omitempty"`
	Keys        int      `json:"keys"`
	Zipf        float64  `json:"zipf"`
	Hot         []string `json:"hot,omitempty"`
	MaxInflight int      `json:"max_inflight"`
	TimeoutS    float64  `json:"timeout_s"`
	Admins      []string `json:"admins,omitempty"`
}

// A Phase is a stretch of the run: before, during or after the crowd (or
// the whole run). Requests belong to it by their planned send time.
type Phase struct {
	Name  string        `json:"name"`
	From  time.Duration `json:"-"`
	To    time.Duration `json:"-"`
	FromS float64       `json:"from_s"`
	ToS   float64       `json:"to_s"`
	// Success is OK / Scheduled, end to end (the generator's own NotSent
	// counts against it); ClusterSuccess is OK / Sent, the cluster's part.
	Success        float64  `json:"success_rate"`
	ClusterSuccess float64  `json:"cluster_success_rate"`
	Latency        Latency  `json:"latency"`
	Counts                  // flattened into the phase's JSON
	Cluster        *Cluster `json:"cluster,omitempty"` // nil without admin figures
}

// Cluster sums the admin figures over a phase.
type Cluster struct {
	OriginFetches  float64 `json:"origin_fetches"`
	ReplicaSeconds float64 `json:"replica_seconds"` // replicas_active summed over the seconds
}

func (p *Phase) seconds() {
	p.FromS, p.ToS = p.From.Seconds(), p.To.Seconds()
	p.Success = p.SuccessRate()
	p.ClusterSuccess = p.ClusterSuccessRate()
}

// addCluster sums the series' admin figures over p.
func (p *Phase) addCluster(series []Second) {
	for _, s := range series {
		t := time.Duration(s.T) * time.Second
		if t < p.From || t >= p.To || (s.OriginFetches == nil && s.Replicas == nil) {
			continue
		}
		if p.Cluster == nil {
			p.Cluster = &Cluster{}
		}
		if s.OriginFetches != nil {
			p.Cluster.OriginFetches += *s.OriginFetches
		}
		if s.Replicas != nil {
			p.Cluster.ReplicaSeconds += *s.Replicas
		}
	}
}

// A Report is the outcome of a run.
type Report struct {
	Config      ReportConfig   `json:"config"`
	Interrupted bool           `json:"interrupted"` // stopped before the end of the schedule
	Phases      []Phase        `json:"phases"`
	Total       Phase          `json:"total"`
	Generator   GeneratorStats `json:"generator"`
	Series      []Second       `json:"series"` // one per second of the run
}

func (g *Generator) reportConfig() ReportConfig {
	c := g.cfg
	return ReportConfig{
		Targets:     c.Targets,
		Rate:        c.Schedule.Base,
		DurationS:   c.Schedule.Duration.Seconds(),
		Crowd:       c.Schedule.Crowd.String(),
		Keys:        c.Keys,
		Zipf:        c.Zipf,
		Hot:         c.Hot,
		MaxInflight: c.MaxInflight,
		TimeoutS:    c.Timeout.Seconds(),
		Admins:      c.Admins,
	}
}

// GeneratorStats are the generator's own failures, as opposed to the
// cluster's: the requests it never sent because MaxInflight requests were
// still outstanding, and how late it sent the others. If it cannot keep up
// (GC, CPU), requests leave after their planned time, and that lateness is
// part of their measured latency.
type GeneratorStats struct {
	NotSent     int64   `json:"not_sent"`     // = Total.NotSent
	MaxInflight int     `json:"max_inflight"` // the bound that made them not sent
	MaxLagMs    float64 `json:"max_send_lag_ms"`
	P99LagMs    float64 `json:"p99_send_lag_ms"`
	// Behind is set when the p99 send lag exceeds 10 ms: the generator did
	// not keep to its schedule, and the latencies include its lag.
	Behind bool `json:"fell_behind"`
}

func generatorStats(lag *hdr.Histogram, notSent int64, maxInflight int) GeneratorStats {
	l := latencyOf(lag)
	return GeneratorStats{NotSent: notSent, MaxInflight: maxInflight, MaxLagMs: l.MaxMs, P99LagMs: l.P99Ms, Behind: l.P99Ms > lagWarnMs}
}

// WriteJSON writes r as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the summary: one row per phase and the total, then
// what the generator failed to do itself and what the cluster failed.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\t\t\tgenerator\tcluster\t\t\t\t\t\t\t\t\t\t\t")
	fmt.Fprintln(tw, "phase\twindow\tscheduled\tnot sent\tsent\tok\tok/sent\tp50\tp99\tp99.9\t4xx\t5xx\t503\ttimeout\tconn err\t")
	rows := append(append([]Phase(nil), r.Phases...), r.Total)
	for _, p := range rows {
		e := p.Errors
		fmt.Fprintf(tw, "%s\t%s-%s\t%d\t%d\t%d\t%d\t%.2f%%\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t\n",
			p.Name, secs(p.FromS), secs(p.ToS), p.Scheduled, p.NotSent, p.Sent, p.OK, 100*p.ClusterSuccess,
			ms(p.Latency.P50Ms, p.Latency.Count), ms(p.Latency.P99Ms, p.Latency.Count), ms(p.Latency.P999Ms, p.Latency.Count),
			e.Status4xx, e.Status5xx, e.Status503, e.Timeout, e.Transport)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	t, g := r.Total, r.Generator
	fmt.Fprintf(w, "generator (this process, not the cluster): %d of %d scheduled requests not sent", t.NotSent, t.Scheduled)
	if t.NotSent > 0 {
		fmt.Fprintf(w, " because --max-inflight %d requests were still outstanding (answers too slow for --rate; raise --max-inflight to send them anyway)", g.MaxInflight)
	}
	fmt.Fprintf(w, "; send lag p99 %s, max %s\n", ms(g.P99LagMs, 1), ms(g.MaxLagMs, 1))
	if g.Behind {
		fmt.Fprintln(w, "WARNING: the generator fell behind its schedule (starved of CPU?); the latencies above include its lag")
	}
	e := t.Errors
	fmt.Fprintf(w, "cluster (answers to the %d requests sent): %d ok (%.2f%%); failed: %d 5xx (%d of them 503), %d 4xx, %d timeouts, %d connection errors\n",
		t.Sent, t.OK, 100*t.ClusterSuccess, e.Status5xx, e.Status503, e.Status4xx, e.Timeout, e.Transport)
	if c := t.Cluster; c != nil {
		fmt.Fprintf(w, "cluster: %.0f origin fetches, %.0f replica-seconds\n", c.OriginFetches, c.ReplicaSeconds)
	}
	var err error
	if r.Interrupted {
		_, err = fmt.Fprintln(w, "interrupted before the end of the schedule")
	}
	return err
}

// lagWarnMs is the p99 send lag above which the table warns that the
// generator could not keep to its schedule.
const lagWarnMs = 10

func secs(s float64) string { return strconv.FormatFloat(s, 'f', -1, 64) + "s" }

// ms formats milliseconds with about three significant figures.
func ms(v float64, count int64) string {
	switch {
	case count == 0:
		return "-"
	case v < 0.9995:
		return fmt.Sprintf("%.0fµs", v*1000)
	case v < 999.5:
		return strconv.FormatFloat(v, 'g', 3, 64) + "ms"
	default:
		return strconv.FormatFloat(v/1000, 'g', 3, 64) + "s"
	}
}
