package autopilot

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/heat"
)

func TestPlacement(t *testing.T) {
	now := epoch
	type demand struct {
		zone string
		rate float64
	}
	tests := []struct {
		name     string
		nodes    []NodeInfo
		owner    string
		replicas []string // nodes already holding the key
		demand   []demand // reports by zone
		want     []string // nodes chosen, in order
		wantIn   string   // substring of the first reason
	}{
		{
			name:   "least in-flight, owner excluded",
			nodes:  []NodeInfo{{ID: "a", InFlight: 10}, {ID: "b", InFlight: 5}, {ID: "c", InFlight: 1}, {ID: "d", InFlight: 7}},
			owner:  "c",
			demand: []demand{{"", 3500}},
			want:   []string{"b", "d", "a"},
		},
		{
			name:     "holders excluded",
			nodes:    []NodeInfo{{ID: "a"}, {ID: "b"}, {ID: "c"}, {ID: "d"}, {ID: "e"}},
			owner:    "a",
			replicas: []string{"b", "d"},
			demand:   []demand{{"", 4500}},
			want:     []string{"c", "e"},
		},
		{
			name:   "draining and failing excluded",
			nodes:  []NodeInfo{{ID: "a"}, {ID: "b", Draining: true}, {ID: "c", Failing: true}, {ID: "d", InFlight: 100}, {ID: "e", InFlight: 50}},
			owner:  "a",
			demand: []demand{{"", 9000}},
			want:   []string{"e", "d"},
		},
		{
			name:   "least CPU first, in-flight within a CPU step",
			nodes:  []NodeInfo{{ID: "a"}, {ID: "b", CPU: 0.9}, {ID: "c", CPU: 0.21, InFlight: 9}, {ID: "d", CPU: 0.24, InFlight: 2}, {ID: "e", CPU: 0.02, InFlight: 50}},
			owner:  "a",
			demand: []demand{{"", 4500}},
			want:   []string{"e", "d", "c", "b"},
			wantIn: "cpu 0.02, in-flight 50",
		},
		{
			name:     "unreachable: not chosen, its replica kept",
			nodes:    []NodeInfo{{ID: "a"}, {ID: "b", Unreachable: true}, {ID: "c", Unreachable: true}, {ID: "d"}, {ID: "e"}},
			owner:    "a",
			replicas: []string{"c"},
			demand:   []demand{{"", 3500}},
			want:     []string{"d", "e"},
		},
		{
			name:   "a node failing half its requests is not chosen",
			nodes:  []NodeInfo{{ID: "a"}, {ID: "b", ErrorRate: 0.5}, {ID: "c", ErrorRate: 0.2, InFlight: 40}},
			owner:  "a",
			demand: []demand{{"", 5000}},
			want:   []string{"c"},
		},
		{
			name:   "ties by ID",
			nodes:  []NodeInfo{{ID: "n3"}, {ID: "n1"}, {ID: "n2"}, {ID: "n0"}},
			owner:  "n0",
			demand: []demand{{"", 2500}},
			want:   []string{"n1", "n2"},
		},
		{
			name: "demand zone first, then the next zone by demand",
			nodes: []NodeInfo{
				{ID: "a1", Zone: "za", InFlight: 0}, {ID: "a2", Zone: "za", InFlight: 1},
				{ID: "b1", Zone: "zb", InFlight: 90}, {ID: "b2", Zone: "zb", InFlight: 80},
				{ID: "c1", Zone: "zc", InFlight: 0},
			},
			owner:  "b1",
			demand: []demand{{"zb", 3000}, {"zb", 2000}, {"zc", 1000}, {"za", 10}},
			want:   []string{"b2", "c1", "a1", "a2"},
			wantIn: `node in demand zone "zb"`,
		},
		{
			name:   "demand zone full",
			nodes:  []NodeInfo{{ID: "a1", Zone: "za"}, {ID: "b1", Zone: "zb"}, {ID: "b2", Zone: "zb", Draining: true}},
			owner:  "b1",
			demand: []demand{{"zb", 1500}},
			want:   []string{"a1"},
			wantIn: `demand zone "zb" has no free node; node in zone "za"`,
		},
		{
			name:   "no eligible node",
			nodes:  []NodeInfo{{ID: "a"}, {ID: "b", Failing: true}},
			owner:  "a",
			demand: []demand{{"", 5000}},
			want:   nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPolicy(Config{BudgetPerSecond: 100})
			if err != nil {
				t.Fatal(err)
			}
			key, h := "/k", hashOf("/k")
			var reports []Report
			for i, d := range tt.demand {
				reports = append(reports, Report{
					Node: tt.nodes[i%len(tt.nodes)].ID + "-router" + string(rune('0'+i)), Zone: d.zone, At: now,
					Keys: []heat.KeyRate{{Key: key, Hash: h, Rate: d.rate}},
				})
			}
			obj := Object{Key: key, Hash: h, Owner: tt.owner}
			for _, n := range tt.replicas {
				obj.Replicas = append(obj.Replicas, Replica{Node: n, Since: now.Add(-time.Second), Expires: now.Add(time.Minute)})
			}
			acts := p.Decide(now, reports, []Object{obj}, tt.nodes)
			var got []string
			for _, a := range kinds(acts, ScaleOut) {
				got = append(got, a.Node)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("placed on %v, want %v\nactions: %+v", got, tt.want, acts)
			}
			if ins := kinds(acts, ScaleIn); len(ins) != 0 {
				t.Errorf("replicas released: %+v", ins)
			}
			if tt.wantIn != "" && !strings.Contains(acts[0].Reason, tt.wantIn) {
				t.Errorf("reason %q, want it to contain %q", acts[0].Reason, tt.wantIn)
			}
			if tt.want == nil {
				if st := p.Stats(); st.PlacementDenied == 0 {
					t.Errorf("stats %+v: want placement denials counted", st)
				}
			}
		})
	}

	t.Run("load comes from the nodes' own reports", func(t *testing.T) {
		p, err := NewPolicy(Config{BudgetPerSecond: 100})
		if err != nil {
			t.Fatal(err)
		}
		key, h := "/k", hashOf("/k")
		nodes := []NodeInfo{{ID: "a"}, {ID: "b"}, {ID: "c"}, {ID: "d"}}
		reports := []Report{
			{Node: "a", At: now, Keys: []heat.KeyRate{{Key: key, Hash: h, Rate: 2500}}, CPU: 1},
			{Node: "b", At: now, CPU: 0.8},
			{Node: "c", At: now, CPU: 0.1},
			{Node: "d", At: now, CPU: 0.05, ErrorRate: 0.7},
		}
		acts := kinds(p.Decide(now, reports, []Object{{Key: key, Hash: h, Owner: "a"}}, nodes), ScaleOut)
		var got []string
		for _, a := range acts {
			got = append(got, a.Node)
		}
		if want := []string{"c", "b"}; !slices.Equal(got, want) {
			t.Fatalf("placed on %v, want %v (d fails 70%% of its requests)", got, want)
		}
	})

	t.Run("copies come from the least loaded holder", func(t *testing.T) {
		key, h := "/k", hashOf("/k")
		for _, tt := range []struct {
			name     string
			reports  []Report
			wantFrom string
		}{
			{name: "saturated owner: the idle replica", wantFrom: "b", reports: []Report{
				{Node: "a", CPU: 0.25, InFlight: 700}, {Node: "b", CPU: 0.05, InFlight: 3}, {Node: "c", CPU: 0.2, InFlight: 40}}},
			{name: "owner not reporting (too busy): a reporting replica", wantFrom: "c", reports: []Report{
				{Node: "b", CPU: 0.05, InFlight: 1, ErrorRate: 0.6}, {Node: "c", CPU: 0.2, InFlight: 40}}},
			{name: "all at their CPU cap: in-flight decides", wantFrom: "c", reports: []Report{
				{Node: "a", CPU: 0.24, InFlight: 500}, {Node: "b", CPU: 0.24, InFlight: 90}, {Node: "c", CPU: 0.26, InFlight: 5}}},
			{name: "owner the least loaded: the owner", wantFrom: "", reports: []Report{
				{Node: "a", CPU: 0.05, InFlight: 1}, {Node: "b", CPU: 0.05, InFlight: 3}, {Node: "c", CPU: 0.2, InFlight: 40}}},
			{name: "no replica reports: the owner", wantFrom: "", reports: []Report{{Node: "a", CPU: 0.25, InFlight: 700}}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				p, err := NewPolicy(Config{BudgetPerSecond: 100})
				if err != nil {
					t.Fatal(err)
				}
				reports := []Report{{Node: "router", At: now, Keys: []heat.KeyRate{{Key: key, Hash: h, Rate: 3500}}}}
				for _, r := range tt.reports {
					r.At = now
					reports = append(reports, r)
				}
				obj := Object{Key: key, Hash: h, Owner: "a", Replicas: []Replica{
					{Node: "b", Since: now.Add(-time.Second), Expires: now.Add(time.Minute)},
					{Node: "c", Since: now.Add(-time.Second), Expires: now.Add(time.Minute)},
				}}
				acts := kinds(p.Decide(now, reports, []Object{obj}, []NodeInfo{{ID: "a"}, {ID: "b"}, {ID: "c"}, {ID: "d"}, {ID: "e"}}), ScaleOut)
				if len(acts) == 0 {
					t.Fatal("no scale-out")
				}
				for _, a := range acts {
					if a.From != tt.wantFrom {
						t.Errorf("scale-out to %s copies from %q, want %q (reason %q)", a.Node, a.From, tt.wantFrom, a.Reason)
					}
					if tt.wantFrom != "" && !strings.Contains(a.Reason, "copy from "+tt.wantFrom) {
						t.Errorf("reason %q does not say where the copy comes from", a.Reason)
					}
				}
			})
		}
	})

	t.Run("keys placed in one tick spread over nodes", func(t *testing.T) {
		p, err := NewPolicy(Config{BudgetPerSecond: 100})
		if err != nil {
			t.Fatal(err)
		}
		nodes := []NodeInfo{{ID: "a"}, {ID: "b"}, {ID: "c"}, {ID: "d"}}
		var objs []Object
		var keys []heat.KeyRate
		for _, k := range []string{"/x", "/y", "/z"} {
			objs = append(objs, Object{Key: k, Hash: hashOf(k), Owner: "a"})
			keys = append(keys, heat.KeyRate{Key: k, Hash: hashOf(k), Rate: 1500})
		}
		acts := p.Decide(now, []Report{{Node: "a", At: now, Keys: keys}}, objs, nodes)
		var got []string
		for _, a := range acts {
			got = append(got, a.Node)
		}
		slices.Sort(got)
		if !slices.Equal(got, []string{"b", "c", "d"}) {
			t.Errorf("three keys' replicas on %v, want one each on b, c, d", got)
		}
	})

	t.Run("unknown owner", func(t *testing.T) {
		p, err := NewPolicy(Config{})
		if err != nil {
			t.Fatal(err)
		}
		reports := []Report{{Node: "a", At: now, Keys: []heat.KeyRate{{Key: "/k", Hash: 1, Rate: 5000}}}}
		if acts := p.Decide(now, reports, nil, []NodeInfo{{ID: "a"}, {ID: "b"}}); len(acts) != 0 {
			t.Errorf("actions for a key without an Object: %+v", acts)
		}
		if st := p.Stats(); st.UnknownOwner != 1 {
			t.Errorf("UnknownOwner = %d, want 1", st.UnknownOwner)
		}
	})

	t.Run("membership unknown", func(t *testing.T) {
		p, err := NewPolicy(Config{})
		if err != nil {
			t.Fatal(err)
		}
		obj := Object{Key: "/k", Hash: 1, Owner: "a", Replicas: []Replica{{Node: "b", Since: now, Expires: now.Add(time.Second)}}}
		reports := []Report{{Node: "a", At: now, Keys: []heat.KeyRate{{Key: "/k", Hash: 1, Rate: 5000}}}}
		acts := p.Decide(now, reports, []Object{obj}, nil)
		if len(acts) != 1 || acts[0].Kind != Renew {
			t.Errorf("with no node list: %+v, want only the renewal", acts)
		}
	})
}

