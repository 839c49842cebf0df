package autopilot

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/heat"
)

// TestFlashCrowd drives the policy from real heat trackers: five nodes each
// see a fifth of a key's requests, which step 50× from 100/s to 5,000/s.
// Nodes fold every 10ms and report twice a second; the leader decides every
// 100ms. It measures the time from the step to the first replica and to the
// full set (5 members at the default 1,000/s target), with reports that
// carry each key's recent rate (as nodes send them) and without.
func TestFlashCrowd(t *testing.T) {
	tests := []struct {
		window    time.Duration
		recent    bool          // reports carry heat.Recent rates
		wantFirst time.Duration // at most
		wantFull  time.Duration // at most
	}{
		// Without recent rates, detection is bounded by the report period;
		// the full set by how fast the decayed rate climbs, then by
		// MinInterval steps.
		{window: time.Second, wantFirst: 600 * time.Millisecond, wantFull: 2600 * time.Millisecond},
		{window: 500 * time.Millisecond, wantFirst: 600 * time.Millisecond, wantFull: 1600 * time.Millisecond},
		{window: 250 * time.Millisecond, wantFirst: 600 * time.Millisecond, wantFull: 600 * time.Millisecond},
		// With them, the first decision sees the whole step and asks for
		// the full set at once, whatever the decay window.
		{window: time.Second, recent: true, wantFirst: 600 * time.Millisecond, wantFull: 600 * time.Millisecond},
		{window: 500 * time.Millisecond, recent: true, wantFirst: 600 * time.Millisecond, wantFull: 600 * time.Millisecond},
		{window: 250 * time.Millisecond, recent: true, wantFirst: 600 * time.Millisecond, wantFull: 600 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v/recent=%v", tt.window, tt.recent), func(t *testing.T) {
			now := epoch
			clock := func() time.Time { return now }
			const key = "/match/score"
			h := hashOf(key)
			nodes := nodeIDs(5)
			trackers := make([]*heat.Tracker, len(nodes))
			var infos []NodeInfo
			for i, id := range nodes {
				tr, err := heat.New(heat.Config{Capacity: 64, Window: tt.window, Now: clock})
				if err != nil {
					t.Fatal(err)
				}
				trackers[i] = tr
				infos = append(infos, NodeInfo{ID: id, Zone: "z1"})
			}
			p, err := NewPolicy(Config{})
			if err != nil {
				t.Fatal(err)
			}
			obj := Object{Key: key, Hash: h, Owner: nodes[0]}
			reports := make([]Report, len(nodes))
			recents := make([]heat.Recent, len(nodes))
			rate := 100.0
			carry := 0.0
			var stepAt time.Time
			var first, full time.Duration
			for ms := 0; ms <= 20_000; ms += 10 {
				now = epoch.Add(time.Duration(ms) * time.Millisecond)
				if ms == 10_000 {
					rate, stepAt = 5000, now
				}
				carry += rate * 0.010
				for ; carry >= 1; carry-- {
					trackers[int(carry)%len(nodes)].Observe(h, key)
				}
				for _, tr := range trackers {
					tr.Tick(now)
				}
				if ms%500 == 0 {
					for i, tr := range trackers {
						keys := tr.Top(16)
						if tt.recent {
							keys = tr.Top(math.MaxInt)
							recents[i].Fill(now, keys)
							keys = keys[:min(len(keys), 16)]
						}
						reports[i] = Report{Node: nodes[i], Zone: "z1", At: now, Keys: keys}
					}
				}
				if ms%100 != 0 {
					continue
				}
				for _, a := range p.Decide(now, reports, []Object{obj}, infos) {
					switch a.Kind {
					case ScaleOut:
						if stepAt.IsZero() {
							t.Fatalf("scale-out at 100/s: %+v", a)
						}
						obj.Replicas = append(obj.Replicas, Replica{Node: a.Node, Since: now, Expires: now.Add(30 * time.Second)})
						if first == 0 {
							first = now.Sub(stepAt)
						}
					case ScaleIn:
						t.Fatalf("scale-in during the crowd: %+v", a)
					}
				}
				if len(obj.Replicas) == 4 && full == 0 {
					full = now.Sub(stepAt)
				}
			}
			t.Logf("window %v: first replica %v after the step, full set of 5 after %v", tt.window, first, full)
			if first == 0 || first > tt.wantFirst {
				t.Errorf("first replica after %v, want <= %v", first, tt.wantFirst)
			}
			if full == 0 || full > tt.wantFull {
				t.Errorf("full set after %v, want <= %v", full, tt.wantFull)
			}
			if len(obj.Replicas) != 4 {
				t.Errorf("replicas at the end = %d, want 4", len(obj.Replicas))
			}
		})
	}
}
