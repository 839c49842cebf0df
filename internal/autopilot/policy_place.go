package autopilot

import (
	"cmp"
	"fmt"
)

// place picks the node for a new replica of kv, and says where it is for
// the reason. It never picks the owner, a node holding or being given the
// key, or a node that is draining or failing. Among the rest it prefers the
// zones the key's demand comes from (most demand first), then nodes given
// fewer replicas this tick, then the fewest requests in flight, then the
// lower ID. It returns "" if no node is eligible.
func (p *Policy) place(t *tick, kv *keyView) (node, where string) {
	taken := map[string]bool{kv.owner: true}
	for _, r := range kv.replicas {
		taken[r.Node] = true
	}
	if kv.st != nil {
		for n := range kv.st.pending {
			taken[n] = true
		}
	}
	zoneRank := func(zone string) int {
		for i, z := range kv.zones {
			if z.zone == zone {
				return i
			}
		}
		return len(kv.zones)
	}
	var best *NodeInfo
	bestRank := 0
	for id, n := range t.nodes {
		if taken[id] || n.Draining || n.Failing {
			continue
		}
		rank := zoneRank(n.Zone)
		if best == nil || better(t, n, rank, *best, bestRank) {
			best, bestRank = &n, rank
		}
	}
	if best == nil {
		return "", ""
	}
	switch {
	case len(kv.zones) == 0:
		where = fmt.Sprintf("node in zone %q, in-flight %d", best.Zone, best.InFlight)
	case bestRank == 0:
		where = fmt.Sprintf("node in demand zone %q, in-flight %d", best.Zone, best.InFlight)
	default:
		where = fmt.Sprintf("demand zone %q has no free node; node in zone %q, in-flight %d", kv.zones[0].zone, best.Zone, best.InFlight)
	}
	return best.ID, where
}

// better reports whether node a (zone rank ra) beats node b (rank rb).
func better(t *tick, a NodeInfo, ra int, b NodeInfo, rb int) bool {
	if c := cmp.Compare(ra, rb); c != 0 {
		return c < 0
	}
	if c := cmp.Compare(t.placed[a.ID], t.placed[b.ID]); c != 0 {
		return c < 0
	}
	if c := cmp.Compare(a.InFlight, b.InFlight); c != 0 {
		return c < 0
	}
	return a.ID < b.ID
}
