package capacity

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func testConfig() Config {
	c := DefaultConfig()
	c.Seed = 1
	return c
}

func newPolicy(t *testing.T, c Config) *Policy {
	t.Helper()
	p, err := New(c)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

// rep is a report from node with CPU as a fraction of one core.
func rep(node string, at time.Time, cpu float64, loads ...Load) Report {
	return Report{Node: node, At: at, CPU: cpu, CPULimit: 1, Mem: 1, MemLimit: 10, Tenants: loads}
}

func share(tenant string, s float64) Load { return Load{Tenant: tenant, Share: s} }

func tenant(name string, size int) Tenant {
	t := Tenant{Name: name, Size: size, Min: 3, Max: NoMax, Eligible: 100}
	for i := range size {
		t.Nodes = append(t.Nodes, fmt.Sprintf("%s%d", name, i))
	}
	return t
}

func only(ds []Decision, k Kind) []Decision {
	var out []Decision
	for _, d := range ds {
		if d.Kind == k {
			out = append(out, d)
		}
	}
	return out
}

func alarm(ds []Decision, k AlarmKind) (Decision, bool) {
	for _, d := range ds {
		if d.Kind == Alarm && d.Alarm == k {
			return d, true
		}
	}
	return Decision{}, false
}

// sizes applies the size changes in ds to ts.
func apply(ts []Tenant, ds []Decision) {
	for _, d := range ds {
		if d.Kind == Alarm {
			continue
		}
		for i := range ts {
			if ts[i].Name == d.Tenant {
				ts[i].Size = d.To
			}
		}
	}
}

func TestSchedule(t *testing.T) {
	c := DefaultConfig()
	var got []int
	for s := 3; len(got) < 13; s = c.next(s) {
		got = append(got, s)
	}
	if want := "[3 6 9 12 18 24 30 39 48 57 66 75 84]"; fmt.Sprint(got) != want {
		t.Errorf("growth from 3: %v, want %s", got, want)
	}
	var down []int
	for s := 84; s > 1; s = c.prev(s) {
		down = append(down, s)
	}
	if want := "[84 75 66 57 48 39 30 24 18 12 9 6 3]"; fmt.Sprint(down) != want {
		t.Errorf("shrink from 84: %v, want %s", down, want)
	}
	for _, tt := range []struct{ size, next, prev int }{{4, 6, 3}, {7, 9, 6}, {60, 66, 57}, {1, 3, 1}, {2, 3, 1}} {
		if n, p := c.next(tt.size), c.prev(tt.size); n != tt.next || p != tt.prev {
			t.Errorf("size %d: next %d prev %d, want %d %d", tt.size, n, p, tt.next, tt.prev)
		}
	}
	c.Schedule = []int{2}
	if n, p := c.next(2), c.prev(6); n != 4 || p != 4 {
		t.Errorf("schedule [2]: next(2) %d prev(6) %d, want 4 4", n, p)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"cool over hot", func(c *Config) { c.CPUCool = 0.9 }, "cpu cool"},
		{"memory cool over hot", func(c *Config) { c.MemCool = 0.8 }, "memory cool"},
		{"shrink cpu over hot", func(c *Config) { c.ShrinkCPU = 0.85 }, "shrink cpu"},
		{"schedule empty", func(c *Config) { c.Schedule = nil }, "schedule"},
		{"schedule not ascending", func(c *Config) { c.Schedule = []int{3, 6, 6} }, "not ascending"},
		{"negative interval", func(c *Config) { c.GrowInterval = -1 }, "grow interval"},
		{"backoff max below base", func(c *Config) { c.BackoffMax = time.Second }, "backoff max"},
		{"negative budget", func(c *Config) { c.BudgetPerSecond = -1 }, "budget"},
		{"alarm fraction zero", func(c *Config) { c.AlarmFraction = 0 }, "alarm fraction"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.edit(&c)
			if _, err := New(c); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, want an error about %q", err, tt.want)
			}
		})
	}
	c := DefaultConfig()
	c.GrowInterval, c.Cooldown, c.BudgetPerSecond = 0, 0, 0
	if _, err := New(c); err != nil {
		t.Errorf("zero intervals and budget are values: %v", err)
	}
}

