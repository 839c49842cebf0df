package autopilot

import (
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/heat"
)

// sim drives a Policy the way the leader does, with an in-memory actuator:
// ScaleOut adds a leased replica, Renew extends its lease, ScaleIn stops
// renewing it, and leases that run out disappear. It checks the invariants
// on every tick.
type sim struct {
	t     *testing.T
	p     *Policy
	cfg   Config
	now   time.Time
	nodes []NodeInfo
	zone  map[string]string // reporting node -> zone
	objs  map[uint64]*simObject
	// limits are the operator's, by key, passed with the objects.
	limits map[string]Limits

	// ignoreScaleOut makes the actuator drop ScaleOut actions (slow or
	// failing actuation).
	ignoreScaleOut bool

	log []timedAction // every action so far
}

type simObject struct {
	key      string
	hash     uint64
	owner    string
	replicas map[string]*simReplica
}

type simReplica struct {
	since, expires time.Time
	released       bool
}

type timedAction struct {
	at time.Time
	Action
}

var epoch = time.Date(2026, 3, 1, 20, 0, 0, 0, time.UTC)

func hashOf(key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	return h.Sum64()
}

// nodeIDs returns n node IDs n00, n01, ...
func nodeIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("n%02d", i)
	}
	return ids
}

func newSim(t *testing.T, cfg Config, nodes int) *sim {
	t.Helper()
	p, err := NewPolicy(cfg)
	if err != nil {
		t.Fatalf("NewPolicy: %v", err)
	}
	s := &sim{t: t, p: p, cfg: p.Config(), now: epoch, zone: map[string]string{}, objs: map[uint64]*simObject{}}
	for _, id := range nodeIDs(nodes) {
		s.nodes = append(s.nodes, NodeInfo{ID: id, Zone: "z1"})
	}
	return s
}

// owner is a stand-in for rendezvous hashing.
func (s *sim) owner(key string) string {
	return s.nodes[hashOf(key)%uint64(len(s.nodes))].ID
}

func (s *sim) object(key string) *simObject {
	h := hashOf(key)
	o := s.objs[h]
	if o == nil {
		o = &simObject{key: key, hash: h, owner: s.owner(key), replicas: map[string]*simReplica{}}
		s.objs[h] = o
	}
	return o
}

// reports spreads each key's rate evenly over the reporting nodes.
func (s *sim) reports(rates map[string]float64, reporters []string) []Report {
	var out []Report
	for _, n := range reporters {
		r := Report{Node: n, Zone: s.zone[n], At: s.now}
		for _, key := range slices.Sorted(maps.Keys(rates)) {
			r.Keys = append(r.Keys, heat.KeyRate{Key: key, Hash: hashOf(key), Rate: rates[key] / float64(len(reporters))})
		}
		out = append(out, r)
	}
	return out
}

// objects returns the replica sets for Decide: every key with a rate or a
// live replica.
func (s *sim) objects(rates map[string]float64) []Object {
	for key := range rates {
		s.object(key)
	}
	for key := range s.limits {
		s.object(key)
	}
	var out []Object
	for _, h := range slices.Sorted(maps.Keys(s.objs)) {
		o := s.objs[h]
		obj := Object{Key: o.key, Hash: o.hash, Owner: o.owner, Limits: s.limits[o.key]}
		for _, n := range slices.Sorted(maps.Keys(o.replicas)) {
			r := o.replicas[n]
			obj.Replicas = append(obj.Replicas, Replica{Node: n, Since: r.since, Expires: r.expires})
		}
		out = append(out, obj)
	}
	return out
}

// step advances the clock by d, expires leases, runs Decide with reports of
// rates from one reporter, applies the actions and checks the invariants.
func (s *sim) step(d time.Duration, rates map[string]float64) []Action {
	return s.stepFrom(d, rates, []string{"r0"})
}

func (s *sim) stepFrom(d time.Duration, rates map[string]float64, reporters []string) []Action {
	s.t.Helper()
	s.now = s.now.Add(d)
	s.expire()
	var reports []Report
	if reporters != nil {
		reports = s.reports(rates, reporters)
	}
	acts := s.p.Decide(s.now, reports, s.objects(rates), s.nodes)
	s.apply(acts)
	s.check()
	return acts
}

