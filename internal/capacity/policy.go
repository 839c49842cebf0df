// Package capacity sizes tenants' node sets: a pure policy grows a tenant
// when the nodes it heats run hot and gives nodes back when it is cold,
// under velocity checks, and says why.
//
// # The policy
//
// Policy.Decide is a function of the tenants (their sizes, bounds and
// operator overrides), the nodes' reports, the time passed in and the
// policy's own small memory (timers, standing asks, back-off, a budget). It
// does no I/O, reads no clock and starts no goroutine, so tests and the
// simulator drive it with any clock.
//
// A node is hot when its CPU or memory is over its threshold or it sheds
// at a rate that is not falling. A hot node asks for one more step for one
// of its tenants, chosen by power of two choices weighted by their share of
// its requests (of two drawn, the larger share), at most once per
// NodeAskInterval; tenants already at their ceiling (max, or every eligible
// node), tenants with less than MinShare of its requests and tenants whose
// set does not hold the node (growing them would not cool it) are not
// drawn. A tenant with a standing ask grows to the next size
// of the schedule, at most once per GrowInterval, never within Cooldown of
// a shrink, never while backing off after failures, and only with tokens
// from the cluster-wide budget (a short budget cuts the step). A tenant
// whose nodes are all cool for ShrinkHold gives one step back, at most once
// per ShrinkInterval, never within Cooldown of a growth, never below its
// min, and only if no node it keeps is predicted to run over ShrinkCPU.
// Sizes under the min or over the max are set at once, and an operator's
// fixed size holds. With no fresh report from a tenant's nodes its size
// does not change: reports that stopped are not a crowd that left.
//
// Alarms are decisions too, raised and cleared on transitions: a tenant at
// AlarmFraction of its max, a tenant whose growth is blocked by a velocity
// check or its ceiling while its nodes are hot, and a hot node with nothing
// left to shed.
package capacity

