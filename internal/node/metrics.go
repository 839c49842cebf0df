package node

import (
	"log"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the node's own series; store and origin series are registered
// by their packages on the same registry.
type metrics struct {
	requests   map[string]prometheus.Counter // by result, resolved once: no label lookup per request
	duration   prometheus.Histogram
	failovers  prometheus.Counter
	sheds      *prometheus.CounterVec
	nearKept   prometheus.Counter
	reportsNow prometheus.Counter
}

func newMetrics(reg *prometheus.Registry, inflight *atomic.Int64) *metrics {
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crowdpilot_requests_total",
		Help: "Data requests by result: hit, miss, stale, collapsed, near (a router's near copy), via_peer (a router's collapsed fetch from the replica set), forwarded, pass, shed, error, bad_request.",
	}, []string{"result"})
	m := &metrics{
		requests: make(map[string]prometheus.Counter),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "crowdpilot_request_duration_seconds",
			Help:    "Time to serve a data request, from headers read to handler return.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}),
		failovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "crowdpilot_forward_failovers_total",
			Help: "Forwards to a peer that failed before any byte was written and moved on to the next member.",
		}),
		sheds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crowdpilot_shed_total",
			Help: "Work dropped at a bound, by reason (origin_limit, origin_timeout, refresh_pool, ...).",
		}, []string{"reason"}),
		nearKept: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "crowdpilot_near_copies_kept_total",
			Help: "Near copies this node kept (or renewed) of hot objects it does not own, filled from their replica sets.",
		}),
		reportsNow: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "crowdpilot_heat_reports_immediate_total",
			Help: "Heat reports sent at once because a key turned hot here, ahead of the report tick.",
		}),
	}
	for _, r := range []string{resHit, resMiss, resStale, resCollapsed, resNear, resPeer, resForwarded, resPass, resShed, resError, resBad} {
		m.requests[r] = reqs.WithLabelValues(r)
	}
	reg.MustRegister(reqs, m.duration, m.failovers, m.sheds, m.nearKept, m.reportsNow,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "crowdpilot_inflight_requests",
			Help: "Data requests being served.",
		}, func() float64 { return float64(inflight.Load()) }))
	return m
}

// window returns a loadWindow over these metrics: shed and error results
// count as failures; bad requests (the client's fault) count in neither.
func (m *metrics) window() *loadWindow {
	w := &loadWindow{duration: m.duration}
	for r, c := range m.requests {
		switch r {
		case resBad:
			continue
		case resShed, resError:
			w.failed = append(w.failed, c)
		}
		w.all = append(w.all, c)
	}
	return w
}

func (m *metrics) observe(result string, d time.Duration) {
	m.requests[result].Inc()
	m.duration.Observe(d.Seconds())
}

func (m *metrics) shed(reason string) { m.sheds.WithLabelValues(reason).Inc() }

// newStdLogger adapts slog for net/http's error log.
func newStdLogger(l *slog.Logger) *log.Logger {
	return slog.NewLogLogger(l.Handler(), slog.LevelWarn)
}
