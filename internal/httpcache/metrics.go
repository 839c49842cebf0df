package httpcache

import "github.com/prometheus/client_golang/prometheus"

// rejectReasons are the fixed values of the reason label of
// crowdpilot_store_rejected_total.
var rejectReasons = [...]string{"invalid", "vary_star", "head", "too_large", "too_many_tags", "tag_index_full", "expired", "purged_in_flight", "near_budget", "reserve_budget"}

// storeMetrics are a Store's Prometheus metrics. Counters are created (and
// counted) even without a Registerer, so the store need not check.
type storeMetrics struct {
	evictions      *prometheus.CounterVec
	evictedSize    prometheus.Counter
	evictedExpired prometheus.Counter
	rejections     *prometheus.CounterVec
	byReason       map[string]prometheus.Counter // read-only after newStoreMetrics

	reg        prometheus.Registerer // nil when not registered
	registered []prometheus.Collector
}

func newStoreMetrics() *storeMetrics {
	m := &storeMetrics{
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crowdpilot_store_evictions_total",
			Help: "Entries removed by the store itself, by reason: size (over MaxBytes) or expired (no longer useful).",
		}, []string{"reason"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crowdpilot_store_rejected_total",
			Help: "Entries the store refused to keep, by reason.",
		}, []string{"reason"}),
		byReason: make(map[string]prometheus.Counter, len(rejectReasons)),
	}
	m.evictedSize = m.evictions.WithLabelValues("size")
	m.evictedExpired = m.evictions.WithLabelValues("expired")
	for _, r := range rejectReasons {
		m.byReason[r] = m.rejections.WithLabelValues(r)
	}
	return m
}

// rejected counts one rejection for reason, one of rejectReasons.
func (m *storeMetrics) rejected(reason string) { m.byReason[reason].Inc() }

// register registers the metrics of s on reg (nothing when reg is nil). On
// error it undoes what it registered.
func (m *storeMetrics) register(reg prometheus.Registerer, s *Store) error {
	if reg == nil {
		return nil
	}
	m.reg = reg
	cs := []prometheus.Collector{
		m.evictions,
		m.rejections,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "crowdpilot_store_bytes",
			Help: "Weighted size of the stored entries, in bytes.",
		}, func() float64 { return float64(s.Bytes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "crowdpilot_store_entries",
			Help: "Stored entries, Vary markers included.",
		}, func() float64 { return float64(s.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "crowdpilot_store_index_refs",
			Help: "Pairs in the tag and variant index, bounded by MaxIndexRefs.",
		}, func() float64 { return float64(s.index.len()) }),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			m.unregister()
			return err
		}
		m.registered = append(m.registered, c)
	}
	return nil
}

// unregister removes what register registered.
func (m *storeMetrics) unregister() {
	for _, c := range m.registered {
		m.reg.Unregister(c)
	}
	m.registered = nil
}