import (
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Report is one node's load, as the leader last heard it.
type Report struct {
	Node     string
	At       time.Time // when the node took the report
	CPU      float64   // cores in use
	CPULimit float64   // cores it may use; 0 unknown (CPU is not judged)
	Mem      float64   // bytes in use
	MemLimit float64   // bytes it may use; 0 unknown (memory is not judged)
	ShedRate float64   // requests shed per second
	Tenants  []Load    // the tenants it serves and their part of its requests
}

// Load is one tenant's part of a node's requests (a rate or a share: only
// the ratios matter).
type Load struct {
	Tenant string
	Share  float64
}

// Tenant is one tenant as the policy sees it.
type Tenant struct {
	Name string
	// Size is its node set size now (K, as stored).
	Size int
	// Min and Max bound Size from its config; Max NoMax for none.
	Min, Max int
	// Override is the operator's, if any.
	Override Override
	// Eligible is how many live nodes may be in its set (isolation,
	// excludes and drains applied): it cannot usefully grow past them.
	Eligible int
	// Nodes are its set's members now.
	Nodes []string
}

// Override is what an operator set for a tenant; nil fields are unset.
type Override struct {
	Min, Max *int // replace the config's bounds
	Size     *int // hold exactly this size: the policy neither grows nor shrinks it
}

// bounds are the tenant's effective min and max.
func (t *Tenant) bounds() (lo, hi int) {
	lo, hi = t.Min, t.Max
	if t.Override.Min != nil {
		lo = *t.Override.Min
	}
	if t.Override.Max != nil {
		hi = *t.Override.Max
	}
	return max(lo, 1), max(hi, max(lo, 1))
}

// ceiling is the most the tenant can grow to now.
func (t *Tenant) ceiling() int {
	_, hi := t.bounds()
	return min(hi, max(t.Eligible, t.Size))
}

// ceilingText says what stops t growing: its max or its eligible nodes.
func (t *Tenant) ceilingText() string {
	if _, hi := t.bounds(); hi <= t.Eligible {
		return fmt.Sprintf("its max of %d nodes", hi)
	}
	return fmt.Sprintf("all %d eligible nodes", t.Eligible)
}

// Kind is what a Decision does.
type Kind int

const (
	Grow   Kind = iota + 1 // set the tenant's size to To (> From) on heat
	Shrink                 // set the tenant's size to To (< From): it is cold
	Resize                 // set the tenant's size to To: bounds or an operator's size
	Alarm                  // raise (Active) or clear an alarm
)

func (k Kind) String() string {
	switch k {
	case Grow:
		return "grow"
	case Shrink:
		return "shrink"
	case Resize:
		return "resize"
	case Alarm:
		return "alarm"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// AlarmKind names an alarm.
type AlarmKind string

const (
	AlarmNearMax   AlarmKind = "near_max"  // tenant at AlarmFraction of its max
	AlarmBlocked   AlarmKind = "blocked"   // hot tenant cannot grow: velocity check or ceiling
	AlarmSaturated AlarmKind = "saturated" // hot node whose tenants are all at their ceiling
)

// Decision is one thing to do now, with its reason.
type Decision struct {
	Kind     Kind
	Tenant   string
	Node     string // the asking node (Grow); the hot node (AlarmSaturated)
	From, To int    // sizes (Grow, Shrink, Resize)
	Alarm    AlarmKind
	Active   bool // Alarm: raised (true) or cleared
	Reason   string
}

// ActiveAlarm is an alarm that is raised now.
type ActiveAlarm struct {
	Kind   AlarmKind
	Tenant string // empty for AlarmSaturated
	Node   string // AlarmSaturated only
	Reason string
}

type alarmKey struct {
	kind AlarmKind
	name string // tenant, or node for AlarmSaturated
}

// Policy is the capacity policy's memory. It is not safe for concurrent
// use: the leader's loop owns it. A new leader starts a new Policy.
type Policy struct {
	cfg     Config
	rng     *rand.Rand
	nodes   map[string]*nodeState   // bounded by the nodes reporting
	tenants map[string]*tenantState // bounded by the tenants given
	alarms  map[alarmKey]string     // raised alarms -> reason
	tokens  float64
	tokAt   time.Time
}

type nodeState struct {
	seen     time.Time // last fresh report
	lastAsk  time.Time
	prevShed float64
}

type tenantState struct {
	lastGrow, lastShrink time.Time
	undoGrow, undoShrink time.Time            // the timers before the last step, for Failed
	coldSince            time.Time            // zero: not cold
	asks                 map[string]time.Time // asking node -> when
	failures             int
	backoffUntil         time.Time
}

// nodeForget is how long a silent node's timers are kept.
const nodeForget = time.Minute

// New returns a Policy, or the error Validate finds in cfg.
func New(cfg Config) (*Policy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Schedule = slices.Clone(cfg.Schedule)
	return &Policy{
		cfg:     cfg,
		rng:     rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		nodes:   map[string]*nodeState{},
		tenants: map[string]*tenantState{},
		alarms:  map[alarmKey]string{},
		tokens:  float64(cfg.BudgetBurst),
	}, nil
}

// Failed tells the policy that carrying out a decision for tenant failed:
// it backs off that tenant (BackoffBase doubling up to BackoffMax).
func (p *Policy) Failed(tenant string, now time.Time) {
	ts := p.tenant(tenant)
	// The step did not happen: its timers go back, the back-off paces it.
	ts.lastGrow, ts.lastShrink = ts.undoGrow, ts.undoShrink
	ts.failures++
	d := p.cfg.BackoffMax
	if ts.failures <= 30 {
		if e := p.cfg.BackoffBase << (ts.failures - 1); e >= 0 && e < d {
			d = e
		}
	}
	ts.backoffUntil = now.Add(d)
}

// Succeeded tells the policy a decision for tenant was carried out: the
// back-off starts over.
func (p *Policy) Succeeded(tenant string) {
	if ts, ok := p.tenants[tenant]; ok {
		ts.failures = 0
		ts.backoffUntil = time.Time{}
	}
}

// Alarms returns the alarms raised now, sorted.
func (p *Policy) Alarms() []ActiveAlarm {
	out := make([]ActiveAlarm, 0, len(p.alarms))
	for k, reason := range p.alarms {
		a := ActiveAlarm{Kind: k.kind, Tenant: k.name, Reason: reason}
		if k.kind == AlarmSaturated {
			a.Tenant, a.Node = "", k.name
		}
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b ActiveAlarm) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Tenant, b.Tenant), cmp.Compare(a.Node, b.Node))
	})
	return out
}

