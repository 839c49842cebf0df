// Package autopilot gives hot objects extra replicas and takes them back:
// a pure policy decides replica counts; an actuator applies them with etcd
// leases.
//
// # The policy
//
// Policy.Decide is a function of the heat reports, the replica sets seen in
// etcd, the members, the time passed in, and the policy's own small memory
// (per-key timers, replicas it asked for, a budget). It does no I/O, reads
// no clock and starts no goroutine, so tests and the simulator drive it with
// any clock. Each call returns the actions to take now:
//
//   - ScaleOut: give a key a replica on Node (grant a lease, copy from the
//     owner, register).
//   - ScaleIn: stop renewing the replica on Node (or revoke its lease).
//   - Renew: renew the lease of the replica on Node, which is close to
//     expiry; the actuator adds jitter.
//
// A key's rate is the sum of the rates in the fresh reports. It wants
// ceil(rate/TargetRPS) members (owner included), clamped to [1, MaxReplicas]
// and to an operator's Limits (a pin from below, a cap from above),
// and one more, step by step, while a member's node breaches the p99 or
// error objective. It scales out as soon as its rate crosses the high
// watermark, at most once per MinInterval and never within Cooldown of a
// scale-in; it scales in only after its rate has stayed under the low
// watermark for ScaleInHold, and never within Cooldown of any action. New
// replicas come from a cluster-wide token bucket and under a cap on all
// extra replicas; when they are short, the keys with the most load per
// member go first. Every action carries a human-readable Reason.
//
// Decide adopts whatever replicas it is shown, so a new leader starts a new
// Policy and carries on: it renews the replicas it finds and scales them in
// only after a full hold. With no fresh report at all it changes nothing but
// renewals, since it cannot tell a crowd that left from reports that stopped.
package autopilot

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/heat"
)

// Report is one node's heat report: its top keys and its load.
type Report struct {
	Node, Zone string
	At         time.Time      // when the node took the report
	Keys       []heat.KeyRate // the node's hottest keys; each request observed at one node only
	InFlight   int64
	P99        time.Duration
	ErrorRate  float64    // fraction of requests that failed, 0..1
	CPU        float64    // cores in use
	CPULimit   float64    // cores the node may use (its cgroup quota, else the machine's); 0 unknown
	Near       []NearCopy // near copies the node holds (the data plane's own replicas), for operators
}

// NearCopy is a near copy a node holds: an object it does not own, kept
// under a short lease because it is hot there. The data plane makes and
// drops them; the leader only shows them.
type NearCopy struct {
	Key     string    `json:"key"`
	Expires time.Time `json:"expires"`
}

// Replica is one leased extra copy of an object.
type Replica struct {
	Node           string
	Since, Expires time.Time // lease granted, lease expires
}

// Object is an object's replica set as seen in etcd. Replicas excludes the
// owner. Decide needs an Object for every key it may scale out, since only
// the caller knows the owner (by rendezvous hashing): pass one, possibly
// without replicas, for each reported key and each key with Limits.
type Object struct {
	Key      string
	Hash     uint64
	Owner    string
	Replicas []Replica
	// Limits are an operator's pin and cap on the key; zero for none.
	Limits Limits
}

// NodeInfo is a cluster member as placement sees it. A replica on a node
// missing from the list, draining or failing is released, unless the list is
// empty: then membership is taken as unknown, nothing is released for it and
// nothing is placed.
//
// InFlight, CPU and ErrorRate are load; Decide overwrites them from the
// node's own fresh report when it has one, so callers need only fill in
// membership.
type NodeInfo struct {
	ID, Zone string
	Draining bool
	// Failing marks a node known to be broken: its replicas are released.
	// No caller sets it yet (the node passes Unreachable, which keeps
	// replicas); it is the hook for a health signal that is sure enough to
	// act on.
	Failing bool
	// Unreachable says the caller cannot reach the node right now (its
	// forwards fail): no new replica goes there and no copy comes from
	// there, but its replicas stay. A saturated node times out too, and
	// releasing its replicas would shrink the set the crowd needs; routers
	// already route around it.
	Unreachable bool
	InFlight    int64
	CPU         float64 // cores in use
	CPULimit    float64 // cores it may use; 0 unknown
	ErrorRate   float64 // fraction of the node's requests that failed
}

// ActionKind says what an Action does.
type ActionKind int

