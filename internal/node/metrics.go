package node

import (
	"log"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the node's own series; store and origin series are registered
// by their packages on the same registry.
type metrics struct {
	requests  map[string]prometheus.Counter // by result, resolved once: no label lookup per request
	duration  prometheus.Histogram
	failovers prometheus.Counter
	// ownerTakeovers counts origin fetches a node made for a key it does
	// not own because its router suspected the owner.
	ownerTakeovers prometheus.Counter
	sheds          *prometheus.CounterVec
	nearKept       prometheus.Counter
	reportsNow     prometheus.Counter
	reportsQuiet   prometheus.Counter
	// peerInvalidations counts invalidations of unsafe requests sent to
	// and received from peers, by direction (sent, received) and result
	// (dropped, failed).
	peerInvalidations *prometheus.CounterVec

	replicasHeld atomic.Int64 // replica sets this node is a leased member of
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
		ownerTakeovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "crowdpilot_owner_takeovers_total",
			Help: "Origin fetches this node made for a key it does not own, because its router suspected the owner (it refused a connection, or failed several exchanges in a row); an owner that is only slow is asked again instead, and the request gets a stale copy or a 503 (crowdpilot_shed_total{reason=\"owner_unreachable\"}).",
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
		reportsQuiet: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "crowdpilot_heat_reports_quiet_skipped_total",
			Help: "Report ticks on which no heat report was sent because this node was quiet (nothing warm here, nothing hot at the leader, little CPU): a quiet node reports every fourth tick.",
		}),
		peerInvalidations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crowdpilot_peer_invalidations_total",
			Help: "Keys invalidated by unsafe requests, asked of the replica set's other members before the answer (sent) and asked by peers (received), by result (dropped, failed: left to the purge log).",
		}, []string{"direction", "result"}),
	}
	for _, r := range []string{resHit, resMiss, resStale, resCollapsed, resNear, resReserve, resPeer, resForwarded, resPass, resShed, resError, resBad} {
		m.requests[r] = reqs.WithLabelValues(r)
	}
	reg.MustRegister(reqs, m.duration, m.failovers, m.ownerTakeovers, m.sheds, m.nearKept, m.reportsNow, m.reportsQuiet, m.peerInvalidations,
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

// registerStateGauges exports what alerts and dashboards compare against:
// readiness, the store's bound, the replicas this node holds, and the depth
// and bound of the node's own bounded queues. Called by Start once
// membership exists.
func (n *Node) registerStateGauges() {
	gauge := func(name, help string, labels prometheus.Labels, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, f)
	}
	const (
		depthHelp = "Work held by a bounded stage of this node: invalidations queued, background refreshes running, heat reports in the leader's table, scale-out copies in flight. Beyond crowdpilot_queue_capacity work is shed and counted."
		capHelp   = "Bound of a stage of this node (see crowdpilot_queue_depth)."
	)
	// Each bounded stage: its depth and its bound, read together.
	stages := map[string]func() (int, int){
		"invalidations": n.inv.depth,
		"refreshes":     n.fill.RefreshDepth,
	}
	if n.ap.leader != nil {
		stages["heat_reports"] = n.ap.leader.ReportDepth
		stages["copies"] = n.ap.actuator.CopyDepth
	}
	for stage, depth := range stages {
		l := prometheus.Labels{"stage": stage}
		n.cfg.Registry.MustRegister(
			gauge("crowdpilot_queue_depth", depthHelp, l, func() float64 { d, _ := depth(); return float64(d) }),
			gauge("crowdpilot_queue_capacity", capHelp, l, func() float64 { _, c := depth(); return float64(c) }),
		)
	}
	n.cfg.Registry.MustRegister(
		gauge("crowdpilot_ready", "1 while this node has joined the cluster membership (what /readyz answers), else 0.", nil, func() float64 {
			if n.Ready() {
				return 1
			}
			return 0
		}),
		gauge("crowdpilot_store_max_bytes", "Bound of the store (--store-bytes); compare crowdpilot_store_bytes.", nil, func() float64 {
			return float64(n.cfg.StoreBytes)
		}),
		gauge("crowdpilot_replicas_active", "Leased replicas this node holds (replica sets it is a member of), as its routing sees them.", nil, func() float64 {
			return float64(n.m.replicasHeld.Load())
		}),
	)
}

// onReplicaSets routes by new replica sets (key hash -> member IDs) and
// counts those this node belongs to, for crowdpilot_replicas_active.
func (n *Node) onReplicaSets(sets map[uint64][]string) {
	held := 0
	for _, ids := range sets {
		if slices.Contains(ids, n.cfg.ID) {
			held++
		}
	}
	n.m.replicasHeld.Store(int64(held))
	n.router.SetReplicas(sets)
}
