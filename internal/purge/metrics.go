package purge

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are one follower's instruments.
type metrics struct {
	applied map[Kind]prometheus.Counter // crowdpilot_purge_applied_total{kind}
	lag     prometheus.Histogram        // crowdpilot_purge_lag_seconds
	flushes prometheus.Counter          // crowdpilot_purge_compaction_flushes_total
}

// lagBuckets span a local cluster (milliseconds) to a node catching up after
// a disconnect (seconds).
var lagBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	appliedVec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crowdpilot_purge_applied_total",
		Help: "Purges applied to this node's cache from the invalidation log, by kind (key, tag, prefix, all).",
	}, []string{"kind"})
	m := &metrics{
		applied: make(map[Kind]prometheus.Counter, len(kinds)),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "crowdpilot_purge_lag_seconds",
			Help:    "Time from a purge's commit to its application on this node.",
			Buckets: lagBuckets,
		}),
		flushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "crowdpilot_purge_compaction_flushes_total",
			Help: "Whole-cache flushes because this node's position in the purge log was compacted away.",
		}),
	}
	for _, k := range kinds {
		m.applied[k] = appliedVec.WithLabelValues(string(k))
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{appliedVec, m.lag, m.flushes} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register purge metrics: %w", err)
		}
	}
	return m, nil
}

// registerGauges registers the gauges read from f itself.
func (m *metrics) registerGauges(reg prometheus.Registerer, f *Follower) error {
	if reg == nil {
		return nil
	}
	rev := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "crowdpilot_purge_applied_revision",
		Help: "etcd revision up to which every purge has been applied on this node.",
	}, func() float64 { return float64(f.Applied()) })
	conn := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "crowdpilot_purge_connected",
		Help: "1 while etcd has confirmed this node's purge log position within the disconnect bound, else 0 (cache served as stale only).",
	}, func() float64 {
		if f.Connected() {
			return 1
		}
		return 0
	})
	for _, c := range []prometheus.Collector{rev, conn} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register purge metrics: %w", err)
		}
	}
	return nil
}