func (p *Policy) tenant(name string) *tenantState {
	ts, ok := p.tenants[name]
	if !ok {
		ts = &tenantState{asks: map[string]time.Time{}}
		p.tenants[name] = ts
	}
	return ts
}

// heat is a node's judged state in one Decide.
type heat struct {
	r        *Report
	hot      bool
	cool     bool
	cpu, mem float64 // fractions of the limits; -1 unknown
	why      string  // why it is hot
}

// Decide returns what to do now. It adopts whatever sizes it is shown.
func (p *Policy) Decide(tenants []Tenant, reports []Report, now time.Time) []Decision {
	var out []Decision
	p.refill(now)

	byName := make(map[string]*Tenant, len(tenants))
	for i := range tenants {
		byName[tenants[i].Name] = &tenants[i]
	}
	for name := range p.tenants {
		if _, ok := byName[name]; !ok {
			delete(p.tenants, name)
		}
	}
	for k := range p.alarms {
		if _, ok := byName[k.name]; !ok && k.kind != AlarmSaturated {
			delete(p.alarms, k)
		}
	}

	heats := p.judge(reports, now)
	names := make([]string, 0, len(tenants))
	for i := range tenants {
		names = append(names, tenants[i].Name)
	}
	slices.Sort(names)

	// Bounds and operator sizes first: they are the operator's word and
	// wait on nothing.
	settled := map[string]bool{}
	for _, name := range names {
		t := byName[name]
		lo, hi := t.bounds()
		to, reason := t.Size, ""
		switch {
		case t.Override.Size != nil:
			to = max(*t.Override.Size, 1)
			reason = fmt.Sprintf("operator holds %s at %d nodes", name, to)
		case t.Size < lo:
			to, reason = lo, fmt.Sprintf("%s has %d nodes, below its min %d", name, t.Size, lo)
		case t.Size > hi:
			to, reason = hi, fmt.Sprintf("%s has %d nodes, above its max %d", name, t.Size, hi)
		}
		if t.Override.Size != nil {
			settled[name] = true
		}
		if to != t.Size {
			out = append(out, Decision{Kind: Resize, Tenant: name, From: t.Size, To: to, Reason: reason})
			settled[name] = true
		}
	}

	out = p.ask(out, byName, settled, heats, now)
	out = p.grow(out, byName, names, settled, heats, now)
	out = p.shrink(out, byName, names, settled, heats, now)

	// Near-max alarms.
	for _, name := range names {
		t := byName[name]
		_, hi := t.bounds()
		size := t.Size
		for _, d := range out {
			if d.Tenant == name && d.Kind != Alarm {
				size = d.To
			}
		}
		if hi == NoMax {
			out = p.setAlarm(out, alarmKey{AlarmNearMax, name}, false, "")
			continue
		}
		at := float64(size) >= p.cfg.AlarmFraction*float64(hi)
		out = p.setAlarm(out, alarmKey{AlarmNearMax, name}, at,
			fmt.Sprintf("%s has %d of its max %d nodes (alarm at %.0f%%)", name, size, hi, 100*p.cfg.AlarmFraction))
	}
	return out
}

// judge reads the fresh reports: which nodes are hot and which cool.
func (p *Policy) judge(reports []Report, now time.Time) map[string]*heat {
	heats := make(map[string]*heat, len(reports))
	for i := range reports {
		r := &reports[i]
		if age := now.Sub(r.At); age > p.cfg.ReportMaxAge || age < -p.cfg.ReportMaxAge {
			continue
		}
		if h, ok := heats[r.Node]; ok && !r.At.After(h.r.At) {
			continue
		}
		ns, ok := p.nodes[r.Node]
		if !ok {
			ns = &nodeState{}
			p.nodes[r.Node] = ns
		}
		h := &heat{r: r, cpu: -1, mem: -1}
		if r.CPULimit > 0 {
			h.cpu = r.CPU / r.CPULimit
		}
		if r.MemLimit > 0 {
			h.mem = r.Mem / r.MemLimit
		}
		var why []string
		if h.cpu >= p.cfg.CPUHot {
			why = append(why, fmt.Sprintf("cpu %.0f%% of its limit", 100*h.cpu))
		}
		if h.mem >= p.cfg.MemHot {
			why = append(why, fmt.Sprintf("memory %.0f%% of its limit", 100*h.mem))
		}
		if r.ShedRate > 0 && r.ShedRate >= p.cfg.ShedFalling*ns.prevShed {
			why = append(why, fmt.Sprintf("shedding %.1f/s", r.ShedRate))
		}
		if !ns.seen.Equal(r.At) {
			ns.prevShed = r.ShedRate
		}
		ns.seen = r.At
		h.hot = len(why) > 0
		h.why = strings.Join(why, ", ")
		h.cool = h.cpu < p.cfg.CPUCool && h.mem < p.cfg.MemCool && r.ShedRate == 0
		heats[r.Node] = h
	}
	for id, ns := range p.nodes {
		if now.Sub(ns.seen) > nodeForget {
			delete(p.nodes, id)
		}
	}
	return heats
}