func TestHotNode(t *testing.T) {
	tests := []struct {
		name     string
		report   Report
		prevShed float64
		grow     bool
		why      string
	}{
		{name: "cpu over 80%", report: rep("a0", t0, 0.85, share("a", 1)), grow: true, why: "cpu 85%"},
		{name: "cpu at 75%", report: rep("a0", t0, 0.75, share("a", 1))},
		{name: "memory over 70%", report: Report{Node: "a0", At: t0, Mem: 7.5, MemLimit: 10, Tenants: []Load{share("a", 1)}},
			grow: true, why: "memory 75%"},
		{name: "unknown limits are not judged", report: Report{Node: "a0", At: t0, CPU: 5, Mem: 1e12, Tenants: []Load{share("a", 1)}}},
		{name: "shedding, first report", report: Report{Node: "a0", At: t0, ShedRate: 5, Tenants: []Load{share("a", 1)}},
			grow: true, why: "shedding"},
		{name: "shedding rising", prevShed: 2, report: Report{Node: "a0", At: t0, ShedRate: 5, Tenants: []Load{share("a", 1)}},
			grow: true, why: "shedding"},
		{name: "shedding falling", prevShed: 10, report: Report{Node: "a0", At: t0, ShedRate: 5, Tenants: []Load{share("a", 1)}}},
		{name: "stale report", report: rep("a0", t0.Add(-4*time.Second), 0.95, share("a", 1))},
		{name: "node outside the tenants", report: rep("x", t0, 0.95, share("other", 1))},
		{name: "node outside the tenant's set", report: rep("x", t0, 0.95, share("a", 1))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPolicy(t, testConfig())
			if tt.prevShed > 0 {
				// An earlier report that was calm but for its shedding.
				p.Decide([]Tenant{tenant("a", 3)}, []Report{{Node: "a0", At: t0.Add(-time.Second), ShedRate: tt.prevShed}},
					t0.Add(-time.Second))
				p.tenants["a"].lastGrow = time.Time{}
				p.nodes["a0"].lastAsk = time.Time{}
			}
			ds := p.Decide([]Tenant{tenant("a", 3)}, []Report{tt.report}, t0)
			grows := only(ds, Grow)
			if (len(grows) == 1) != tt.grow {
				t.Fatalf("decisions %+v, want grow %v", ds, tt.grow)
			}
			if tt.grow {
				if g := grows[0]; g.From != 3 || g.To != 6 || g.Node != "a0" || !strings.Contains(g.Reason, tt.why) {
					t.Errorf("grow %+v, want 3 -> 6 asked by a0 for %q", g, tt.why)
				}
			}
		})
	}
}

func TestNodeAskInterval(t *testing.T) {
	c := testConfig()
	c.GrowInterval, c.NodeAskInterval = 0, 2*time.Second
	p := newPolicy(t, c)
	ts := []Tenant{tenant("a", 3)}
	var sizes []int
	for i := range 9 {
		now := t0.Add(time.Duration(i) * 500 * time.Millisecond)
		apply(ts, p.Decide(ts, []Report{rep("a0", now, 0.9, share("a", 1))}, now))
		sizes = append(sizes, ts[0].Size)
	}
	// One node may ask once per 2s: at 0, 2s and 4s.
	if want := "[6 6 6 6 9 9 9 9 12]"; fmt.Sprint(sizes) != want {
		t.Errorf("sizes every 500ms: %v, want %s", sizes, want)
	}
}

func TestGrowInterval(t *testing.T) {
	c := testConfig()
	p := newPolicy(t, c) // grow interval 3s, node ask interval 1s
	ts := []Tenant{tenant("a", 3)}
	hot := func(now time.Time) []Report {
		return []Report{rep("a0", now, 0.9, share("a", 1)), rep("a1", now, 0.9, share("a", 1))}
	}
	ds := p.Decide(ts, hot(t0), t0)
	if g := only(ds, Grow); len(g) != 1 || g[0].To != 6 || !strings.Contains(g[0].Reason, "2 nodes asking") {
		t.Fatalf("two hot nodes at once: %+v, want one step to 6 naming both", ds)
	}
	apply(ts, ds)
	now := t0.Add(time.Second)
	ds = p.Decide(ts, hot(now), now)
	a, ok := alarm(ds, AlarmBlocked)
	if len(only(ds, Grow)) != 0 || !ok || !a.Active || !strings.Contains(a.Reason, "grow interval") {
		t.Fatalf("1s later: %+v, want no growth and a blocked alarm naming the grow interval", ds)
	}
	now = t0.Add(2 * time.Second)
	if ds := p.Decide(ts, hot(now), now); len(ds) != 0 {
		t.Fatalf("2s later: %+v, want nothing new (the alarm is raised once)", ds)
	}
	now = t0.Add(3 * time.Second)
	ds = p.Decide(ts, hot(now), now)
	a, ok = alarm(ds, AlarmBlocked)
	if g := only(ds, Grow); len(g) != 1 || g[0].From != 6 || g[0].To != 9 || !ok || a.Active {
		t.Fatalf("3s later: %+v, want 6 -> 9 and the alarm cleared", ds)
	}
}

