package node

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// loadWindow turns the node's request metrics into the p99 latency and
// error rate of the interval since the previous call: the figures a heat
// report carries, computed off the serving path from counters it already
// keeps. Owned by the reporter goroutine.
type loadWindow struct {
	duration prometheus.Histogram
	failed   []prometheus.Counter // results that count as failures
	all      []prometheus.Counter // every result

	prevBuckets []uint64 // cumulative bucket counts at the last call
	prevCount   uint64
	prevFailed  float64
	prevAll     float64
}

// next returns p99 and error rate since the last call. The p99 is the upper
// bound of the histogram bucket that holds it (buckets double, so it is
// within 2× of the true value); zero when there were no requests.
func (w *loadWindow) next() (p99 time.Duration, errRate float64) {
	var m dto.Metric
	if err := w.duration.Write(&m); err != nil || m.Histogram == nil {
		return 0, 0
	}
	h := m.Histogram
	count := h.GetSampleCount()
	buckets := h.GetBucket()
	n := count - w.prevCount
	if n > 0 && len(w.prevBuckets) == len(buckets) {
		target := uint64(float64(n)*0.99 + 0.5)
		p99 = time.Duration(float64(time.Second) * buckets[len(buckets)-1].GetUpperBound())
		for i, b := range buckets {
			if b.GetCumulativeCount()-w.prevBuckets[i] >= target {
				p99 = time.Duration(float64(time.Second) * b.GetUpperBound())
				break
			}
		}
	}
	w.prevCount = count
	w.prevBuckets = w.prevBuckets[:0]
	for _, b := range buckets {
		w.prevBuckets = append(w.prevBuckets, b.GetCumulativeCount())
	}
	failed, all := sum(w.failed), sum(w.all)
	if d := all - w.prevAll; d > 0 {
		errRate = (failed - w.prevFailed) / d
	}
	w.prevFailed, w.prevAll = failed, all
	return p99, errRate
}

func sum(cs []prometheus.Counter) float64 {
	var t float64
	for _, c := range cs {
		var m dto.Metric
		if c.Write(&m) == nil && m.Counter != nil {
			t += m.Counter.GetValue()
		}
	}
	return t
}
