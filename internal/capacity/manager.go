package capacity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crowdpilot/crowdpilot/internal/cluster"
)

// TenantWriter writes tenant records; *cluster.TenantStore is one. Update
// must write only if every guard holds.
type TenantWriter interface {
	Update(ctx context.Context, name string, edit func(*cluster.TenantRecord) error, guards ...cluster.Guard) (cluster.TenantRecord, error)
}

var _ TenantWriter = (*cluster.TenantStore)(nil)

// ManagerConfig configures a Manager.
type ManagerConfig struct {
	// Policy is the capacity policy's configuration (DefaultConfig).
	Policy Config
	// Store receives the tenants' new sizes. Required.
	Store TenantWriter
	// Tenants returns the tenants as routers see them now. Required.
	Tenants func() []Tenant
	// Reports returns the nodes' latest reports. Required.
	Reports func() []Report
	// Tick is how often the policy runs. Must be positive; 500ms is good.
	Tick time.Duration
	// MaxEvents is how many recent decisions are kept for operators.
	// Must be positive; 512 is good.
	MaxEvents int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives decisions; nil discards them.
	Logger *slog.Logger
	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Event is one capacity decision and how carrying it out went.
type Event struct {
	Time   time.Time `json:"time"`
	Tenant string    `json:"tenant,omitempty"`
	Node   string    `json:"node,omitempty"`
	Action string    `json:"action"` // grow, shrink, resize, alarm, alarm_cleared, operator
	Alarm  AlarmKind `json:"alarm,omitempty"`
	From   int       `json:"from,omitempty"`
	To     int       `json:"to,omitempty"`
	Reason string    `json:"reason"`
	Error  string    `json:"error,omitempty"`
}

// Manager is the capacity loop the elected leader runs next to the
// autopilot: each tick it asks the policy and writes the new sizes to etcd
// under the leader's fence; routers pick them up through their watch.
type Manager struct {
	cfg ManagerConfig
	log *slog.Logger

	decisions *prometheus.CounterVec // by kind and result
	alarms    *prometheus.GaugeVec   // active alarms by kind

	mu     sync.Mutex // guards events, next and full
	events []Event
	next   int
	full   bool
}

// NewManager checks cfg and registers the metrics.
func NewManager(cfg ManagerConfig) (*Manager, error) {
	if err := cfg.Policy.Validate(); err != nil {
		return nil, err
	}
	switch {
	case cfg.Store == nil || cfg.Tenants == nil || cfg.Reports == nil:
		return nil, errors.New("capacity manager: Store, Tenants and Reports are required")
	case cfg.Tick <= 0:
		return nil, fmt.Errorf("capacity manager: tick %v: must be positive", cfg.Tick)
	case cfg.MaxEvents <= 0:
		return nil, fmt.Errorf("capacity manager: max events %d: must be positive", cfg.MaxEvents)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := &Manager{
		cfg: cfg,
		log: cfg.Logger,
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crowdpilot_capacity_decisions_total",
			Help: "Tenant capacity decisions by kind (grow, shrink, resize) and result (ok, failed).",
		}, []string{"kind", "result"}),
		alarms: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "crowdpilot_capacity_alarms",
			Help: "Capacity alarms raised now, by alarm (near_max, blocked, saturated); 0 when not leading.",
		}, []string{"alarm"}),
		events: make([]Event, cfg.MaxEvents),
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	for _, k := range []AlarmKind{AlarmNearMax, AlarmBlocked, AlarmSaturated} {
		m.alarms.WithLabelValues(string(k))
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(m.decisions); err != nil {
			return nil, fmt.Errorf("capacity metrics: %w", err)
		}
		if err := cfg.Registerer.Register(m.alarms); err != nil {
			return nil, fmt.Errorf("capacity metrics: %w", err)
		}
	}
	return m, nil
}

// Run decides every Tick until ctx is done, writing under guard (the
// leader's fence: a deposed leader's writes fail). Each term starts a new
// policy, which adopts the sizes it finds.
func (m *Manager) Run(ctx context.Context, guard cluster.Guard) error {
	p, err := New(m.cfg.Policy)
	if err != nil {
		return err
	}
	defer m.publishAlarms(nil)
	t := time.NewTicker(m.cfg.Tick)
	defer t.Stop()
	for {
		m.Step(ctx, p, guard)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Step runs the policy once and carries out its decisions.
func (m *Manager) Step(ctx context.Context, p *Policy, guards ...cluster.Guard) {
	now := m.cfg.Now()
	for _, d := range p.Decide(m.cfg.Tenants(), m.cfg.Reports(), now) {
		ev := Event{Time: now, Tenant: d.Tenant, Node: d.Node, Action: d.Kind.String(), From: d.From, To: d.To, Reason: d.Reason}
		if d.Kind == Alarm {
			ev.Alarm, ev.From, ev.To = d.Alarm, 0, 0
			if !d.Active {
				ev.Action = "alarm_cleared"
			}
			m.log.Warn("capacity alarm", "alarm", d.Alarm, "active", d.Active, "tenant", d.Tenant, "hot_node", d.Node, "reason", d.Reason)
			m.record(ev)
			continue
		}
		_, err := m.cfg.Store.Update(ctx, d.Tenant, func(rec *cluster.TenantRecord) error {
			rec.Size, rec.By, rec.Reason, rec.Updated = d.To, "capacity", d.Reason, now.UTC()
			return nil
		}, guards...)
		result := "ok"
		if err != nil {
			result, ev.Error = "failed", err.Error()
			p.Failed(d.Tenant, now)
			m.log.Warn("capacity change failed", "tenant", d.Tenant, "from", d.From, "to", d.To, "err", err)
		} else {
			p.Succeeded(d.Tenant)
			m.log.Info("capacity change", "tenant", d.Tenant, "kind", d.Kind.String(), "from", d.From, "to", d.To, "reason", d.Reason)
		}
		m.decisions.WithLabelValues(d.Kind.String(), result).Inc()
		m.record(ev)
	}
	m.publishAlarms(p.Alarms())
}

func (m *Manager) publishAlarms(active []ActiveAlarm) {
	count := map[AlarmKind]int{}
	for _, a := range active {
		count[a.Kind]++
	}
	for _, k := range []AlarmKind{AlarmNearMax, AlarmBlocked, AlarmSaturated} {
		m.alarms.WithLabelValues(string(k)).Set(float64(count[k]))
	}
}

// Record adds an event that did not come from the policy (an operator's
// change), so the leader's list holds every action.
func (m *Manager) Record(ev Event) { m.record(ev) }

func (m *Manager) record(ev Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events[m.next] = ev
	m.next = (m.next + 1) % len(m.events)
	m.full = m.full || m.next == 0
}

// Events returns up to n of the latest events, oldest first.
func (m *Manager) Events(n int) []Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	size := m.next
	if m.full {
		size = len(m.events)
	}
	n = min(n, size)
	out := make([]Event, 0, n)
	for i := size - n; i < size; i++ {
		j := i
		if m.full {
			j = (m.next + i) % len(m.events)
		}
		out = append(out, m.events[j])
	}
	return out
}
