package capacity

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/route"
)

// sim is a cluster in a test: nodes of one core that serve nodeRPS each,
// tenants whose request rate spreads evenly over their node set (chosen by
// route.TenantSet, the router's own function), and the policy applied to it
// every tick with an injected clock.
type sim struct {
	t       *testing.T
	p       *Policy
	peers   []route.Peer
	tenants []Tenant
	rate    func(tenant string, at time.Duration) float64
	now     time.Duration
	tick    time.Duration
	log     []simEvent
	sets    map[string][][]string // tenant -> each distinct set it had
}

type simEvent struct {
	at       time.Duration
	tenant   string
	kind     Kind
	from, to int
}

const nodeRPS = 1000.0

func newSim(t *testing.T, c Config, nodes int, rate func(string, time.Duration) float64, tenants ...Tenant) *sim {
	s := &sim{t: t, p: newPolicy(t, c), rate: rate, tick: 250 * time.Millisecond, sets: map[string][][]string{}}
	for i := range nodes {
		s.peers = append(s.peers, route.Peer{ID: fmt.Sprintf("n%02d", i)})
	}
	s.tenants = tenants
	s.place()
	return s
}

// place recomputes every tenant's node set from its size.
func (s *sim) place() {
	for i := range s.tenants {
		t := &s.tenants[i]
		t.Eligible = route.Eligible(route.TenantSpec{Name: t.Name}, s.peers)
		t.Nodes, _ = route.TenantSet(route.TenantSpec{Name: t.Name, Size: t.Size}, s.peers)
		sets := s.sets[t.Name]
		if len(sets) == 0 || !slices.Equal(sets[len(sets)-1], t.Nodes) {
			s.sets[t.Name] = append(sets, t.Nodes)
		}
	}
}

// reports is what each node would report now.
func (s *sim) reports(at time.Time) []Report {
	load := map[string]map[string]float64{}
	for _, t := range s.tenants {
		per := s.rate(t.Name, s.now) / float64(len(t.Nodes))
		for _, n := range t.Nodes {
			if load[n] == nil {
				load[n] = map[string]float64{}
			}
			load[n][t.Name] += per
		}
	}
	var out []Report
	for _, p := range s.peers {
		r := Report{Node: p.ID, At: at, CPULimit: 1, MemLimit: 1, Mem: 0.2}
		total := 0.0
		for _, name := range slices.Sorted(mapKeysOf(load[p.ID])) {
			rps := load[p.ID][name]
			total += rps
			r.Tenants = append(r.Tenants, Load{Tenant: name, Share: rps})
		}
		r.CPU = min(total/nodeRPS, 1)
		if total > nodeRPS {
			r.ShedRate = total - nodeRPS
		}
		out = append(out, r)
	}
	return out
}

// run advances the simulation to end.
func (s *sim) run(end time.Duration) {
	for ; s.now <= end; s.now += s.tick {
		at := t0.Add(s.now)
		ds := s.p.Decide(s.tenants, s.reports(at), at)
		for _, d := range ds {
			if d.Kind == Alarm {
				continue
			}
			s.log = append(s.log, simEvent{s.now, d.Tenant, d.Kind, d.From, d.To})
			s.p.Succeeded(d.Tenant)
		}
		apply(s.tenants, ds)
		s.place()
	}
}

func (s *sim) events(tenant string) []simEvent {
	var out []simEvent
	for _, e := range s.log {
		if e.tenant == tenant {
			out = append(out, e)
		}
	}
	return out
}

func (s *sim) size(tenant string) int {
	for _, t := range s.tenants {
		if t.Name == tenant {
			return t.Size
		}
	}
	return 0
}

func mapKeysOf(m map[string]float64) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestSimFlashCrowd: a crowd on tenant a grows a's set on the schedule at
// the grow interval, never touches b (size or set), and a gives its nodes
// back one step at a time down to its min after the crowd.
func TestSimFlashCrowd(t *testing.T) {
	c := testConfig()
	crowd := func(name string, at time.Duration) float64 {
		switch {
		case name == "b":
			return 150
		case at >= 10*time.Second && at < 70*time.Second:
			return 20000
		default:
			return 600
		}
	}
	s := newSim(t, c, 60, crowd, tenant("a", 3), tenant("b", 3))
	s.run(4 * time.Minute)

	var grows, shrinks []simEvent
	for _, e := range s.events("a") {
		switch e.kind {
		case Grow:
			grows = append(grows, e)
		case Shrink:
			shrinks = append(shrinks, e)
		default:
			t.Errorf("unexpected %+v", e)
		}
	}
	// 20000 rps over nodes of 1000 below 80%: 25+ nodes, reached on the
	// schedule 3, 6, 9, 12, 18, 24, 30.
	var path []int
	for i, g := range grows {
		path = append(path, g.to)
		if g.at < 10*time.Second || g.at >= 70*time.Second {
			t.Errorf("growth %+v outside the crowd", g)
		}
		if i > 0 && g.at-grows[i-1].at < c.GrowInterval {
			t.Errorf("growths %v and %v closer than the grow interval", grows[i-1].at, g.at)
		}
	}
	if want := "[6 9 12 18 24 30]"; fmt.Sprint(path) != want {
		t.Errorf("a grew through %v, want %s", path, want)
	}
	if len(grows) > 0 {
		if first := grows[0].at; first > 10*time.Second+time.Second {
			t.Errorf("first growth at %v, crowd at 10s", first)
		}
		if last := grows[len(grows)-1].at; last > 10*time.Second+time.Duration(len(grows))*c.GrowInterval+time.Second {
			t.Errorf("reached 30 at %v: slower than the schedule", last)
		}
	}
	// After the crowd: one schedule step per shrink interval, down to 3.
	var down []int
	for i, e := range shrinks {
		down = append(down, e.to)
		if e.at < 70*time.Second+c.ShrinkHold {
			t.Errorf("shrink at %v, before the crowd left plus the hold", e.at)
		}
		if i > 0 && e.at-shrinks[i-1].at < c.ShrinkInterval {
			t.Errorf("shrinks at %v and %v closer than the interval", shrinks[i-1].at, e.at)
		}
	}
	if want := "[24 18 12 9 6 3]"; fmt.Sprint(down) != want {
		t.Errorf("a shrank through %v, want %s", down, want)
	}
	if got := s.size("a"); got != 3 {
		t.Errorf("a ends at %d nodes, want its min 3", got)
	}
	// b never changed.
	if ev := s.events("b"); len(ev) != 0 {
		t.Errorf("b changed: %+v", ev)
	}
	if sets := s.sets["b"]; len(sets) != 1 {
		t.Errorf("b's node set changed: %v", sets)
	}
	t.Logf("a: grew %v, shrank %v", path, down)
}