// The kinds of Action.
const (
	ScaleOut ActionKind = iota + 1 // add a replica on Node
	ScaleIn                        // stop renewing (or revoke) the replica on Node
	Renew                          // renew the lease of the replica on Node
)

func (k ActionKind) String() string {
	switch k {
	case ScaleOut:
		return "scale-out"
	case ScaleIn:
		return "scale-in"
	case Renew:
		return "renew"
	}
	return fmt.Sprintf("ActionKind(%d)", int(k))
}

// Action is one decision for one replica of one key.
type Action struct {
	Kind ActionKind
	Key  string
	Hash uint64
	Node string // the replica's node: chosen (ScaleOut), released (ScaleIn) or renewed (Renew)
	// From is the member a ScaleOut copies the object from: a replica
	// less loaded than the owner (a crowd saturates the owner first), or
	// "" for the owner itself.
	From   string
	Reason string // why, for people: "rate 4200/s > 3 × 1000/s high watermark; want 5"
	// Desired is the member count (owner included) the key wants, and
	// Current the count when the decision was taken, counting replicas
	// still being set up.
	Desired, Current int
}

// Stats counts the policy's decisions and what it could not do. The
// uint64 counters only grow; the other fields are gauges.
type Stats struct {
	Decisions          uint64 // calls to Decide
	ScaleOuts          uint64
	ScaleIns           uint64 // including Released
	Released           uint64 // scale-ins for node health or a lowered cap, not load
	Renews             uint64
	StaleReports       uint64 // reports ignored as older than ReportMaxAge
	BudgetDenied       uint64 // replicas wanted but not granted: budget empty
	CapDenied          uint64 // replicas wanted but not granted: MaxExtraReplicas reached
	PlacementDenied    uint64 // replicas wanted but not granted: no eligible node
	UnknownOwner       uint64 // scale-outs skipped because the key had no Object
	CapHeld            uint64 // scale-outs the rate called for but an operator's cap held back
	ActuationTimeouts  uint64 // asked-for replicas that never appeared
	ForgottenKeys      uint64 // per-key states dropped to stay within the bound
	Keys               int    // per-key states held now
	ExtraReplicas      int    // extra replicas counted at the last Decide, in flight included
	WantMore           int    // keys that could take more replicas at the last Decide, granted or not
	BudgetTokens       float64
	NoReportsDecisions uint64 // Decides with no fresh report, which only renew
}

// Policy decides replica counts. Decide and Stats are safe for concurrent
// use, but one goroutine (the leader's loop) should own the decisions.
type Policy struct {
	cfg Config

	mu     sync.Mutex           // guards the fields below
	keys   map[uint64]*keyState // per-key memory, bounded by maxKeys
	budget bucket
	stats  Stats
}

// NewPolicy returns a Policy for cfg with defaults for its zero fields, or
// the error from cfg.Validate.
func NewPolicy(cfg Config) (*Policy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Policy{
		cfg:    cfg,
		keys:   make(map[uint64]*keyState),
		budget: bucket{rate: cfg.BudgetPerSecond, burst: max(1, cfg.BudgetPerSecond)},
	}, nil
}

// Config returns the configuration in use, defaults filled in.
func (p *Policy) Config() Config { return p.cfg }

// Stats returns the policy's counters.
func (p *Policy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Keys = len(p.keys)
	s.BudgetTokens = p.budget.tokens
	return s
}

// Decide returns the actions to take at now, given the latest heat report
// of each node (older ones are ignored), the current replica sets and the
// members. Actions come scale-ins first, then scale-outs in priority order,
// then renewals; the order is deterministic.
func (p *Policy) Decide(now time.Time, reports []Report, objects []Object, nodes []NodeInfo) []Action {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Decisions++
	p.budget.refill(now)

	t := p.newTick(now, reports, objects, nodes)
	if len(t.fresh) == 0 {
		p.stats.NoReportsDecisions++
	}
	for _, kv := range t.keys {
		p.decideKey(t, kv)
	}
	p.grant(t)
	p.prune(t)

	p.stats.WantMore = len(t.candidates)
	p.stats.ExtraReplicas = t.extra
	return slices.Concat(t.ins, t.outs, t.renews)
}

// tick is the working state of one Decide.
type tick struct {
	now   time.Time
	fresh map[string]*Report // latest fresh report per node
	nodes map[string]NodeInfo
	keys  []*keyView // sorted by hash

	extra      int            // extra replicas after this tick's releases, in flight included
	candidates []*keyView     // keys that want more members
	placed     map[string]int // replicas placed on each node this tick

	ins, outs, renews []Action
}