// ask lets each hot node ask for one step for one of its tenants, and
// withdraws the asks of nodes that are no longer hot.
func (p *Policy) ask(out []Decision, byName map[string]*Tenant, settled map[string]bool, heats map[string]*heat, now time.Time) []Decision {
	// An ask stands while its node reports hot, up to AskTTL; a node that
	// stopped reporting cannot say it is still hot.
	for _, ts := range p.tenants {
		for node, at := range ts.asks {
			if h, ok := heats[node]; !ok || !h.hot || now.Sub(at) > p.cfg.AskTTL {
				delete(ts.asks, node)
			}
		}
	}
	for k := range p.alarms {
		if _, ok := heats[k.name]; k.kind == AlarmSaturated && !ok {
			out = p.setAlarm(out, k, false, "")
		}
	}
	ids := make([]string, 0, len(heats))
	for id := range heats {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		h := heats[id]
		key := alarmKey{AlarmSaturated, id}
		if !h.hot {
			out = p.setAlarm(out, key, false, "")
			continue
		}
		ns := p.nodes[id]
		if !ns.lastAsk.IsZero() && now.Sub(ns.lastAsk) < p.cfg.NodeAskInterval {
			continue
		}
		var cands []Load
		var full []string
		total, member := 0.0, 0.0
		for _, l := range h.r.Tenants {
			total += max(l.Share, 0)
			if t, ok := byName[l.Tenant]; ok && slices.Contains(t.Nodes, id) {
				member += max(l.Share, 0)
			}
		}
		for _, l := range h.r.Tenants {
			// Growing a tenant cools this node only if the node is in its
			// set: the new member takes part of the node's keys. And only
			// if those tenants make most of its heat: a node hot from
			// routing another tenant's crowd (clients reach every node)
			// would grow its own small tenant for nothing.
			t, ok := byName[l.Tenant]
			if !ok || l.Share <= 0 || l.Share < p.cfg.MinShare*total || settled[l.Tenant] || !slices.Contains(t.Nodes, id) || member < total/2 {
				continue
			}
			if t.Size >= t.ceiling() {
				full = append(full, l.Tenant)
				out = p.setAlarm(out, alarmKey{AlarmBlocked, l.Tenant}, true,
					fmt.Sprintf("%s is at %s while %s is hot (%s)", l.Tenant, t.ceilingText(), id, h.why))
				continue
			}
			cands = append(cands, l)
		}
		if len(cands) == 0 {
			if len(full) > 0 || len(h.r.Tenants) > 0 {
				slices.Sort(full)
				why := fmt.Sprintf("its tenants %v are at their ceiling", full)
				switch {
				case member < total/2:
					why = "most of its requests are of tenants whose sets do not hold it"
				case len(full) == 0:
					why = "no tenant whose set holds it has a share of its requests"
				}
				out = p.setAlarm(out, key, true, fmt.Sprintf("%s is hot (%s) with nothing left to shed: %s", id, h.why, why))
			}
			continue
		}
		out = p.setAlarm(out, key, false, "")
		pick := p.choose(cands)
		p.tenant(pick.Tenant).asks[id] = now
		ns.lastAsk = now
	}
	return out
}

