package node

import (
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crowdpilot/crowdpilot/internal/cluster"
)

func ids(ms []cluster.Member) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.ID)
	}
	slices.Sort(out)
	return out
}

// A member whose record vanishes without a drain stays routed for one
// member TTL (etcd may only be slow to renew leases); a drained one, or
// one held past the TTL, goes; one that comes back is no longer held.
func TestLostMembersAreHeldForOneTTL(t *testing.T) {
	const ttl = 3 * time.Second
	l := newLostPeers(ttl, prometheus.NewRegistry())
	t0 := time.Unix(1000, 0)
	m := func(id string, draining bool) cluster.Member { return cluster.Member{ID: id, Draining: draining} }

	all := []cluster.Member{m("a", false), m("b", false), m("c", false), m("d", false)}
	if got, _, next := l.view(all, "a", t0); !slices.Equal(ids(got), []string{"a", "b", "c", "d"}) || next != 0 {
		t.Fatalf("first view %v, next %v", ids(got), next)
	}
	// d drains, then every other record vanishes at once (etcd stalled).
	l.view([]cluster.Member{m("a", false), m("b", false), m("c", false), m("d", true)}, "a", t0)
	got, gone, next := l.view(nil, "a", t0.Add(time.Second))
	if want := []string{"b", "c"}; !slices.Equal(ids(got), want) || len(gone) != 0 || next != ttl {
		t.Fatalf("after the records vanished: %v (gone %v, next %v), want %v held for %v; self and the drained member not held", ids(got), gone, next, want, ttl)
	}
	// b comes back; c is still held, with less time left.
	got, _, next = l.view([]cluster.Member{m("b", false)}, "a", t0.Add(2*time.Second))
	if !slices.Equal(ids(got), []string{"b", "c"}) || next != 2*time.Second {
		t.Fatalf("b back: %v, next %v", ids(got), next)
	}
	// c's hold ends; b, back, is routed as an ordinary member.
	got, gone, next = l.view([]cluster.Member{m("b", false)}, "a", t0.Add(4*time.Second))
	if !slices.Equal(ids(got), []string{"b"}) || !slices.Equal(gone, []string{"c"}) || next != 0 {
		t.Fatalf("after the hold: %v (gone %v, next %v), want [b], c gone", ids(got), gone, next)
	}
	// b vanishes now: held from now, not from its earlier loss.
	if got, _, next := l.view(nil, "a", t0.Add(5*time.Second)); !slices.Equal(ids(got), []string{"b"}) || next != ttl {
		t.Fatalf("b lost again: %v, next %v", ids(got), next)
	}
}