// keyView is one key as seen in one tick.
type keyView struct {
	hash     uint64
	key      string
	owner    string // "" when no Object was given
	replicas []Replica
	rate     float64    // decayed request rate, summed over the fresh reports
	recent   float64    // rate over each report's last interval (the decayed rate where unknown)
	zones    []zoneRate // demand by known zone, highest first
	st       *keyState  // nil until the key needs memory
	limits   Limits     // the operator's pin and cap

	active      []Replica // serving replicas, not released
	members     int       // owner + active + in flight
	floor, ceil int       // fewest and most members: the pin, MaxReplicas and the cap

	// For scale-out candidates.
	want, need, granted int
	above               bool   // rate above the high watermark
	rising              bool   // sized on the recent rate: the key is still climbing
	breach              string // why an objective is breached, or ""
	pinned              bool   // want raised to the floor by the operator's pin
	reason              string // scaleOutReason, once built
}

type zoneRate struct {
	zone string
	rate float64
}

// newTick aggregates the fresh reports by key and indexes the inputs.
func (p *Policy) newTick(now time.Time, reports []Report, objects []Object, nodes []NodeInfo) *tick {
	t := &tick{
		now:    now,
		fresh:  make(map[string]*Report, len(reports)),
		nodes:  make(map[string]NodeInfo, len(nodes)),
		placed: make(map[string]int),
	}
	for i := range reports {
		r := &reports[i]
		if now.Sub(r.At) > p.cfg.ReportMaxAge {
			p.stats.StaleReports++
			continue
		}
		if old, ok := t.fresh[r.Node]; ok && old.At.After(r.At) {
			continue
		}
		t.fresh[r.Node] = r
	}
	for _, n := range nodes {
		if r, ok := t.fresh[n.ID]; ok {
			n.InFlight, n.CPU, n.CPULimit, n.ErrorRate = r.InFlight, r.CPU, r.CPULimit, r.ErrorRate
		}
		t.nodes[n.ID] = n
	}

	byHash := make(map[uint64]*keyView)
	view := func(hash uint64, key string) *keyView {
		kv := byHash[hash]
		if kv == nil {
			kv = &keyView{hash: hash, key: key}
			byHash[hash] = kv
		}
		if kv.key == "" {
			kv.key = key
		}
		return kv
	}
	// Sum in node order, so the float sums, and the decisions, repeat.
	for _, node := range slices.Sorted(maps.Keys(t.fresh)) {
		r := t.fresh[node]
		for _, kr := range r.Keys {
			if !(kr.Rate > 0) || math.IsInf(kr.Rate, 0) {
				continue
			}
			kv := view(kr.Hash, kr.Key)
			kv.rate += kr.Rate
			if kr.Recent > 0 && !math.IsInf(kr.Recent, 0) {
				kv.recent += kr.Recent
			} else {
				kv.recent += kr.Rate
			}
			if r.Zone != "" {
				kv.addZone(r.Zone, kr.Rate)
			}
		}
	}
	for _, o := range objects {
		kv := view(o.Hash, o.Key)
		kv.owner = o.Owner
		kv.replicas = append(kv.replicas, o.Replicas...)
		if !o.Limits.IsZero() {
			kv.limits = o.Limits
		}
	}
	for h, st := range p.keys {
		kv := view(h, st.key)
		kv.st = st
	}
	t.keys = make([]*keyView, 0, len(byHash))
	for _, kv := range byHash {
		slices.SortFunc(kv.zones, func(a, b zoneRate) int {
			if c := cmp.Compare(b.rate, a.rate); c != 0 {
				return c
			}
			return cmp.Compare(a.zone, b.zone)
		})
		t.keys = append(t.keys, kv)
	}
	slices.SortFunc(t.keys, func(a, b *keyView) int { return cmp.Compare(a.hash, b.hash) })
	return t
}

func (kv *keyView) addZone(zone string, rate float64) {
	for i := range kv.zones {
		if kv.zones[i].zone == zone {
			kv.zones[i].rate += rate
			return
		}
	}
	kv.zones = append(kv.zones, zoneRate{zone, rate})
}

// state returns the key's memory, creating it.
func (p *Policy) state(kv *keyView) *keyState {
	if kv.st == nil {
		kv.st = &keyState{key: kv.key}
		p.keys[kv.hash] = kv.st
	}
	return kv.st
}