// expire drops lapsed leases, and objects left without replicas.
func (s *sim) expire() {
	for h, o := range s.objs {
		for n, r := range o.replicas {
			if !s.now.Before(r.expires) {
				delete(o.replicas, n)
			}
		}
		if len(o.replicas) == 0 {
			delete(s.objs, h)
		}
	}
}

func (s *sim) apply(acts []Action) {
	s.t.Helper()
	for _, a := range acts {
		s.log = append(s.log, timedAction{s.now, a})
		if a.Reason == "" {
			s.t.Errorf("%v: action without a reason: %+v", s.now.Sub(epoch), a)
		}
		o := s.objs[a.Hash]
		if o == nil {
			s.t.Fatalf("action for unknown key: %+v", a)
		}
		r := o.replicas[a.Node]
		switch a.Kind {
		case ScaleOut:
			if a.Node == o.owner {
				s.t.Errorf("%v: replica of %s placed on its owner %s", s.now.Sub(epoch), o.key, a.Node)
			}
			if r != nil {
				s.t.Errorf("%v: second replica of %s on %s", s.now.Sub(epoch), o.key, a.Node)
			}
			if !s.ignoreScaleOut {
				o.replicas[a.Node] = &simReplica{since: s.now, expires: s.now.Add(s.cfg.ReplicaTTL)}
			}
		case ScaleIn:
			if r == nil || r.released {
				s.t.Errorf("%v: scale-in of %s on %s, which holds no live replica", s.now.Sub(epoch), o.key, a.Node)
				continue
			}
			r.released = true
		case Renew:
			if r == nil || r.released {
				s.t.Errorf("%v: renew of %s on %s, which holds no live replica", s.now.Sub(epoch), o.key, a.Node)
				continue
			}
			r.expires = s.now.Add(s.cfg.ReplicaTTL)
		default:
			s.t.Errorf("unknown action kind %v", a.Kind)
		}
	}
}

// live returns the number of replicas of key still renewed.
func (s *sim) live(key string) int {
	o := s.objs[hashOf(key)]
	if o == nil {
		return 0
	}
	n := 0
	for _, r := range o.replicas {
		if !r.released {
			n++
		}
	}
	return n
}

func (s *sim) check() {
	s.t.Helper()
	total := 0
	for _, o := range s.objs {
		n := s.live(o.key)
		total += n
		if n+1 > s.cfg.MaxReplicas {
			s.t.Errorf("%v: %s has %d members > max %d", s.now.Sub(epoch), o.key, n+1, s.cfg.MaxReplicas)
		}
		if c := s.limits[o.key].Cap; c != nil && n > *c {
			s.t.Errorf("%v: %s has %d live replicas > the operator's cap %d", s.now.Sub(epoch), o.key, n, *c)
		}
	}
	if total > s.cfg.MaxExtraReplicas {
		s.t.Errorf("%v: %d extra replicas > max %d", s.now.Sub(epoch), total, s.cfg.MaxExtraReplicas)
	}
	if st := s.p.Stats(); st.Keys > s.p.maxKeys() {
		s.t.Errorf("%v: policy holds %d key states > bound %d", s.now.Sub(epoch), st.Keys, s.p.maxKeys())
	}
}

// count returns how many logged actions of kind there are for key
// ("" for any key).
func (s *sim) count(kind ActionKind, key string) int {
	n := 0
	for _, a := range s.log {
		if a.Kind == kind && (key == "" || a.Key == key) {
			n++
		}
	}
	return n
}

// checkNoReversal fails if a key scaled in within Cooldown of a scale-out
// or out within Cooldown of a scale-in.
func (s *sim) checkNoReversal() {
	s.t.Helper()
	last := map[uint64]timedAction{}
	for _, a := range s.log {
		if a.Kind == Renew {
			continue
		}
		if prev, ok := last[a.Hash]; ok && prev.Kind != a.Kind && a.at.Sub(prev.at) < s.cfg.Cooldown {
			s.t.Errorf("%s: %v at %v reversed %v at %v within cooldown %v", a.Key, a.Kind, a.at.Sub(epoch), prev.Kind, prev.at.Sub(epoch), s.cfg.Cooldown)
		}
		last[a.Hash] = a
	}
}

func kinds(acts []Action, kind ActionKind) []Action {
	var out []Action
	for _, a := range acts {
		if a.Kind == kind {
			out = append(out, a)
		}
	}
	return out
}