func TestBudget(t *testing.T) {
	c := testConfig()
	c.BudgetBurst, c.BudgetPerSecond = 4, 1
	p := newPolicy(t, c)
	ts := []Tenant{tenant("a", 3), tenant("b", 3), tenant("c", 3)}
	reports := func(now time.Time) []Report {
		return []Report{
			rep("a0", now, 0.9, share("a", 1)), rep("a1", now, 0.9, share("a", 1)),
			rep("b0", now, 0.9, share("b", 1)), rep("c0", now, 0.9, share("c", 1)),
		}
	}
	ds := p.Decide(ts, reports(t0), t0)
	grows := only(ds, Grow)
	// a has two asks and goes first (3 tokens), b gets the last token, c none.
	if len(grows) != 2 || grows[0].Tenant != "a" || grows[0].To != 6 || grows[1].Tenant != "b" || grows[1].To != 4 ||
		!strings.Contains(grows[1].Reason, "budget") {
		t.Fatalf("grows %+v, want a 3->6, then b cut to 4 by the budget", grows)
	}
	a, ok := alarm(ds, AlarmBlocked)
	if !ok || a.Tenant != "c" || !strings.Contains(a.Reason, "budget") {
		t.Errorf("alarm %+v, want c blocked by the budget", a)
	}
	apply(ts, ds)
	// One token a second: c may grow by one once its node asks again.
	now := t0.Add(time.Second)
	grows = only(p.Decide(ts, []Report{rep("c0", now, 0.9, share("c", 1))}, now), Grow)
	if len(grows) != 1 || grows[0].Tenant != "c" || grows[0].To != 4 {
		t.Errorf("a second later: %+v, want c 3 -> 4", grows)
	}
}

func TestMaxAndSaturation(t *testing.T) {
	p := newPolicy(t, testConfig())
	a := tenant("a", 6)
	a.Max = 6
	ts := []Tenant{a}
	ds := p.Decide(ts, []Report{rep("a0", t0, 0.95, share("a", 1))}, t0)
	if len(only(ds, Grow)) != 0 {
		t.Fatalf("grew past max: %+v", ds)
	}
	blocked, ok1 := alarm(ds, AlarmBlocked)
	sat, ok2 := alarm(ds, AlarmSaturated)
	if !ok1 || !blocked.Active || !strings.Contains(blocked.Reason, "max of 6") ||
		!ok2 || !sat.Active || sat.Node != "a0" || !strings.Contains(sat.Reason, "nothing left to shed") {
		t.Fatalf("decisions %+v, want blocked (max) and saturated alarms", ds)
	}
	if n := len(p.Alarms()); n != 3 { // and near max
		t.Errorf("Alarms = %+v, want 3", p.Alarms())
	}
	now := t0.Add(time.Second)
	ds = p.Decide(ts, []Report{rep("a0", now, 0.3, share("a", 1))}, now)
	blocked, ok1 = alarm(ds, AlarmBlocked)
	sat, ok2 = alarm(ds, AlarmSaturated)
	if !ok1 || blocked.Active || !ok2 || sat.Active {
		t.Errorf("cooled: %+v, want both alarms cleared", ds)
	}
}

func TestIsolationCeiling(t *testing.T) {
	p := newPolicy(t, testConfig())
	a := tenant("a", 3)
	a.Eligible = 4 // labelled nodes
	ts := []Tenant{a}
	ds := p.Decide(ts, []Report{rep("a0", t0, 0.95, share("a", 1))}, t0)
	if g := only(ds, Grow); len(g) != 1 || g[0].To != 4 {
		t.Fatalf("%+v, want growth cut to the 4 eligible nodes", ds)
	}
	apply(ts, ds)
	now := t0.Add(5 * time.Second)
	ds = p.Decide(ts, []Report{rep("a0", now, 0.95, share("a", 1))}, now)
	if b, ok := alarm(ds, AlarmBlocked); len(only(ds, Grow)) != 0 || !ok || !strings.Contains(b.Reason, "4 eligible") {
		t.Errorf("%+v, want no growth and a blocked alarm naming the eligible nodes", ds)
	}
}

