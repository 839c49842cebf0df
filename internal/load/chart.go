package load

import (
	"fmt"
	"io"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// A series is one named line of a panel.
type series struct {
	name string
	pts  plotter.XYs
}

// line collects f over the seconds where ok says it has a value, each drawn
// at the middle of its second.
func line(name string, secs []Second, f func(Second) (float64, bool)) series {
	s := series{name: name}
	for _, sec := range secs {
		if v, ok := f(sec); ok {
			s.pts = append(s.pts, plotter.XY{X: float64(sec.T) + 0.5, Y: v})
		}
	}
	return s
}

func always(f func(Second) float64) func(Second) (float64, bool) {
	return func(s Second) (float64, bool) { return f(s), true }
}

// WritePNG draws the run as stacked panels sharing the time axis:
// requests/s, p50 and p99 latency (log scale), errors/s by kind, and, when
// the admins gave them, active replicas and origin fetches/s.
func (r *Report) WritePNG(w io.Writer) error {
	s := r.Series
	panels := []struct {
		title, unit string
		log         bool
		lines       []series
	}{
		{"requests", "req/s", false, []series{
			line("planned", s, always(func(s Second) float64 { return s.Planned })),
			line("sent", s, always(func(s Second) float64 { return float64(s.Sent) })),
			line("ok", s, always(func(s Second) float64 { return float64(s.OK) })),
		}},
		{"latency by planned send second", "ms", true, []series{
			line("p50", s, func(s Second) (float64, bool) { return s.Latency.P50Ms, s.Latency.Count > 0 }),
			line("p99", s, func(s Second) (float64, bool) { return s.Latency.P99Ms, s.Latency.Count > 0 }),
		}},
		{"failures", "req/s", false, nonZero(
			line("cluster: all", s, always(func(s Second) float64 { return float64(s.Errors.Total()) })),
			line("5xx", s, always(func(s Second) float64 { return float64(s.Errors.Status5xx) })),
			line("timeout", s, always(func(s Second) float64 { return float64(s.Errors.Timeout) })),
			line("transport", s, always(func(s Second) float64 { return float64(s.Errors.Transport) })),
			line("generator: not sent", s, always(func(s Second) float64 { return float64(s.NotSent) })),
		)},
		{"replicas of the hot objects", "active", false, []series{
			line("replicas", s, func(s Second) (float64, bool) { return deref(s.Replicas) }),
		}},
		{"origin", "fetches/s", false, []series{
			line("origin fetches", s, func(s Second) (float64, bool) { return deref(s.OriginFetches) }),
		}},
	}
	var plots [][]*plot.Plot
	for i, p := range panels {
		if i >= 3 && len(p.lines[0].pts) == 0 {
			continue // no admin figures
		}
		pl := plot.New()
		pl.Title.Text = p.title
		pl.Y.Label.Text = p.unit
		pl.X.Label.Text = "seconds"
		pl.X.Min, pl.X.Max = 0, r.Config.DurationS
		pl.Legend.Top = true
		var args []any
		for _, l := range p.lines {
			if len(l.pts) > 0 {
				args = append(args, l.name, l.pts)
			}
		}
		if len(args) == 0 {
			pl.Y.Min, pl.Y.Max = 0, 1
		} else if err := plotutil.AddLines(pl, args...); err != nil {
			return fmt.Errorf("chart %s: %w", p.title, err)
		}
		if p.log && len(args) > 0 {
			// Explicit bounds: a flat line would otherwise widen to ≤ 0.
			pl.Y.Min, pl.Y.Max = pl.Y.Min/2, pl.Y.Max*2
			pl.Y.Scale = plot.LogScale{}
			pl.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		} else {
			pl.Y.Min, pl.Y.Max = 0, max(pl.Y.Max, 1)
		}
		plots = append(plots, []*plot.Plot{pl})
	}
	title := fmt.Sprintf("requests (baseline %g/s", r.Config.Rate)
	if r.Config.Crowd != "" {
		title += ", crowd " + r.Config.Crowd
	}
	plots[0][0].Title.Text = title + ")"
	return WritePlots(w, plots)
}

// WritePlots draws plots (one a row) as a PNG, 26 cm wide, 7 cm a row,
// their axes aligned.
func WritePlots(w io.Writer, plots [][]*plot.Plot) error {
	const width, rowHeight = 26 * vg.Centimeter, 7 * vg.Centimeter
	img := vgimg.New(width, rowHeight*vg.Length(len(plots)))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(plots), Cols: 1, PadX: vg.Millimeter, PadY: 4 * vg.Millimeter,
		PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 2 * vg.Millimeter}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(w); err != nil {
		return fmt.Errorf("write png: %w", err)
	}
	return nil
}

// nonZero keeps the first line and those of the rest that are not all zero.
func nonZero(first series, rest ...series) []series {
	out := []series{first}
	for _, s := range rest {
		for _, p := range s.pts {
			if p.Y != 0 {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

func deref(p *float64) (float64, bool) {
	if p == nil {
		return 0, false
	}
	return *p, true
}
