package route

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
)

func labelled(n int, labels map[int]map[string]string, draining ...int) []Peer {
	ps := peers(n)
	for i, l := range labels {
		ps[i].Labels = FormatLabels(l)
	}
	for _, i := range draining {
		ps[i].Draining = true
	}
	return ps
}

func TestTenantSet(t *testing.T) {
	whale := map[string]string{"hw": "dedicated"}
	tests := []struct {
		name     string
		spec     TenantSpec
		peers    []Peer
		wantLen  int
		must     []string // in the set
		mustNot  []string // not in the set
		fallback bool
	}{
		{name: "top K", spec: TenantSpec{Name: "a", Size: 3}, peers: peers(8), wantLen: 3},
		{name: "size above eligible: all", spec: TenantSpec{Name: "a", Size: 20}, peers: peers(8), wantLen: 8},
		{name: "size zero still served", spec: TenantSpec{Name: "a", Size: 0}, peers: peers(8), wantLen: 1},
		{name: "isolation labels", spec: TenantSpec{Name: "a", Size: 3, Labels: whale},
			peers: labelled(8, map[int]map[string]string{2: whale, 5: whale, 6: {"hw": "other"}}), wantLen: 2,
			must: []string{"n2", "n5"}},
		{name: "isolation with nothing eligible falls back to all", spec: TenantSpec{Name: "a", Size: 3, Labels: whale},
			peers: peers(4), wantLen: 4, fallback: true},
		{name: "draining excluded", spec: TenantSpec{Name: "a", Size: 7}, peers: labelled(8, nil, 3), wantLen: 7,
			mustNot: []string{"n3"}},
		{name: "exclude", spec: TenantSpec{Name: "a", Size: 7, Exclude: []string{"n0", "n7"}}, peers: peers(8), wantLen: 6,
			mustNot: []string{"n0", "n7"}},
		{name: "pins first", spec: TenantSpec{Name: "a", Size: 2, Pin: []string{"n6", "n7"}}, peers: peers(8), wantLen: 2,
			must: []string{"n6", "n7"}},
		{name: "pinned but draining is skipped", spec: TenantSpec{Name: "a", Size: 2, Pin: []string{"n6"}},
			peers: labelled(8, nil, 6), wantLen: 2, mustNot: []string{"n6"}},
		{name: "pinned but not labelled is skipped", spec: TenantSpec{Name: "a", Size: 1, Labels: whale, Pin: []string{"n1"}},
			peers: labelled(4, map[int]map[string]string{3: whale}), wantLen: 1, must: []string{"n3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, fb := TenantSet(tt.spec, tt.peers)
			if len(got) != tt.wantLen || fb != tt.fallback {
				t.Fatalf("set = %v (fallback %v), want %d nodes (fallback %v)", got, fb, tt.wantLen, tt.fallback)
			}
			if !slices.IsSorted(got) {
				t.Errorf("set %v not sorted", got)
			}
			for _, id := range tt.must {
				if !slices.Contains(got, id) {
					t.Errorf("set %v lacks %s", got, id)
				}
			}
			for _, id := range tt.mustNot {
				if slices.Contains(got, id) {
					t.Errorf("set %v holds %s", got, id)
				}
			}
		})
	}
}

// TestTenantSetsDiffer checks that tenants of the same size get different
// sets (spread over the cluster) and that a set is a function of the spec
// and the peers only.
func TestTenantSetsDiffer(t *testing.T) {
	ps := peers(12)
	rev := slices.Clone(ps)
	slices.Reverse(rev)
	use := map[string]int{}
	for i := range 40 {
		set, _ := TenantSet(TenantSpec{Name: fmt.Sprint("t", i), Size: 3}, ps)
		again, _ := TenantSet(TenantSpec{Name: fmt.Sprint("t", i), Size: 3}, rev)
		if !slices.Equal(set, again) {
			t.Fatalf("set depends on peer order: %v vs %v", set, again)
		}
		for _, id := range set {
			use[id]++
		}
	}
	if len(use) < 10 {
		t.Errorf("40 tenants of 3 use only %d of 12 nodes: %v", len(use), use)
	}
}

