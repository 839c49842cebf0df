package route

import (
	"maps"
	"slices"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// TenantSpec says how one tenant's node set is chosen from the live peers.
type TenantSpec struct {
	// Name is the tenant. The default tenant "" is never a spec: it is
	// served by every live peer, as without tenants.
	Name string
	// Size is K, the number of nodes in the set (the capacity manager's
	// decision). Below 1 counts as 1: a tenant is always served. A set is
	// smaller only when fewer nodes are eligible.
	Size int
	// Labels isolate the tenant: only peers carrying every one of these
	// labels (same value) are eligible. Nil means any peer.
	Labels map[string]string
	// Pin lists peers taken first whenever they are eligible (highest
	// rendezvous score first if there are more than Size).
	Pin []string
	// Exclude lists peers never eligible.
	Exclude []string
}

// tenantSet is one tenant's precomputed node set in a routing table.
type tenantSet struct {
	peers    []*peer // the set, sorted by ID
	fallback bool    // no peer was eligible: the set is every live peer
}

// eligible reports whether p may be in spec's set: live (it is listed),
// not draining, not excluded, and carrying the isolation labels.
func (spec *TenantSpec) eligible(p *peer) bool {
	if p.Draining || slices.Contains(spec.Exclude, p.ID) {
		return false
	}
	for k, v := range spec.Labels {
		if got, ok := p.labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// newPeer is the routing state of a fresh peer record.
func newPeer(p Peer) *peer {
	return &peer{Peer: p, seed: seedOf(p.ID), labels: ParseLabels(p.Labels)}
}

// FormatLabels is the canonical form of labels: name=value pairs sorted by
// name, comma-separated ("hw=dedicated,rack=r1"), "" for none.
func FormatLabels(m map[string]string) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(m[k])
	}
	return b.String()
}

// ParseLabels reads FormatLabels' form; malformed pairs are skipped.
func ParseLabels(s string) map[string]string {
	if s == "" {
		return nil
	}
	m := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		if k, v, ok := strings.Cut(part, "="); ok && k != "" {
			m[k] = v
		}
	}
	return m
}

// selectSet is the top Size eligible peers by rendezvous score of
// (tenant, peer), pinned peers first, sorted by ID. With no eligible peer it
// returns every peer and fallback true, so that a tenant isolated onto
// labels no live node carries is still served (and the operator is told).
// Because the score of a peer does not depend on the others, growing Size
// by one adds exactly one peer and removes none, and a peer joining enters
// only the sets whose top Size it wins.
func selectSet(spec *TenantSpec, peers []*peer) (set []*peer, fallback bool) {
	th := xxhash.Sum64String(spec.Name)
	type cand struct {
		p      *peer
		pinned bool
		s      uint64
	}
	cands := make([]cand, 0, len(peers))
	for _, p := range peers {
		if spec.eligible(p) {
			cands = append(cands, cand{p, slices.Contains(spec.Pin, p.ID), score(p.seed, th)})
		}
	}
	if len(cands) == 0 {
		return slices.Clone(peers), len(peers) > 0
	}
	slices.SortFunc(cands, func(a, b cand) int {
		if a.pinned != b.pinned {
			if a.pinned {
				return -1
			}
			return 1
		}
		switch {
		case a.s > b.s:
			return -1
		case a.s < b.s:
			return 1
		}
		return strings.Compare(a.p.ID, b.p.ID)
	})
	k := max(spec.Size, 1)
	k = min(k, len(cands))
	set = make([]*peer, k)
	for i := range set {
		set[i] = cands[i].p
	}
	slices.SortFunc(set, func(a, b *peer) int { return strings.Compare(a.ID, b.ID) })
	return set, false
}

// buildTenantSets precomputes every tenant's set over the live peers.
func buildTenantSets(specs []TenantSpec, peers []*peer) map[string]*tenantSet {
	if len(specs) == 0 {
		return nil
	}
	out := make(map[string]*tenantSet, len(specs))
	for i := range specs {
		set, fb := selectSet(&specs[i], peers)
		out[specs[i].Name] = &tenantSet{peers: set, fallback: fb}
	}
	return out
}

// TenantSet returns the IDs of the nodes in spec's set among peers, sorted,
// and whether it fell back to every peer because none was eligible. It is
// the pure function the Router precomputes, for the capacity manager and
// operators.
func TenantSet(spec TenantSpec, peers []Peer) (ids []string, fallback bool) {
	ps := make([]*peer, len(peers))
	for i := range peers {
		ps[i] = newPeer(peers[i])
	}
	set, fb := selectSet(&spec, ps)
	ids = make([]string, len(set))
	for i, p := range set {
		ids[i] = p.ID
	}
	return ids, fb
}

// Eligible counts the peers that may be in spec's set: the most nodes the
// tenant can grow to.
func Eligible(spec TenantSpec, peers []Peer) int {
	n := 0
	for i := range peers {
		if spec.eligible(newPeer(peers[i])) {
			n++
		}
	}
	return n
}

// SetTenants replaces the tenant specs and recomputes their node sets. A
// tenant without a spec (and the default tenant "") is served by every live
// peer. Duplicate names: the last spec wins.
func (r *Router) SetTenants(specs []TenantSpec) {
	r.mu.Lock()
	defer r.mu.Unlock()
	byName := make(map[string]TenantSpec, len(specs))
	for _, s := range specs {
		if s.Name != "" {
			byName[s.Name] = s
		}
	}
	r.tenants = make([]TenantSpec, 0, len(byName))
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		r.tenants = append(r.tenants, byName[name])
	}
	old := r.tab.Load()
	next := &table{peers: old.peers, replicas: old.replicas}
	next.tenants = buildTenantSets(r.tenants, next.peers)
	next.past = pastSets(old, next.tenants, r.cfg.Now().UnixNano(), r.cfg.SetMemory)
	r.tab.Store(next)
}

// members is tenant's node set in t: its precomputed set, or every live
// peer for the default tenant and tenants without a spec.
func (t *table) members(tenant string) []*peer {
	if tenant != "" && t.tenants != nil {
		if s, ok := t.tenants[tenant]; ok {
			return s.peers
		}
	}
	return t.peers
}

// TenantPeers returns the IDs in tenant's node set, sorted, and whether the
// set fell back to every peer because none was eligible.
func (r *Router) TenantPeers(tenant string) (ids []string, fallback bool) {
	t := r.tab.Load()
	ps := t.members(tenant)
	ids = make([]string, len(ps))
	for i, p := range ps {
		ids[i] = p.ID
	}
	if s, ok := t.tenants[tenant]; ok {
		fallback = s.fallback
	}
	return ids, fallback
}

// OwnerFor is Owner with the key owned within tenant's node set: the top
// member of the set by rendezvous score of hash.
func (r *Router) OwnerFor(tenant string, hash uint64) (Peer, bool) {
	return r.owner(r.tab.Load().members(tenant), hash)
}

// PlanFor is Plan for a key of tenant: the owner and the next candidate
// come from the tenant's node set; leased replicas are used wherever they
// are. The default tenant "" plans exactly as Plan.
func (r *Router) PlanFor(tenant string, hash uint64, buf []Target) Plan {
	t := r.tab.Load()
	return r.plan(t, t.members(tenant), hash, buf)
}

// Entry is the member of tenant's node set a user sticks to, by rendezvous
// score of userHash (a hash of the user's id or address) among the set's
// unsuspected members: a front end sends the user there. When the set
// grows by one, only the users the new member wins move, all to it.
func (r *Router) Entry(tenant string, userHash uint64) (Peer, bool) {
	return r.owner(r.tab.Load().members(tenant), userHash)
}
