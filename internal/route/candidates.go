package route

import (
	"slices"
	"time"
)

// Candidates appends to dst, best first, up to cap(dst) (at most 8) live
// peers for hash in rendezvous order, skipping suspected peers unless all
// are: the owner, then where the key goes if the owner leaves. It is how a
// new owner finds the previous one (warm handoff). It does not allocate
// when dst has room.
func (r *Router) Candidates(hash uint64, dst []Peer) []Peer {
	return r.CandidatesFor("", hash, dst)
}

// CandidatesFor is Candidates within tenant's node set ("" and tenants
// without a spec: every live peer): the key's owner in the set, then where
// it goes if the owner leaves the set (and, when the set has just grown,
// where it was before).
func (r *Router) CandidatesFor(tenant string, hash uint64, dst []Peer) []Peer {
	var buf [8]*peer
	n := min(cap(dst)-len(dst), len(buf))
	if n <= 0 {
		return dst
	}
	for _, p := range rankAmong(r.tab.Load().members(tenant), hash, buf[:0:n], r.cfg.Now().UnixNano()) {
		dst = append(dst, p.Peer)
	}
	return dst
}

// Outranks reports whether the node a has a higher rendezvous score for
// hash than the node b: whether a would own the key if both were live.
func Outranks(a, b string, hash uint64) bool {
	return score(seedOf(a), hash) > score(seedOf(b), hash)
}

// pastSet is one of a tenant's node sets as it was until a change (a
// grow, a shrink, a drain or departure, an operator's isolation, pin or
// exclusion) replaced it.
type pastSet struct {
	peers []*peer // the set as it was, sorted by ID
	until int64   // unix nanos: forgotten after
}

// maxPastSets bounds the past sets kept per tenant.
const maxPastSets = 4

// pastSets is the tenants' past sets once their sets changed from old to
// sets at now: the sets that changed pushed, most recent first, at most
// maxPastSets per tenant, each kept for keep; expired ones and those of
// tenants no longer specified dropped. Nil when there are none.
func pastSets(old *table, sets map[string]*tenantSet, now int64, keep time.Duration) map[string][]pastSet {
	var out map[string][]pastSet
	for name, s := range sets {
		var ps []pastSet
		if prev, ok := old.tenants[name]; ok && !sameIDs(prev.peers, s.peers) && len(prev.peers) > 0 {
			ps = append(ps, pastSet{peers: prev.peers, until: now + int64(keep)})
		}
		for _, p := range old.past[name] {
			if len(ps) < maxPastSets && p.until > now {
				ps = append(ps, p)
			}
		}
		if len(ps) > 0 {
			if out == nil {
				out = make(map[string][]pastSet, len(sets))
			}
			out[name] = ps
		}
	}
	return out
}

func sameIDs(a, b []*peer) bool {
	return slices.EqualFunc(a, b, func(x, y *peer) bool { return x.ID == y.ID })
}

// PastOwnersFor appends to dst, most recent change first, up to cap(dst),
// the owners of hash in tenant's recent past node sets (see
// Config.SetMemory), skipping this node and duplicates: the nodes that may
// still hold a key of the tenant that moved to this node. Their records
// are as they were then (the node may have left, or be draining: the
// caller checks the membership). Nothing for the default tenant "" and
// tenants without a spec. It does not allocate when dst has room.
func (r *Router) PastOwnersFor(tenant string, hash uint64, dst []Peer) []Peer {
	if tenant == "" {
		return dst
	}
	t := r.tab.Load()
	now := r.cfg.Now().UnixNano()
	for _, ps := range t.past[tenant] {
		if len(dst) == cap(dst) {
			break
		}
		if ps.until <= now {
			continue
		}
		var top *peer
		var best uint64
		for _, p := range ps.peers {
			if s := score(p.seed, hash); top == nil || s > best {
				top, best = p, s
			}
		}
		if top == nil || top.ID == r.cfg.Self || slices.ContainsFunc(dst, func(p Peer) bool { return p.ID == top.ID }) {
			continue
		}
		dst = append(dst, top.Peer)
	}
	return dst
}

// Handover answers, for a node that drains, which of a tenant's keys are
// its own and where each goes: the tenant's set with this node in it (as
// before its drain, whether or not the router has seen it draining yet)
// and without it (as its peers route once they see the drain).
type Handover struct {
	self          string
	with, without []*peer
	now           int64
}

// HandoverFor is the Handover of tenant's keys ("" and tenants without a
// spec: every live peer's).
func (r *Router) HandoverFor(tenant string) *Handover {
	r.mu.Lock()
	var spec *TenantSpec
	if tenant != "" {
		for i := range r.tenants {
			if r.tenants[i].Name == tenant {
				s := r.tenants[i]
				spec = &s
			}
		}
	}
	r.mu.Unlock()
	t := r.tab.Load()
	h := &Handover{self: r.cfg.Self, now: r.cfg.Now().UnixNano()}
	with := make([]*peer, 0, len(t.peers))
	without := make([]*peer, 0, len(t.peers))
	for _, p := range t.peers {
		if p.ID == r.cfg.Self {
			if p.Draining {
				undrained := p.Peer
				undrained.Draining = false
				np := newPeer(undrained)
				with = append(with, np)
				continue
			}
		} else {
			without = append(without, p)
		}
		with = append(with, p)
	}
	if spec != nil {
		h.with, _ = selectSet(spec, with)
		h.without, _ = selectSet(spec, without)
	} else {
		h.with, h.without = with, without
	}
	return h
}

// Successor returns where a key with hash goes when this node drains: its
// owner in the set without this node. ok is false when this node does not
// own the key in the set with it, or no other node is known.
func (h *Handover) Successor(hash uint64) (Peer, bool) {
	var buf [1]*peer
	if got := rankAmong(h.with, hash, buf[:0], h.now); len(got) == 0 || got[0].ID != h.self {
		return Peer{}, false
	}
	got := rankAmong(h.without, hash, buf[:0], h.now)
	if len(got) == 0 {
		return Peer{}, false
	}
	return got[0].Peer, true
}