func TestBoundsAndOverrides(t *testing.T) {
	four, five, two := 4, 5, 2
	tests := []struct {
		name string
		edit func(*Tenant)
		want string // "from->to" of the Resize, or "" for none
	}{
		{"below min", func(t *Tenant) { t.Size = 2 }, "2->3"},
		{"above max", func(t *Tenant) { t.Size = 9; t.Max = 6 }, "9->6"},
		{"operator max", func(t *Tenant) { t.Size = 6; t.Override.Max = &four }, "6->4"},
		{"operator min", func(t *Tenant) { t.Override.Min = &five }, "3->5"},
		{"operator min below config", func(t *Tenant) { t.Override.Min = &two; t.Size = 2 }, ""},
		{"operator size", func(t *Tenant) { t.Override.Size = &four }, "3->4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPolicy(t, testConfig())
			a := tenant("a", 3)
			tt.edit(&a)
			ds := p.Decide([]Tenant{a}, nil, t0)
			var got string
			for _, d := range only(ds, Resize) {
				got = fmt.Sprintf("%d->%d", d.From, d.To)
			}
			if got != tt.want {
				t.Errorf("resize %q, want %q (%+v)", got, tt.want, ds)
			}
		})
	}
	// An operator's size holds against heat and cold.
	p := newPolicy(t, testConfig())
	a := tenant("a", 4)
	a.Override.Size = &four
	for i := range 100 {
		now := t0.Add(time.Duration(i) * time.Second)
		cpu := 0.95
		if i > 50 {
			cpu = 0.01
		}
		if ds := p.Decide([]Tenant{a}, []Report{rep("a0", now, cpu, share("a", 1))}, now); len(only(ds, Grow))+len(only(ds, Shrink)) > 0 {
			t.Fatalf("at %ds: %+v, want the operator's size held", i, ds)
		}
	}
}

func TestBackoff(t *testing.T) {
	c := testConfig()
	c.GrowInterval = 0
	p := newPolicy(t, c)
	ts := []Tenant{tenant("a", 3)}
	hot := func(at time.Duration) (time.Time, []Report) {
		now := t0.Add(at)
		return now, []Report{rep("a0", now, 0.9, share("a", 1))}
	}
	now, r := hot(0)
	if g := only(p.Decide(ts, r, now), Grow); len(g) != 1 {
		t.Fatal("no first growth")
	}
	p.Failed("a", now) // the write did not happen: a stays at 3
	for _, tt := range []struct {
		at   time.Duration
		grow bool
	}{{time.Second, false}, {2 * time.Second, true}} {
		now, r := hot(tt.at)
		ds := p.Decide(ts, r, now)
		if got := len(only(ds, Grow)) == 1; got != tt.grow {
			t.Fatalf("at %v after one failure: %+v, want grow %v", tt.at, ds, tt.grow)
		}
		if b, ok := alarm(ds, AlarmBlocked); !tt.grow && (!ok || !strings.Contains(b.Reason, "backing off")) {
			t.Errorf("blocked alarm %+v, want one naming the back-off", b)
		}
	}
	now, _ = hot(2 * time.Second)
	p.Failed("a", now) // second failure: 4s
	for _, tt := range []struct {
		at   time.Duration
		grow bool
	}{{5 * time.Second, false}, {6 * time.Second, true}} {
		now, r := hot(tt.at)
		if got := len(only(p.Decide(ts, r, now), Grow)) == 1; got != tt.grow {
			t.Fatalf("at %v after two failures: grow %v, want %v", tt.at, got, tt.grow)
		}
	}
	p.Succeeded("a")
	now, _ = hot(6 * time.Second)
	p.Failed("a", now) // back to the base after a success
	now, r = hot(8 * time.Second)
	if len(only(p.Decide(ts, r, now), Grow)) != 1 {
		t.Error("after a success the back-off did not start over")
	}
}