// TestSimOscillatingLoadNoThrash: a load swinging faster than the hold
// grows a to what the peaks need and then holds; a load hovering around
// the hot threshold does not flip the size back and forth.
func TestSimOscillatingLoadNoThrash(t *testing.T) {
	tests := []struct {
		name string
		rate func(at time.Duration) float64
	}{
		{"swinging 2x every 10s", func(at time.Duration) float64 {
			if (at/(10*time.Second))%2 == 0 {
				return 3000
			}
			return 6000
		}},
		{"hovering at the threshold", func(at time.Duration) float64 {
			// 2300 to 2500 rps: at 3 nodes 77% to 83% of a core.
			return 2400 + 100*float64((at/(700*time.Millisecond))%3-1)
		}},
		{"slow wave of 90s", func(at time.Duration) float64 {
			if (at/(90*time.Second))%2 == 0 {
				return 500
			}
			return 7000
		}},
		{"square wave of 25s", func(at time.Duration) float64 {
			if (at/(25*time.Second))%2 == 0 {
				return 500
			}
			return 7000
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rate := func(name string, at time.Duration) float64 {
				if name == "a" {
					return tt.rate(at)
				}
				return 300
			}
			s := newSim(t, testConfig(), 30, rate, tenant("a", 3), tenant("b", 3))
			s.run(10 * time.Minute)
			ev := s.events("a")
			reversals := 0
			for i := 1; i < len(ev); i++ {
				if (ev[i].kind == Grow) != (ev[i-1].kind == Grow) {
					reversals++
					if ev[i].at-ev[i-1].at < testConfig().Cooldown {
						t.Errorf("reversal within the cooldown: %+v then %+v", ev[i-1], ev[i])
					}
				}
			}
			// Following a slow wave is allowed, but at most one reversal a
			// minute, and never more than 20 changes in ten minutes.
			if reversals > 10 || len(ev) > 20 {
				t.Errorf("%d changes, %d reversals in 10 minutes: %+v", len(ev), reversals, ev)
			}
			if ev := s.events("b"); len(ev) != 0 {
				t.Errorf("b changed: %+v", ev)
			}
			t.Logf("%d changes, %d reversals, final size %d", len(ev), reversals, s.size("a"))
		})
	}
}

// TestSimIsolation: a tenant isolated onto labelled nodes grows only onto
// them, stops at their number with an alarm, and other tenants stay off
// them only if they are isolated too (the sets are independent).
func TestSimIsolation(t *testing.T) {
	c := testConfig()
	s := newSim(t, c, 20, func(name string, at time.Duration) float64 {
		if name == "whale" {
			return 30000
		}
		return 300
	}, tenant("whale", 3), tenant("b", 3))
	whale := map[string]string{"hw": "dedicated"}
	for i := range 8 {
		s.peers[i].Labels = route.FormatLabels(whale)
	}
	// place with the labels: isolation on the whale's spec.
	iso := func() {
		for i := range s.tenants {
			t := &s.tenants[i]
			spec := route.TenantSpec{Name: t.Name, Size: t.Size}
			if t.Name == "whale" {
				spec.Labels = whale
			}
			t.Eligible = route.Eligible(spec, s.peers)
			t.Nodes, _ = route.TenantSet(spec, s.peers)
		}
	}
	iso()
	var alarms []Decision
	for ; s.now <= time.Minute; s.now += s.tick {
		at := t0.Add(s.now)
		ds := s.p.Decide(s.tenants, s.reports(at), at)
		for _, d := range ds {
			if d.Kind == Alarm && d.Active {
				alarms = append(alarms, d)
			}
		}
		apply(s.tenants, ds)
		iso()
	}
	if got := s.size("whale"); got != 8 {
		t.Errorf("whale ends at %d nodes, want the 8 labelled ones", got)
	}
	for _, n := range s.tenants[0].Nodes {
		if s.peers[slices.IndexFunc(s.peers, func(p route.Peer) bool { return p.ID == n })].Labels == "" {
			t.Errorf("whale on unlabelled node %s", n)
		}
	}
	var blocked, saturated bool
	for _, a := range alarms {
		blocked = blocked || (a.Alarm == AlarmBlocked && a.Tenant == "whale")
		saturated = saturated || a.Alarm == AlarmSaturated
	}
	if !blocked || !saturated {
		t.Errorf("alarms %+v, want whale blocked at its eligible nodes and a saturated node", alarms)
	}
	if s.size("b") != 3 {
		t.Errorf("b grew to %d", s.size("b"))
	}
}
