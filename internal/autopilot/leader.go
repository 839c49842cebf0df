package autopilot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crowdpilot/crowdpilot/internal/backoff"
	"github.com/crowdpilot/crowdpilot/internal/cluster"
)

// Leader defaults and bounds.
const (
	DefaultTick       = 500 * time.Millisecond
	DefaultMaxReports = 256
	// MaxHot bounds the objects Hot returns.
	MaxHot = 64
	// adoptPerTick bounds the records of unknown lease adopted per tick.
	adoptPerTick = 16
)

// LeaderConfig configures a Leader.
type LeaderConfig struct {
	// Policy holds the thresholds. Its ReplicaTTL is set to the Actuator's
	// TTL (whole seconds); a nonzero value that does not round up to it is
	// an error. Its ReportMaxAge zero means min(2s, TTL/2).
	Policy Config
	// Actuator carries out the decisions. Required; it belongs to this
	// Leader (which receives its late scale-out outcomes) and is run by it.
	Actuator *Actuator
	// Registry is this node's running view of the replica records.
	// Required. Ticks are skipped until it has loaded.
	Registry *Registry
	// Tick is the time between decisions. Zero means min(500ms, TTL/10);
	// it must be below TTL/4, or leases could lapse before their renewal
	// is asked for.
	Tick time.Duration
	// Owner returns a key's owner by rendezvous hashing, from the node's
	// router. Required.
	Owner func(hash uint64) string
	// Nodes returns the live members with their zone, draining and failing
	// flags and requests in flight. Required; an empty list means
	// membership is unknown, and nothing is placed or released.
	Nodes func() []NodeInfo
	// Limits returns the operators' pins and caps on keys (the object
	// settings in etcd), read every tick. Nil means none.
	Limits func() []KeyLimits
	// Now is the clock for decisions and events; it must keep the real
	// clock's pace, since leases expire in real time. Nil means time.Now.
	Now func() time.Time
	// Logger receives leader events; nil discards them.
	Logger *slog.Logger
	// KeyLabel is the key label value of an object's per-object series (a
	// cache key may carry what an operator must not export, such as query
	// values); nil exports keys as they are.
	KeyLabel func(key string) string
	// Registerer receives the leader's metrics; nil registers none.
	Registerer prometheus.Registerer
	// MaxReports bounds the heat reports kept, the latest per node; a
	// report from a further node is dropped. Zero means 256.
	MaxReports int
	// MaxEvents bounds the recent decisions kept for Events. Zero means 512.
	MaxEvents int
}

// KeyLimits is an operator's Limits on one key, as LeaderConfig.Limits
// gives them.
type KeyLimits struct {
	Key  string
	Hash uint64
	Limits
}

// HotObject is a hot object as the leader sees it, for /api/v1/hot.
type HotObject struct {
	Key      string        `json:"key"`
	Hash     uint64        `json:"hash,string"`
	Rate     float64       `json:"rate"`          // requests/s, summed over the fresh reports
	P99      time.Duration `json:"p99,omitempty"` // worst p99 reported by the owner's or a replica's node, if known
	Owner    string        `json:"owner"`
	Replicas []ReplicaView `json:"replicas"`
	// Desired is the members the rate calls for, owner included, within
	// MaxReplicas and the operator's pin and cap.
	Desired int `json:"desired"`
	// Pin and Cap are the operator's limits on its leased replicas, if any.
	Pin int  `json:"pin,omitempty"`
	Cap *int `json:"cap,omitempty"`
}

// NodeLoad is a node's load as its latest fresh report gave it: what
// placement weighed.
type NodeLoad struct {
	Node      string        `json:"node"`
	Zone      string        `json:"zone,omitempty"`
	CPU       float64       `json:"cpu"`                 // cores in use
	CPULimit  float64       `json:"cpu_limit,omitempty"` // cores it may use
	InFlight  int64         `json:"in_flight"`
	P99       time.Duration `json:"p99"`
	ErrorRate float64       `json:"error_rate"`
	At        time.Time     `json:"at"` // when the node took the report
	Near      []NearCopy    `json:"near_copies,omitempty"`
}

// ReplicaView is one replica of a HotObject.
type ReplicaView struct {
	Node     string    `json:"node"`
	Since    time.Time `json:"since"`
	Expires  time.Time `json:"expires,omitzero"` // lease expiry; zero if the lease is not held
	Released bool      `json:"released,omitempty"`
}