// TestPruneBound: keys that only remember recent actions are forgotten,
// oldest first, beyond the bound; keys holding replicas are kept.
func TestPruneBound(t *testing.T) {
	p, err := NewPolicy(Config{MaxExtraReplicas: 2, Cooldown: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	now := epoch
	bound := p.maxKeys()
	for i := range bound + 50 {
		p.keys[uint64(i)] = &keyState{key: "/idle", lastOut: now.Add(time.Duration(i) * time.Second)}
	}
	obj := Object{Key: "/held", Hash: 1 << 40, Owner: "a", Replicas: []Replica{{Node: "b", Since: now, Expires: now.Add(time.Hour)}}}
	p.keys[obj.Hash] = &keyState{key: "/held"}
	p.Decide(now.Add(time.Minute), nil, []Object{obj}, []NodeInfo{{ID: "a"}, {ID: "b"}})
	st := p.Stats()
	if st.Keys != bound || st.ForgottenKeys != 51 {
		t.Errorf("keys = %d, forgotten = %d; want %d and 51", st.Keys, st.ForgottenKeys, bound)
	}
	if p.keys[obj.Hash] == nil {
		t.Error("key holding a replica was forgotten")
	}
	for i := range 50 {
		if p.keys[uint64(i)] != nil {
			t.Errorf("key %d (oldest) kept", i)
		}
	}
}

// BenchmarkDecide is one leader tick for a large cluster: 50 nodes each
// reporting 256 keys, 64 of them shared and hot.
func BenchmarkDecide(b *testing.B) {
	p, err := NewPolicy(Config{})
	if err != nil {
		b.Fatal(err)
	}
	var nodes []NodeInfo
	var reports []Report
	var objs []Object
	for i := range 50 {
		id := nodeIDs(50)[i]
		nodes = append(nodes, NodeInfo{ID: id, Zone: "z" + string(rune('0'+i%3))})
		r := Report{Node: id, Zone: nodes[i].Zone, At: epoch}
		for k := range 256 {
			key := "/k/" + string(rune('a'+k%26)) + string(rune('a'+k/26))
			if k >= 64 {
				key += "/" + id // node-local tail
			}
			r.Keys = append(r.Keys, heat.KeyRate{Key: key, Hash: hashOf(key), Rate: 2000 / float64(k+1)})
		}
		reports = append(reports, r)
	}
	for k := range 64 {
		key := "/k/" + string(rune('a'+k%26)) + string(rune('a'+k/26))
		objs = append(objs, Object{Key: key, Hash: hashOf(key), Owner: nodes[k%50].ID})
	}
	now := epoch
	b.ReportAllocs()
	for b.Loop() {
		p.Decide(now, reports, objs, nodes)
	}
}

// TestScaleOutSizing: a key is sized on its decayed rate unless its recent
// rate shows it clearly still climbing; noise never adds a replica.
func TestScaleOutSizing(t *testing.T) {
	key, h := "/k", hashOf("/k")
	for _, tt := range []struct {
		name         string
		rate, recent float64
		want         int // members the scale-out wants
		rising       bool
	}{
		{name: "steady, recent a little higher", rate: 1900, recent: 2200, want: 2},
		{name: "steady, recent lower", rate: 1900, recent: 1500, want: 2},
		{name: "recent unknown", rate: 1900, recent: 0, want: 2},
		{name: "climbing", rate: 1741, recent: 5200, want: 6, rising: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPolicy(Config{BudgetPerSecond: 100})
			if err != nil {
				t.Fatal(err)
			}
			// Two routers each see half of the key.
			var reports []Report
			for _, n := range []string{"r1", "r2"} {
				reports = append(reports, Report{Node: n, At: epoch, Keys: []heat.KeyRate{{Key: key, Hash: h, Rate: tt.rate / 2, Recent: tt.recent / 2}}})
			}
			nodes := []NodeInfo{{ID: "a"}, {ID: "b"}, {ID: "c"}, {ID: "d"}, {ID: "e"}, {ID: "f"}, {ID: "g"}}
			acts := kinds(p.Decide(epoch, reports, []Object{{Key: key, Hash: h, Owner: "a"}}, nodes), ScaleOut)
			if len(acts) != tt.want-1 {
				t.Fatalf("%d scale-outs, want %d: %+v", len(acts), tt.want-1, acts)
			}
			if got := strings.Contains(acts[0].Reason, "rising"); got != tt.rising || acts[0].Desired != tt.want {
				t.Errorf("reason %q, desired %d; want rising=%v, desired %d", acts[0].Reason, acts[0].Desired, tt.rising, tt.want)
			}
		})
	}
}

// TestSaturatedMemberBreaches: a member at its CPU limit counts as a breach,
// one member more than the rate calls for; a cool key is left alone.
func TestSaturatedMemberBreaches(t *testing.T) {
	key, h := "/k", hashOf("/k")
	for _, tt := range []struct {
		name         string
		rate         float64
		cpu, limit   float64
		want         int // members wanted; 0: no scale-out
		wantInReason string
	}{
		{name: "owner with room", rate: 1500, cpu: 0.1, limit: 0.25, want: 2},
		{name: "owner at its limit", rate: 1500, cpu: 0.24, limit: 0.25, want: 3, wantInReason: "a at its CPU limit (0.24 of 0.25 cores)"},
		{name: "limit unknown", rate: 1500, cpu: 0.24, want: 2},
		{name: "saturated, key below the watermark but warm", rate: 700, cpu: 0.25, limit: 0.25, want: 2, wantInReason: "at its CPU limit"},
		{name: "saturated, key cool", rate: 300, cpu: 0.25, limit: 0.25, want: 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPolicy(Config{BudgetPerSecond: 100})
			if err != nil {
				t.Fatal(err)
			}
			reports := []Report{
				{Node: "r", At: epoch, Keys: []heat.KeyRate{{Key: key, Hash: h, Rate: tt.rate}}},
				{Node: "a", At: epoch, CPU: tt.cpu, CPULimit: tt.limit},
			}
			nodes := []NodeInfo{{ID: "a"}, {ID: "b"}, {ID: "c"}, {ID: "d"}}
			acts := kinds(p.Decide(epoch, reports, []Object{{Key: key, Hash: h, Owner: "a"}}, nodes), ScaleOut)
			if tt.want == 0 {
				if len(acts) != 0 {
					t.Fatalf("scale-outs for a cool key: %+v", acts)
				}
				return
			}
			if len(acts) != tt.want-1 || acts[0].Desired != tt.want {
				t.Fatalf("%d scale-outs; want %d members: %+v", len(acts), tt.want, acts)
			}
			if tt.wantInReason != "" && !strings.Contains(acts[0].Reason, tt.wantInReason) {
				t.Errorf("reason %q, want it to contain %q", acts[0].Reason, tt.wantInReason)
			}
		})
	}
}
