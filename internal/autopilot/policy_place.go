package autopilot

import (
	"cmp"
	"fmt"
	"math"
)

// overloadedErrorRate is the error rate (sheds and failures over all
// requests) at which a node's own report rules it out for new replicas: it
// is failing the clients it has.
const overloadedErrorRate = 0.5

// cpuStep is the CPU difference placement treats as real; below it, two
// nodes count as equally busy and in-flight requests decide.
const cpuStep = 0.05

// place picks the node for a new replica of kv, and says where it is for
// the reason. It never picks the owner, a node holding or being given the
// key, a node that is draining or failing, or one whose report shows it
// failing half its requests. Among the rest it prefers the zones the key's
// demand comes from (most demand first), then nodes given fewer replicas
// this tick, then the least CPU (in steps of cpuStep cores), then the fewest
// requests in flight, then the lower ID. It returns "" if no node is
// eligible.
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
		if taken[id] || n.Draining || n.Failing || n.Unreachable || n.ErrorRate >= overloadedErrorRate {
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
	load := fmt.Sprintf("cpu %.2f, in-flight %d", best.CPU, best.InFlight)
	switch {
	case len(kv.zones) == 0:
		where = fmt.Sprintf("node in zone %q, %s", best.Zone, load)
	case bestRank == 0:
		where = fmt.Sprintf("node in demand zone %q, %s", best.Zone, load)
	default:
		where = fmt.Sprintf("demand zone %q has no free node; node in zone %q, %s", kv.zones[0].zone, best.Zone, load)
	}
	return best.ID, where
}

// source picks the member a new replica of kv copies from: the registered
// replica with the fewest requests in flight, if it has fewer than the
// owner, whose own report may even be missing (a saturated node reports
// late). "" means the owner. Only nodes with a fresh report are judged.
// In-flight requests, not CPU, decide: a copy waits behind the node's
// queue, and nodes at their CPU cap all read the same CPU.
func source(t *tick, kv *keyView) string {
	best := ""
	var bestLoad NodeInfo
	for _, r := range kv.active {
		n, ok := t.nodes[r.Node]
		if _, reported := t.fresh[r.Node]; !ok || !reported || n.Draining || n.Failing || n.Unreachable || n.ErrorRate >= overloadedErrorRate {
			continue
		}
		if best == "" || n.InFlight < bestLoad.InFlight || (n.InFlight == bestLoad.InFlight && n.ID < bestLoad.ID) {
			best, bestLoad = r.Node, n
		}
	}
	if best == "" {
		return ""
	}
	if _, reported := t.fresh[kv.owner]; reported && bestLoad.InFlight >= t.nodes[kv.owner].InFlight {
		return ""
	}
	return best
}

// lessLoaded reports whether a is less loaded than b: less CPU by a step or
// more, else fewer requests in flight.
func lessLoaded(a, b NodeInfo) bool {
	if c := cmp.Compare(math.Floor(a.CPU/cpuStep), math.Floor(b.CPU/cpuStep)); c != 0 {
		return c < 0
	}
	return a.InFlight < b.InFlight
}

// better reports whether node a (zone rank ra) beats node b (rank rb).
func better(t *tick, a NodeInfo, ra int, b NodeInfo, rb int) bool {
	if c := cmp.Compare(ra, rb); c != 0 {
		return c < 0
	}
	if c := cmp.Compare(t.placed[a.ID], t.placed[b.ID]); c != 0 {
		return c < 0
	}
	if lessLoaded(a, b) != lessLoaded(b, a) {
		return lessLoaded(a, b)
	}
	return a.ID < b.ID
}