// choose is power of two choices weighted by share: two distinct tenants
// drawn with probability proportional to their share, the larger share
// wins.
func (p *Policy) choose(cands []Load) Load {
	if len(cands) == 1 {
		return cands[0]
	}
	slices.SortFunc(cands, func(a, b Load) int { return cmp.Compare(a.Tenant, b.Tenant) })
	draw := func(skip int) int {
		total := 0.0
		for i, c := range cands {
			if i != skip {
				total += c.Share
			}
		}
		x := p.rng.Float64() * total
		last := -1
		for i, c := range cands {
			if i == skip {
				continue
			}
			last = i
			if x < c.Share {
				return i
			}
			x -= c.Share
		}
		return last
	}
	i := draw(-1)
	j := draw(i)
	if cands[j].Share > cands[i].Share {
		return cands[j]
	}
	return cands[i]
}

// grow steps up the tenants with standing asks, most asks first.
func (p *Policy) grow(out []Decision, byName map[string]*Tenant, names []string, settled map[string]bool, heats map[string]*heat, now time.Time) []Decision {
	var asked []string
	for _, name := range names {
		if ts, ok := p.tenants[name]; ok && len(ts.asks) > 0 && !settled[name] {
			asked = append(asked, name)
		} else {
			// Not asked for: nothing blocks it now.
			if !p.atCeilingWhileHot(byName[name], heats) {
				out = p.setAlarm(out, alarmKey{AlarmBlocked, name}, false, "")
			}
		}
	}
	slices.SortStableFunc(asked, func(a, b string) int {
		return cmp.Compare(len(p.tenants[b].asks), len(p.tenants[a].asks))
	})
	for _, name := range asked {
		t, ts := byName[name], p.tenants[name]
		target := min(p.cfg.next(t.Size), t.ceiling())
		blocked := ""
		switch {
		case target <= t.Size:
			blocked = "at " + t.ceilingText()
		case now.Before(ts.backoffUntil):
			blocked = fmt.Sprintf("backing off after %d failures until %s", ts.failures, ts.backoffUntil.Format(time.RFC3339Nano))
		case !ts.lastGrow.IsZero() && now.Sub(ts.lastGrow) < p.cfg.GrowInterval:
			blocked = fmt.Sprintf("grew %v ago (grow interval %v)", now.Sub(ts.lastGrow), p.cfg.GrowInterval)
		case !ts.lastShrink.IsZero() && now.Sub(ts.lastShrink) < p.cfg.Cooldown:
			blocked = fmt.Sprintf("shrank %v ago (cooldown %v)", now.Sub(ts.lastShrink), p.cfg.Cooldown)
		case p.tokens < 1:
			blocked = fmt.Sprintf("the cluster budget of %g nodes/s (burst %d) is spent", p.cfg.BudgetPerSecond, p.cfg.BudgetBurst)
		}
		nodes := slices.Sorted(maps.Keys(ts.asks))
		if blocked != "" {
			out = p.setAlarm(out, alarmKey{AlarmBlocked, name}, true,
				fmt.Sprintf("%s cannot grow from %d while %s hot: %s", name, t.Size, strings.Join(nodes, ", "), blocked))
			continue
		}
		reason := fmt.Sprintf("%s asked for %s (%s): schedule %d -> %d", nodes[0], name, heats[nodes[0]].why, t.Size, target)
		if len(nodes) > 1 {
			reason = fmt.Sprintf("%s asked for %s (%s; %d nodes asking): schedule %d -> %d",
				nodes[0], name, heats[nodes[0]].why, len(nodes), t.Size, target)
		}
		if n := int(p.tokens); t.Size+n < target {
			target = t.Size + n
			reason += fmt.Sprintf(", cut to %d by the cluster budget", target)
		}
		p.tokens -= float64(target - t.Size)
		out = append(out, Decision{Kind: Grow, Tenant: name, Node: nodes[0], From: t.Size, To: target, Reason: reason})
		out = p.setAlarm(out, alarmKey{AlarmBlocked, name}, false, "")
		ts.undoGrow, ts.undoShrink = ts.lastGrow, ts.lastShrink
		ts.lastGrow = now
		ts.coldSince = time.Time{}
		clear(ts.asks)
	}
	return out
}

