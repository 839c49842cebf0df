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
	Name    string        `json:"name"`
	From    time.Duration `json:"-"`
	To      time.Duration `json:"-"`
	FromS   float64       `json:"from_s"`
	ToS     float64       `json:"to_s"`
	Success float64       `json:"success_rate"`
	Latency Latency       `json:"latency"`
	Counts                // flattened into the phase's JSON
	Cluster *Cluster      `json:"cluster,omitempty"` // nil without admin figures
}

// Cluster sums the admin figures over a phase.
type Cluster struct {
	OriginFetches  float64 `json:"origin_fetches"`
	ReplicaSeconds float64 `json:"replica_seconds"` // replicas_active summed over the seconds
}

func (p *Phase) seconds() {
	p.FromS, p.ToS = p.From.Seconds(), p.To.Seconds()
	p.Success = p.SuccessRate()
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

// GeneratorStats says how late the generator itself sent: if it cannot keep
// up, requests leave after their planned time, and that lateness is part of
// their measured latency.
type GeneratorStats struct {
	MaxLagMs float64 `json:"max_send_lag_ms"`
	P99LagMs float64 `json:"p99_send_lag_ms"`
}

func generatorStats(lag *hdr.Histogram) GeneratorStats {
	l := latencyOf(lag)
	return GeneratorStats{MaxLagMs: l.MaxMs, P99LagMs: l.P99Ms}
}

// WriteJSON writes r as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the summary table: one row per phase and the total.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\twindow\tscheduled\tok\tsuccess\tp50\tp99\tp99.9\t4xx\t5xx\t503\ttimeout\ttransport\tshed\t")
	rows := append(append([]Phase(nil), r.Phases...), r.Total)
	for _, p := range rows {
		e := p.Errors
		fmt.Fprintf(tw, "%s\t%s-%s\t%d\t%d\t%.2f%%\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t\n",
			p.Name, secs(p.FromS), secs(p.ToS), p.Scheduled, p.OK, 100*p.Success,
			ms(p.Latency.P50Ms, p.Latency.Count), ms(p.Latency.P99Ms, p.Latency.Count), ms(p.Latency.P999Ms, p.Latency.Count),
			e.Status4xx, e.Status5xx, e.Status503, e.Timeout, e.Transport, e.Shed)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if c := r.Total.Cluster; c != nil {
		fmt.Fprintf(w, "cluster: %.0f origin fetches, %.0f replica-seconds\n", c.OriginFetches, c.ReplicaSeconds)
	}
	fmt.Fprintf(w, "generator send lag: p99 %s, max %s\n", ms(r.Generator.P99LagMs, 1), ms(r.Generator.MaxLagMs, 1))
	if r.Generator.P99LagMs > lagWarnMs {
		fmt.Fprintln(w, "WARNING: the generator fell behind its schedule (starved of CPU?); the latencies above include its lag")
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
