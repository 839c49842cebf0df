package route

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestPastOwnersFollowSetChanges: after every kind of change to a tenant's
// set (grow, shrink, an operator's exclusion, a node leaving), the new
// owner of each key that moved finds its previous owner first among its
// past owners.
func TestPastOwnersFollowSetChanges(t *testing.T) {
	const keys = 3000
	all := peers(8)
	for _, tt := range []struct {
		name          string
		before, after []TenantSpec
		peersAfter    []Peer
	}{
		{"grow", []TenantSpec{{Name: "a", Size: 3}}, []TenantSpec{{Name: "a", Size: 4}}, all},
		{"shrink", []TenantSpec{{Name: "a", Size: 4}}, []TenantSpec{{Name: "a", Size: 3}}, all},
		{"exclude", []TenantSpec{{Name: "a", Size: 3}}, nil, all},
		{"drain", []TenantSpec{{Name: "a", Size: 3}}, []TenantSpec{{Name: "a", Size: 3}}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// One router per node: each answers for the keys it owns.
			routers := map[string]*Router{}
			for _, p := range all {
				r := NewRouter(Config{Self: p.ID})
				r.SetPeers(all)
				r.SetTenants(tt.before)
				routers[p.ID] = r
			}
			set, _ := routers["n0"].TenantPeers("a")
			before := make([]string, keys)
			for i := range keys {
				o, _ := routers["n0"].OwnerFor("a", hashOf("a", i))
				before[i] = o.ID
			}
			after, peersAfter := tt.after, tt.peersAfter
			switch tt.name {
			case "exclude":
				after = []TenantSpec{{Name: "a", Size: 3, Exclude: []string{set[0]}}}
			case "drain":
				peersAfter = slices.DeleteFunc(slices.Clone(all), func(p Peer) bool { return p.ID == set[1] })
			}
			for _, r := range routers {
				if peersAfter != nil {
					r.SetPeers(peersAfter)
				}
				r.SetTenants(after)
			}
			moved := 0
			for i := range keys {
				h := hashOf("a", i)
				o, _ := routers["n0"].OwnerFor("a", h)
				var buf [maxPastSets]Peer
				past := routers[o.ID].PastOwnersFor("a", h, buf[:0])
				if o.ID == before[i] {
					continue
				}
				moved++
				if len(past) == 0 || past[0].ID != before[i] {
					t.Fatalf("key %d moved %s -> %s; the new owner's past owners are %v", i, before[i], o.ID, past)
				}
			}
			if moved == 0 {
				t.Fatalf("no key moved")
			}
			if got := routers["n0"].PastOwnersFor("", hashOf("a", 1), nil); len(got) != 0 {
				t.Errorf("the default tenant has past owners %v", got)
			}
		})
	}
}

// TestPastSetsForgotten: past sets lapse after SetMemory, at most
// maxPastSets are kept, and a membership change that leaves the set as it
// was records nothing.
func TestPastSetsForgotten(t *testing.T) {
	now := time.Unix(1000, 0)
	r := NewRouter(Config{Self: "n0", Now: func() time.Time { return now }, SetMemory: time.Minute})
	r.SetPeers(peers(10))
	r.SetTenants([]TenantSpec{{Name: "a", Size: 1}})
	if got := len(r.tab.Load().past["a"]); got != 0 {
		t.Fatalf("%d past sets before any change", got)
	}
	for size := 2; size <= 8; size++ {
		r.SetTenants([]TenantSpec{{Name: "a", Size: size}})
	}
	if got := len(r.tab.Load().past["a"]); got != maxPastSets {
		t.Fatalf("%d past sets after 7 changes, want %d", got, maxPastSets)
	}
	if got, _ := r.TenantPeers("a"); len(got) != 8 {
		t.Fatalf("set %v", got)
	}
	// The most recent past set is the one of size 7.
	if got := len(r.tab.Load().past["a"][0].peers); got != 7 {
		t.Errorf("most recent past set has %d nodes, want 7", got)
	}
	// A change of membership outside the set: nothing recorded.
	ps := peers(10)
	set, _ := r.TenantPeers("a")
	for i := range ps {
		if !slices.Contains(set, ps[i].ID) {
			ps[i].Zone = "z2"
			break
		}
	}
	r.SetPeers(ps)
	if got := len(r.tab.Load().past["a"]); got != maxPastSets {
		t.Errorf("%d past sets after a change outside the set", got)
	}
	now = now.Add(time.Minute + time.Second)
	var buf [maxPastSets]Peer
	for i := range 200 {
		if got := r.PastOwnersFor("a", hashOf("a", i), buf[:0]); len(got) != 0 {
			t.Fatalf("past owners %v a minute after the changes", got)
		}
	}
	r.SetTenants([]TenantSpec{{Name: "a", Size: 8}, {Name: "b", Size: 2}})
	if got := len(r.tab.Load().past["a"]); got != 0 {
		t.Errorf("%d expired past sets kept", got)
	}
	r.SetTenants(nil)
	if r.tab.Load().past != nil {
		t.Errorf("past sets kept for tenants no longer specified")
	}
}