// Leader is the autopilot loop the elected node runs: it collects heat
// reports, decides with a Policy, acts through the Actuator and keeps what it
// did for people. A Leader is built on every node; only Run drives it.
type Leader struct {
	policy     Config
	act        *Actuator
	reg        *Registry
	tick       time.Duration
	owner      func(uint64) string
	nodes      func() []NodeInfo
	limits     func() []KeyLimits
	keyLabel   func(string) string
	now        func() time.Time
	log        *slog.Logger
	maxReports int
	m          leaderMetrics
	events     *eventRing
	running    atomic.Bool

	repMu   sync.Mutex        // guards reports
	reports map[string]Report // latest per node, at most maxReports

	viewMu sync.Mutex        // guards hot, loads and active
	hot    []HotObject       // nil when not leading
	loads  []NodeLoad        // by node ID; nil when not leading
	active map[uint64]string // objects with a replicas_active series: hash -> key label
}

type leaderMetrics struct {
	dropped, changes prometheus.Counter
	leading          prometheus.Gauge
	active           *prometheus.GaugeVec
}

func newLeaderMetrics(reg prometheus.Registerer) (leaderMetrics, error) {
	m := leaderMetrics{
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "crowdpilot_autopilot_heat_reports_dropped_total",
			Help: "Heat reports dropped because the leader's report table was full.",
		}),
		changes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "crowdpilot_autopilot_leader_changes_total",
			Help: "Terms of autopilot leadership this node has started.",
		}),
		leading: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "crowdpilot_autopilot_leader",
			Help: "1 while this node runs the autopilot, else 0.",
		}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "crowdpilot_autopilot_replicas_active",
			Help: "Extra replicas registered per object, for objects holding any (leader only; removed when none are left). " +
				"Query values in key are redacted unless --admin-open-keys; hash is the hash /api/v1/hot shows.",
		}, []string{"key", "hash"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.dropped, m.changes, m.leading, m.active} {
			if err := reg.Register(c); err != nil {
				return m, fmt.Errorf("register leader metrics: %w", err)
			}
		}
	}
	return m, nil
}

// NewLeader validates cfg and returns a Leader; call Run on election.
func NewLeader(cfg LeaderConfig) (*Leader, error) {
	switch {
	case cfg.Actuator == nil:
		return nil, errors.New("autopilot leader: Actuator is required")
	case cfg.Registry == nil:
		return nil, errors.New("autopilot leader: Registry is required")
	case cfg.Owner == nil:
		return nil, errors.New("autopilot leader: Owner is required")
	case cfg.Nodes == nil:
		return nil, errors.New("autopilot leader: Nodes is required")
	}
	ttl := cfg.Actuator.TTL()
	pc := cfg.Policy
	if pc.ReplicaTTL != 0 && ceilSeconds(pc.ReplicaTTL) != ttl {
		return nil, fmt.Errorf("autopilot leader: policy replica ttl %v differs from the actuator's lease ttl %v", pc.ReplicaTTL, ttl)
	}
	pc.ReplicaTTL = ttl
	if pc.ReportMaxAge == 0 {
		pc.ReportMaxAge = min(DefaultReportMaxAge, ttl/2)
	}
	p, err := NewPolicy(pc)
	if err != nil {
		return nil, fmt.Errorf("autopilot leader: %w", err)
	}
	setDefault(&cfg.Tick, min(DefaultTick, ttl/10))
	if cfg.Tick <= 0 || cfg.Tick >= ttl/4 {
		return nil, fmt.Errorf("autopilot leader: tick %v must be in (0, ttl/4 = %v)", cfg.Tick, ttl/4)
	}
	setDefault(&cfg.MaxReports, DefaultMaxReports)
	setDefault(&cfg.MaxEvents, DefaultMaxEvents)
	if cfg.MaxReports < 0 || cfg.MaxEvents < 0 {
		return nil, fmt.Errorf("autopilot leader: MaxReports %d and MaxEvents %d must be >= 0", cfg.MaxReports, cfg.MaxEvents)
	}
	m, err := newLeaderMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("autopilot leader: %w", err)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Limits == nil {
		cfg.Limits = func() []KeyLimits { return nil }
	}
	if cfg.KeyLabel == nil {
		cfg.KeyLabel = func(key string) string { return key }
	}
	l := &Leader{
		policy:     p.Config(),
		act:        cfg.Actuator,
		reg:        cfg.Registry,
		tick:       cfg.Tick,
		owner:      cfg.Owner,
		nodes:      cfg.Nodes,
		limits:     cfg.Limits,
		keyLabel:   cfg.KeyLabel,
		now:        cfg.Now,
		log:        orDiscard(cfg.Logger),
		maxReports: cfg.MaxReports,
		m:          m,
		events:     newEventRing(max(1, cfg.MaxEvents)),
		reports:    make(map[string]Report),
		active:     make(map[uint64]string),
	}
	late := func(act Action, err error) { l.events.add(eventOf(l.now(), act, err)) }
	cfg.Actuator.onLate.Store(&late)
	return l, nil
}

// PolicyConfig returns the policy thresholds in use, defaults filled in.
func (l *Leader) PolicyConfig() Config { return l.policy }

