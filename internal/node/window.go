package node

import (
	"syscall"
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
	// cpu holds the process's CPU time at the last calls (a ring), so
	// that CPU is measured over cpuWindow, not since the last call.
	cpu  [cpuSamples]cpuSample
	ncpu int // samples held
	head int // the next slot
}

// cpuWindow is the least span a report's CPU is measured over. Under a
// CFS quota a process runs in bursts within each 100 ms period, and
// reports come every 250 ms or, when a key turns hot, sooner: measured
// since the last one, a burst read as several times the limit (up to 4.9×
// was seen in the two-tenant testbed), set off growth and kept cold
// tenants from shrinking.
const cpuWindow = time.Second

// cpuSamples bounds the ring: four seconds of reports at 250 ms.
const cpuSamples = 16

type cpuSample struct {
	cpu  time.Duration
	wall time.Time
}

// cpuSince records a sample and returns the cores used since the newest
// sample at least cpuWindow old (the oldest there is, early on); 0 on the
// first call.
func (w *loadWindow) cpuSince(cpu time.Duration, wall time.Time) float64 {
	var from cpuSample
	found := false
	for i := 1; i <= w.ncpu; i++ {
		s := w.cpu[(w.head-i+cpuSamples)%cpuSamples]
		from, found = s, true
		if wall.Sub(s.wall) >= cpuWindow {
			break
		}
	}
	w.cpu[w.head] = cpuSample{cpu: cpu, wall: wall}
	w.head = (w.head + 1) % cpuSamples
	w.ncpu = min(w.ncpu+1, cpuSamples)
	if el := wall.Sub(from.wall); found && el > 0 {
		return float64(cpu-from.cpu) / float64(el)
	}
	return 0
}

// load is what a window yields for one interval.
type load struct {
	p99     time.Duration
	errRate float64 // failed / all requests, 0..1
	cpu     float64 // cores this process used (user + system), 0 on the first call
}

// processCPU is the CPU time this process has used, user plus system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// next returns the load since the last call (CPU: over at least
// cpuWindow, see there). The p99 is the upper bound of
// the histogram bucket that holds it (buckets double, so it is within 2× of
// the true value); zero when there were no requests. CPU is measured on the
// wall clock: it is the process's real use, whatever clock the node runs on.
func (w *loadWindow) next() load {
	var l load
	l.cpu = w.cpuSince(processCPU(), time.Now())
	l.p99, l.errRate = w.latency()
	return l
}

func (w *loadWindow) latency() (p99 time.Duration, errRate float64) {
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