func TestPastOwnersDoesNotAllocate(t *testing.T) {
	r := NewRouter(Config{Self: "n0"})
	r.SetPeers(peers(8))
	r.SetTenants([]TenantSpec{{Name: "a", Size: 3}})
	r.SetTenants([]TenantSpec{{Name: "a", Size: 4}})
	var buf [maxPastSets]Peer
	var cbuf [3]Peer
	h := hashOf("a", 1)
	if n := testing.AllocsPerRun(100, func() {
		r.PastOwnersFor("a", h, buf[:0])
		r.CandidatesFor("a", h, cbuf[:0])
	}); n != 0 {
		t.Errorf("PastOwnersFor and CandidatesFor allocate %v times", n)
	}
}

// TestHandoverMatchesPeers: a draining node hands each key of a tenant it
// owned to the node its peers route the key to once they see the drain,
// whether or not its own router has seen itself draining yet.
func TestHandoverMatchesPeers(t *testing.T) {
	const keys = 3000
	all := peers(7)
	specs := []TenantSpec{{Name: "a", Size: 3}}
	probe := NewRouter(Config{Self: "n0"})
	probe.SetPeers(all)
	probe.SetTenants(specs)
	set, _ := probe.TenantPeers("a")
	self := set[1]
	var draining []Peer
	for _, p := range all {
		if p.ID == self {
			p.Draining = true
		}
		draining = append(draining, p)
	}
	// The peers drop the draining node; it keeps itself, marked.
	peer := NewRouter(Config{Self: "n0"})
	peer.SetPeers(slices.DeleteFunc(slices.Clone(all), func(p Peer) bool { return p.ID == self }))
	peer.SetTenants(specs)
	for _, seen := range []bool{false, true} {
		t.Run(fmt.Sprint("seen draining ", seen), func(t *testing.T) {
			r := NewRouter(Config{Self: self})
			r.SetPeers(all)
			r.SetTenants(specs)
			if seen {
				r.SetPeers(draining)
			}
			for _, tenant := range []string{"a", ""} {
				ho := r.HandoverFor(tenant)
				owned := 0
				for i := range keys {
					h := hashOf(tenant, i)
					was, _ := probe.OwnerFor(tenant, h)
					to, ok := ho.Successor(h)
					if ok != (was.ID == self) {
						t.Fatalf("tenant %q key %d: owned by %s, Successor ok %v", tenant, i, was.ID, ok)
					}
					if !ok {
						continue
					}
					owned++
					if want, _ := peer.OwnerFor(tenant, h); to.ID != want.ID {
						t.Fatalf("tenant %q key %d handed to %s, its peers route it to %s", tenant, i, to.ID, want.ID)
					}
				}
				if owned == 0 {
					t.Errorf("tenant %q: the node owned no key", tenant)
				}
			}
		})
	}
}