// TestTenantGrowthMovesOnlyWonKeys: growing a tenant's set from K to K+1
// adds one node and keeps the others; keys move only to the new node, a
// share within a few percent of 1/(K+1), and other tenants do not move.
func TestTenantGrowthMovesOnlyWonKeys(t *testing.T) {
	const keys = 60000
	ps := peers(12)
	for _, k := range []int{3, 6, 9} {
		t.Run(fmt.Sprint("K=", k), func(t *testing.T) {
			r := NewRouter(Config{Self: "n0"})
			r.SetPeers(ps)
			r.SetTenants([]TenantSpec{{Name: "a", Size: k}, {Name: "b", Size: 3}})
			before, _ := r.TenantPeers("a")
			beforeB, _ := r.TenantPeers("b")
			ownA, ownB := make([]string, keys), make([]string, keys)
			for i := range keys {
				p, _ := r.OwnerFor("a", hashOf("a", i))
				if !slices.Contains(before, p.ID) {
					t.Fatalf("key owned by %s outside the set %v", p.ID, before)
				}
				ownA[i] = p.ID
				p, _ = r.OwnerFor("b", hashOf("b", i))
				ownB[i] = p.ID
			}
			r.SetTenants([]TenantSpec{{Name: "a", Size: k + 1}, {Name: "b", Size: 3}})
			after, _ := r.TenantPeers("a")
			var added []string
			for _, id := range after {
				if !slices.Contains(before, id) {
					added = append(added, id)
				}
			}
			if len(after) != k+1 || len(added) != 1 {
				t.Fatalf("set %v -> %v: want one node added, none removed", before, after)
			}
			moved := 0
			for i := range keys {
				p, _ := r.OwnerFor("a", hashOf("a", i))
				if p.ID != ownA[i] {
					if p.ID != added[0] {
						t.Fatalf("key %d moved %s -> %s, not to the new node %s", i, ownA[i], p.ID, added[0])
					}
					moved++
				}
				if p, _ := r.OwnerFor("b", hashOf("b", i)); p.ID != ownB[i] {
					t.Fatalf("tenant b's key %d moved %s -> %s", i, ownB[i], p.ID)
				}
			}
			want := float64(keys) / float64(k+1)
			if f := float64(moved) / want; f < 0.95 || f > 1.05 {
				t.Errorf("moved %d keys, want %.0f (1/%d) within 5%%", moved, want, k+1)
			}
			if got, _ := r.TenantPeers("b"); !slices.Equal(got, beforeB) {
				t.Errorf("tenant b's set changed: %v -> %v", beforeB, got)
			}
		})
	}
}

// TestNodeJoinTouchesOnlySetsItWins: a node joining the cluster enters a
// tenant's set only if it wins a place in the top K; tenants it does not
// enter keep every key where it was.
func TestNodeJoinTouchesOnlySetsItWins(t *testing.T) {
	const keys = 5000
	r := NewRouter(Config{Self: "n0"})
	r.SetPeers(peers(8))
	var specs []TenantSpec
	for i := range 30 {
		specs = append(specs, TenantSpec{Name: fmt.Sprint("t", i), Size: 3})
	}
	r.SetTenants(specs)
	sets := map[string][]string{}
	owners := map[string][]string{}
	for _, s := range specs {
		sets[s.Name], _ = r.TenantPeers(s.Name)
		for i := range keys {
			p, _ := r.OwnerFor(s.Name, hashOf(s.Name, i))
			owners[s.Name] = append(owners[s.Name], p.ID)
		}
	}
	r.SetPeers(peers(9))
	entered := 0
	for _, s := range specs {
		now, _ := r.TenantPeers(s.Name)
		if !slices.Contains(now, "n8") {
			if !slices.Equal(now, sets[s.Name]) {
				t.Fatalf("tenant %s: set %v -> %v without the new node", s.Name, sets[s.Name], now)
			}
			for i := range keys {
				if p, _ := r.OwnerFor(s.Name, hashOf(s.Name, i)); p.ID != owners[s.Name][i] {
					t.Fatalf("tenant %s: key %d moved without the new node in its set", s.Name, i)
				}
			}
			continue
		}
		entered++
		kept := 0
		for _, id := range now {
			if slices.Contains(sets[s.Name], id) {
				kept++
			}
		}
		if kept != 2 {
			t.Errorf("tenant %s: %v -> %v, want the new node to replace exactly one", s.Name, sets[s.Name], now)
		}
	}
	// Each tenant's top 3 of 9 holds the new node with probability 1/3.
	if entered < 3 || entered > 20 {
		t.Errorf("the new node entered %d of 30 sets, want about 10", entered)
	}
}

func TestPlanForDefaultIsPlan(t *testing.T) {
	ps := peers(5)
	r := NewRouter(Config{Self: "n0"})
	r.SetPeers(ps)
	r.SetTenants([]TenantSpec{{Name: "a", Size: 2}})
	for i := range 2000 {
		h := hashOf("", i)
		for _, tenant := range []string{"", "unknown"} {
			if a, b := planIDs(r.Plan(h, nil)), planIDs(r.PlanFor(tenant, h, nil)); a != b {
				t.Fatalf("tenant %q key %d: PlanFor %s, Plan %s", tenant, i, b, a)
			}
		}
		o1, _ := r.Owner(h)
		o2, _ := r.OwnerFor("", h)
		if o1.ID != o2.ID {
			t.Fatalf("OwnerFor(\"\") %s != Owner %s", o2.ID, o1.ID)
		}
	}
}

