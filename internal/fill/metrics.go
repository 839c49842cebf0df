package fill

import (
	"github.com/failsafe-go/failsafe-go/adaptivelimiter"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	fetches   *prometheus.CounterVec // by result: 2xx..5xx, not_modified, error, shed, too_large, body_error, retried
	latency   prometheus.Histogram   // origin time to response headers
	refreshes prometheus.Counter

	relays       prometheus.Counter // responses too large to store, relayed
	relayReaders prometheus.Counter // callers served from a relay
	relayReading prometheus.Gauge   // readers attached to relays now

	spares *prometheus.CounterVec // spare origin connections by result
}

func newMetrics(reg prometheus.Registerer, limit adaptivelimiter.AdaptiveLimiter[any]) metrics {
	m := metrics{
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crowdpilot_origin_fetches_total",
			Help: "Origin fetches by result (status class, not_modified, error, shed, too_large, body_error; retried: sent again after failing on a reused connection).",
		}, []string{"result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "crowdpilot_origin_fetch_duration_seconds",
			Help:    "Time from sending an origin request to its response headers.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		refreshes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "crowdpilot_fill_background_refreshes_total",
			Help: "Background refreshes started (prefresh and stale-while-revalidate).",
		}),
		relays: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "crowdpilot_fill_relays_total",
			Help: "Responses too large to store (over --max-object-bytes) read once from upstream and relayed to every request that joined them.",
		}),
		relayReaders: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "crowdpilot_fill_relay_readers_total",
			Help: "Requests served the body of a relayed response; each beyond the first of its relay cost upstream nothing.",
		}),
		spares: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crowdpilot_origin_spare_conns_total",
			Help: "Spare origin connections, dialled ahead so that a fetch needing a new connection does not wait for a dial: used, stale (closed by the origin or too old when needed; dialled anew) or dial_error.",
		}, []string{"result"}),
		relayReading: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "crowdpilot_fill_relay_readers",
			Help: "Requests reading a relayed response now.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.fetches, m.latency, m.refreshes, m.relays, m.relayReaders, m.relayReading, m.spares,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "crowdpilot_origin_limit",
				Help: "Current adaptive origin concurrency limit.",
			}, func() float64 { return float64(limit.Limit()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "crowdpilot_origin_inflight",
				Help: "Origin fetches in flight.",
			}, func() float64 { return float64(limit.Inflight()) }))
	}
	return m
}