func TestShrink(t *testing.T) {
	p := newPolicy(t, testConfig()) // hold 30s, interval 10s
	ts := []Tenant{tenant("a", 12)}
	var events []string
	for s := 0; s <= 120; s++ {
		now := t0.Add(time.Duration(s) * time.Second)
		var reports []Report
		for _, n := range ts[0].Nodes {
			reports = append(reports, rep(n, now, 0.05, share("a", 1)))
		}
		ds := p.Decide(ts, reports, now)
		for _, d := range only(ds, Shrink) {
			events = append(events, fmt.Sprintf("%ds:%d->%d", s, d.From, d.To))
		}
		apply(ts, ds)
		ts[0].Nodes = ts[0].Nodes[:ts[0].Size]
	}
	if want := "[30s:12->9 40s:9->6 50s:6->3]"; fmt.Sprint(events) != want {
		t.Errorf("shrinks %v, want %s (one step at a time, down to min)", events, want)
	}
}

func TestShrinkHeldBack(t *testing.T) {
	tests := []struct {
		name string
		cpu  float64
		grow bool // grew at t0, then cold
		want string
	}{
		// 0.4 is cool, but 6 -> 3 would double it to 0.8: hot again.
		{name: "shrink would heat", cpu: 0.4, want: "[]"},
		// 0.25 doubles to 0.5: fine.
		{name: "shrink keeps headroom", cpu: 0.25, want: "[30s:6->3]"},
		// Growing at 0 and cold at once: the hold starts then.
		{name: "cooldown after growth", cpu: 0.1, grow: true, want: "[31s:9->6 41s:6->3]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPolicy(t, testConfig())
			ts := []Tenant{tenant("a", 6)}
			ts[0].Nodes = []string{"n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8"}
			if tt.grow {
				apply(ts, p.Decide(ts, []Report{rep("n0", t0, 0.9, share("a", 1))}, t0))
			}
			var events []string
			for s := 1; s <= 60; s++ {
				now := t0.Add(time.Duration(s) * time.Second)
				var reports []Report
				for _, n := range ts[0].Nodes {
					reports = append(reports, rep(n, now, tt.cpu, share("a", 1)))
				}
				ds := p.Decide(ts, reports, now)
				for _, d := range only(ds, Shrink) {
					events = append(events, fmt.Sprintf("%ds:%d->%d", s-boolInt(!tt.grow), d.From, d.To))
				}
				apply(ts, ds)
			}
			if fmt.Sprint(events) != tt.want {
				t.Errorf("shrinks %v, want %s", events, tt.want)
			}
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestNoReportsNoChange(t *testing.T) {
	p := newPolicy(t, testConfig())
	ts := []Tenant{tenant("a", 12)}
	for s := 0; s < 300; s += 5 {
		now := t0.Add(time.Duration(s) * time.Second)
		if ds := p.Decide(ts, nil, now); len(ds) != 0 {
			t.Fatalf("at %ds without reports: %+v", s, ds)
		}
	}
}

func TestNearMaxAlarm(t *testing.T) {
	p := newPolicy(t, testConfig())
	a := tenant("a", 6)
	a.Max = 12
	ds := p.Decide([]Tenant{a}, nil, t0)
	if d, ok := alarm(ds, AlarmNearMax); !ok || !d.Active || !strings.Contains(d.Reason, "6 of its max 12") {
		t.Fatalf("%+v, want a near-max alarm at 6 of 12", ds)
	}
	if ds := p.Decide([]Tenant{a}, nil, t0.Add(time.Second)); len(ds) != 0 {
		t.Errorf("raised twice: %+v", ds)
	}
	a.Size = 5
	if d, ok := alarm(p.Decide([]Tenant{a}, nil, t0.Add(2*time.Second)), AlarmNearMax); !ok || d.Active {
		t.Errorf("at 5 of 12: %+v, want the alarm cleared", d)
	}
}

// TestChooseByShare: power of two choices weighted by share never picks the
// smallest of three tenants and picks the largest most often.
func TestChooseByShare(t *testing.T) {
	count := map[string]int{}
	for seed := range uint64(400) {
		c := testConfig()
		c.Seed = seed
		p := newPolicy(t, c)
		ts := []Tenant{tenant("a", 3), tenant("b", 3), tenant("c", 3)}
		for i := range ts {
			ts[i].Nodes = append(ts[i].Nodes, "x") // x serves all three
		}
		ds := p.Decide(ts, []Report{rep("x", t0, 0.9, share("a", 60), share("b", 30), share("c", 10))}, t0)
		for _, d := range only(ds, Grow) {
			count[d.Tenant]++
		}
	}
	if count["c"] != 0 || count["a"] <= count["b"] || count["a"]+count["b"] != 400 {
		t.Errorf("choices %v, want a most, then b, never c", count)
	}
}

// TestNoGrowthForAnotherTenantsCrowd: a node of b's set, hot from routing
// a's crowd (a's set does not hold it), grows neither: growing b would not
// cool it, and it cannot give a any of its keys. It says so in an alarm.
func TestNoGrowthForAnotherTenantsCrowd(t *testing.T) {
	p := newPolicy(t, testConfig())
	ts := []Tenant{tenant("a", 3), tenant("b", 3)}
	ds := p.Decide(ts, []Report{rep("b0", t0, 0.95, share("a", 90), share("b", 10))}, t0)
	if g := only(ds, Grow); len(g) != 0 {
		t.Fatalf("grew %+v for a crowd of a routed through b0", g)
	}
	if d, ok := alarm(ds, AlarmSaturated); !ok || !strings.Contains(d.Reason, "whose sets do not hold it") {
		t.Errorf("alarm %+v, want saturated: most requests of tenants whose sets do not hold it", d)
	}
	// The same node hot from b's own requests grows b.
	p = newPolicy(t, testConfig())
	ds = p.Decide(ts, []Report{rep("b0", t0, 0.95, share("a", 30), share("b", 70))}, t0)
	if g := only(ds, Grow); len(g) != 1 || g[0].Tenant != "b" {
		t.Errorf("decisions %+v, want b grown", ds)
	}
}

// TestCooldown: with no hold, a tenant still waits Cooldown after growing
// before it shrinks, and after shrinking before it grows.
func TestCooldown(t *testing.T) {
	c := testConfig()
	c.ShrinkHold, c.ShrinkInterval, c.GrowInterval = 0, 0, 0
	p := newPolicy(t, c)
	ts := []Tenant{tenant("a", 3)}
	ts[0].Nodes = []string{"n0", "n1", "n2", "n3", "n4", "n5"}
	load := func(s int) float64 {
		switch {
		case s == 0:
			return 0.9 // hot: grow
		case s <= 10:
			return 0.05 // cold at once
		default:
			return 0.9 // hot again right after the shrink
		}
	}
	var events []string
	for s := 0; s <= 20; s++ {
		now := t0.Add(time.Duration(s) * time.Second)
		var reports []Report
		for _, n := range ts[0].Nodes {
			reports = append(reports, rep(n, now, load(s), share("a", 1)))
		}
		ds := p.Decide(ts, reports, now)
		for _, d := range ds {
			if d.Kind == Grow || d.Kind == Shrink {
				events = append(events, fmt.Sprintf("%ds:%s:%d->%d", s, d.Kind, d.From, d.To))
			}
		}
		apply(ts, ds)
	}
	if want := "[0s:grow:3->6 10s:shrink:6->3 20s:grow:3->6]"; fmt.Sprint(events) != want {
		t.Errorf("events %v, want %s", events, want)
	}
}

// TestSilentNode: a hot node that stops reporting withdraws its ask and
// its alarm; it does not grow a tenant on an old report.
func TestSilentNode(t *testing.T) {
	c := testConfig()
	p := newPolicy(t, c)
	a := tenant("a", 6)
	a.Max = 6
	ts := []Tenant{a, tenant("b", 3)}
	// b0 asks for b at t0 (b grows), then asks again within b's interval.
	apply(ts, p.Decide(ts, []Report{rep("b0", t0, 0.9, share("b", 1)), rep("a0", t0, 0.9, share("a", 1))}, t0))
	now := t0.Add(time.Second)
	p.Decide(ts, []Report{rep("b0", now, 0.9, share("b", 1)), rep("a0", now, 0.9, share("a", 1))}, now)
	if len(p.tenants["b"].asks) != 1 {
		t.Fatalf("b's asks %v, want b0 standing", p.tenants["b"].asks)
	}
	// Both nodes fall silent, within b0's ask TTL and after b's grow
	// interval.
	now = t0.Add(4 * time.Second)
	ds := p.Decide(ts, nil, now)
	if len(only(ds, Grow)) != 0 || len(p.tenants["b"].asks) != 0 {
		t.Errorf("after silence: %+v, asks %v; want no growth and no standing ask", ds, p.tenants["b"].asks)
	}
	if d, ok := alarm(ds, AlarmSaturated); !ok || d.Active || d.Node != "a0" {
		t.Errorf("after silence: %+v, want a0's saturated alarm cleared", ds)
	}
}
