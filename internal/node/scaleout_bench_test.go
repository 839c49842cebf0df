package node

import (
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/autopilot"
	"github.com/crowdpilot/crowdpilot/internal/demo"
)

// BenchmarkFlashCrowdScaleOut measures the autopilot's reaction to a step:
// from the first request of a crowd on one cold key (after a quiet cluster)
// to the first response served by a replica, and to the full replica set
// (MaxReplicas members) being routed to by every node. Reported as
// first-replica-ms and full-set-ms; each iteration is a fresh 5-node
// cluster (real etcd, loopback HTTP, 16 closed-loop clients).
func BenchmarkFlashCrowdScaleOut(b *testing.B) {
	var first, full time.Duration
	for i := range b.N {
		tc := newTestCluster(b, 5, demo.Config{Latency: time.Millisecond, MaxAge: time.Minute, Capacity: 64}, func(c *Config) {
			c.Autopilot = autopilot.Config{TargetRPS: 50, MaxReplicas: 4, ReplicaTTL: 10 * time.Second}
		})
		path := "/live/step-" + string(rune('a'+i%26))
		hash := tc.hashOf(path)
		owner, _ := tc.nodes[0].router.Owner(hash)
		start := time.Now()
		c := tc.startCrowd(path, func() []int { return all(5) }, 16)
		var tFirst, tFull time.Duration
		deadline := start.Add(30 * time.Second)
		for (tFirst == 0 || tFull == 0) && time.Now().Before(deadline) {
			if tFirst == 0 {
				c.mu.Lock()
				for id, n := range c.servedBy {
					if id != owner.ID && n > 0 {
						tFirst = time.Since(start)
					}
				}
				c.mu.Unlock()
			}
			if tFull == 0 {
				done := true
				for _, nd := range tc.nodes {
					if len(nd.router.Replicas(hash)) < 3 {
						done = false
					}
				}
				if done {
					tFull = time.Since(start)
				}
			}
			time.Sleep(5 * time.Millisecond) // polling resolution of the measurement
		}
		c.end()
		if tFull > 2*time.Second {
			for _, nd := range tc.nodes {
				if nd.ap.election.IsLeader() {
					for _, e := range nd.ap.leader.Events(20) {
						b.Logf("event %+v", e)
					}
				}
			}
		}
		tc.close()
		if tFirst == 0 || tFull == 0 {
			b.Fatalf("no full scale-out within 30s (first replica %v, full set %v)", tFirst, tFull)
		}
		b.Logf("iteration %d: first replica %v, full set %v", i, tFirst, tFull)
		first += tFirst
		full += tFull
	}
	b.ReportMetric(float64(first.Milliseconds())/float64(b.N), "first-replica-ms")
	b.ReportMetric(float64(full.Milliseconds())/float64(b.N), "full-set-ms")
}
