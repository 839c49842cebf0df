package node

import (
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/autopilot"
	"github.com/crowdpilot/crowdpilot/internal/capacity"
	"github.com/crowdpilot/crowdpilot/internal/demo"
	"github.com/crowdpilot/crowdpilot/internal/heat"
	"github.com/crowdpilot/crowdpilot/internal/testwait"
)

func TestQuietReportEveryStaysInsideTheLeadersMaxAge(t *testing.T) {
	short := capacity.DefaultConfig()
	short.ReportMaxAge = 600 * time.Millisecond
	for _, c := range []struct {
		name string
		cfg  func(*Config)
		want time.Duration
	}{
		{"defaults: every fourth tick", func(*Config) {}, time.Second},
		{"a slow tick: every tick", func(c *Config) { c.ReportInterval = time.Second }, time.Second},
		{"a short replica TTL: half the leader's max age", func(c *Config) { c.Autopilot.ReplicaTTL = 2 * time.Second }, 500 * time.Millisecond},
		{"the operator's max age", func(c *Config) { c.Autopilot.ReportMaxAge = 800 * time.Millisecond }, 400 * time.Millisecond},
		{"the capacity manager's max age", func(c *Config) { c.Capacity = &short }, 300 * time.Millisecond},
		{"never under the tick", func(c *Config) { c.Autopilot.ReportMaxAge = 100 * time.Millisecond }, 250 * time.Millisecond},
	} {
		cfg := DefaultConfig()
		c.cfg(&cfg)
		n := &Node{cfg: cfg}
		if got := n.quietReportEvery(); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestQuietReportNeedsNothingWarm(t *testing.T) {
	n := &Node{cfg: DefaultConfig()} // a key is warm at half the near-copy rate, 10/s
	for _, c := range []struct {
		name string
		r    autopilot.Report
		want bool
	}{
		{"idle", autopilot.Report{}, true},
		{"a cool key", autopilot.Report{Keys: []heat.KeyRate{{Key: "/a", Rate: 9, Recent: 9.9}}}, true},
		{"a warm key by its decayed rate", autopilot.Report{Keys: []heat.KeyRate{{Key: "/a", Rate: 10}}}, false},
		{"a key jumping: its recent rate", autopilot.Report{Keys: []heat.KeyRate{{Key: "/a", Rate: 2, Recent: 30}}}, false},
		{"a near copy held", autopilot.Report{Near: []autopilot.NearCopy{{Key: "/a"}}}, false},
		{"errors", autopilot.Report{ErrorRate: 0.01}, false},
		{"a fifth of its CPU", autopilot.Report{CPU: 0.05, CPULimit: 0.25}, false},
		{"a little CPU", autopilot.Report{CPU: 0.04, CPULimit: 0.25}, true},
	} {
		if got := n.quietReport(c.r); got != c.want {
			t.Errorf("%s: quiet = %v, want %v", c.name, got, c.want)
		}
	}
}

// An idle node reports every fourth tick; a key that turns hot there is
// reported at once, and the node reports on every tick while it is warm.
func TestQuietNodesReportSeldomAndAtOnceWhenAKeyTurnsHot(t *testing.T) {
	tc := newTestCluster(t, 2, demo.Config{Latency: time.Millisecond, MaxAge: time.Minute, Capacity: 64}, func(c *Config) {
		c.ReportInterval = 50 * time.Millisecond
		c.ElectionTTL = 2 * time.Second
		// No replicas: a key that holds one stays in the hot set (and its
		// nodes report on every tick) until the lease is given back.
		c.Autopilot.TargetRPS = 1e9
	})
	const skipped = "crowdpilot_heat_reports_quiet_skipped_total"
	var follower *Node
	testwait.Eventually(t, 30*time.Second, "a leader elected", func() bool {
		for _, nd := range tc.nodes {
			if nd.ap.election.IsLeader() {
				follower = tc.nodes[0]
				if nd == follower {
					follower = tc.nodes[1]
				}
				return true
			}
		}
		return false
	})
	idx := 0
	if follower == tc.nodes[1] {
		idx = 1
	}
	testwait.Eventually(t, 30*time.Second, "idle ticks skipped", func() bool { return counter(t, follower, skipped, nil) >= 6 })

	// A crowd at the follower: one report at once, then one every tick.
	now0 := counter(t, follower, "crowdpilot_heat_reports_immediate_total", nil)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			tc.get(tc.url(idx, "/crowd"))
		}
	}()
	testwait.Eventually(t, 30*time.Second, "an immediate report", func() bool {
		return counter(t, follower, "crowdpilot_heat_reports_immediate_total", nil) > now0
	})
	testwait.Eventually(t, 30*time.Second, "the warm key in the leader's view of the follower", func() bool {
		for _, nd := range tc.nodes {
			if nd.ap.election.IsLeader() {
				for _, l := range nd.ap.leader.Loads() {
					if l.Node == follower.cfg.ID && time.Since(l.At) < time.Second {
						return true
					}
				}
			}
		}
		return false
	})
	during := counter(t, follower, skipped, nil)
	testwait.Holds(t, 500*time.Millisecond, "no ticks skipped while a key is warm", func() bool {
		return counter(t, follower, skipped, nil) == during
	})
	close(stop)
	<-done
	testwait.Eventually(t, 30*time.Second, "ticks skipped again once the key has cooled", func() bool {
		return counter(t, follower, skipped, nil) >= during+3
	})
}