// Offer hands the leader a node's heat report. It never blocks on the
// leader's loop: it keeps the latest report per node, and returns false
// (counting crowdpilot_autopilot_heat_reports_dropped_total) when the table
// is full and the node has no entry yet.
func (l *Leader) Offer(r Report) bool {
	l.repMu.Lock()
	old, ok := l.reports[r.Node]
	if !ok && len(l.reports) >= l.maxReports {
		l.repMu.Unlock()
		l.m.dropped.Inc()
		return false
	}
	if !ok || !r.At.Before(old.At) {
		l.reports[r.Node] = r
	}
	l.repMu.Unlock()
	return true
}

// Run leads one term, until ctx is done (leadership lost), then returns nil;
// ErrRunning if already running. It starts a fresh Policy, runs the
// Actuator, adopts the registered replicas (retrying while etcd is
// unreachable), and then every Tick decides and acts under fence. When it
// returns, the Actuator has stopped renewing: the next leader adopts the
// leases.
func (l *Leader) Run(ctx context.Context, fence cluster.Fence) error {
	if !l.running.CompareAndSwap(false, true) {
		return fmt.Errorf("autopilot leader: %w", ErrRunning)
	}
	defer l.running.Store(false)
	l.m.changes.Inc()
	l.m.leading.Set(1)
	defer l.m.leading.Set(0)
	l.log.Info("autopilot: leading", "fence", fence.Key, "rev", fence.Rev)

	p, err := NewPolicy(l.policy)
	if err != nil {
		return fmt.Errorf("autopilot leader: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		l.clearView()
		l.log.Info("autopilot: leadership over", "fence", fence.Key)
	}()
	l.repMu.Lock()
	clear(l.reports) // reports kept from an earlier term are stale
	l.repMu.Unlock()

	// Adopt before the Actuator runs: Adopt replaces the schedule, and Run
	// drops it when it returns.
	var bo backoff.Backoff
	for {
		err := l.act.Adopt(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		d := bo.Next()
		l.log.Warn("autopilot: adopting replicas failed; retrying", "in", d, "err", err)
		backoff.Sleep(ctx, d)
	}
	wg.Go(func() {
		if err := l.act.Run(ctx); err != nil {
			l.log.Error("autopilot: actuator", "err", err)
		}
	})

	t := time.NewTicker(l.tick)
	defer t.Stop()
	for {
		if l.reg.Loaded() {
			l.step(ctx, fence, p)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// step is one tick: decide and act.
func (l *Leader) step(ctx context.Context, fence cluster.Fence, p *Policy) {
	now := l.now()
	reports := l.freshReports(now)
	records := l.reg.Records()
	l.act.adoptMissing(ctx, records, adoptPerTick)
	objects, owners := l.objects(now, records, reports, l.limits())

	acts := p.Decide(now, reports, objects, l.nodes())
	errs := l.act.apply(ctx, fence, acts, owners)
	for i, act := range acts {
		if act.Kind == Renew || errors.Is(errs[i], ErrPending) {
			continue // renewals are counted; pending scale-outs are recorded when done
		}
		l.events.add(eventOf(now, act, errs[i]))
	}
	l.publish(objects, reports, records)
}

// freshReports returns the reports young enough for the policy, forgetting
// older ones so the table holds live nodes only.
func (l *Leader) freshReports(now time.Time) []Report {
	l.repMu.Lock()
	defer l.repMu.Unlock()
	out := make([]Report, 0, len(l.reports))
	for node, r := range l.reports {
		if now.Sub(r.At) > l.policy.ReportMaxAge {
			delete(l.reports, node)
			continue
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Report) int { return cmp.Compare(a.Node, b.Node) })
	return out
}

// objects builds the replica sets for Decide: one Object per registered,
// reported or limited key, owner from Owner, lease expiry from the
// Actuator, the operator's limits. It also returns the owners by hash.
func (l *Leader) objects(now time.Time, records []Record, reports []Report, limits []KeyLimits) ([]Object, map[uint64]string) {
	idx := make(map[uint64]int)
	var objs []Object
	get := func(hash uint64, key string) *Object {
		i, ok := idx[hash]
		if !ok {
			i = len(objs)
			idx[hash] = i
			objs = append(objs, Object{Key: key, Hash: hash, Owner: l.owner(hash)})
		}
		return &objs[i]
	}
	for _, rec := range records {
		o := get(rec.Hash, rec.Key)
		exp, _, ok := l.act.expiry(rec.Hash, rec.Node)
		if !ok {
			// A lease not held (yet): taken as fresh. It lapses on its own
			// unless a later tick adopts it.
			exp = now.Add(l.policy.ReplicaTTL)
		}
		o.Replicas = append(o.Replicas, Replica{Node: rec.Node, Since: rec.Since, Expires: exp})
	}
	for _, r := range reports {
		for _, kr := range r.Keys {
			get(kr.Hash, kr.Key)
		}
	}
	for _, kl := range limits {
		if !kl.Limits.IsZero() {
			get(kl.Hash, kl.Key).Limits = kl.Limits
		}
	}
	owners := make(map[uint64]string, len(objs))
	for _, o := range objs {
		owners[o.Hash] = o.Owner
	}
	return objs, owners
}

// publish updates the hot view and the replicas_active series.
func (l *Leader) publish(objects []Object, reports []Report, records []Record) {
	c := &l.policy
	rates := make(map[uint64]float64)
	p99 := make(map[string]time.Duration, len(reports))
	for _, r := range reports {
		p99[r.Node] = r.P99
		for _, kr := range r.Keys {
			if kr.Rate > 0 {
				rates[kr.Hash] += kr.Rate
			}
		}
	}
	var hot []HotObject
	for _, o := range objects {
		rate := rates[o.Hash]
		if len(o.Replicas) == 0 && rate < c.TargetRPS*c.LowWatermark && o.Limits.IsZero() {
			continue
		}
		floor, ceil := c.bounds(o.Limits)
		h := HotObject{
			Key: o.Key, Hash: o.Hash, Rate: rate, Owner: o.Owner, P99: p99[o.Owner],
			Desired: min(max(floor, ceilDiv(rate, c.TargetRPS, c.MaxReplicas)), ceil),
			Pin:     o.Limits.Pin, Cap: o.Limits.Cap,
		}
		for _, r := range o.Replicas {
			v := ReplicaView{Node: r.Node, Since: r.Since}
			if exp, released, ok := l.act.expiry(o.Hash, r.Node); ok {
				v.Expires, v.Released = exp, released
			}
			h.Replicas = append(h.Replicas, v)
			h.P99 = max(h.P99, p99[r.Node])
		}
		hot = append(hot, h)
	}
	slices.SortFunc(hot, func(a, b HotObject) int {
		if c := cmp.Compare(b.Rate, a.Rate); c != 0 {
			return c
		}
		return cmp.Compare(a.Hash, b.Hash)
	})
	if len(hot) > MaxHot {
		hot = hot[:MaxHot]
	}

	counts := make(map[uint64]int)
	keys := make(map[uint64]string) // hash -> key label
	for _, rec := range records {
		counts[rec.Hash]++
		keys[rec.Hash] = l.keyLabel(rec.Key)
	}
	loads := make([]NodeLoad, 0, len(reports))
	for _, r := range reports {
		loads = append(loads, NodeLoad{Node: r.Node, Zone: r.Zone, CPU: r.CPU, CPULimit: r.CPULimit, InFlight: r.InFlight, P99: r.P99, ErrorRate: r.ErrorRate, At: r.At, Near: r.Near})
	}
	slices.SortFunc(loads, func(a, b NodeLoad) int { return cmp.Compare(a.Node, b.Node) })

	l.viewMu.Lock()
	defer l.viewMu.Unlock()
	l.hot = hot
	l.loads = loads
	for h, key := range l.active {
		if counts[h] == 0 || keys[h] != key {
			l.m.active.DeleteLabelValues(key, strconv.FormatUint(h, 10))
			delete(l.active, h)
		}
	}
	for h, n := range counts {
		l.m.active.WithLabelValues(keys[h], strconv.FormatUint(h, 10)).Set(float64(n))
		l.active[h] = keys[h]
	}
}

// clearView forgets the hot view and the replicas_active series at the end
// of a term: another node reports them now.
func (l *Leader) clearView() {
	l.viewMu.Lock()
	defer l.viewMu.Unlock()
	l.hot, l.loads = nil, nil
	for h, key := range l.active {
		l.m.active.DeleteLabelValues(key, strconv.FormatUint(h, 10))
		delete(l.active, h)
	}
}

// Hot returns the hot objects, hottest first, at most MaxHot: those with a
// rate above the low watermark of one member or holding replicas. It is nil
// when this node is not leading. The slice is shared and must not be
// modified.
func (l *Leader) Hot() []HotObject {
	l.viewMu.Lock()
	defer l.viewMu.Unlock()
	return l.hot
}

// Loads returns each reporting node's latest load, by node ID; nil when
// this node is not leading. The slice is shared and must not be modified.
func (l *Leader) Loads() []NodeLoad {
	l.viewMu.Lock()
	defer l.viewMu.Unlock()
	return l.loads
}

// Events returns up to n recent scale decisions, newest first; n <= 0 means
// all that are kept.
func (l *Leader) Events(n int) []Event { return l.events.last(n) }

// Record adds an event that is not the policy's decision, such as an
// operator's change of a key's limits, to Events.
func (l *Leader) Record(ev Event) { l.events.add(ev) }