func TestPlanForStaysInSet(t *testing.T) {
	ps := peers(8)
	for _, self := range []string{"n0", "n3", "n7"} {
		r := NewRouter(Config{Self: self})
		r.SetPeers(ps)
		r.SetTenants([]TenantSpec{{Name: "a", Size: 3}})
		set, _ := r.TenantPeers("a")
		for i := range 500 {
			h := hashOf("a", i)
			plan := r.PlanFor("a", h, nil)
			owner, _ := r.OwnerFor("a", h)
			if plan.Local != (owner.ID == self) {
				t.Fatalf("self %s key %d: Local %v but owner %s", self, i, plan.Local, owner.ID)
			}
			for _, tg := range plan.Targets {
				if !slices.Contains(set, tg.ID()) {
					t.Fatalf("self %s key %d: target %s outside the set %v", self, i, tg.ID(), set)
				}
			}
		}
	}
}

func TestPlanForDoesNotAllocate(t *testing.T) {
	r := NewRouter(Config{Self: "n0"})
	r.SetPeers(peers(8))
	r.SetTenants([]TenantSpec{{Name: "a", Size: 3}})
	var buf [4]Target
	h := hashOf("a", 1)
	if n := testing.AllocsPerRun(100, func() { r.PlanFor("a", h, buf[:0]) }); n != 0 {
		t.Errorf("PlanFor allocates %v times", n)
	}
}

// TestEntrySticky: a user keeps their entry node; growing the set by one
// moves only the users the new node wins.
func TestEntrySticky(t *testing.T) {
	const users = 30000
	r := NewRouter(Config{Self: "n0"})
	r.SetPeers(peers(10))
	r.SetTenants([]TenantSpec{{Name: "a", Size: 4}})
	set, _ := r.TenantPeers("a")
	entry := make([]string, users)
	for u := range users {
		p, _ := r.Entry("a", hashOf("user", u))
		if !slices.Contains(set, p.ID) {
			t.Fatalf("user %d enters at %s outside %v", u, p.ID, set)
		}
		if again, _ := r.Entry("a", hashOf("user", u)); again.ID != p.ID {
			t.Fatalf("user %d not sticky: %s then %s", u, p.ID, again.ID)
		}
		entry[u] = p.ID
	}
	r.SetTenants([]TenantSpec{{Name: "a", Size: 5}})
	moved := 0
	for u := range users {
		p, _ := r.Entry("a", hashOf("user", u))
		if p.ID != entry[u] {
			if slices.Contains(set, p.ID) {
				t.Fatalf("user %d moved between old members %s -> %s", u, entry[u], p.ID)
			}
			moved++
		}
	}
	if f := float64(moved) / (users / 5.0); f < 0.93 || f > 1.07 {
		t.Errorf("%d users moved, want about %d", moved, users/5)
	}
}

func TestSetTenantsSurvivesMembershipChange(t *testing.T) {
	r := NewRouter(Config{Self: "n0"})
	r.SetTenants([]TenantSpec{{Name: "a", Size: 2, Labels: map[string]string{"z": "1"}}})
	r.SetPeers(peers(3))
	if got, fb := r.TenantPeers("a"); len(got) != 3 || !fb {
		t.Fatalf("no labelled node: %v fallback %v, want all 3 and fallback", got, fb)
	}
	ps := labelled(3, map[int]map[string]string{1: {"z": "1"}})
	r.SetPeers(ps)
	if got, fb := r.TenantPeers("a"); strings.Join(got, ",") != "n1" || fb {
		t.Fatalf("after labelling n1: %v fallback %v, want [n1]", got, fb)
	}
	r.SetReplicas(map[uint64][]string{1: {"n2"}})
	if got, _ := r.TenantPeers("a"); strings.Join(got, ",") != "n1" {
		t.Fatalf("SetReplicas lost the tenant sets: %v", got)
	}
}

func hashOf(tenant string, i int) uint64 { return xxhash.Sum64String(fmt.Sprint(tenant, "/k/", i)) }

func planIDs(p Plan) string {
	var ids []string
	for _, t := range p.Targets {
		ids = append(ids, t.ID())
	}
	return fmt.Sprint(p.Local, ids)
}

func TestLabelsRoundTrip(t *testing.T) {
	m := map[string]string{"rack": "r1", "hw": "dedicated"}
	s := FormatLabels(m)
	if s != "hw=dedicated,rack=r1" {
		t.Errorf("FormatLabels = %q", s)
	}
	back := ParseLabels(s)
	if len(back) != 2 || back["hw"] != "dedicated" || back["rack"] != "r1" {
		t.Errorf("ParseLabels = %v", back)
	}
	if FormatLabels(nil) != "" || ParseLabels("") != nil {
		t.Error("empty labels do not round-trip")
	}
}