// atCeilingWhileHot reports whether a tenant at its ceiling heats a hot
// node (its blocked alarm then stays up).
func (p *Policy) atCeilingWhileHot(t *Tenant, heats map[string]*heat) bool {
	if t.Size < t.ceiling() {
		return false
	}
	for _, id := range t.Nodes {
		if h, ok := heats[id]; ok && h.hot {
			for _, l := range h.r.Tenants {
				if l.Tenant == t.Name && l.Share > 0 {
					return true
				}
			}
		}
	}
	return false
}

// shrink gives a step back from tenants cold for ShrinkHold.
func (p *Policy) shrink(out []Decision, byName map[string]*Tenant, names []string, settled map[string]bool, heats map[string]*heat, now time.Time) []Decision {
	for _, name := range names {
		t := byName[name]
		ts := p.tenant(name)
		lo, _ := t.bounds()
		if settled[name] || len(ts.asks) > 0 || t.Size <= lo {
			ts.coldSince = time.Time{}
			continue
		}
		seen, cold := 0, true
		for _, id := range t.Nodes {
			if h, ok := heats[id]; ok {
				seen++
				cold = cold && h.cool
			}
		}
		if seen == 0 || !cold {
			ts.coldSince = time.Time{}
			continue
		}
		if ts.coldSince.IsZero() {
			ts.coldSince = now
		}
		if now.Sub(ts.coldSince) < p.cfg.ShrinkHold ||
			(!ts.lastShrink.IsZero() && now.Sub(ts.lastShrink) < p.cfg.ShrinkInterval) ||
			(!ts.lastGrow.IsZero() && now.Sub(ts.lastGrow) < p.cfg.Cooldown) ||
			now.Before(ts.backoffUntil) || p.tokens < 1 {
			continue
		}
		target := max(p.cfg.prev(t.Size), lo)
		if p.wouldHeat(t, target, heats) {
			continue
		}
		p.tokens -= float64(min(t.Size-target, int(p.tokens)))
		out = append(out, Decision{Kind: Shrink, Tenant: name, From: t.Size, To: target,
			Reason: fmt.Sprintf("%s cold for %v (every node under %.0f%% cpu, %.0f%% memory, no shedding): schedule %d -> %d",
				name, now.Sub(ts.coldSince).Round(time.Millisecond), 100*p.cfg.CPUCool, 100*p.cfg.MemCool, t.Size, target)})
		ts.undoGrow, ts.undoShrink = ts.lastGrow, ts.lastShrink
		ts.lastShrink = now
	}
	return out
}

// wouldHeat predicts each reporting node's CPU after t shrinks to target:
// t's share of the node's load grows by Size/target.
func (p *Policy) wouldHeat(t *Tenant, target int, heats map[string]*heat) bool {
	grow := float64(t.Size)/float64(target) - 1
	for _, id := range t.Nodes {
		h, ok := heats[id]
		if !ok || h.cpu < 0 {
			continue
		}
		total, mine := 0.0, 0.0
		for _, l := range h.r.Tenants {
			total += l.Share
			if l.Tenant == t.Name {
				mine += l.Share
			}
		}
		if total <= 0 {
			continue
		}
		pred := h.cpu * (1 + grow*mine/total)
		if pred > p.cfg.ShrinkCPU {
			return true
		}
	}
	return false
}

// refill adds the budget's tokens for the time since the last Decide.
func (p *Policy) refill(now time.Time) {
	if !p.tokAt.IsZero() && now.After(p.tokAt) {
		p.tokens = min(float64(p.cfg.BudgetBurst), p.tokens+now.Sub(p.tokAt).Seconds()*p.cfg.BudgetPerSecond)
	}
	if p.tokAt.IsZero() || now.After(p.tokAt) {
		p.tokAt = now
	}
}

// setAlarm raises or clears an alarm, with a Decision on each transition.
func (p *Policy) setAlarm(out []Decision, k alarmKey, active bool, reason string) []Decision {
	_, was := p.alarms[k]
	if active {
		p.alarms[k] = reason
	} else {
		delete(p.alarms, k)
	}
	if was == active {
		return out
	}
	d := Decision{Kind: Alarm, Alarm: k.kind, Active: active, Reason: reason}
	if k.kind == AlarmSaturated {
		d.Node = k.name
	} else {
		d.Tenant = k.name
	}
	if !active {
		d.Reason = fmt.Sprintf("%s %s cleared", k.name, k.kind)
	}
	return append(out, d)
}
